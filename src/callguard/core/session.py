"""One call's consent and recording state machine: events in, commands out.

``CallSession.handle(event)`` works in two steps, in the style of h11:

1. :meth:`CallSession._classify` turns the event into an :class:`Input`
   using the session's data (the rule, attempts so far, pause and payment
   flags).  This is where a digit becomes GRANT or DECLINE and where a
   pause request becomes WANT_MUTE or nothing (already muted).  State-free
   bookkeeping happens here too: request entries in the ledger, the joiner's
   notice, the auto-resume timer.
2. :data:`TRANSITIONS` maps ``(state, input)`` to ``(next state, action)``.
   It is the whole state machine in one table; an input with no row in the
   current state changes nothing.

The session never reads a clock: time comes in as ``event.at`` (PBX time)
and delays go out as :class:`StartTimer` commands.  It never records before
the notice ended, never without a grant where explicit consent applies,
never after a decline, and mutes (or, if the PBX does not confirm in time,
stops) the recording whenever a pause, a payment segment or a party that
has not yet agreed is on the call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Callable

from callguard.core import events as ev
from callguard.core.commands import (
    CancelTimer,
    Command,
    ContinueDialplan,
    LedgerEntry,
    MuteRecording,
    PlayAndCollect,
    PlayPrompt,
    PromptRef,
    StartRecording,
    StartTimer,
    StopRecording,
    UnmuteRecording,
    recording_file_name,
)
from callguard.core.policy import PartyRule, Policy, Rule
from callguard.core.prompts import PromptResolver, UnknownPrompt

START_TIMER = "start-confirm"
CONFIRM_TIMER = "mute-confirm"
AUTO_RESUME_TIMER = "auto-resume"


class State(str, Enum):
    OFFERED = "offered"  #: known, not yet answered
    NOTICE = "notice"  #: notice playing / waiting for the consent keypress
    STARTING = "starting"  #: recording requested, PBX has not confirmed
    RECORDING = "recording"  #: recording audio (confirmed)
    MUTING = "muting"  #: mute requested, PBX has not confirmed
    MUTED = "muted"  #: recording silence (confirmed)
    UNMUTING = "unmuting"  #: unmute requested, PBX has not confirmed
    UNRECORDED = "unrecorded"  #: the call goes on without a recording
    ENDED = "ended"  #: hung up; nothing more happens


class Input(str, Enum):
    ANSWERED = "answered"
    NOT_ALLOWED = "not-allowed"  #: the rule forbids recording this call
    NOTICE_UNAVAILABLE = "notice-unavailable"  #: no prompt to play: fail safe
    NOTICE_STARTED = "notice-started"
    GRANT = "grant"  #: explicit yes
    IMPLIED = "implied"  #: notice given, no answer, rule does not need a yes
    DECLINE = "decline"  #: explicit no, or no answer where a yes is needed
    JOINER_DECLINED = "joiner-declined"  #: a party who joined said no (or could not be asked)
    RETRY = "retry"  #: no input / wrong key with attempts left
    PROMPT_FAILED = "prompt-failed"
    STARTED = "started"
    STARTED_MUTE_NEEDED = "started-mute-needed"
    MUTED = "muted"
    MUTED_UNWANTED = "muted-unwanted"  #: confirmed muted, but nothing wants it now
    UNMUTED = "unmuted"
    STOPPED = "stopped"
    FAILED = "failed"  #: the PBX rejected a recording command
    WANT_MUTE = "want-mute"
    WANT_UNMUTE = "want-unmute"
    CONFIRM_TIMEOUT = "confirm-timeout"
    FORBID = "forbid"  #: a party joined whose rule rules out this recording
    SHUTDOWN = "shutdown"  #: the listener is stopping: nobody left to supervise the recording
    HANGUP = "hangup"
    ADOPTED = "adopted"  #: taken over from an earlier listener process, recording audible
    ADOPTED_MUTE = "adopted-mute"  #: taken over, and something wants the recording silent
    ADOPTED_UNRECORDED = "adopted-unrecorded"  #: taken over, nothing records
    NOTHING = "nothing"


_S, _I = State, Input
#: The state machine: (state, input) -> (next state, action method name).
#: Recording states share rows for hang-up and fail-safe stops.
_RECORDING_STATES = (_S.STARTING, _S.RECORDING, _S.MUTING, _S.MUTED, _S.UNMUTING)
TRANSITIONS: dict[tuple[State, Input], tuple[State, str]] = {
    (_S.OFFERED, _I.ANSWERED): (_S.NOTICE, "_play_notice"),
    (_S.OFFERED, _I.ADOPTED): (_S.RECORDING, "_nothing"),
    (_S.OFFERED, _I.ADOPTED_MUTE): (_S.MUTING, "_mute"),
    (_S.OFFERED, _I.ADOPTED_UNRECORDED): (_S.UNRECORDED, "_nothing"),
    (_S.OFFERED, _I.NOT_ALLOWED): (_S.UNRECORDED, "_continue_not_allowed"),
    (_S.OFFERED, _I.NOTICE_UNAVAILABLE): (_S.UNRECORDED, "_continue_without_notice"),
    (_S.NOTICE, _I.NOTICE_STARTED): (_S.NOTICE, "_log_notice_started"),
    (_S.NOTICE, _I.RETRY): (_S.NOTICE, "_replay_notice"),
    (_S.NOTICE, _I.GRANT): (_S.STARTING, "_start_recording"),
    (_S.NOTICE, _I.IMPLIED): (_S.STARTING, "_start_recording"),
    (_S.NOTICE, _I.DECLINE): (_S.UNRECORDED, "_continue_declined"),
    (_S.NOTICE, _I.PROMPT_FAILED): (_S.UNRECORDED, "_continue_prompt_failed"),
    (_S.NOTICE, _I.NOT_ALLOWED): (_S.UNRECORDED, "_continue_not_allowed"),
    (_S.NOTICE, _I.FORBID): (_S.NOTICE, "_nothing"),  # veto noted; the decision will honour it
    (_S.STARTING, _I.STARTED): (_S.RECORDING, "_log_started"),
    (_S.STARTING, _I.STARTED_MUTE_NEEDED): (_S.MUTING, "_log_started_and_mute"),
    (_S.RECORDING, _I.WANT_MUTE): (_S.MUTING, "_mute"),
    (_S.MUTING, _I.MUTED): (_S.MUTED, "_log_muted"),
    (_S.MUTING, _I.MUTED_UNWANTED): (_S.UNMUTING, "_log_muted_and_unmute"),
    (_S.MUTED, _I.WANT_UNMUTE): (_S.UNMUTING, "_unmute"),
    (_S.UNMUTING, _I.UNMUTED): (_S.RECORDING, "_log_unmuted"),
    # Mute at once even while an unmute is in flight: payment audio must not
    # wait for the PBX to confirm the unmute first.
    (_S.UNMUTING, _I.WANT_MUTE): (_S.MUTING, "_mute"),
    **{(s, _I.CONFIRM_TIMEOUT): (_S.UNRECORDED, "_stop_not_confirmed") for s in
       (_S.STARTING, _S.MUTING, _S.UNMUTING)},
    **{(s, _I.FAILED): (_S.UNRECORDED, "_stop_failed") for s in _RECORDING_STATES},
    **{(s, _I.FORBID): (_S.UNRECORDED, "_stop_forbidden") for s in _RECORDING_STATES},
    **{(s, _I.JOINER_DECLINED): (_S.UNRECORDED, "_stop_declined_by_joiner") for s in _RECORDING_STATES},
    **{(s, _I.SHUTDOWN): (_S.UNRECORDED, "_stop_shutdown") for s in _RECORDING_STATES},
    **{(s, _I.STOPPED): (_S.UNRECORDED, "_log_stopped_by_pbx") for s in _RECORDING_STATES},
    **{(s, _I.HANGUP): (_S.ENDED, "_hangup") for s in State if s is not _S.ENDED},
}


@dataclass(frozen=True)
class SessionSettings:
    """The knobs of one call's consent flow (from ``[consent]``/``[recording]``)."""

    grant_digits: str = "1"
    decline_digits: str = "2"
    timeout_ms: int = 5000
    max_attempts: int = 2
    decline_destination: str | None = None
    confirm_timeout_s: float = 0.5
    start_timeout_s: float = 3.0
    max_pause_s: float = 0.0
    notice_prompt: str = "notice"
    notice_start_limit_s: float = 2.0
    notice_end_limit_s: float = 10.0
    recording_extension: str = "wav"


