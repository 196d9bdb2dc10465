"""Hypothesis: the compliance promises hold for any sequence of events.

A small model PBX answers the session's commands (confirmations may come
late, never, or fail), while Hypothesis throws keypresses, pauses, payment
segments, joins, timer expiries and hang-ups at the session in any order.
After every step we check what the PBX is actually doing against the rules
in DESIGN.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callguard.core import commands as cmd
from callguard.core import events as ev
from callguard.core.policy import Policy
from callguard.core.prompts import StaticPrompts
from callguard.core.session import CallSession, SessionSettings

CALLER = "PJSIP/caller"
NUMBERS = ["+14155550123", "+12125550123", "+442079460000", "+33142685300", "anonymous", "100",
           "+18005550100", "${SHELL(rm -rf /)}"]


@dataclass
class ModelPbx:
    """What the PBX really does with the commands it was sent."""

    recording: bool = False  # audio is being written (confirmed started, not stopped)
    start_requested: bool = False
    muted_requested: bool = False  # the last mute/unmute command sent was a mute
    pending: list[ev.Event] = field(default_factory=list)  # confirmations it may send
    collecting: set[str] = field(default_factory=set)

    def apply(self, out: list[cmd.Command]) -> None:
        for c in out:
            if isinstance(c, cmd.PlayAndCollect):
                self.collecting.add(c.channel)
            elif isinstance(c, cmd.StartRecording):
                self.start_requested = True
                self.pending.append(ev.RecordingStarted(0, "id"))
            elif isinstance(c, cmd.MuteRecording):
                self.muted_requested = True
                self.pending.append(ev.RecordingMuted(0))
            elif isinstance(c, cmd.UnmuteRecording):
                self.muted_requested = False
                self.pending.append(ev.RecordingUnmuted(0))
            elif isinstance(c, cmd.StopRecording):
                self.recording = False
                self.start_requested = False


_confirm = st.tuples(st.just("confirm"), st.integers(0, 3), st.booleans())
_pause = st.tuples(st.just("pause"), st.sampled_from(list(ev.Source)), st.booleans())
_resume = st.tuples(st.just("resume"), st.sampled_from(list(ev.Source)), st.booleans())
_payment = st.tuples(st.sampled_from(["payment-start", "payment-end"]), st.just(ev.Source.IVR), st.booleans())
# Weighted so the deep interleavings (granted -> started -> paused -> muted ->
# resumed -> payment before the unmute is confirmed) come up often.
actions = st.one_of(
    st.tuples(st.just("digits"), st.sampled_from(["1", "1", "", "2", "7", "#"]), st.booleans()),
    _confirm, _confirm, _confirm, _pause, _resume, _payment, _payment,
    st.tuples(st.just("join"), st.sampled_from(NUMBERS), st.booleans()),
    st.tuples(st.just("leave"), st.integers(0, 3), st.booleans()),
    st.tuples(st.just("timer"), st.sampled_from(["start-confirm", "mute-confirm", "auto-resume"]), st.booleans()),
    st.tuples(st.just("fail"), st.sampled_from(["StartRecording", "MuteRecording", "UnmuteRecording",
                                                "PlayAndCollect"]), st.booleans()),
    st.tuples(st.just("stopped"), st.just(0), st.booleans()),
    st.tuples(st.just("prompt-failed"), st.just(0), st.booleans()),
    st.tuples(st.just("hangup"), st.just(0), st.booleans()),
)


def run(number: str, steps: list, max_pause: float,
        confirm: str = "scripted") -> tuple[CallSession, list[cmd.Command], ModelPbx]:
    """Play ``steps``; ``confirm`` is "prompt" (the PBX confirms everything at
    once after each step), "late" (confirmations arrive a random number of
    steps later), "never" or "scripted" (only on "confirm" steps)."""
    session = CallSession("c1", SessionSettings(max_pause_s=max_pause), Policy(home="US-TX"),
                          StaticPrompts(("en", "es", "fr")))
    pbx = ModelPbx()
    commands: list[cmd.Command] = []
    t = 1000.0
    joiners: list[str] = []
    notice_ended = False
    declined = False
    payment = False

    def feed(event: ev.Event) -> list[cmd.Command]:
        nonlocal notice_ended, declined
        if isinstance(event, ev.RecordingStarted) and pbx.start_requested:
            pbx.recording = True
        if isinstance(event, ev.HungUp) and event.channel == CALLER:
            pbx.recording = False  # the PBX ends the recording with the channel
        if isinstance(event, ev.DigitsCollected) and event.channel == CALLER:
            notice_ended = True
        out = session.handle(event)
        for c in out:
            # -- the promises, checked on every command as it is issued --
            if isinstance(c, cmd.StartRecording):
                assert notice_ended, "recording started before the notice ended"
                assert not declined, "recording started after a decline"
                rule = session.rule
                assert rule is not None and rule.recording_allowed
                consent = [e for e in commands + out if isinstance(e, cmd.LedgerEntry) and e.kind == "consent"
                           and e.data.get("final") and e.data.get("party") != "joiner"]
                if rule.explicit_consent:
                    assert consent and consent[-1].data["decision"] == "granted", \
                        "recording without a grant where explicit consent applies"
            if isinstance(c, cmd.UnmuteRecording):
                assert not payment, "unmuted during a payment segment"
            if isinstance(c, cmd.LedgerEntry) and c.kind == "consent" and c.data.get("final") \
                    and c.data.get("party") != "joiner":
                declined = declined or c.data["decision"] in ("declined", "no-input", "invalid", "prompt-failed")
        pbx.apply(out)
        commands.extend(out)
        # a payment segment is never recorded unmuted: once the PBX records,
        # a mute (or a stop) has been sent before any audio could flow
        if payment and pbx.recording and not session.finished:
            assert pbx.muted_requested, "payment segment recorded unmuted"
        return out

    def drain() -> None:
        nonlocal t
        event = pbx.pending.pop(0)
        t += 0.01
        feed(type(event)(t, *([event.recording_ref] if isinstance(event, ev.RecordingStarted) else [])))

    feed(ev.CallOffered(t, "c1", CALLER, (ev.Party(CALLER, number, "x"),)))
    for kind, arg, flag in steps:
        t += 0.25
        if session.finished:
            break
        while confirm == "late" and flag and pbx.pending and not session.finished:
            drain()
        if kind == "digits":
            channel = CALLER if flag or not joiners else joiners[-1]
            if channel in pbx.collecting:
                pbx.collecting.discard(channel)
                feed(ev.DigitsCollected(t, channel, arg))
        elif kind == "confirm" and pbx.pending:
            event = pbx.pending.pop(min(arg, len(pbx.pending) - 1) if flag else 0)
            feed(type(event)(t, *([event.recording_ref] if isinstance(event, ev.RecordingStarted) else [])))
        elif kind == "pause":
            feed(ev.PauseRequested(t, arg))
        elif kind == "resume":
            feed(ev.ResumeRequested(t, arg))
        elif kind == "payment-start":
            payment = True
            feed(ev.PaymentStarted(t, arg))
        elif kind == "payment-end":
            payment = False
            feed(ev.PaymentEnded(t, arg))
        elif kind == "join":
            channel = f"PJSIP/j{len(joiners)}"
            joiners.append(channel)
            feed(ev.PartyJoined(t, ev.Party(channel, arg, None, "joiner"), flag))
        elif kind == "leave" and joiners:
            feed(ev.HungUp(t, "normal", joiners[arg % len(joiners)]))
        elif kind == "timer":
            feed(ev.TimerFired(t, arg))
        elif kind == "fail":
            feed(ev.CommandFailed(t, arg, "simulated failure"))
        elif kind == "stopped" and pbx.recording:
            pbx.recording = False
            feed(ev.RecordingStopped(t))
        elif kind == "prompt-failed":
            feed(ev.PromptFailed(t, CALLER if flag or not joiners else joiners[-1], "no such file"))
        elif kind == "hangup":
            feed(ev.HungUp(t, "normal", CALLER))
        while confirm == "prompt" and pbx.pending and not session.finished:
            drain()
    if not session.finished:
        feed(ev.HungUp(t + 1, "normal", CALLER))
    return session, commands, pbx


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(number=st.sampled_from(NUMBERS), steps=st.lists(actions, max_size=40),
       max_pause=st.sampled_from([0.0, 30.0]), confirm=st.sampled_from(["prompt", "late", "late", "scripted", "never"]))
def test_compliance_promises_hold(number, steps, max_pause, confirm):
    session, commands, pbx = run(number, steps, max_pause, confirm)
    entries = [c for c in commands if isinstance(c, cmd.LedgerEntry)]
    kinds = [e.kind for e in entries]

    # every call ends with the recording stopped
    assert session.finished and not session.recording
    assert not pbx.recording

    # every hangup leaves a complete timeline
    assert kinds[:2] == ["call-offered", "rule-applied"]
    assert kinds[-1] == "hangup"
    assert kinds.count("hangup") == 1
    starts = [i for i, k in enumerate(kinds) if k == "recording-started"]
    stops = [i for i, k in enumerate(kinds) if k == "recording-stopped"]
    assert len(starts) <= 1
    if starts:
        assert stops and stops[-1] > starts[0], "a started recording has no stop entry"
    if "notice-ended" in kinds or "notice-started" in kinds:
        assert any(e.kind == "consent" and e.data.get("final") and e.data.get("party") != "joiner"
                   for e in entries), "the notice was played but no final decision was logged"
    for entry in entries:
        assert entry.call_id == "c1"
        assert entry.kind in cmd.ENTRY_KINDS


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(actions, max_size=30))
def test_never_recording_after_decline(steps):
    """A caller who pressed 2 first is never recorded, whatever happens next."""
    steps = [("digits", "2", True)] + steps
    session, commands, _ = run("+14155550123", steps, 0.0)
    assert not any(isinstance(c, cmd.StartRecording) for c in commands)


mute_actions = st.one_of(
    _pause, _resume, _payment, _payment,
    st.tuples(st.just("timer"), st.sampled_from(["mute-confirm", "auto-resume"]), st.booleans()),
    st.tuples(st.just("fail"), st.sampled_from(["MuteRecording", "UnmuteRecording"]), st.booleans()),
)


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(mute_actions, max_size=40), max_pause=st.sampled_from([0.0, 30.0]))
def test_pause_and_payment_interleavings(steps, max_pause):
    """Recording granted and running; then only pauses, payments and PBX delays.

    Confirmations arrive a random number of steps late, so requests cross
    in-flight mutes and unmutes; the payment promise is checked after each.
    """
    steps = [("digits", "1", True), ("timer", "none", True)] + steps
    session, commands, pbx = run("+14155550123", steps, max_pause, "late")
    assert session.finished and not pbx.recording
