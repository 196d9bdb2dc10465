"""Every row of the transition table, driven by real events.

Each case brings a session into a state the way a PBX would, feeds one
event and checks the (from, input, to) step the session took plus the
commands that matter.  ``test_every_row_is_covered`` fails when someone adds
a row without a case here.
"""

from __future__ import annotations

import pytest

from callguard.core import commands as cmd
from callguard.core import events as ev
from callguard.core.policy import Policy
from callguard.core.prompts import StaticPrompts
from callguard.core.session import TRANSITIONS, Input, State

from .conftest import CA_NUMBER, CALLER, FL_NUMBER, JOINER, NY_NUMBER, Driver

S, I = State, Input


def joiner(number: str = FL_NUMBER, announceable: bool = True) -> ev.Party:
    return ev.Party(JOINER, number, "Flo", "joiner")


def reach(driver: Driver, state: State) -> Driver:
    return getattr(driver, {S.OFFERED: "offered", S.NOTICE: "notice", S.STARTING: "starting",
                            S.RECORDING: "recording", S.MUTING: "muting", S.MUTED: "muted",
                            S.UNMUTING: "unmuting", S.UNRECORDED: "unrecorded"}[state])()


RECORDING_STATES = (S.STARTING, S.RECORDING, S.MUTING, S.MUTED, S.UNMUTING)


def _case(state, input_, target, feed, expect=(), number=None, policy=None, prompts=None, before=None):
    return pytest.param(state, input_, target, feed, expect, number, policy, prompts, before,
                        id=f"{state.value}--{input_.value}")


def adopted(recording: bool, **flags: bool) -> tuple:
    """A CallAdopted, fed to a session that has seen nothing yet (a listener that just started)."""
    return (ev.CallAdopted, "1795372922.4", CALLER, (ev.Party(CALLER, NY_NUMBER, "José"),), recording,
            "callguard-1795372922.4.wav", "granted", flags.get("paused", False), flags.get("payment", False),
            flags.get("muted", False))


FRESH = "fresh"  #: ``before`` marker: do not reach a state, feed ``feed`` to a brand-new session

