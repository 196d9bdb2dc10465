"""When the wire misbehaves: dropped and stalled connections, split writes, floods, missed signals."""

from __future__ import annotations

import asyncio

from callguard.testing.fake_freeswitch import Faults

from .conftest import RECORDINGS, scenario

PAUSE_CALL = [{"at": 2.5, "press": "1"}, {"at": 20, "hotkey": "pause"}, {"at": 26, "hotkey": "resume"},
              {"at": 60, "hangup": "caller"}]


async def test_inbound_dropped_before_the_mask_is_executed_masks_after_reconnect(make_rig) -> None:
    rig = await make_rig(faults=Faults(drop_inbound_on=r"^api uuid_record \S+ mask "))
    record = await rig.play(scenario(PAUSE_CALL))
    call = record.call_id
    assert rig.fake.dropped == [f"api uuid_record {call} mask {RECORDINGS}/callguard-{call}.wav"]
    assert rig.listener.stats["inbound_drops"] >= 1 and rig.listener.stats["resent"] >= 1
    # muted again after the reconnect, within the pause: nothing audible from 20 to 26
    assert not record.recordings[0].audible_during(20.0, 26.0)
    muted = rig.entry(call, "recording-muted")
    assert muted.data["confirmed_by"] == "pbx" and muted.data["reasons"] == ["pause"]
    assert rig.entry(call, "recording-unmuted")


async def test_inbound_dropped_after_executing_resends_the_mask_idempotently(make_rig) -> None:
    rig = await make_rig(faults=Faults(drop_inbound_on=r"^api uuid_record \S+ mask ", drop_after_executing=True))
    record = await rig.play(scenario(PAUSE_CALL))
    masks = rig.api(f"uuid_record {record.call_id} mask")
    assert len(masks) == 2  # executed once before the drop, once more after the reconnect
    assert record.recordings[0].audible_spans(60) == [(2.5, 20.0), (26.0, 60.0)]
    assert [e.kind for e in rig.timeline(record.call_id)].count("recording-muted") == 1


async def test_mute_not_confirmed_in_time_stops_the_recording(make_rig) -> None:
    # 0.8 s: later than the 300 ms confirmation limit, sooner than the 1 s heartbeat watchdog
    rig = await make_rig(fake_options={"mask_reply_delay_s": 0.8}, recording={"confirm_timeout_ms": 300})
    record = await rig.play(scenario(PAUSE_CALL))
    call = record.call_id
    assert rig.entry(call, "error").data["what"] == "mute not confirmed in time"
    stopped = [e.data for e in rig.entries(call, "recording-stopped")]
    assert stopped[0]["reason"] == "mute-not-confirmed"
    assert rig.api(f"uuid_record {call} stop") == [f"uuid_record {call} stop {RECORDINGS}/callguard-{call}.wav"]
    # the recording ended in the pause and never came back
    assert record.recordings[0].audible_spans(60) == [(2.5, 20.0)]
    assert record.recordings[0].stopped == 20.0
    assert rig.entry(call, "hangup").data["state"] == "unrecorded"


async def test_pause_signalled_while_disconnected_is_applied_on_resync(make_rig) -> None:
    """The hotkey's CUSTOM event is lost, but callguard_features.xml left callguard_paused on the leg."""
    rig = await make_rig()
    play = asyncio.ensure_future(rig.play(scenario([{"at": 2.5, "press": "1"}, {"at": 60, "hangup": "caller"}])))
    await rig.fake.until(10)
    with rig.fake.hold():
        record = rig.fake.calls[-1]
        rig.fake.faults.refuse_logins = True
        rig.fake.drop_inbound()
        await rig.wait_for(lambda: not rig.listener.connected.is_set())
        rig.fake.signal(record, "pause")  # nobody is subscribed: the event is gone
        await asyncio.sleep(0.1)
        assert rig.api("uuid_record") == []
        rig.fake.faults.refuse_logins = False
        await asyncio.wait_for(rig.listener.connected.wait(), 10)
        await rig.wait_for(lambda: bool(rig.api("uuid_record")))
    await play
    call = record.call_id
    assert rig.api(f"uuid_getvar {call}") == [f"uuid_getvar {call} callguard_paused",
                                              f"uuid_getvar {call} callguard_payment"]
    assert rig.entry(call, "pause-requested").data["source"] == "agent-hotkey"
    assert rig.entry(call, "recording-muted").data["reasons"] == ["pause"]
    assert record.recordings[0].audible_spans(60) == [(2.5, 10.0)]


async def test_call_that_ended_while_disconnected_is_closed_on_resync(make_rig) -> None:
    rig = await make_rig()
    play = asyncio.ensure_future(rig.play(scenario([{"at": 2.5, "press": "1"}, {"at": 60, "hangup": "caller"}])))
    await rig.fake.until(10)
    with rig.fake.hold():
        record = rig.fake.calls[-1]
        rig.fake.faults.refuse_logins = True
        rig.fake.drop_inbound()
        await rig.wait_for(lambda: not rig.listener.connected.is_set())
        await rig.fake.hangup_call(record)  # events nobody hears
        rig.fake.faults.refuse_logins = False
        await asyncio.wait_for(rig.listener.connected.wait(), 10)
        await rig.wait_for(lambda: record.call_id not in rig.listener.calls)
    await play
    hangup = rig.entry(record.call_id, "hangup")
    assert hangup.data["cause"] == "gone-while-disconnected" and hangup.data["state"] == "recording"


