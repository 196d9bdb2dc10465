"""A caller who controls their caller-ID number against the listener, through FakeAsterisk.

Asterisk 22 writes a caller *number* holding CR/LF raw into every channel
event (DESIGN.md, fixtures asterisk22_crlf_callerid.ami and
asterisk22_crlf_asyncagi.ami), and the fake does the same, so the caller
below really injects whole frames into the listener's AMI stream: a
``UserEvent: CallGuard`` resume with a paused neighbour's Channel and
Linkedid, an AsyncAGIStart that claims the neighbour's Linkedid.  None of
it may act on the neighbour's call, and the hostile call itself still gets
a decision (notice, consent) in time.
"""

from __future__ import annotations

from callguard.testing.fake_asterisk import FakeCall

from .conftest import Rig


async def _paused_call(rig: Rig) -> FakeCall:
    call = rig.pbx.place_call("+14155550123", "Victim Cust")
    await call.answer_prompt("1")
    await rig.wait_kind(call.linkedid, "recording-started")
    await call.wait_agi_left()
    await rig.wait_for(lambda: call.agent is not None and call.agent.bridge is not None, what="agent bridged")
    await call.hotkey("pause")
    await rig.wait_kind(call.linkedid, "recording-muted")
    return call


def _forged(*frames: dict[str, str]) -> str:
    """A caller number that ends its own frame and injects ``frames``.

    The rest of Asterisk's frame lands in a last ``Event: UserEvent``, as
    in the capture (asterisk22_crlf_callerid.ami).
    """
    body = "".join("".join(f"{k}: {v}\r\n" for k, v in frame.items()) + "\r\n" for frame in frames)
    return "100\r\n\r\n" + body + "Event: UserEvent"


def _unmutes(rig: Rig, channel: str) -> list[dict[str, str]]:
    return [a for a in rig.sent("MixMonitorMute", channel=channel) if a.get("state") == "0"]


async def test_a_forged_resume_in_a_caller_number_never_unmutes_a_paused_neighbour(rig: Rig):
    await rig.start_listener()
    victim = await _paused_call(rig)
    assert victim.agent is not None
    resume = {"Event": "UserEvent", "Privilege": "user,all", "Channel": victim.agent.name,
              "Uniqueid": victim.agent.uniqueid, "Linkedid": victim.linkedid, "UserEvent": "CallGuard",
              "Action": "resume", "Source": "agent-hotkey"}
    payment_end = dict(resume, Channel=victim.channel.name, Action="payment-end", Source="ivr")
    hostile = rig.pbx.place_call(_forged(resume, payment_end), "Mallory")
    # The hostile call itself is served: notice, consent (declined), continues unrecorded.
    await hostile.answer_prompt("2")
    await hostile.wait_agi_left(timeout=10)
    await rig.wait_kind(hostile.linkedid, "continued", outcome="declined")
    assert hostile.outcome == "declined" and hostile.path == "asyncagi"
    assert rig.entry(hostile.linkedid, "call-offered").data["parties"][0]["jurisdiction"] == "unknown"
    await hostile.hangup()
    await rig.settle(hostile)
    assert _unmutes(rig, victim.channel.name) == []
    assert victim.recording is not None and victim.recording.muted
    kinds = rig.kinds(victim.linkedid)
    assert "resume-requested" not in kinds and "payment-ended" not in kinds
    # The agent's own *2 still resumes (the confirmation path works for the real thing).
    await victim.hotkey("resume")
    await rig.wait_kind(victim.linkedid, "recording-unmuted")
    assert len(_unmutes(rig, victim.channel.name)) == 1
    await victim.hangup()
    await rig.settle(victim)


async def test_a_forged_agi_start_cannot_attach_a_channel_to_a_neighbours_call(rig: Rig):
    """The cut AsyncAGIStart names the neighbour's Linkedid: the call is still read back from Asterisk."""
    await rig.start_listener()
    victim = await _paused_call(rig)
    claim = {"Linkedid": victim.linkedid, "Context": "callguard-join"}
    hostile = rig.pbx.place_call("100\r\n" + "".join(f"{k}: {v}\r\n" for k, v in claim.items())
                                 + "\r\nEvent: UserEvent", "Mallory")
    await hostile.answer_prompt("2")  # a "joiner" who declines would stop the neighbour's recording
    await rig.wait_kind(hostile.linkedid, "continued", outcome="declined")
    await hostile.hangup()
    await rig.settle(hostile)
    assert "party-joined" not in rig.kinds(victim.linkedid)[rig.kinds(victim.linkedid).index("recording-muted"):]
    assert victim.recording is not None and victim.recording.stopped_at is None and victim.recording.muted
    assert rig.entry(hostile.linkedid, "caller-id-unreadable")
    await victim.hangup()
    await rig.settle(victim)


async def test_the_customers_own_leg_can_never_resume(rig: Rig):
    """Hotkeys enabled on the customer's channel (fixture asterisk22_customer_hotkey.ami): *7 there does nothing."""
    await rig.start_listener()
    rig.pbx.customer_features = True
    victim = await _paused_call(rig)
    await victim.hotkey("resume", party="caller")
    await rig.wait_for(lambda: rig.listener.rejected >= 1, what="the resume read back and refused")
    assert _unmutes(rig, victim.channel.name) == [] and victim.recording.muted
    assert "resume-requested" not in rig.kinds(victim.linkedid)
    await victim.hangup()
    await rig.settle(victim)


async def test_a_forged_hangup_does_not_end_a_neighbours_supervision(rig: Rig):
    await rig.start_listener()
    victim = await _paused_call(rig)
    hangup = {"Event": "Hangup", "Privilege": "call,all", "Channel": victim.channel.name,
              "Uniqueid": victim.channel.uniqueid, "Linkedid": victim.linkedid, "Cause": "16"}
    stop = {"Event": "MixMonitorStop", "Privilege": "call,all", "Channel": victim.channel.name,
            "Linkedid": victim.linkedid}
    hostile = rig.pbx.place_call(_forged(stop, hangup), "Mallory")
    await hostile.answer_prompt("2")
    await rig.wait_kind(hostile.linkedid, "continued")
    await hostile.hangup()
    await rig.settle(hostile)
    assert victim.linkedid in rig.engine.sessions  # still supervised: a payment can still be muted
    assert "hangup" not in rig.kinds(victim.linkedid) and "recording-stopped" not in rig.kinds(victim.linkedid)
    await victim.ivr("payment-start")
    await victim.hotkey("resume")
    await rig.wait_kind(victim.linkedid, "resume-requested")
    assert victim.recording.muted  # the payment keeps it silent
    await victim.hangup()
    await rig.settle(victim)
