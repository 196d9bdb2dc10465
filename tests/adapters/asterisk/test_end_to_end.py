"""The listener against FakeAsterisk over TCP, with the real engine and a real SQLite ledger."""

from __future__ import annotations

import asyncio
import dataclasses

from .conftest import Rig

RECORDING_DIR = "/var/spool/asterisk/monitor/callguard"


async def _consented_call(rig: Rig, number: str = "+14155550123", name: str = "José Cust"):
    call = rig.pbx.place_call(number, name)
    await call.answer_prompt("1")
    await rig.wait_kind(call.linkedid, "recording-started")
    await call.wait_agi_left()
    return call


async def test_consent_grants_and_records(rig: Rig):
    await rig.start_listener()
    call = await _consented_call(rig)
    cid = call.linkedid
    await call.hangup()
    await rig.settle(call)
    kinds = rig.kinds(cid)
    assert kinds[:4] == ["call-offered", "rule-applied", "notice-started", "notice-ended"]
    assert kinds.index("consent") < kinds.index("recording-requested") < kinds.index("recording-started")
    assert kinds[-1] == "hangup"
    offered = rig.entry(cid, "call-offered").data
    assert offered["parties"][0]["number"] == "+14155550123"
    assert offered["parties"][0]["name"] == "José Cust"
    assert rig.entry(cid, "notice-started").data["confirmed_by"] == "pbx"
    assert rig.entry(cid, "consent", decision="granted").data["digits"] == "1"
    started = rig.entry(cid, "recording-started").data
    assert started["confirmed_by"] == "pbx" and started["recording_ref"].startswith("0x7f")
    # The wire, exactly as the fixtures show it.
    channel = call.channel.name
    commands = rig.agi_sent(channel)
    assert commands[0] == "GET DATA en/callguard/notice 2500 1"
    assert commands[-2:] == ["SET VARIABLE CALLGUARD_CONSENT granted", "ASYNCAGI BREAK"]
    (mixmon,) = rig.sent("MixMonitor")
    assert mixmon == {"action": "MixMonitor", "actionid": mixmon["actionid"], "channel": channel,
                      "file": f"{RECORDING_DIR}/callguard-{cid}.wav", "options": "i(CALLGUARD_MIXMON_ID)"}
    assert call.outcome == "granted"
    assert call.recording is not None and call.recording.file == mixmon["file"]


async def test_decline_continues_unrecorded(rig: Rig):
    await rig.start_listener()
    call = rig.pbx.place_call("+14155550123", "José Cust")
    await call.answer_prompt("2")
    await call.wait_agi_left()
    await rig.wait_for(lambda: call.agent is not None, what="agent dialled")
    await call.hangup()
    await rig.settle(call)
    cid = call.linkedid
    assert rig.entry(cid, "consent", decision="declined").data["final"] is True
    assert rig.entry(cid, "continued").data == {"outcome": "declined", "destination": None, "recorded": False}
    assert "recording-started" not in rig.kinds(cid)
    assert not rig.sent("MixMonitor")
    commands = rig.agi_sent(call.channel.name)
    assert "STREAM FILE en/callguard/opt-out-confirm \"\"" in commands
    assert commands[-2:] == ["SET VARIABLE CALLGUARD_CONSENT declined", "ASYNCAGI BREAK"]
    assert call.outcome == "declined" and call.recording is None
    assert call.path == "asyncagi" and call.agent is not None  # the call went on, unrecorded


async def test_no_input_retries_then_continues_unrecorded(rig: Rig):
    rig.config = dataclasses.replace(rig.config, consent=dataclasses.replace(rig.config.consent, timeout_ms=500))
    await rig.start_listener()
    call = rig.pbx.place_call("+14155550123", "José Cust")
    await call.wait_agi_left(timeout=5)
    await call.hangup()
    await rig.settle(call)
    cid = call.linkedid
    consents = [e.data for e in rig.timeline(cid) if e.kind == "consent"]
    assert [c["decision"] for c in consents] == ["no-input", "no-input"]
    assert consents[-1]["final"] is True
    gets = [c for c in rig.agi_sent(call.channel.name) if c.startswith("GET DATA")]
    assert gets == ["GET DATA en/callguard/notice 500 1", "GET DATA en/callguard/no-input-retry 500 1"]
    assert call.outcome == "no-input" and call.recording is None


async def test_hangup_during_notice(rig: Rig):
    rig.pbx.prompt_durations["notice"] = 2.0
    await rig.start_listener()
    call = rig.pbx.place_call("+14155550123", "José Cust")
    await rig.wait_kind(call.linkedid, "notice-started")
    await call.hangup()
    await rig.settle(call)
    cid = call.linkedid
    kinds = rig.kinds(cid)
    assert rig.entry(cid, "consent").data["decision"] == "hangup"
    assert rig.entry(cid, "hangup").data["state"] == "notice"
    assert "error" not in kinds and "recording-requested" not in kinds
    await asyncio.sleep(0.3)  # the -1 grace period passes without a PromptFailed
    assert rig.kinds(cid) == kinds


