"""Drive a CaptureSession by hand: events at increasing PBX times, every command kept."""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from decimal import Decimal
from typing import Any, Iterable

from callguard.core.commands import LedgerEntry
from callguard.core.prompts import StaticPrompts
from callguard.payments import capture as cap

T0 = 1_795_338_000.0  # 2026-11-22
TEST_CARD = "4111111111111111"
AMEX_CARD = "378282246310005"


class Till:
    def __init__(self, settings: cap.CaptureSettings | None = None, amount: str | None = "49.90",
                 protect: bool = True) -> None:
        self.t = T0
        self.capture = cap.CaptureSession("pay-1", "call-1", settings or cap.CaptureSettings(),
                                          StaticPrompts(("en",)), "en",
                                          amount=Decimal(amount) if amount else None, currency="GBP", started_at=T0)
        self.commands: list[Any] = list(self.capture.start())
        if protect:
            self.feed(cap.Protected)

    def feed(self, kind: type, *args: Any, dt: float = 0.1) -> list[Any]:
        self.t += dt
        out = self.capture.handle(kind(self.t, *args))
        self.commands.extend(out)
        return out

    def keys(self, digits: str) -> list[Any]:
        out: list[Any] = []
        for digit in digits:
            out += self.feed(cap.Key, digit)
        return out

    def of(self, kind: type) -> list[Any]:
        return [c for c in self.commands if isinstance(c, kind)]

    def prompts(self) -> list[str]:
        return [c.prompt.prompt_id for c in self.of(cap.PlayToCaller)]

    def entries(self, kind: str | None = None) -> list[LedgerEntry]:
        return [c for c in self.of(LedgerEntry) if kind is None or c.kind == kind]

    def last_lines(self) -> list[str]:
        return self.of(cap.ShowProgress)[-1].progress.lines()

    @property
    def result(self) -> cap.PaymentResult:
        return self.of(cap.Finish)[-1].result


def text_of(commands: Iterable[Any]) -> str:
    """Every text field of every command (the card handed to the connector only as its repr).

    Numbers (times, counts) are left out: keyed digits could only travel as text.
    """
    parts: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, cap.Submit):
            parts.append(repr(value.card))
            return
        if is_dataclass(value):
            for f in fields(value):
                walk(getattr(value, f.name))
        elif isinstance(value, dict):
            for k, v in value.items():
                parts.append(str(k))
                walk(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)
        elif isinstance(value, str):
            parts.append(value)
    for command in commands:
        walk(command)
    return "\n".join(parts)
