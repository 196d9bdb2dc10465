"""End-to-end rig: FakeFreeSWITCH on real ports, the real listener and engine, a real SQLite ledger."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

import pytest

from callguard.adapters.freeswitch.listener import FreeSwitchListener
from callguard.adapters.freeswitch.commands import directory_prompts
from callguard.config import Config, parse_config
from callguard.core.prompts import StaticPrompts
from callguard.ledger import Ledger
from callguard.ledger.queries import StoredEntry, timeline
from callguard.testing.fake_freeswitch import CallRecord, FakeFreeSWITCH, Faults
from callguard.testing.scenario import Scenario

PASSWORD = "s3cret-for-tests"
SOUNDS = "/usr/share/freeswitch/sounds"
RECORDINGS = "/var/lib/freeswitch/recordings/callguard"


def make_config(port: int, **sections: dict[str, Any]) -> Config:
    data: dict[str, Any] = {
        "freeswitch": {"port": port, "password": PASSWORD, "listen_port": 0, "heartbeat_interval_s": 0.2,
                       "reconnect_min_s": 0.02, "reconnect_max_s": 0.2, "action_timeout_ms": 1000,
                       "recording_dir": RECORDINGS},
        "consent": {"timeout_ms": 5000, "max_attempts": 2},
        # Generous: loaded CI machines stall; the fail-safe tests set their own.
        "recording": {"confirm_timeout_ms": 3000, "start_timeout_ms": 5000},
        "policy": {"home": "US-NY"},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return parse_config(data, "<test>", environ={})


def scenario(steps: list[dict[str, Any]], number: str = "+14155550123", name: str = "José Cust",
             agent: str | None = "100", **extra: Any) -> Scenario:
    data: dict[str, Any] = {"name": "test", "caller": {"number": number, "name": name}, "step": steps, **extra}
    if agent:
        data["agent"] = {"number": agent}
    return Scenario.from_dict(data)


@dataclass
class Rig:
    fake: FakeFreeSWITCH
    config: Config
    ledger: Ledger
    listener: FreeSwitchListener | None = None
    prompts: StaticPrompts = field(default_factory=lambda: StaticPrompts(("en", "es", "fr")))

    async def start_listener(self, config: Config | None = None, **options: Any) -> FreeSwitchListener:
        self.listener = FreeSwitchListener(config or self.config, self.ledger, prompts=self.prompts,
                                           prompt_path=directory_prompts(SOUNDS), **options)
        await self.listener.start()
        self.fake.watch(self.listener.busy)
        self.fake.socket_address = ("127.0.0.1", self.listener.outbound_port or 0)
        await asyncio.wait_for(self.listener.connected.wait(), 10)
        return self.listener

    async def play(self, scenario: Scenario, **kw: Any) -> CallRecord:
        record = await asyncio.wait_for(self.fake.play(scenario, **kw), 60)
        await self.settle()
        return record

    async def settle(self) -> None:
        await self.fake.settle()
        if self.listener is not None:
            await self.wait_for(lambda: not self.listener.busy())  # type: ignore[union-attr]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        async def poll() -> None:
            while not predicate():
                await asyncio.sleep(0.005)
        await asyncio.wait_for(poll(), timeout)

    def timeline(self, call_id: str) -> list[StoredEntry]:
        assert self.ledger.flush(10)
        return timeline(self.ledger.engine, call_id)

    def kinds(self, call_id: str) -> list[str]:
        return [e.kind for e in self.timeline(call_id)]

    def entry(self, call_id: str, kind: str, **match: Any) -> StoredEntry:
        for e in self.timeline(call_id):
            if e.kind == kind and all(e.data.get(k) == v for k, v in match.items()):
                return e
        raise AssertionError(f"no {kind} {match} in {self.kinds(call_id)}")

    def entries(self, call_id: str, kind: str) -> list[StoredEntry]:
        return [e for e in self.timeline(call_id) if e.kind == kind]

    def api(self, prefix: str) -> list[str]:
        """``api`` commands the listener sent (as the fake received them)."""
        return [c for _, c in self.fake.api_log if c.startswith(prefix)]


@pytest.fixture
async def make_rig(tmp_path) -> AsyncIterator[Callable[..., Any]]:
    rigs: list[Rig] = []

    async def build(faults: Faults | None = None, start: bool = True, fake_options: dict[str, Any] | None = None,
                    **sections: dict[str, Any]) -> Rig:
        fake = FakeFreeSWITCH(password=PASSWORD, faults=faults, **(fake_options or {}))
        await fake.start()
        ledger = Ledger.open(f"sqlite:///{tmp_path}/ledger-{len(rigs)}.sqlite", "freeswitch@test", batch_wait_ms=0.5)
        rig = Rig(fake, make_config(fake.port, **sections), ledger)
        rigs.append(rig)
        if start:
            await rig.start_listener()
        return rig

    yield build
    for rig in rigs:
        try:
            if rig.listener is not None:
                await asyncio.wait_for(rig.listener.stop(), 30)
            await asyncio.wait_for(rig.fake.stop(), 30)
        except asyncio.TimeoutError:
            for task in asyncio.all_tasks():
                task.print_stack()
            raise
        finally:
            rig.ledger.close(5)


@pytest.fixture
async def rig(make_rig) -> Rig:
    return await make_rig()