CASES = [
    _case(S.OFFERED, I.ADOPTED, S.RECORDING, [adopted(True)], before=FRESH),
    _case(S.OFFERED, I.ADOPTED_MUTE, S.MUTING, [adopted(True, payment=True)], [cmd.MuteRecording, cmd.StartTimer],
          before=FRESH),
    _case(S.OFFERED, I.ADOPTED_UNRECORDED, S.UNRECORDED, [adopted(False)], before=FRESH),
    _case(S.OFFERED, I.ANSWERED, S.NOTICE, [(ev.CallAnswered,)], [cmd.PlayAndCollect]),
    _case(S.OFFERED, I.NOT_ALLOWED, S.UNRECORDED, [(ev.CallAnswered,)], [cmd.ContinueDialplan],
          policy=Policy.with_overrides({"US-CA": "never"}, home="US-TX")),
    _case(S.OFFERED, I.NOTICE_UNAVAILABLE, S.UNRECORDED, [(ev.CallAnswered,)], [cmd.ContinueDialplan],
          prompts=StaticPrompts(("en",), ids=("opt-out-confirm",))),
    _case(S.NOTICE, I.NOTICE_STARTED, S.NOTICE, [(ev.NoticeStarted, CALLER)]),
    _case(S.NOTICE, I.RETRY, S.NOTICE, [(ev.DigitsCollected, CALLER, "")], [cmd.PlayAndCollect]),
    _case(S.NOTICE, I.GRANT, S.STARTING, [(ev.DigitsCollected, CALLER, "1")],
          [cmd.StartRecording, cmd.StartTimer, cmd.ContinueDialplan]),
    _case(S.NOTICE, I.IMPLIED, S.STARTING, [(ev.DigitsCollected, CALLER, "")], [cmd.StartRecording],
          number=NY_NUMBER, before=[(ev.DigitsCollected, CALLER, "")]),
    _case(S.NOTICE, I.DECLINE, S.UNRECORDED, [(ev.DigitsCollected, CALLER, "2")],
          [cmd.PlayPrompt, cmd.ContinueDialplan]),
    _case(S.NOTICE, I.PROMPT_FAILED, S.UNRECORDED, [(ev.PromptFailed, CALLER, "file not found")],
          [cmd.ContinueDialplan]),
    _case(S.NOTICE, I.FORBID, S.NOTICE, [(ev.PartyJoined, joiner(), False)]),
    _case(S.NOTICE, I.NOT_ALLOWED, S.UNRECORDED, [(ev.DigitsCollected, CALLER, "1")], [cmd.ContinueDialplan],
          before=[(ev.PartyJoined, joiner(), False)]),
    _case(S.STARTING, I.STARTED, S.RECORDING, [(ev.RecordingStarted, "0x7f")], [cmd.CancelTimer]),
    _case(S.STARTING, I.STARTED_MUTE_NEEDED, S.MUTING, [(ev.RecordingStarted, "0x7f")],
          [cmd.MuteRecording, cmd.StartTimer], before=[(ev.PaymentStarted, ev.Source.IVR)]),
    _case(S.RECORDING, I.WANT_MUTE, S.MUTING, [(ev.PaymentStarted, ev.Source.IVR)], [cmd.MuteRecording]),
    _case(S.MUTING, I.MUTED, S.MUTED, [(ev.RecordingMuted,)], [cmd.CancelTimer]),
    _case(S.MUTING, I.MUTED_UNWANTED, S.UNMUTING, [(ev.RecordingMuted,)], [cmd.UnmuteRecording],
          before=[(ev.ResumeRequested, ev.Source.HOTKEY)]),
    _case(S.MUTED, I.WANT_UNMUTE, S.UNMUTING, [(ev.ResumeRequested, ev.Source.API)], [cmd.UnmuteRecording]),
    _case(S.UNMUTING, I.UNMUTED, S.RECORDING, [(ev.RecordingUnmuted,)], [cmd.CancelTimer]),
    _case(S.UNMUTING, I.WANT_MUTE, S.MUTING, [(ev.PaymentStarted, ev.Source.IVR)], [cmd.MuteRecording]),
    *[_case(s, I.CONFIRM_TIMEOUT, S.UNRECORDED, [(ev.TimerFired, name)], [cmd.StopRecording])
      for s, name in ((S.STARTING, "start-confirm"), (S.MUTING, "mute-confirm"), (S.UNMUTING, "mute-confirm"))],
    *[_case(s, I.FAILED, S.UNRECORDED, [(ev.CommandFailed, "MuteRecording", "Cannot set mute flag")],
            [cmd.StopRecording]) for s in RECORDING_STATES],
    *[_case(s, I.FORBID, S.UNRECORDED, [(ev.PartyJoined, joiner(), False)], [cmd.StopRecording])
      for s in RECORDING_STATES],
    *[_case(s, I.JOINER_DECLINED, S.UNRECORDED, [(ev.DigitsCollected, JOINER, "2")], [cmd.StopRecording],
            number=NY_NUMBER, before=[(ev.PartyJoined, joiner(NY_NUMBER), True)]) for s in RECORDING_STATES],
    *[_case(s, I.STOPPED, S.UNRECORDED, [(ev.RecordingStopped,)]) for s in RECORDING_STATES],
    *[_case(s, I.SHUTDOWN, S.UNRECORDED, [(ev.ListenerStopping,)], [cmd.StopRecording]) for s in RECORDING_STATES],
    *[_case(s, I.HANGUP, S.ENDED, [(ev.HungUp, "normal", CALLER)], [cmd.CancelTimer]) for s in State
      if s is not S.ENDED],
]


@pytest.mark.parametrize("state,input_,target,feed,expect,number,policy,prompts,before", CASES)
def test_transition(state, input_, target, feed, expect, number, policy, prompts, before):
    d = Driver(number=number or "+14155550123", policy=policy, prompts=prompts)
    if before != FRESH:
        reach(d, state)
        for step in before or []:
            d.feed(*step)
    assert d.session.state is state, f"setup reached {d.state}, not {state.value}"
    out = []
    for step in feed:
        out = d.feed(*step)
    assert d.session.history[-1] == (state, input_, target)
    kinds = [type(c) for c in out]
    for wanted in expect:
        assert wanted in kinds, f"{wanted.__name__} missing from {kinds}"


def test_every_row_is_covered():
    covered = {(c.values[0], c.values[1]) for c in CASES}
    assert set(TRANSITIONS) == covered


