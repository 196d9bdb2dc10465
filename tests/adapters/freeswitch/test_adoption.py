"""Issue 11 section 3 on FreeSWITCH: a listener killed mid-call (kill -9) and restarted adopts its live calls.

``callguard run freeswitch`` as real processes against FakeFreeSWITCH over
TCP (real clock), the SQLite ledger on disk read back with the ledger's own
queries.  Before the restart: one call paused by the agent's hotkey, one in
an IVR payment segment, one plainly recorded, one that hangs up while no
listener runs.  After it: the three live calls are adopted (each written to
the ledger), the masks of the paused call and of the payment segment were
never lifted, the hotkeys and the payment end work on adopted calls, and the
call that ended meanwhile is closed as lost instead of staying in progress.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from callguard.ledger import open_for_reading
from callguard.ledger.queries import StoredEntry, timeline
from callguard.testing.fake_freeswitch import CallRecord, FakeFreeSWITCH

from .conftest import PASSWORD, scenario
from .test_lifecycle import sigterm_takes, start_service, wait_logged_in


class Ledger:
    """The listener's SQLite ledger, as another process reads it."""

    def __init__(self, url: str):
        self.url = url
        self._engine: Any = None

    def entries(self, call_id: str) -> list[StoredEntry]:
        if self._engine is None:
            self._engine = open_for_reading(self.url)
        return timeline(self._engine, call_id)

    def kinds(self, call_id: str) -> list[str]:
        return [e.kind for e in self.entries(call_id)]

    async def wait(self, call_id: str, kind: str, count: int = 1, timeout: float = 60.0) -> StoredEntry:
        async def poll() -> StoredEntry:
            while True:
                found = [e for e in self.entries(call_id) if e.kind == kind]
                if len(found) >= count:
                    return found[count - 1]
                await asyncio.sleep(0.05)
        try:
            return await asyncio.wait_for(poll(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"no {kind} (x{count}) for {call_id}: {self.kinds(call_id)}") from None


async def until(predicate: Any, what: str, timeout: float = 60.0, describe: Any = lambda: "") -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.02)
    try:
        await asyncio.wait_for(poll(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def never_unmasked_since(record: CallRecord, since: float) -> bool:
    """The call's recording was masked at ``since`` (scenario time) and nothing unmasked it afterwards."""
    rec = record.recordings[0]
    return rec.masked and not any(op == "unmask" and at >= since for at, op in rec.ops) \
        and not rec.audible_during(since, rec.ops[-1][0] + 0.001)


async def test_a_killed_listener_restarted_adopts_every_live_call_keeps_the_masks_and_hotkeys_work(tmp_path) -> None:
    async with FakeFreeSWITCH(password=PASSWORD, clock="real", prompt_duration_s=0.3) as fake:
        proc, port, url = await start_service(tmp_path, fake)
        ledger = Ledger(url)
        procs = [proc]
        try:
            await wait_logged_in(fake)
            fake.socket_address = ("127.0.0.1", port)
            plays = [asyncio.ensure_future(fake.play(scenario([{"at": 900, "hangup": "caller"}]), auto_press="1"))
                     for _ in range(4)]
            await until(lambda: len(fake.calls) == 4 and all(c.recordings and c.agent is not None and
                                                             c.agent.keypad.peer is c.caller for c in fake.calls),
                        "four recorded calls bridged to their agents", describe=lambda: describe(fake))
            paused, paying, plain, ending = fake.calls
            for record in fake.calls:  # the agent is known as staff before it presses anything
                await ledger.wait(record.call_id, "party-joined")
            fake.signal(paused, "pause")
            fake.signal(paying, "payment-start", source="ivr")
            await ledger.wait(paused.call_id, "recording-muted")
            await ledger.wait(paying.call_id, "recording-muted")
            masked_since = fake.scenario_time()

            proc.kill()  # kill -9: no goodbye, nothing stopped, nothing unmasked
            await proc.wait()
            await fake.hangup_call(ending)  # one call ends while no listener runs
            await asyncio.sleep(0.3)

            proc, port, _ = await start_service(tmp_path, fake)
            procs.append(proc)
            fake.socket_address = ("127.0.0.1", port)
            adopted = {r.call_id: (await ledger.wait(r.call_id, "call-adopted")).data for r in (paused, paying, plain)}
            lost = await ledger.wait(ending.call_id, "listener-lost")
            assert "listener lost, outcome unknown from" in lost.data["detail"]
            assert adopted[paused.call_id]["recording"] is True and adopted[paused.call_id]["muted_for"] == ["pause"]
            assert adopted[paying.call_id]["muted_for"] == ["payment"]
            assert adopted[plain.call_id]["muted_for"] == [] and adopted[plain.call_id]["decision"] == "granted"
            for record in (paused, paying):  # the restart re-asserted the mask; it was never lifted
                await ledger.wait(record.call_id, "recording-muted", count=2)
                assert never_unmasked_since(record, masked_since), record.recordings[0].ops

            # Hotkeys and the payment end work on adopted calls.
            fake.signal(paused, "resume")
            await ledger.wait(paused.call_id, "recording-unmuted")
            fake.signal(plain, "pause")
            await ledger.wait(plain.call_id, "recording-muted")
            fake.signal(paying, "payment-end", source="ivr")
            await ledger.wait(paying.call_id, "recording-unmuted")
            await until(lambda: not paused.recordings[0].masked and not paying.recordings[0].masked
                        and plain.recordings[0].masked, "the masks as the signals say")
            for record in (paused, paying, plain):
                await fake.hangup_call(record)
                await ledger.wait(record.call_id, "hangup")
            for play in plays:
                play.cancel()
        finally:
            for p in procs:
                if p.returncode is None:
                    await sigterm_takes(p)
    assert "hangup" not in ledger.kinds(ending.call_id)  # lost, not invented