@dataclass
class _Joiner:
    """A party who joined mid-call and has not answered the notice yet.

    ``blocking`` joiners keep the recording muted until they agree (the
    rule needs explicit consent, or they were never announced); the others
    only heard the notice and may still opt out.
    """

    party: ev.Party
    prompt: PromptRef | None
    blocking: bool
    attempt: int = 1
    #: a leg that entered before we knew who it is (:class:`~callguard.core.events.PartyArriving`)
    arriving: bool = False


@dataclass
class _Flags:
    """Why the recording should be muted right now (any true reason mutes)."""

    paused_by: ev.Source | None = None
    payment_by: ev.Source | None = None
    capture: str | None = None  #: the payment id of a card capture in progress
    joiners: dict[str, _Joiner] = field(default_factory=dict)

    @property
    def mute_wanted(self) -> bool:
        return (self.paused_by is not None or self.payment_by is not None or self.capture is not None
                or any(j.blocking for j in self.joiners.values()))

    def reasons(self) -> list[str]:
        out = []
        if self.paused_by is not None:
            out.append("pause")
        if self.payment_by is not None:
            out.append("payment")
        if self.capture is not None:
            out.append("card-capture")
        out.extend(f"party-arriving:{ch}" if j.arriving else f"joiner-not-agreed:{ch}"
                   for ch, j in self.joiners.items() if j.blocking)
        return out