async def test_hotkey_pause_and_resume_confirmed_by_pbx(rig: Rig):
    await rig.start_listener()
    call = await _consented_call(rig)
    await rig.wait_for(lambda: call.bridge_id is not None, what="bridge")
    await call.hotkey("pause")
    await rig.wait_kind(call.linkedid, "recording-muted")
    assert call.recording.muted
    await call.hotkey("resume")
    await rig.wait_kind(call.linkedid, "recording-unmuted")
    assert not call.recording.muted
    await call.hangup()
    await rig.settle(call)
    cid = call.linkedid
    assert rig.entry(cid, "pause-requested").data["source"] == "agent-hotkey"
    muted = rig.entry(cid, "recording-muted").data
    assert muted["confirmed_by"] == "pbx" and muted["latency_s"] >= 0 and muted["reasons"] == ["pause"]
    assert rig.entry(cid, "recording-unmuted").data["confirmed_by"] == "pbx"
    mutes = rig.sent("MixMonitorMute", channel=call.channel.name)
    assert [(m["direction"], m["state"]) for m in mutes] == [("both", "1"), ("both", "0")]


async def test_payment_segment_is_never_recorded(rig: Rig):
    await rig.start_listener()
    call = await _consented_call(rig)
    await call.ivr("payment-start")
    await rig.wait_kind(call.linkedid, "recording-muted")
    await asyncio.sleep(0.05)
    await call.ivr("payment-end")
    await rig.wait_kind(call.linkedid, "recording-unmuted")
    await call.hangup()
    await rig.settle(call)
    cid = call.linkedid
    assert rig.entry(cid, "payment-started").data["source"] == "ivr"
    (window,) = call.payment_windows()
    recording = call.recording
    # The dialplan's payment-start returned (the payment audio could flow)
    # only once the listener had confirmed the mute: nothing of the segment
    # was written audibly, not even the one round trip to the listener.
    mute_at = next(t for t, m in recording.changes if m)
    assert mute_at <= window[0]
    assert not recording.audible_between(window[0], window[1])
    assert recording.stopped_at is None or recording.stopped_at > window[1]  # muted, not stopped


async def test_late_joiner_from_all_party_state_hears_the_notice(rig: Rig):
    await rig.start_listener()
    # New York is one-party: the notice alone would do ...
    call = rig.pbx.place_call("+12125550100", "Caller NY")
    await call.answer_prompt("1")
    await rig.wait_kind(call.linkedid, "recording-started")
    await call.wait_agi_left()
    await rig.wait_for(lambda: call.bridge_id is not None, what="bridge")
    # ... until a Californian (all-party) joins through U(callguard-join).
    join = asyncio.create_task(call.join("+14155550199", "Cal Joiner", announceable=True))
    await rig.wait_kind(call.linkedid, "party-joined")
    await rig.wait_kind(call.linkedid, "recording-muted")
    await call.answer_prompt("1", party="+14155550199")
    joiner = call.parties["+14155550199"]
    await join
    await rig.wait_kind(call.linkedid, "recording-unmuted")
    await call.hangup()
    await rig.settle(call)
    cid = call.linkedid
    joined = {e.data["party"]["number"]: e.data for e in rig.timeline(cid) if e.kind == "party-joined"}
    assert joined["2001"]["announceable"] is False and joined["2001"]["party"]["role"] == "agent"
    assert joined["+14155550199"]["announceable"] is True
    assert joined["+14155550199"]["party"]["jurisdiction"] == "US-CA"
    assert rig.entry(cid, "rule-applied", regime="all-party").data["changed_from"] == "one-party"
    assert rig.entry(cid, "consent", party="joiner").data["decision"] == "granted"
    assert rig.agi_sent(joiner.name)[0] == "GET DATA en/callguard/renotice-join 2500 1"
    assert rig.agi_sent(joiner.name)[-1] == "ASYNCAGI BREAK"
    assert "violation" not in rig.kinds(cid)


async def test_unannounced_joiner_under_all_party_stops_the_recording(rig: Rig):
    await rig.start_listener()
    call = await _consented_call(rig, "+12125550100", "Caller NY")
    await rig.wait_for(lambda: call.bridge_id is not None, what="bridge")
    await call.join("+14155550199", "Cal Joiner", announceable=False)
    await rig.wait_kind(call.linkedid, "recording-stopped")
    await rig.wait_for(lambda: call.recording.stopped_at is not None, what="StopMixMonitor")
    await call.hangup()
    await rig.settle(call)
    cid = call.linkedid
    assert rig.entry(cid, "violation").data["what"] == "unannounced party"
    assert rig.entry(cid, "recording-stopped").data["reason"] == "party-forbids-recording"
    assert rig.sent("StopMixMonitor", channel=call.channel.name)


async def test_decline_goes_to_the_configured_destination(rig: Rig):
    rig.config = dataclasses.replace(rig.config, consent=dataclasses.replace(
        rig.config.consent, decline_destination="callguard-declined,s,1"))
    await rig.start_listener()
    call = rig.pbx.place_call("+14155550123", "José Cust")
    await call.answer_prompt("2")
    await call.wait_agi_left()
    await call.hangup()
    await rig.settle(call)
    assert rig.agi_sent(call.channel.name)[-5:] == [
        "SET VARIABLE CALLGUARD_CONSENT declined", "SET CONTEXT callguard-declined", "SET EXTENSION s",
        "SET PRIORITY 1", "ASYNCAGI BREAK"]
    assert call.destination == "callguard-declined,s,1" and call.agent is None  # not to the agents
    assert rig.entry(call.linkedid, "continued").data["destination"] == "callguard-declined,s,1"


async def test_other_applications_asyncagi_channels_are_left_alone(rig: Rig):
    await rig.start_listener()
    call = rig.pbx.place_call("+14155550123", "José Cust")
    call.channel.context = "ivr-of-another-app"  # an AGI(agi:async) that is not callguard's
    await call.wait_answered()
    await asyncio.sleep(0.3)
    assert call.linkedid not in rig.engine.sessions and not rig.agi_sent(call.channel.name)
    assert call.channel.in_agi  # still waiting for its own application
    await call.hangup()