def test_unknown_inputs_change_nothing(driver):
    driver.unrecorded()
    out = driver.feed(ev.PauseRequested, ev.Source.HOTKEY)
    assert driver.state == "unrecorded"
    assert not [c for c in out if isinstance(c, (cmd.MuteRecording, cmd.StartRecording))]
    assert driver.entries("pause-requested"), "a pause on an unrecorded call is still evidence"


def test_hangup_mid_notice_leaves_complete_timeline(driver):
    driver.notice()
    driver.feed(ev.HungUp, "normal", CALLER)
    kinds = [e.kind for e in driver.entries()]
    assert kinds[:2] == ["call-offered", "rule-applied"]
    assert kinds[-2:] == ["consent", "hangup"]
    assert driver.entries("consent")[-1].data["decision"] == "hangup"
    assert not any(isinstance(c, cmd.StartRecording) for c in driver.commands)


def test_events_after_hangup_are_ignored(driver):
    driver.recording().feed(ev.HungUp, "normal", CALLER)
    assert driver.feed(ev.PauseRequested, ev.Source.HOTKEY) == []
    assert driver.session.finished


def test_agent_joining_is_staff_not_a_violation(driver):
    driver.recording()
    out = driver.feed(ev.PartyJoined, ev.Party("PJSIP/agent", "100", "Agent", "agent"), False)
    assert driver.state == "recording"
    assert not driver.entries("violation")
    assert driver.entries("party-joined")[-1].data["staff"] is True
    assert not [c for c in out if isinstance(c, cmd.MuteRecording)]


def test_retry_then_invalid_then_decline_outcomes():
    d = Driver(settings=None)
    d.notice()
    d.feed(ev.DigitsCollected, CALLER, "7")  # wrong key: asked again with the invalid-retry prompt
    replay = [c for c in d.commands if isinstance(c, cmd.PlayAndCollect)][-1]
    assert replay.prompt.prompt_id == "invalid-retry" and replay.attempt == 2
    d.feed(ev.DigitsCollected, CALLER, "9")  # wrong again, attempts used up, explicit consent needed
    assert d.state == "unrecorded"
    cont = [c for c in d.commands if isinstance(c, cmd.ContinueDialplan)][-1]
    assert cont.outcome == "no-input"


def test_decline_goes_to_the_configured_destination():
    from callguard.core.session import SessionSettings

    d = Driver(settings=SessionSettings(decline_destination="no-record-queue,s,1"))
    d.unrecorded()
    cont = [c for c in d.commands if isinstance(c, cmd.ContinueDialplan)][-1]
    assert (cont.outcome, cont.destination) == ("declined", "no-record-queue,s,1")


def test_auto_resume_after_max_pause():
    from callguard.core.session import SessionSettings

    d = Driver(settings=SessionSettings(max_pause_s=30))
    d.muted()
    timers = [c for c in d.commands if isinstance(c, cmd.StartTimer) and c.name == "auto-resume"]
    assert timers and timers[0].seconds == 30
    d.feed(ev.TimerFired, "auto-resume", dt=30)
    assert d.state == "unmuting"
    assert d.entries("resume-requested")[-1].data["source"] == "engine"


def test_auto_resume_never_ends_a_payment_segment():
    from callguard.core.session import SessionSettings

    d = Driver(settings=SessionSettings(max_pause_s=30))
    d.muted()
    d.feed(ev.PaymentStarted, ev.Source.IVR)
    d.feed(ev.TimerFired, "auto-resume", dt=30)
    assert d.state == "muted"
    assert d.entries("resume-requested")[-1].data["still_muted_for"] == ["payment"]


def test_language_follows_the_callers_country():
    d = Driver(number="+34912345678")
    d.notice()
    gather = [c for c in d.commands if isinstance(c, cmd.PlayAndCollect)][0]
    assert gather.prompt.language == "es"
    assert d.entries("call-offered")[0].data["language"] == "es"


def test_notice_offsets_come_from_pbx_time(driver):
    driver.notice()
    driver.feed(ev.NoticeStarted, CALLER, dt=0.4)
    driver.feed(ev.DigitsCollected, CALLER, "1", dt=6.0)
    started = driver.entries("notice-started")[0].data
    ended = driver.entries("notice-ended")[0].data
    assert started["offset_s"] == pytest.approx(0.4) and started["within_limit"] is True
    assert started["confirmed_by"] == "pbx" and started["sha256"] == "static:notice:en"
    assert ended["offset_s"] == pytest.approx(6.4) and ended["within_limit"] is True