class CallSession:
    """The consent and recording state of one call."""

    def __init__(self, call_id: str, settings: SessionSettings, policy: Policy, prompts: PromptResolver):
        self.call_id = call_id
        self.settings = settings
        self.policy = policy
        self.prompts = prompts
        self.state = State.OFFERED
        self.channel = ""
        self.parties: list[ev.Party] = []
        self._everyone: list[ev.Party] = []
        self.rule: Rule | None = None
        self.language = policy.default_language
        self.recording_file = ""
        self.answered_at: float | None = None
        self.attempt = 0
        self.decision = ""
        self.flags = _Flags()
        self.history: list[tuple[State, Input, State]] = []
        self._notice: PromptRef | None = None
        self._playing: PromptRef | None = None  #: the prompt of the current gather attempt
        self._start_logged = False
        self._notice_started_at: float | None = None
        self._pending_since: float | None = None
        self._vetoed = ""
        self._stop_reason = ""
        self._from = State.OFFERED
        #: commands a classifier queues behind the transition's own (see handle)
        self._after: list[Command] = []

    # -- public view ---------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.state is State.ENDED

    @property
    def recording(self) -> bool:
        """A recording has been started and not stopped (as far as we know)."""
        return self.state in _RECORDING_STATES

    @property
    def muted(self) -> bool:
        """The PBX confirmed the recording writes silence."""
        return self.state in (State.MUTED, State.UNMUTING)

    @property
    def desired_muted(self) -> bool:
        """What the mute state should be; adapters re-assert it after a reconnect."""
        return self.flags.mute_wanted

    @property
    def payment_active(self) -> bool:
        return self.flags.payment_by is not None

    @property
    def audio_protected(self) -> bool:
        """Nothing the caller says or keys can reach a recording: muted (PBX-confirmed) or none running.

        A stop we asked for counts only once the PBX confirmed it; a call
        not yet past the notice has no recording, but one may start, and a
        muted start is confirmed as MUTED, so OFFERED/NOTICE do not count.
        """
        if self.state is State.MUTED:
            return True
        return self.state is State.UNRECORDED and not self._stop_reason

    def party_rules(self) -> list[tuple[ev.Party, PartyRule | None, bool]]:
        """Everyone who was ever on the call with their rule and whether they are still on it.

        For live views (the console): the rule's parties line up with
        everyone ever evaluated, in joining order.
        """
        rules = self.rule.parties if self.rule is not None else ()
        present = {p.channel for p in self.parties}
        everyone = self._everyone or self.parties
        return [(p, rules[i] if i < len(rules) else None, p.channel in present) for i, p in enumerate(everyone)]

    # -- the one entry point ---------------------------------------------------

    def handle(self, event: ev.Event) -> list[Command]:
        """Feed one event; returns what the PBX and the ledger must do, in order."""
        if self.state is State.ENDED:
            return []
        out: list[Command] = []
        classify = _CLASSIFIERS.get(type(event))
        step = classify(self, event, out) if classify else Input.NOTHING
        row = TRANSITIONS.get((self.state, step))
        if row is not None:
            target, action = row
            self._from, self.state = self.state, target
            getattr(self, action)(event, out)
            self.history.append((self._from, step, target))
        if self._after:
            out.extend(self._after)
            self._after.clear()
        return out

    # -- step 1: classify (bookkeeping + which Input this event is) -------------

    def _on_offered(self, event: ev.CallOffered, out: list[Command]) -> Input:
        if self.channel:
            return Input.NOTHING  # a repeated offer (resync after a reconnect)
        self.channel = event.channel
        self.parties = list(event.parties)
        self._everyone = list(event.parties)
        self.recording_file = recording_file_name(self.call_id, self.settings.recording_extension)
        self.rule = self._evaluate(self.parties)
        caller = self.parties[0].number if self.parties else None
        self.language = self.policy.language_for(caller, self.prompts.languages())
        self._log(out, "call-offered", event.at, channel=event.channel, language=self.language,
                  parties=[_party_data(p, r) for p, r in zip(self.parties, self.rule.parties)])
        self._log(out, "rule-applied", event.at, **self.rule.as_dict())
        if event.answered:
            return self._on_answered(ev.CallAnswered(event.at), out)
        return Input.NOTHING

    def _on_adopted(self, event: ev.CallAdopted, out: list[Command]) -> Input:
        if self.channel:
            return Input.NOTHING
        self.channel = event.channel
        self.parties = list(event.parties)
        self._everyone = list(event.parties)
        self.recording_file = event.recording_file or recording_file_name(self.call_id,
                                                                          self.settings.recording_extension)
        self.rule = self._evaluate(self.parties)
        caller = self.parties[0].number if self.parties else None
        self.language = self.policy.language_for(caller, self.prompts.languages())
        self.decision = event.decision
        if event.paused:
            self.flags.paused_by = ev.Source.HOTKEY
        if event.payment:
            self.flags.payment_by = ev.Source.IVR
        if event.muted and not self.flags.mute_wanted:
            # Silent under the earlier process for a reason it took with it (a joiner
            # who had not agreed, an API pause): stays silent until someone resumes.
            self.flags.paused_by = ev.Source.ENGINE
        self._log(out, "call-adopted", event.at, channel=event.channel, recording=event.recording,
                  file=self.recording_file if event.recording else None, decision=event.decision or None,
                  muted_for=self.flags.reasons() if event.recording else [],
                  detail="taken over from an earlier listener process; state read back from the PBX")
        if not event.recording:
            return Input.ADOPTED_UNRECORDED
        return Input.ADOPTED_MUTE if self.flags.mute_wanted else Input.ADOPTED

    def _on_answered(self, event: ev.CallAnswered, out: list[Command]) -> Input:
        if self.answered_at is not None or self.rule is None:
            return Input.NOTHING
        self.answered_at = event.at
        if not self.rule.recording_allowed:
            return Input.NOT_ALLOWED
        try:
            self._notice = self.prompts.resolve(self.settings.notice_prompt, self.language)
        except UnknownPrompt as exc:
            self._log(out, "error", event.at, what="notice prompt unavailable", detail=str(exc))
            return Input.NOTICE_UNAVAILABLE
        return Input.ANSWERED

    def _on_notice_started(self, event: ev.NoticeStarted, out: list[Command]) -> Input:
        joiner = self.flags.joiners.get(event.channel)
        if joiner is not None and joiner.prompt is not None:
            self._log(out, "notice-started", event.at, channel=event.channel, party="joiner",
                      offset_s=self._offset(event.at), confirmed_by="pbx", **_prompt_data(joiner.prompt))
            return Input.NOTHING
        return Input.NOTICE_STARTED if event.channel == self.channel else Input.NOTHING

    def _on_digits(self, event: ev.DigitsCollected, out: list[Command]) -> Input:
        if event.channel in self.flags.joiners:
            return self._joiner_answered(event, out)
        if event.channel != self.channel or self.state is not State.NOTICE or self.rule is None:
            return Input.NOTHING
        if not self._start_logged:
            # The PBX sent no start confirmation: the time we asked stands in.
            self._log_notice_start(self._pending_since or event.at, out, confirmed=False)
        self._start_logged = False
        digits = event.digits.strip()
        offset = self._offset(event.at)
        self._log(out, "notice-ended", event.at, channel=event.channel, digits=digits, offset_s=offset,
                  attempt=self.attempt,
                  within_limit=offset is not None and offset <= self.settings.notice_end_limit_s)
        decision = self._decide(digits)
        final = not (decision in ("no-input", "invalid") and self.attempt < self.settings.max_attempts)
        if final and decision in ("no-input", "invalid") and not self.rule.explicit_consent:
            decision = "implied"
        self.decision = decision
        data: dict[str, object] = {"decision": decision, "digits": digits, "attempt": self.attempt,
                                   "final": final, "explicit_required": self.rule.explicit_consent}
        if final and self.rule.lawful_basis_required and decision in ("granted", "implied"):
            data["lawful_basis"] = "consent" if decision == "granted" else "legitimate interest (notice, no objection)"
        if final and self._vetoed and decision in ("granted", "implied"):
            data["overridden_by"] = self._vetoed
        self._log(out, "consent", event.at, **data)
        if not final:
            return Input.RETRY
        if decision in ("granted", "implied"):
            if self._vetoed:
                return Input.NOT_ALLOWED
            return Input.GRANT if decision == "granted" else Input.IMPLIED
        return Input.DECLINE

    def _decide(self, digits: str) -> str:
        if not digits:
            return "no-input"
        if digits in self.settings.grant_digits:
            return "granted"
        if digits in self.settings.decline_digits:
            return "declined"
        return "invalid"

    def _joiner_answered(self, event: ev.DigitsCollected, out: list[Command]) -> Input:
        joiner = self.flags.joiners[event.channel]
        assert self.rule is not None
        digits = event.digits.strip()
        decision = self._decide(digits)
        self._log(out, "notice-ended", event.at, channel=event.channel, party="joiner", digits=digits,
                  offset_s=self._offset(event.at), attempt=joiner.attempt)
        final = not (decision in ("no-input", "invalid") and joiner.attempt < self.settings.max_attempts)
        if final and decision in ("no-input", "invalid"):
            decision = "declined" if self.rule.explicit_consent else "implied"
        self._log(out, "consent", event.at, party="joiner", channel=event.channel, decision=decision,
                  digits=digits, attempt=joiner.attempt, final=final, explicit_required=self.rule.explicit_consent)
        if not final:
            joiner.attempt += 1
            retry = "no-input-retry" if decision == "no-input" else "invalid-retry"
            joiner.prompt = self._resolve_or_notice(retry, joiner.prompt.language if joiner.prompt else self.language)
            out.append(self._collect(event.channel, joiner.prompt, joiner.attempt))
            return Input.NOTHING
        was = self.flags.mute_wanted
        del self.flags.joiners[event.channel]
        out.append(ContinueDialplan(event.channel, decision if decision != "implied" else "implied"))
        if decision == "declined":
            self._vetoed = f"joiner {event.channel} declined"
            return Input.JOINER_DECLINED
        return self._mute_change(was)

    def _on_prompt_failed(self, event: ev.PromptFailed, out: list[Command]) -> Input:
        self._log(out, "error", event.at, what="prompt failed", channel=event.channel, detail=event.reason)
        if event.channel in self.flags.joiners:
            # A party we could not inform cannot have agreed.
            del self.flags.joiners[event.channel]
            self._vetoed = f"joiner {event.channel} could not hear the notice"
            return Input.JOINER_DECLINED
        return Input.PROMPT_FAILED if event.channel == self.channel else Input.NOTHING

    def _on_started(self, event: ev.RecordingStarted, out: list[Command]) -> Input:
        if self.state is not State.STARTING:
            return Input.NOTHING
        return Input.STARTED_MUTE_NEEDED if self.flags.mute_wanted else Input.STARTED

    def _on_muted(self, event: ev.RecordingMuted, out: list[Command]) -> Input:
        if self.state is not State.MUTING:
            return Input.NOTHING
        return Input.MUTED if self.flags.mute_wanted else Input.MUTED_UNWANTED

    def _on_unmuted(self, event: ev.RecordingUnmuted, out: list[Command]) -> Input:
        # Any mute wish during UNMUTING already moved us to MUTING, so an
        # unmute confirmed here is wanted.
        return Input.UNMUTED if self.state is State.UNMUTING else Input.NOTHING

    def _on_stopped(self, event: ev.RecordingStopped, out: list[Command]) -> Input:
        if self.state is State.UNRECORDED and self._stop_reason:
            self._log(out, "recording-stop-confirmed", event.at, reason=self._stop_reason, confirmed_by="pbx")
            self._stop_reason = ""
        return Input.STOPPED

    def _on_failed(self, event: ev.CommandFailed, out: list[Command]) -> Input:
        if event.command in ("StartRecording", "MuteRecording", "UnmuteRecording") and self.recording:
            return Input.FAILED
        self._log(out, "error", event.at, what=f"{event.command} failed", detail=event.reason)
        return Input.NOTHING

    def _on_pause(self, event: ev.PauseRequested, out: list[Command]) -> Input:
        was = self.flags.mute_wanted
        self._log(out, "pause-requested", event.at, source=event.source.value, state=self.state.value,
                  **_actor(event))
        if self.flags.paused_by is None:
            self.flags.paused_by = event.source
            if self.settings.max_pause_s > 0:
                out.append(StartTimer(AUTO_RESUME_TIMER, self.settings.max_pause_s))
        return self._mute_change(was)

    def _on_resume(self, event: ev.ResumeRequested, out: list[Command]) -> Input:
        was = self.flags.mute_wanted
        self.flags.paused_by = None
        out.append(CancelTimer(AUTO_RESUME_TIMER))
        self._log(out, "resume-requested", event.at, source=event.source.value, state=self.state.value,
                  still_muted_for=self.flags.reasons(), **_actor(event))
        return self._mute_change(was)

    def _on_payment_started(self, event: ev.PaymentStarted, out: list[Command]) -> Input:
        was = self.flags.mute_wanted
        self._log(out, "payment-started", event.at, source=event.source.value, state=self.state.value,
                  **_actor(event))
        self.flags.payment_by = self.flags.payment_by or event.source
        return self._mute_change(was)

    def _on_payment_ended(self, event: ev.PaymentEnded, out: list[Command]) -> Input:
        was = self.flags.mute_wanted
        self.flags.payment_by = None
        self._log(out, "payment-ended", event.at, source=event.source.value, state=self.state.value,
                  still_muted_for=self.flags.reasons(), **_actor(event))
        return self._mute_change(was)

    def _on_arriving(self, event: ev.PartyArriving, out: list[Command]) -> Input:
        channel = event.channel
        if self.rule is None or channel == self.channel or channel in self.flags.joiners \
                or any(p.channel == channel for p in self.parties):
            return Input.NOTHING
        was = self.flags.mute_wanted
        self.flags.joiners[channel] = _Joiner(ev.Party(channel, None, role="joiner"), None, blocking=True,
                                              arriving=True)
        return self._mute_change(was)

    def _on_capture_started(self, event: ev.CaptureStarted, out: list[Command]) -> Input:
        if self.flags.capture is not None:
            return Input.NOTHING  # one capture at a time; the payments desk refuses a second
        was = self.flags.mute_wanted
        self.flags.capture = event.payment_id
        self._log(out, "payment-started", event.at, source=event.source.value, state=self.state.value,
                  payment_id=event.payment_id, capture=True, staff_leg=event.staff_leg, operation=event.operation,
                  amount=event.amount or None, currency=event.currency or None, **_actor(event))
        return self._mute_change(was)

    def _on_capture_ended(self, event: ev.CaptureEnded, out: list[Command]) -> Input:
        if self.flags.capture != event.payment_id:
            return Input.NOTHING
        was = self.flags.mute_wanted
        self.flags.capture = None
        self._log(out, "payment-ended", event.at, source=ev.Source.ENGINE.value, state=self.state.value,
                  capture=True, **dict(event.result), still_muted_for=self.flags.reasons())
        return self._mute_change(was)

    def _on_joined(self, event: ev.PartyJoined, out: list[Command]) -> Input:
        if self.rule is None or any(p.channel == event.party.channel for p in self.parties):
            return Input.NOTHING
        # What was muted for this leg while it was still unidentified counts as "before".
        was = self.flags.mute_wanted
        arriving = self.flags.joiners.get(event.party.channel)
        if arriving is not None and arriving.arriving:
            del self.flags.joiners[event.party.channel]
        self.parties.append(event.party)
        self._everyone.append(event.party)
        before = self.rule
        # Evaluated over everyone who was ever on the call, so the rule can
        # tighten mid-call but never relax when a strict party leaves.
        self.rule = self._evaluate(self._everyone)
        party_rule = self.rule.parties[-1]
        self._log(out, "party-joined", event.at, announceable=event.announceable,
                  staff=party_rule.jurisdiction.internal,
                  party=_party_data(event.party, party_rule), offset_s=self._offset(event.at))
        if (self.rule.regime, self.rule.explicit_consent) != (before.regime, before.explicit_consent):
            self._log(out, "rule-applied", event.at, changed_from=before.regime, trigger=event.party.channel,
                      **self.rule.as_dict())
        if party_rule.jurisdiction.internal:
            # Staff (an agent answering, a supervisor barging in) are told
            # about recording by their employer, not by the call's notice.
            if event.announceable:
                out.append(ContinueDialplan(event.party.channel, "not-required"))
            return self._mute_change(was)
        if self.state in (State.UNRECORDED, State.OFFERED):
            if event.announceable:
                out.append(ContinueDialplan(event.party.channel, "not-recorded"))
            return self._mute_change(was)
        if not self.rule.recording_allowed:
            self._vetoed = f"party {party_rule.number} ({party_rule.jurisdiction.code}) forbids recording"
            if event.announceable:
                out.append(ContinueDialplan(event.party.channel, "not-recorded"))
            return Input.FORBID
        if not event.announceable:
            self._log(out, "violation", event.at, what="unannounced party", channel=event.party.channel,
                      detail=f"{event.party.channel} reached the call without hearing the notice")
            if self.rule.explicit_consent:
                self._vetoed = f"unannounced party {event.party.channel} under {self.rule.regime}"
                return Input.FORBID
            # One-party: keep the recording, but silent while this party is on.
            self.flags.joiners[event.party.channel] = _Joiner(event.party, None, blocking=True)
            return self._mute_change(was)
        language = self.policy.language_for(event.party.number, self.prompts.languages())
        prompt = self._resolve_or_notice("renotice-join", language)
        self.flags.joiners[event.party.channel] = _Joiner(event.party, prompt, blocking=self.rule.explicit_consent)
        # The joiner hears the notice after the mute is asked for, never before:
        # what they say over the notice must not reach an all-party recording.
        self._after.append(self._collect(event.party.channel, prompt, 1))
        return self._mute_change(was)

    def _on_left(self, event: ev.PartyLeft, out: list[Command]) -> Input:
        if not any(p.channel == event.channel for p in self.parties):
            was = self.flags.mute_wanted
            # A leg that left before anyone knew who it was: nothing to log, nothing to keep muted for.
            return self._mute_change(was) if self.flags.joiners.pop(event.channel, None) else Input.NOTHING
        was = self.flags.mute_wanted
        self.parties = [p for p in self.parties if p.channel != event.channel]
        self.flags.joiners.pop(event.channel, None)
        self._log(out, "party-left", event.at, channel=event.channel, offset_s=self._offset(event.at))
        return self._mute_change(was)

    def _on_timer(self, event: ev.TimerFired, out: list[Command]) -> Input:
        if event.name in (START_TIMER, CONFIRM_TIMER):
            return Input.CONFIRM_TIMEOUT
        if event.name == AUTO_RESUME_TIMER and self.flags.paused_by is not None:
            was = self.flags.mute_wanted
            self.flags.paused_by = None
            self._log(out, "resume-requested", event.at, source=ev.Source.ENGINE.value, state=self.state.value,
                      reason=f"auto-resume after {self.settings.max_pause_s:g} s",
                      still_muted_for=self.flags.reasons())
            return self._mute_change(was)
        return Input.NOTHING

    def _on_hangup(self, event: ev.HungUp, out: list[Command]) -> Input:
        if event.channel and event.channel != self.channel:
            return self._on_left(ev.PartyLeft(event.at, event.channel), out)
        return Input.HANGUP

    def _evaluate(self, parties: list[ev.Party]) -> Rule:
        return self.policy.combine(self.policy.party_rule(p.number, p.staff) for p in parties)

    def _mute_change(self, was: bool) -> Input:
        now = self.flags.mute_wanted
        if now and not was:
            return Input.WANT_MUTE
        if was and not now:
            return Input.WANT_UNMUTE
        return Input.NOTHING

    # -- step 2: actions (named in TRANSITIONS) ---------------------------------

    def _nothing(self, event: ev.Event, out: list[Command]) -> None:
        return None

    def _play_notice(self, event: ev.Event, out: list[Command]) -> None:
        assert self._notice is not None
        self.attempt = 1
        self._pending_since = event.at
        self._playing = self._notice
        out.append(self._collect(self.channel, self._notice, 1))

    def _replay_notice(self, event: ev.DigitsCollected, out: list[Command]) -> None:
        self.attempt += 1
        retry = "no-input-retry" if not event.digits.strip() else "invalid-retry"
        self._pending_since = event.at
        self._playing = self._resolve_or_notice(retry, self.language)
        out.append(self._collect(self.channel, self._playing, self.attempt))

    def _log_notice_started(self, event: ev.NoticeStarted, out: list[Command]) -> None:
        self._log_notice_start(event.at, out, confirmed=True)
        self._start_logged = True

    def _start_recording(self, event: ev.Event, out: list[Command]) -> None:
        self._pending_since = event.at
        self._log(out, "recording-requested", event.at, file=self.recording_file)
        out.append(StartRecording(self.channel, self.recording_file))
        out.append(StartTimer(START_TIMER, self.settings.start_timeout_s))
        out.append(ContinueDialplan(self.channel, self.decision))

    def _log_started(self, event: ev.RecordingStarted, out: list[Command]) -> None:
        out.append(CancelTimer(START_TIMER))
        self._log(out, "recording-started", event.at, file=self.recording_file, recording_ref=event.recording_ref,
                  confirmed_by="pbx", latency_s=self._latency(event.at), offset_s=self._offset(event.at))

    def _log_started_and_mute(self, event: ev.RecordingStarted, out: list[Command]) -> None:
        self._log_started(event, out)
        self._mute(event, out)

    def _mute(self, event: ev.Event, out: list[Command]) -> None:
        self._pending_since = event.at
        out.append(MuteRecording(self.channel))
        out.append(StartTimer(CONFIRM_TIMER, self.settings.confirm_timeout_s, since=event.at))

    def _unmute(self, event: ev.Event, out: list[Command]) -> None:
        self._pending_since = event.at
        out.append(UnmuteRecording(self.channel))
        out.append(StartTimer(CONFIRM_TIMER, self.settings.confirm_timeout_s, since=event.at))

    def _log_muted(self, event: ev.RecordingMuted, out: list[Command]) -> None:
        out.append(CancelTimer(CONFIRM_TIMER))
        self._log(out, "recording-muted", event.at, reasons=self.flags.reasons(), confirmed_by="pbx",
                  latency_s=self._latency(event.at), offset_s=self._offset(event.at))

    def _log_muted_and_unmute(self, event: ev.RecordingMuted, out: list[Command]) -> None:
        self._log_muted(event, out)
        self._unmute(event, out)

    def _log_unmuted(self, event: ev.RecordingUnmuted, out: list[Command]) -> None:
        out.append(CancelTimer(CONFIRM_TIMER))
        self._log(out, "recording-unmuted", event.at, confirmed_by="pbx", latency_s=self._latency(event.at),
                  offset_s=self._offset(event.at))

    def _continue_not_allowed(self, event: ev.Event, out: list[Command]) -> None:
        self._continue(event, out, "not-recorded", None)

    def _continue_without_notice(self, event: ev.Event, out: list[Command]) -> None:
        self._continue(event, out, "error", None)

    def _continue_declined(self, event: ev.Event, out: list[Command]) -> None:
        try:
            out.append(PlayPrompt(self.channel, self.prompts.resolve("opt-out-confirm", self.language)))
        except UnknownPrompt as exc:
            self._log(out, "error", event.at, what="opt-out confirmation prompt unavailable", detail=str(exc))
        outcome = "declined" if self.decision == "declined" else "no-input"
        self._continue(event, out, outcome, self.settings.decline_destination)

    def _continue_prompt_failed(self, event: ev.Event, out: list[Command]) -> None:
        # The caller may not have heard the notice: no recording, and the
        # evidence says why instead of leaving the decision open.
        self.decision = "prompt-failed"
        self._log(out, "consent", event.at, decision="prompt-failed", digits="", attempt=self.attempt, final=True,
                  explicit_required=bool(self.rule and self.rule.explicit_consent))
        self._continue(event, out, "error", None)

    def _continue(self, event: ev.Event, out: list[Command], outcome: str, destination: str | None) -> None:
        out.append(ContinueDialplan(self.channel, outcome, destination))
        self._log(out, "continued", event.at, outcome=outcome, destination=destination, recorded=False)

    def _stop(self, event: ev.Event, out: list[Command], reason: str) -> None:
        out.extend(_CANCEL_ALL)
        out.append(StopRecording(self.channel, reason))
        self._stop_reason = reason
        self._log(out, "recording-stopped", event.at, reason=reason, confirmed_by="listener",
                  offset_s=self._offset(event.at))

    def _stop_not_confirmed(self, event: ev.Event, out: list[Command]) -> None:
        step = {State.STARTING: "start", State.MUTING: "mute", State.UNMUTING: "unmute"}[self._from]
        self._log(out, "error", event.at, what=f"{step} not confirmed in time",
                  detail="no PBX confirmation within the limit; fail safe: stopping the recording")
        self._stop(event, out, f"{step}-not-confirmed")

    def _stop_failed(self, event: ev.CommandFailed, out: list[Command]) -> None:
        self._log(out, "error", event.at, what=f"{event.command} failed", detail=event.reason)
        self._stop(event, out, f"{event.command}-failed")

    def _stop_forbidden(self, event: ev.Event, out: list[Command]) -> None:
        self._stop(event, out, "party-forbids-recording")

    def _stop_shutdown(self, event: ev.Event, out: list[Command]) -> None:
        self._stop(event, out, "listener-shutdown")

    def _stop_declined_by_joiner(self, event: ev.Event, out: list[Command]) -> None:
        self._stop(event, out, "joiner-declined")

    def _log_stopped_by_pbx(self, event: ev.RecordingStopped, out: list[Command]) -> None:
        out.extend(_CANCEL_ALL)
        self._log(out, "recording-stopped", event.at, reason="stopped-by-pbx", confirmed_by="pbx",
                  offset_s=self._offset(event.at))

    def _hangup(self, event: ev.HungUp, out: list[Command]) -> None:
        before = self._from
        out.extend(_CANCEL_ALL)
        if before is State.NOTICE:
            self._log(out, "consent", event.at, decision="hangup", digits="", attempt=self.attempt, final=True,
                      explicit_required=bool(self.rule and self.rule.explicit_consent))
        if before in _RECORDING_STATES:
            # The PBX ends a channel's recording with the channel.
            self._log(out, "recording-stopped", event.at, reason="hangup", confirmed_by="pbx",
                      offset_s=self._offset(event.at), muted_at_end=before in (State.MUTED, State.MUTING))
        data: dict[str, object] = {"cause": event.cause, "state": before.value, "offset_s": self._offset(event.at)}
        if before in _RECORDING_STATES:
            data["recording"] = _RECORDING_AT_HANGUP[before]
        self._log(out, "hangup", event.at, **data)

    # -- helpers -----------------------------------------------------------------

    def _collect(self, channel: str, prompt: PromptRef, attempt: int) -> PlayAndCollect:
        valid = "".join(sorted(set(self.settings.grant_digits + self.settings.decline_digits)))
        return PlayAndCollect(channel, prompt, self.settings.timeout_ms, 1, valid, attempt)

    def _resolve_or_notice(self, prompt_id: str, language: str) -> PromptRef:
        """A retry/join prompt, falling back to the notice itself if it is missing."""
        try:
            return self.prompts.resolve(prompt_id, language)
        except UnknownPrompt:
            return self.prompts.resolve(self.settings.notice_prompt, language)

    def _log_notice_start(self, at: float, out: list[Command], confirmed: bool) -> None:
        assert self._playing is not None
        first = self._notice_started_at is None
        self._notice_started_at = at if first else self._notice_started_at
        offset = self._offset(at)
        data: dict[str, object] = {"channel": self.channel, "offset_s": offset, "attempt": self.attempt,
                                   "confirmed_by": "pbx" if confirmed else "listener"}
        if first:
            data["within_limit"] = offset is not None and offset <= self.settings.notice_start_limit_s
        self._log(out, "notice-started", at, **data, **_prompt_data(self._playing))

    def _offset(self, at: float) -> float | None:
        return None if self.answered_at is None else round(at - self.answered_at, 6)

    def _latency(self, at: float) -> float | None:
        return None if self._pending_since is None else round(at - self._pending_since, 6)

    def _log(self, out: list[Command], kind: str, at: float, **data: object) -> None:
        out.append(LedgerEntry(self.call_id, kind, at, data))


