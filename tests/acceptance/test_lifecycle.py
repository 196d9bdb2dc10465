"""End-to-end scenarios around the listener's life: a real ``callguard run <pbx>`` process, driven
call by call (see conftest.py for the PBXs), then the evidence read back from its ledger and the
recording as the PBX wrote it.  What a scripted Scenario cannot say lives here: the listener
killed, stalled or stopped mid-call, a hostile caller against a neighbour's call.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from .conftest import start_listener, until
from .listener import ListenerProcess
from .interactive import Pbx

CALIFORNIA = "+14155550123"  # all-party: an explicit "yes" is needed
NEW_YORK = "+12125550100"  # one-party: the notice is enough


async def test_a_joiner_from_an_all_party_state_hears_the_notice(pbx: Pbx, listener: ListenerProcess):
    call = await pbx.call(NEW_YORK)
    await call.answer_notice("1")
    await listener.wait_entry(call.call_id, "recording-started")
    await call.wait_bridged()
    await call.join(CALIFORNIA, "1")
    await listener.wait_entry(call.call_id, "consent", party="joiner", decision="granted")
    await listener.wait_entry(call.call_id, "recording-unmuted")
    await call.hangup()
    await listener.wait_entry(call.call_id, "hangup")
    joined = listener.entry(call.call_id, "party-joined", announceable=True).data
    assert joined["party"]["jurisdiction"] == "US-CA" and joined["staff"] is False


async def test_a_hostile_caller_number_cannot_resume_a_paused_neighbour(pbx: Pbx, listener: ListenerProcess):
    victim = await pbx.call(NEW_YORK)
    await victim.answer_notice("1")
    await listener.wait_entry(victim.call_id, "recording-started")
    await victim.wait_bridged()
    await victim.hotkey("pause")
    muted = await listener.wait_entry(victim.call_id, "recording-muted")
    hostile = await pbx.hostile_call(victim, "resume")
    await hostile.answer_notice("2")
    assert await hostile.wait_decided() == "declined"  # the hostile call itself is served
    await asyncio.sleep(1.0)
    assert "resume-requested" not in listener.kinds(victim.call_id)
    assert not victim.audible_between(muted.pbx_time_us / 1e6 + 0.05, time.time() - 0.05)
    await hostile.hangup()
    await victim.hangup()
    await listener.wait_entry(victim.call_id, "hangup")


async def test_a_call_after_the_listener_was_killed_falls_back_within_3_s(pbx: Pbx, listener: ListenerProcess,
                                                                        tmp_path: Path):
    await listener.kill()
    placed = time.monotonic()
    call = await pbx.call(CALIFORNIA)
    assert await call.wait_decided(timeout=10) == "not-recorded"
    assert time.monotonic() - placed < 3.0 + 0.5  # + the test's own polling
    await call.wait_bridged()  # and the call goes on
    assert not call.recorded()
    # The restarted listener writes what happened into the ledger.
    restarted = await start_listener(pbx, tmp_path)
    try:
        fallback = await restarted.wait_entry(call.call_id, "dialplan-fallback")
        assert fallback.data["reason"] in ("listener-timeout", "heartbeat-stale")
    finally:
        await call.hangup()
        await restarted.terminate()
        restarted.close()


async def test_a_listener_stalled_across_a_payment_records_none_of_it(pbx: Pbx, listener: ListenerProcess):
    call = await pbx.call(NEW_YORK)
    await call.answer_notice("1")
    await listener.wait_entry(call.call_id, "recording-started")
    await call.wait_bridged()
    listener.stall()
    try:
        start, end = await call.payment(5.0)
    finally:
        listener.resume()
    assert not call.audible_between(start, end)
    await listener.wait_entry(call.call_id, "dialplan-fallback", reason="payment-not-confirmed")
    await call.hangup()
    await listener.wait_entry(call.call_id, "hangup")


async def test_sigterm_stops_the_listener_within_2_s(pbx: Pbx, listener: ListenerProcess):
    call = await pbx.call(NEW_YORK)
    await call.answer_notice("1")
    await listener.wait_entry(call.call_id, "recording-started")
    took = await listener.terminate()
    assert took < 2.0, f"took {took:.2f} s: {listener.log_text[-2000:]}"
    stops = [e for e in listener.entries(call.call_id) if e.kind == "recording-stopped"]
    assert len(stops) == 1, listener.kinds(call.call_id)
    await call.hangup()


async def test_sigterm_stops_the_listener_within_2_s_while_the_pbx_is_unreachable(pbx: Pbx, tmp_path: Path):
    settings = dict(pbx.listener_settings(), host="127.0.0.1", port=9)  # nothing listens on the discard port
    stuck = ListenerProcess(pbx.kind, tmp_path, settings)
    await stuck.start()
    try:
        await until(lambda: "unreachable" in stuck.log_text, 60, "the listener retrying")
        took = await stuck.terminate()
        assert took < 2.0, f"took {took:.2f} s: {stuck.log_text[-2000:]}"
    finally:
        if stuck.running:
            await stuck.kill()
        stuck.close()


async def test_a_restarted_listener_adopts_live_calls_and_closes_lost_ones(pbx: Pbx, listener: ListenerProcess,
                                                                         tmp_path: Path):
    """Issue 11 §3: kill -9, restart: live calls are controllable again, the dead one is closed honestly."""
    calls = []
    for _ in range(3):
        call = await pbx.call(NEW_YORK)
        await call.answer_notice("1")
        await listener.wait_entry(call.call_id, "recording-started")
        calls.append(call)
    paused, plain, gone = calls
    await paused.wait_bridged()
    await paused.hotkey("pause")
    await listener.wait_entry(paused.call_id, "recording-muted")
    await plain.wait_bridged()
    await listener.kill()
    await gone.hangup()  # ends while nobody listens
    restarted = await start_listener(pbx, tmp_path)
    try:
        adopted = await restarted.wait_entry(paused.call_id, "call-adopted")
        assert adopted.data["recording"] is True and adopted.data["muted_for"] == ["pause"]
        await restarted.wait_entry(paused.call_id, "recording-muted", reasons=["pause"])  # re-asserted
        assert (await restarted.wait_entry(plain.call_id, "call-adopted")).data["muted_for"] == []
        lost = await restarted.wait_entry(gone.call_id, "listener-lost")
        assert lost.data["detail"].startswith("listener lost, outcome unknown from ")
        # The adopted calls are controllable again: hotkeys act on them.
        await plain.hotkey("pause")
        muted = await restarted.wait_entry(plain.call_id, "recording-muted", reasons=["pause"])
        await paused.hotkey("resume")
        await restarted.wait_entry(paused.call_id, "recording-unmuted")
        assert not plain.audible_between(muted.pbx_time_us / 1e6 + 0.05, time.time() - 0.05)
        for call in (paused, plain):
            await call.hangup()
            await restarted.wait_entry(call.call_id, "hangup")
        # One fact, one entry: the killed process's calls are not counted twice.
        assert restarted.kinds(gone.call_id).count("listener-lost") == 1
        assert restarted.kinds(paused.call_id).count("call-adopted") == 1
    finally:
        await restarted.terminate()
        restarted.close()
