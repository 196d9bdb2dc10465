"""What a PBX-neutral acceptance scenario needs from a target PBX (fake or real).

A scenario is the project's own :class:`~callguard.testing.scenario.Scenario`
(who calls, who presses what and when, hotkeys, IVR signals, hang-ups), the
same file format ``callguard simulate`` plays.  A target plays it against a
listener it runs, and hands back what a person auditing the call would
look at: the ledger timeline and the recording's audible spans.  Times are
seconds since the call was answered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from callguard.ledger.queries import StoredEntry
from callguard.testing.scenario import Scenario


@dataclass
class Played:
    """One played scenario: the call's ledger timeline and what the recording holds."""

    call_id: str
    timeline: list[StoredEntry]
    #: (start, end) seconds since answer in which the recording holds real (non-silent) audio
    audible: list[tuple[float, float]] = field(default_factory=list)
    recorded: bool = False
    #: what FreeSWITCH / Asterisk left in the call's decision variable (or "" if none)
    decision: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.timeline]

    def entry(self, kind: str, **match: Any) -> StoredEntry:
        for e in self.timeline:
            if e.kind == kind and all(e.data.get(k) == v for k, v in match.items()):
                return e
        raise AssertionError(f"no {kind} {match} in {self.kinds()}")

    def entries(self, kind: str) -> list[StoredEntry]:
        return [e for e in self.timeline if e.kind == kind]

    def audible_within(self, start: float, end: float) -> float:
        """Seconds of audible recording between ``start`` and ``end``."""
        return sum(max(0.0, min(b, end) - max(a, start)) for a, b in self.audible)


class Target(Protocol):
    """A PBX the suite can play scenarios on (see conftest.py for how one is chosen)."""

    name: str
    #: how far a real PBX's timing may stray from the script (0 for a fake on a virtual clock)
    slack_s: float

    async def play(self, scenario: Scenario) -> Played: ...

    def supports(self, scenario: Scenario) -> str | None:
        """None if the target can play ``scenario``, else why not (the test is skipped, saying so)."""
        ...
