"""End-to-end rig: FakeAsterisk on a real port, the real listener and engine, a real SQLite ledger."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import pytest

from callguard.adapters.asterisk.runner import RunningListener, start_listener
from callguard.config import Config, parse_config
from callguard.core.prompts import StaticPrompts
from callguard.ledger import Ledger
from callguard.ledger.queries import timeline
from callguard.testing.fake_asterisk import FakeAsterisk

SECRET = "s3cret-for-tests"
#: The fake plays every prompt this long (seconds, before time_scale).
PROMPT_S = 0.04


def make_config(port: int, **sections: dict[str, Any]) -> Config:
    data: dict[str, Any] = {
        "asterisk": {"port": port, "secret": SECRET, "heartbeat_interval_s": 0.1, "ping_interval_s": 0.5,
                     "reconnect_min_s": 0.02, "reconnect_max_s": 0.1, "action_timeout_ms": 1000,
                     "recording_dir": "/var/spool/asterisk/monitor/callguard"},
        "consent": {"timeout_ms": 2500, "max_attempts": 2},
        # Generous: CI machines stall; the fail-safe test sets its own.
        "recording": {"confirm_timeout_ms": 2000, "start_timeout_ms": 3000},
        "policy": {"home": "US-NY"},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return parse_config(data, "<test>", environ={})


class Tee:
    """The real ledger, plus an in-memory copy to wait on without flushing the database."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger
        self.seen: list[tuple[str, str, dict[str, Any]]] = []

    def append(self, entry, received_at: float) -> None:
        self.seen.append((entry.call_id, entry.kind, dict(entry.data)))
        self.ledger.append(entry, received_at)


@dataclass
class Rig:
    pbx: FakeAsterisk
    config: Config
    ledger: Ledger
    running: RunningListener | None = None
    prompts: StaticPrompts = field(default_factory=lambda: StaticPrompts(("en", "es", "fr"),
                                                                         durations={"notice": PROMPT_S}))

    def __post_init__(self) -> None:
        self.tee = Tee(self.ledger)

    async def start_listener(self, **options: Any) -> RunningListener:
        self.running = await start_listener(self.config, self.tee, prompts=self.prompts, **options)
        await self.pbx.wait_for_client()
        await self.wait_for(lambda: self.pbx.heartbeat_fresh())
        return self.running

    @property
    def listener(self):
        assert self.running is not None
        return self.running.listener

    @property
    def engine(self):
        assert self.running is not None
        return self.running.engine

    def timeline(self, call_id: str):
        assert self.ledger.flush(5)
        return timeline(self.ledger.engine, call_id)

    def kinds(self, call_id: str) -> list[str]:
        return [e.kind for e in self.timeline(call_id)]

    def entry(self, call_id: str, kind: str, **match: Any):
        for e in self.timeline(call_id):
            if e.kind == kind and all(e.data.get(k) == v for k, v in match.items()):
                return e
        raise AssertionError(f"no {kind} {match} in {self.kinds(call_id)}")

    def sent(self, name: str, **match: str) -> list[dict[str, str]]:
        """Actions the listener sent (as the fake received them)."""
        return [a for _, a in self.pbx.actions if a.get("action", "").lower() == name.lower()
                and all(a.get(k.lower()) == v for k, v in match.items())]

    def agi_sent(self, channel: str | None = None) -> list[str]:
        return [a["command"] for _, a in self.pbx.actions if a.get("action", "").lower() == "agi"
                and (channel is None or a.get("channel") == channel)]

    async def wait_for(self, predicate, timeout: float = 10.0, what: str = "") -> None:
        async def poll() -> None:
            while not predicate():
                await asyncio.sleep(0.005)
        try:
            await asyncio.wait_for(poll(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"timed out waiting for {what or predicate}") from None

    async def wait_kind(self, call_id: str, kind: str, timeout: float = 10.0, **match: Any) -> None:
        def seen() -> bool:
            return any(cid == call_id and k == kind and all(data.get(m) == v for m, v in match.items())
                       for cid, k, data in self.tee.seen)
        try:
            await self.wait_for(seen, timeout, f"{kind} {match} in call {call_id}")
        except AssertionError as exc:
            actions = [(a.get("action"), a.get("command", a.get("state", ""))) for _, a in self.pbx.actions[-8:]]
            raise AssertionError(f"{exc}; ledger has {self.kinds(call_id)}; last actions {actions}") from None

    async def settle(self, call) -> None:
        """Until the engine has forgotten the call and the ledger has it all."""
        await self.wait_for(lambda: call.linkedid not in self.engine.sessions, 5.0, "call to finish")
        self.ledger.flush(5)


@pytest.fixture
async def pbx() -> AsyncIterator[FakeAsterisk]:
    async with FakeAsterisk(secret=SECRET, default_prompt_s=PROMPT_S) as fake:
        yield fake


@pytest.fixture
async def rig(pbx: FakeAsterisk, tmp_path) -> AsyncIterator[Rig]:
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.sqlite'}", "asterisk@test", batch_wait_ms=0.5)
    r = Rig(pbx, make_config(pbx.port), ledger)
    try:
        yield r
    finally:
        if r.running is not None:
            await r.running.stop()
        ledger.close(5)