#: What the recording was when the call ended, in words (a hangup mid-unmute is not "unmuting").
_RECORDING_AT_HANGUP = {
    State.STARTING: "start requested, never confirmed by the PBX",
    State.RECORDING: "recording audio",
    State.MUTING: "mute requested, not yet confirmed (treated as audible)",
    State.MUTED: "muted (confirmed)",
    State.UNMUTING: "muted; the unmute was not yet confirmed",
}

_CANCEL_ALL = (CancelTimer(START_TIMER), CancelTimer(CONFIRM_TIMER), CancelTimer(AUTO_RESUME_TIMER))


def _actor(event: ev.PauseRequested | ev.ResumeRequested | ev.PaymentStarted | ev.PaymentEnded
           | ev.CaptureStarted) -> dict[str, str]:
    """``{"user": ...}`` for a request an authenticated user made through the API, else nothing."""
    return {"user": event.actor} if event.actor else {}


def _prompt_data(prompt: PromptRef) -> dict[str, object]:
    return {"prompt_id": prompt.prompt_id, "language": prompt.language, "sha256": prompt.sha256,
            "duration_s": prompt.duration_s}


def _party_data(party: ev.Party, rule: PartyRule) -> dict[str, object]:
    return {"channel": party.channel, "number": party.number, "name": party.name, "role": party.role,
            "jurisdiction": rule.jurisdiction.code, "where": rule.jurisdiction.description,
            "regime": rule.regime, "reason": rule.reason}


