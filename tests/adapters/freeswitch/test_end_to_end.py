"""The listener against FakeFreeSWITCH over real TCP (both ESL directions), SQLite ledger.

Scenario times are on the fake's virtual clock, so "press 1 at 2.5 s" and
"pause at 20 s" happen in that order however loaded the machine is, and
the ledger's PBX times are those scenario times.
"""

from __future__ import annotations

import asyncio

from callguard.ledger import verify

from .conftest import RECORDINGS, SOUNDS, scenario


def pagd_args(timeout_ms: int = 5000, prompt: str = "notice", valid: str = "12") -> str:
    return (f"1 1 1 {timeout_ms} # {SOUNDS}/en/callguard/{prompt}.wav silence_stream://250 callguard_digit "
            f"^[{valid}]+$ {timeout_ms}")


CONSENT_THEN_PAUSES = [
    {"at": 2.5, "press": "1"},
    {"at": 20, "hotkey": "pause"},
    {"at": 26, "hotkey": "resume"},
    {"at": 40, "ivr": "payment-start"},
    {"at": 75, "ivr": "payment-end"},
    {"at": 120, "hangup": "caller"},
]


async def test_consent_records_with_our_file_name_and_explicit_pagd(rig) -> None:
    record = await rig.play(scenario([{"at": 2.5, "press": "1"}, {"at": 60, "hangup": "caller"}]))
    call = record.call_id
    assert rig.kinds(call) == ["call-offered", "rule-applied", "notice-started", "notice-ended", "consent",
                               "recording-requested", "recording-started", "party-joined", "recording-stopped",
                               "hangup"]
    consent = rig.entry(call, "consent").data
    assert consent["decision"] == "granted" and consent["digits"] == "1" and consent["final"]
    notice = rig.entry(call, "notice-started")
    assert notice.data["confirmed_by"] == "pbx" and notice.data["offset_s"] == 0.0
    assert rig.entry(call, "notice-ended").data["offset_s"] == 2.5
    assert rig.entry(call, "hangup").data["offset_s"] == 60.0
    # the PBX's own clock: Event-Date-Timestamp of the RECORD_START (scenario time 2.5 s)
    started = rig.entry(call, "recording-started")
    assert abs(started.pbx_time - (rig.fake.base_epoch + 2.5)) < 1e-3
    path = f"{RECORDINGS}/callguard-{call}.wav"
    assert started.data["recording_ref"] == path
    # what went over the outbound socket, in order
    link_commands = [c for _, c in record.caller.trace]
    assert link_commands == [f"play_and_get_digits {pagd_args()}", f"set callguard_recording={path}",
                             f"record_session {path}", "set callguard_decision=granted"]
    assert record.socket == "connected" and record.dialplan == "decided" and record.decision == "granted"
    assert [r.path for r in record.recordings] == [path]
    assert record.recordings[0].audible_spans(60) == [(2.5, 60.0)]
    assert verify(rig.ledger.engine).ok


async def test_decline_continues_unrecorded_after_the_opt_out_prompt(rig) -> None:
    record = await rig.play(scenario([{"at": 3, "press": "2"}, {"at": 60, "hangup": "caller"}],
                                     number="+13125550100", agent=None))
    call = record.call_id
    assert rig.kinds(call) == ["call-offered", "rule-applied", "notice-started", "notice-ended", "consent",
                               "continued", "hangup"]
    assert rig.entry(call, "consent").data["decision"] == "declined"
    assert rig.entry(call, "continued").data == {"outcome": "declined", "destination": None, "recorded": False}
    assert [c for _, c in record.caller.trace][1:] == [f"playback {SOUNDS}/en/callguard/opt-out-confirm.wav",
                                                       "set callguard_decision=declined"]
    assert record.dialplan == "decided" and record.recordings == []
    assert rig.api("uuid_record") == []


async def test_decline_to_the_configured_destination(make_rig) -> None:
    rig = await make_rig(consent={"decline_destination": "callguard_declined XML default"})
    record = await rig.play(scenario([{"at": 3, "press": "2"}, {"at": 30, "hangup": "caller"}], agent=None))
    assert [c for _, c in record.caller.trace][-1] == "transfer callguard_declined XML default"
    assert record.dialplan == "transferred" and record.caller.transferred_to == "callguard_declined XML default"
    assert rig.entry(record.call_id, "continued").data["destination"] == "callguard_declined XML default"


async def test_no_input_where_consent_is_required_is_not_recorded(rig) -> None:
    record = await rig.play(scenario([{"at": 40, "hangup": "caller"}], number="anonymous", agent=None))
    call = record.call_id
    consents = [e.data for e in rig.entries(call, "consent")]
    assert [(c["decision"], c["final"]) for c in consents] == [("no-input", False), ("no-input", True)]
    # the retry prompt starts 9.25 s in: 4 s notice + 5 s timeout + the 250 ms invalid-input
    # file FreeSWITCH plays before play_and_get_digits gives up
    second = rig.entries(call, "notice-started")[1]
    assert second.data["prompt_id"] == "no-input-retry" and second.data["offset_s"] == 9.25
    assert record.decision == "no-input" and record.recordings == []
    assert "PAGD failure" not in " ".join(t for _, t in record.caller.trace)