def test_late_notice_is_flagged():
    d = Driver()
    d.notice()
    d.feed(ev.NoticeStarted, CALLER, dt=3.5)
    assert d.entries("notice-started")[0].data["within_limit"] is False


def test_staff_is_what_the_pbx_marked_not_the_caller_id(driver):
    """A FreeSWITCH b-leg carries the CUSTOMER's number as its caller id: the mark decides."""
    driver.recording()
    out = driver.feed(ev.PartyJoined, ev.Party("agent-leg", CA_NUMBER, "Cust", "agent", staff=True), False)
    joined = driver.entries("party-joined")[-1].data
    assert joined["staff"] is True and joined["party"]["jurisdiction"] == "internal:US-TX"
    assert not driver.entries("violation") and driver.state == "recording"
    assert not [c for c in out if isinstance(c, cmd.MuteRecording)]


def test_an_extension_like_number_is_not_staff_when_the_pbx_says_outside(driver):
    driver.recording()
    driver.feed(ev.PartyJoined, ev.Party("guest-leg", "100", "Guest", "joiner", staff=False), False)
    joined = driver.entries("party-joined")[-1].data
    assert joined["staff"] is False and joined["party"]["jurisdiction"] == "unknown"
    assert driver.entries("violation") and driver.state == "unrecorded"  # unannounced, all-party: stopped


def test_an_arriving_leg_is_muted_until_it_turns_out_to_be_staff(driver):
    driver.recording()
    out = driver.feed(ev.PartyArriving, "agent-leg")
    assert [c for c in out if isinstance(c, cmd.MuteRecording)] and driver.state == "muting"
    driver.feed(ev.RecordingMuted)
    assert driver.entries("recording-muted")[-1].data["reasons"] == ["party-arriving:agent-leg"]
    out = driver.feed(ev.PartyJoined, ev.Party("agent-leg", "agent-sim", None, "agent", staff=True), False)
    assert [c for c in out if isinstance(c, cmd.UnmuteRecording)] and driver.state == "unmuting"
    assert not driver.entries("violation")


def test_an_arriving_leg_that_never_identifies_is_a_violation(driver):
    driver.recording().feed(ev.PartyArriving, "leg-x")
    driver.feed(ev.RecordingMuted)
    driver.feed(ev.PartyJoined, ev.Party("leg-x", NY_NUMBER, None, "joiner", staff=False), False)
    assert driver.entries("violation")[-1].data["channel"] == "leg-x"
    assert driver.state == "unrecorded"  # California caller: all-party, unannounced party: stop


def test_an_arriving_leg_that_leaves_unmutes(driver):
    driver.recording().feed(ev.PartyArriving, "leg-x")
    driver.feed(ev.RecordingMuted)
    out = driver.feed(ev.HungUp, "normal", "leg-x")
    assert [c for c in out if isinstance(c, cmd.UnmuteRecording)]
    assert not driver.entries("party-left")


def test_a_hangup_while_unmuting_says_what_the_recording_was(driver):
    driver.unmuting().feed(ev.HungUp, "normal", CALLER)
    hangup = driver.entries("hangup")[-1].data
    assert hangup["state"] == "unmuting" and hangup["recording"] == "muted; the unmute was not yet confirmed"


def test_a_listener_stopping_stops_the_recording_once_and_the_pbx_confirms_it(driver):
    out = driver.muted().feed(ev.ListenerStopping)
    assert [c for c in out if isinstance(c, cmd.StopRecording)] and driver.state == "unrecorded"
    driver.feed(ev.RecordingStopped)
    stops = driver.entries("recording-stopped")
    assert len(stops) == 1 and stops[0].data["reason"] == "listener-shutdown"
    assert driver.entries("recording-stop-confirmed")[-1].data["reason"] == "listener-shutdown"


def test_an_adopted_call_is_never_louder_than_it_was(driver):
    """Muted under the earlier process for a reason it took with it: still muted, until someone resumes."""
    out = driver.feed(*adopted(True, muted=True))
    assert driver.state == "muting" and any(isinstance(c, cmd.MuteRecording) for c in out)
    entry = driver.entries("call-adopted")[0]
    assert entry.data["recording"] is True and entry.data["muted_for"] == ["pause"]
    driver.feed(ev.RecordingMuted)
    driver.feed(ev.ResumeRequested, ev.Source.HOTKEY)
    assert driver.state == "unmuting"