_CLASSIFIERS: dict[type, Callable[..., Input]] = {
    ev.CallOffered: CallSession._on_offered,
    ev.CallAdopted: CallSession._on_adopted,
    ev.CallAnswered: CallSession._on_answered,
    ev.NoticeStarted: CallSession._on_notice_started,
    ev.DigitsCollected: CallSession._on_digits,
    ev.PromptFailed: CallSession._on_prompt_failed,
    ev.RecordingStarted: CallSession._on_started,
    ev.RecordingMuted: CallSession._on_muted,
    ev.RecordingUnmuted: CallSession._on_unmuted,
    ev.RecordingStopped: CallSession._on_stopped,
    ev.CommandFailed: CallSession._on_failed,
    ev.PauseRequested: CallSession._on_pause,
    ev.ResumeRequested: CallSession._on_resume,
    ev.PaymentStarted: CallSession._on_payment_started,
    ev.PaymentEnded: CallSession._on_payment_ended,
    ev.PartyArriving: CallSession._on_arriving,
    ev.CaptureStarted: CallSession._on_capture_started,
    ev.CaptureEnded: CallSession._on_capture_ended,
    ev.PartyJoined: CallSession._on_joined,
    ev.PartyLeft: CallSession._on_left,
    ev.TimerFired: CallSession._on_timer,
    ev.HungUp: CallSession._on_hangup,
    ev.ListenerStopping: lambda self, event, out: Input.SHUTDOWN,
}