async def test_no_input_in_a_one_party_state_is_recorded_after_two_notices(rig) -> None:
    record = await rig.play(scenario([{"at": 60, "hangup": "caller"}], number="+12125550123", agent=None))
    assert rig.entries(record.call_id, "consent")[-1].data["decision"] == "implied"
    assert record.decision == "implied"
    assert record.recordings[0].audible_spans(60) == [(18.5, 60.0)]


async def test_hangup_during_the_notice(rig) -> None:
    record = await rig.play(scenario([{"at": 1.0, "hangup": "caller"}], agent=None))
    call = record.call_id
    assert rig.kinds(call) == ["call-offered", "rule-applied", "notice-started", "consent", "hangup"]
    assert rig.entry(call, "consent").data["decision"] == "hangup"
    assert rig.entry(call, "hangup").data["state"] == "notice"
    assert record.dialplan == "hung-up" and record.recordings == []
    await rig.wait_for(lambda: not rig.listener.parked and not rig.listener.calls)


async def test_hotkey_pause_and_payment_segment_are_masked_and_confirmed(rig) -> None:
    record = await rig.play(scenario(CONSENT_THEN_PAUSES))
    call = record.call_id
    path = f"{RECORDINGS}/callguard-{call}.wav"
    assert rig.api("uuid_record") == [f"uuid_record {call} mask {path}", f"uuid_record {call} unmask {path}",
                                      f"uuid_record {call} mask {path}", f"uuid_record {call} unmask {path}"]
    muted = rig.entries(call, "recording-muted")
    assert [m.data["reasons"] for m in muted] == [["pause"], ["payment"]]
    assert all(m.data["confirmed_by"] == "pbx" and 0 <= m.data["latency_s"] < 1 for m in muted)
    pause = rig.entry(call, "pause-requested")
    assert pause.data["source"] == "agent-hotkey" and abs(pause.pbx_time - (rig.fake.base_epoch + 20)) < 1e-5
    assert rig.entry(call, "payment-started").data["source"] == "ivr"
    # the audio: nothing between 20-26 and 40-75
    assert record.recordings[0].audible_spans(120) == [(2.5, 20.0), (26.0, 40.0), (75.0, 120.0)]
    # digits are kept out of FreeSWITCH's logs during the payment
    assert rig.api(f"uuid_setvar {call} sensitive_dtmf") == [f"uuid_setvar {call} sensitive_dtmf true",
                                                             f"uuid_setvar {call} sensitive_dtmf false"]
    # each mask marked on the channel (what a restarted listener adopts the call by), cleared after each unmask
    assert rig.api(f"uuid_setvar {call} callguard_masked") == [f"uuid_setvar {call} callguard_masked true",
                                                               f"uuid_setvar {call} callguard_masked"] * 2


async def test_hotkey_from_the_agent_leg_maps_to_the_recorded_leg(rig) -> None:
    """The CUSTOM event comes from the agent's channel; variable_callguard_call names the call."""
    record = await rig.play(scenario([{"at": 2, "press": "1"}, {"at": 10, "hotkey": "pause"},
                                      {"at": 20, "hangup": "caller"}]))
    assert record.agent is not None and record.agent.uuid != record.call_id
    assert rig.api("uuid_record") == [f"uuid_record {record.call_id} mask {RECORDINGS}/callguard-{record.call_id}.wav"]
    assert rig.entry(record.call_id, "recording-stopped").data["muted_at_end"] is True


async def test_late_joiner_from_an_all_party_state_hears_the_notice_before_audio(rig) -> None:
    record = await rig.play(scenario([
        {"at": 3, "press": "1"},
        {"at": 30, "join": "+13055550100", "name": "Flo Joiner"},
        {"at": 33, "press": "1", "party": "+13055550100"},
        {"at": 90, "hangup": "caller"},
    ], number="+12145550100", agent=None))
    call = record.call_id
    joiner = record.joiners["+13055550100"]
    joined = rig.entry(call, "party-joined")
    assert joined.data["announceable"] is True and joined.data["party"]["number"] == "+13055550100"
    assert rig.entry(call, "rule-applied", changed_from="one-party").data["regime"] == "all-party"
    assert rig.entry(call, "consent", party="joiner").data["decision"] == "granted"
    # the joiner's own leg went through the socket: notice, then released
    assert [c for _, c in joiner.trace] == [f"play_and_get_digits {pagd_args(prompt='renotice-join')}",
                                           "set callguard_decision=granted"]
    # silent from the join until the joiner agreed
    assert record.recordings[0].audible_spans(90) == [(3.0, 30.0), (33.0, 90.0)]