async def test_stalled_event_socket_is_detected_by_the_heartbeat_and_reconnected(make_rig) -> None:
    rig = await make_rig(faults=Faults(stall_on=[r"^api global_setvar"]))
    await rig.wait_for(lambda: rig.listener.stats["inbound_drops"] >= 1, timeout=15)
    rig.fake.faults.stall_on = []
    rig.fake.release_stalls()
    await asyncio.wait_for(rig.listener.connected.wait(), 10)
    record = await rig.play(scenario(PAUSE_CALL))
    assert record.recordings[0].audible_spans(60) == [(2.5, 20.0), (26.0, 60.0)]


async def test_every_write_split_into_small_chunks_changes_nothing(make_rig) -> None:
    """7-byte TCP segments both ways: splits inside headers, lengths and UTF-8 ('José')."""
    plain = await make_rig()
    split = await make_rig(faults=Faults(chunk=7))
    a = await plain.play(scenario(PAUSE_CALL))
    b = await split.play(scenario(PAUSE_CALL))
    assert plain.kinds(a.call_id) == split.kinds(b.call_id)
    assert split.entry(b.call_id, "call-offered").data["parties"][0]["name"] == "José Cust"
    assert b.recordings[0].audible_spans(60) == a.recordings[0].audible_spans(60) == [(2.5, 20.0), (26.0, 60.0)]


async def test_byte_by_byte_writes_during_the_notice(make_rig) -> None:
    rig = await make_rig(faults=Faults(chunk=1))
    record = await rig.play(scenario([{"at": 1.0, "hangup": "caller"}], agent=None))
    assert rig.kinds(record.call_id) == ["call-offered", "rule-applied", "notice-started", "consent", "hangup"]


async def test_background_flood_on_the_wall_clock(make_rig) -> None:
    """1,000 unrelated events/s while a call consents and pauses (wall clock: the flood never goes quiet)."""
    rig = await make_rig(faults=Faults(flood_per_s=1000),
                         fake_options={"clock": "real", "prompt_duration_s": 0.5})
    start = rig.fake.scenario_time()
    record = await asyncio.wait_for(rig.fake.play(scenario([
        {"at": 0.2, "press": "1"}, {"at": 3.0, "hotkey": "pause"}, {"at": 5.0, "hotkey": "resume"},
        {"at": 7.0, "hangup": "caller"}])), 60)
    await rig.wait_for(lambda: record.call_id not in rig.listener.calls)
    call = record.call_id
    assert rig.kinds(call).count("recording-muted") == 1 and rig.kinds(call).count("recording-unmuted") == 1
    assert rig.listener.skipped_events > 1000  # the flood was read and skipped unparsed
    ops = {op: at - start for at, op in record.recordings[0].ops}
    assert 3.0 <= ops["mask"] < 4.0 and 5.0 <= ops["unmask"] < 6.0


async def test_events_about_other_recordings_are_not_ours(rig) -> None:
    """A RECORD_STOP for some other file on our channel must not end our recording's evidence."""
    play = asyncio.ensure_future(rig.play(scenario([{"at": 2.5, "press": "1"}, {"at": 30, "hangup": "caller"}])))
    await rig.fake.until(10)
    with rig.fake.hold():
        caller = rig.fake.calls[-1].caller
        rig.fake.emit("RECORD_STOP", caller, [("Record-File-Path", "/tmp/site-own-recording.wav")])
        await asyncio.sleep(0.05)
    await play
    kinds = rig.kinds(caller.uuid)
    assert kinds.count("recording-stopped") == 1
    assert rig.entry(caller.uuid, "recording-stopped").data["reason"] == "hangup"


async def test_wrong_password_at_start_is_reported_not_retried_forever(make_rig) -> None:
    rig = await make_rig(start=False, freeswitch={"password": "wrong"})
    from callguard.adapters.freeswitch.listener import FreeSwitchListener

    listener = FreeSwitchListener(rig.config, rig.ledger, prompts=rig.prompts,
                                  prompt_path=lambda ref, rate: "/x.wav")
    await listener.start()
    try:
        why = await asyncio.wait_for(listener.refused, 10)
        assert "refused the event socket password" in why and "CALLGUARD_FREESWITCH__PASSWORD" in why
    finally:
        await listener.stop()


async def test_acl_rejection_is_explained(make_rig) -> None:
    rig = await make_rig(start=False, faults=Faults(reject_acl=True))
    from callguard.adapters.freeswitch.listener import FreeSwitchListener

    listener = FreeSwitchListener(rig.config, rig.ledger, prompts=rig.prompts,
                                  prompt_path=lambda ref, rate: "/x.wav")
    await listener.start()
    try:
        why = await asyncio.wait_for(listener.refused, 10)
        assert "ACL" in why and "apply-inbound-acl" in why
    finally:
        await listener.stop()