async def test_unannounced_joiner_under_all_party_stops_the_recording(rig) -> None:
    record = await rig.play(scenario([
        {"at": 3, "press": "1"},
        {"at": 30, "join": "+13055550100", "announceable": False},
        {"at": 60, "hangup": "caller"},
    ], agent=None))
    call = record.call_id
    assert rig.entry(call, "violation").data["what"] == "unannounced party"
    assert rig.entry(call, "recording-stopped", reason="party-forbids-recording")
    assert record.recordings[0].audible_spans(60) == [(3.0, 30.0)]


async def test_listener_absent_means_fallback_notice_and_no_recording(make_rig) -> None:
    rig = await make_rig(start=False)
    rig.fake.socket_address = ("127.0.0.1", 1)  # nothing listens there
    record = await asyncio.wait_for(rig.fake.play(scenario([{"at": 2, "press": "1"}, {"at": 20, "hangup": "caller"}])),
                                    30)
    assert record.socket == "refused" and record.dialplan == "fallback"
    assert [t for _, t in record.caller.trace] == ["socket: Connection refused", "playback fallback-notice"]
    assert record.recordings == [] and record.decision == ""


async def test_listener_gone_while_the_call_is_parked_falls_back(rig) -> None:
    """The listener stops mid-notice: the socket closes, the dialplan's fail-closed path runs."""
    async def stop_soon() -> None:
        await rig.fake.until(1.0)
        await rig.listener.stop()
    stopper = asyncio.ensure_future(stop_soon())
    record = await asyncio.wait_for(rig.fake.play(scenario([{"at": 2, "press": "1"}, {"at": 20, "hangup": "caller"}])),
                                    30)
    await stopper
    rig.listener = None
    assert record.socket == "connected" and record.dialplan == "fallback"
    assert record.recordings == [] and record.decision == ""
    assert [t for _, t in record.caller.trace][-1] == "playback fallback-notice"


async def test_hangup_event_on_the_inbound_side_cleans_up(rig) -> None:
    record = await rig.play(scenario(CONSENT_THEN_PAUSES[:2] + [{"at": 25, "hangup": "caller"}]))
    await rig.wait_for(lambda: record.call_id not in rig.listener.calls)
    assert rig.listener.engine.session(record.call_id) is None
    assert rig.entry(record.call_id, "hangup").data["cause"] == "normal"


async def test_stopping_the_listener_ends_the_recordings_it_supervises(rig) -> None:
    """Nobody could mask a payment after the listener is gone: a graceful stop ends the recording."""
    async def stop_while_recording() -> None:
        await rig.fake.until(30.0)
        await rig.listener.stop()
    stopper = asyncio.ensure_future(stop_while_recording())
    record = await asyncio.wait_for(rig.fake.play(scenario([{"at": 2.5, "press": "1"},
                                                            {"at": 60, "hangup": "caller"}])), 60)
    await stopper
    rig.listener = None
    assert [op for _, op in record.recordings[0].ops] == ["start", "stop"]
    assert 30.0 <= record.recordings[0].ops[-1][0] < 31.0
    assert rig.ledger.flush(10)
    # one entry per fact: the stop, then FreeSWITCH's RECORD_STOP as its confirmation (issue 11 section 3)
    stops = rig.entries(record.call_id, "recording-stopped")
    assert len(stops) == 1, rig.kinds(record.call_id)
    assert stops[0].data["reason"] == "listener-shutdown" and stops[0].data["confirmed_by"] == "listener"
    assert rig.entry(record.call_id, "recording-stop-confirmed").data["reason"] == "listener-shutdown"
    assert rig.kinds(record.call_id)[-1] != "hangup", [(e.kind, e.data) for e in rig.timeline(record.call_id)][-4:]


async def test_stopping_the_listener_leaves_no_engine_timer_armed(make_rig, caplog) -> None:
    """Issue 11 section 3: timers fired after close and raised LedgerError."""
    rig = await make_rig(recording={"max_pause_s": 0.3})
    async def stop_while_paused() -> None:
        await rig.fake.until(25.0)
        await rig.listener.stop()
        rig.ledger.close(5)
    stopper = asyncio.ensure_future(stop_while_paused())
    await asyncio.wait_for(rig.fake.play(scenario([{"at": 2.5, "press": "1"}, {"at": 20, "hotkey": "pause"},
                                                   {"at": 60, "hangup": "caller"}])), 60)
    await stopper
    engine = rig.listener.engine
    rig.listener = None
    assert engine.closed and not any(engine._timers.values())
    await asyncio.sleep(0.6)  # past the auto-resume the pause had armed
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")], caplog.text
