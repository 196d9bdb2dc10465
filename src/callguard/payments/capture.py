"""One card payment taken from the caller's keypad: events in, commands out.

:class:`CaptureSession` is sans-IO like :class:`~callguard.core.session.CallSession`:
it never reads a clock, a socket or the connector.  Its whole life is one
table, :data:`TRANSITIONS`, over four phases:

``ARMING``
    The payment was asked for.  The recording must be muted (confirmed by
    the PBX) and the agent's leg guarded (no DTMF, no caller audio reaches
    the agent, confirmed by the PBX) before the caller is asked for
    anything.  Keys pressed now are ignored: nobody asked for them.
``COLLECTING``
    One field at a time - card number, expiry (MMYY), security code, and
    the postcode when the connector wants it - each announced by a prompt.
    Only ``0``-``9`` of the current field count; ``#`` ends a field,
    ``*`` starts it again, every other key is ignored, so the keypad can
    enter digits of the current field and nothing else.  A field that
    fails its check (Luhn, length for the brand, expiry in the future) is
    asked for again, up to ``max_attempts``.
``SUBMITTING``
    The card went to the connector (one :class:`Submit` with one
    idempotency key).  The session keeps no digits from here on.  A
    cancel or a hang-up now cannot un-send the request: it is noted and
    the connector's answer decides the result.
``ENDED``
    :class:`Finish` says how; the owner feeds ``CaptureEnded`` to the
    call, which unmutes the recording.

Fail safe: every way out (cancel, hang-up, timeouts, a prompt that cannot
play, protection not confirmed, connector failure) goes through ENDED, and
the recording stays muted until then.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from enum import Enum
from typing import Callable

from callguard.core.commands import CancelTimer, Command, LedgerEntry, PromptRef, StartTimer
from callguard.core.prompts import PromptResolver, UnknownPrompt
from callguard.payments import card as cards
from callguard.payments.secret import CardData, DigitBuffer

ARM_TIMER = "pay-arm"
FIELD_TIMER = "pay-field"
TOTAL_TIMER = "pay-total"


class Phase(str, Enum):
    ARMING = "arming"
    COLLECTING = "collecting"
    SUBMITTING = "submitting"
    ENDED = "ended"


class Step(str, Enum):
    """The fields of a card, in the order they are asked for."""

    NUMBER = "number"
    EXPIRY = "expiry"
    CVV = "cvv"
    POSTCODE = "postcode"

    @property
    def label(self) -> str:
        return _LABELS[self]

    @property
    def prompt_id(self) -> str:
        return _PROMPTS[self]


_LABELS = {Step.NUMBER: "card", Step.EXPIRY: "expiry", Step.CVV: "CVV", Step.POSTCODE: "postcode"}
_PROMPTS = {Step.NUMBER: "pay-card-number", Step.EXPIRY: "pay-expiry", Step.CVV: "pay-cvv",
            Step.POSTCODE: "pay-postcode"}


# -- what goes in -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PayEvent:
    at: float  #: PBX time, epoch seconds


@dataclass(frozen=True, slots=True)
class Protected(PayEvent):
    """The PBX confirmed both: the recording writes silence (or none runs) and the agent's leg is guarded."""


@dataclass(frozen=True, slots=True)
class ProtectionFailed(PayEvent):
    reason: str


@dataclass(frozen=True, slots=True)
class Key(PayEvent):
    """A key the caller pressed (from the caller's leg only; the adapter checks that)."""

    digit: str


@dataclass(frozen=True, slots=True)
class Timeout(PayEvent):
    name: str


@dataclass(frozen=True, slots=True)
class Cancel(PayEvent):
    by: str  #: fixed word: agent-hotkey | api | ivr | engine


@dataclass(frozen=True, slots=True)
class CallEnded(PayEvent):
    """The caller's leg hung up."""


@dataclass(frozen=True, slots=True)
class PromptFailed(PayEvent):
    reason: str


@dataclass(frozen=True, slots=True)
class ConnectorReplied(PayEvent):
    """What the gateway said.  ``status``: approved | declined | failed | unknown."""

    status: str
    token: str = ""
    reference: str = ""  #: the gateway's charge/token id
    detail: str = ""  #: decline code or error, fixed words or the gateway's short text
    attempts: int = 1


# -- what comes out -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GuardAgent(Command):
    """Keep the caller's DTMF and audio from the agent (``on``) or stop doing so."""

    on: bool


@dataclass(frozen=True, slots=True)
class PlayToCaller(Command):
    """Play a catalogued prompt to the caller only."""

    prompt: PromptRef


@dataclass(frozen=True, slots=True)
class ShowProgress(Command):
    """The masked view changed: publish it to the agent's screens."""

    progress: "Progress"


@dataclass(frozen=True, eq=False)
class Submit(Command):
    """Send the card to the connector; the owner wipes ``card`` when the call returns."""

    card: CardData
    operation: str  #: charge | tokenize
    idempotency_key: str
    amount: Decimal | None
    currency: str


@dataclass(frozen=True, slots=True)
class Finish(Command):
    """The payment is over; ``result`` goes to the call's ledger as ``payment-ended``."""

    result: "PaymentResult"


# -- views ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldView:
    step: str
    label: str
    entered: int
    expected: int | None  #: None while unknown (card number before the brand is clear)
    state: str  #: waiting | entering | ok | retry | skipped
    problem: str = ""

    def line(self, brand: str | None) -> str:
        if self.state == "ok":
            return f"{self.label}: ok" + (f", {brand}" if self.step == Step.NUMBER.value and brand else "")
        count = f"{self.entered} of {self.expected}" if self.expected else f"{self.entered}"
        text = f"{self.label}: {count} digits"
        if self.step == Step.NUMBER.value and brand:
            text += f", {brand}"
        if self.state == "retry":
            text += f" (again: {self.problem})"
        elif self.state == "waiting":
            text = f"{self.label}: waiting"
        return text


@dataclass(frozen=True, slots=True)
class Progress:
    """What the agent may see: counts, brand, states.  Never a digit."""

    payment_id: str
    call_id: str
    phase: str
    step: str | None
    brand: str | None
    fields: tuple[FieldView, ...]
    message: str
    at: float
    seq: int

    def lines(self) -> list[str]:
        return [f.line(self.brand) for f in self.fields]

    def as_dict(self) -> dict[str, object]:
        return {"payment_id": self.payment_id, "call_id": self.call_id, "phase": self.phase, "step": self.step,
                "brand": self.brand, "message": self.message, "at": self.at, "seq": self.seq,
                "fields": [{"step": f.step, "entered": f.entered, "expected": f.expected, "state": f.state,
                            "problem": f.problem} for f in self.fields],
                "lines": self.lines()}


@dataclass(frozen=True, slots=True)
class PaymentResult:
    """How a payment ended; every field is safe for the ledger."""

    payment_id: str
    outcome: str  #: approved | tokenized | declined | failed | unknown | cancelled | hangup | timeout | error
    reason: str = ""
    brand: str = ""
    last4: str = ""
    token: str = ""
    reference: str = ""
    idempotency_key: str = ""
    operation: str = ""
    amount: str = ""
    currency: str = ""
    attempts: int = 0

    @property
    def succeeded(self) -> bool:
        return self.outcome in ("approved", "tokenized")

    def as_dict(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]


# -- settings -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaptureSettings:
    """The knobs of a card capture (``[payments]`` in callguard.toml)."""

    collect_postcode: bool = False
    postcode_min_digits: int = 5
    postcode_max_digits: int = 5
    max_attempts: int = 3  #: per field, including the first
    arm_timeout_s: float = 5.0  #: mute + guard must be PBX-confirmed within this
    first_digit_timeout_s: float = 20.0  #: from a field's prompt to its first key (prompt included)
    inter_digit_timeout_s: float = 6.0  #: a pause this long ends the field
    max_duration_s: float = 240.0  #: the whole capture, arming to submit


# -- the state machine ------------------------------------------------------------------------------


class Input(str, Enum):
    PROTECTED = "protected"
    UNPROTECTED = "unprotected"
    DIGIT = "digit"
    RESTART = "restart"
    ACCEPTED = "accepted"  #: a field passed and another follows
    COMPLETE = "complete"  #: the last field passed: submit
    REJECTED = "rejected"  #: ask for the field again
    EXHAUSTED = "exhausted"  #: too many attempts at one field
    CANCEL = "cancel"
    HANGUP = "hangup"
    TIMEOUT = "timeout"
    PROMPT_FAILED = "prompt-failed"
    REPLIED = "replied"
    NOTHING = "nothing"


_P, _I = Phase, Input
_LIVE = (_P.ARMING, _P.COLLECTING)
TRANSITIONS: dict[tuple[Phase, Input], tuple[Phase, str]] = {
    (_P.ARMING, _I.PROTECTED): (_P.COLLECTING, "_begin"),
    (_P.ARMING, _I.UNPROTECTED): (_P.ENDED, "_end_unprotected"),
    (_P.COLLECTING, _I.DIGIT): (_P.COLLECTING, "_digit"),
    (_P.COLLECTING, _I.RESTART): (_P.COLLECTING, "_restart_field"),
    (_P.COLLECTING, _I.ACCEPTED): (_P.COLLECTING, "_next_field"),
    (_P.COLLECTING, _I.REJECTED): (_P.COLLECTING, "_ask_again"),
    (_P.COLLECTING, _I.COMPLETE): (_P.SUBMITTING, "_submit"),
    (_P.COLLECTING, _I.EXHAUSTED): (_P.ENDED, "_end_exhausted"),
    (_P.COLLECTING, _I.PROMPT_FAILED): (_P.ENDED, "_end_prompt_failed"),
    (_P.COLLECTING, _I.UNPROTECTED): (_P.ENDED, "_end_unprotected"),
    **{(p, _I.CANCEL): (_P.ENDED, "_end_cancelled") for p in _LIVE},
    **{(p, _I.HANGUP): (_P.ENDED, "_end_hangup") for p in _LIVE},
    **{(p, _I.TIMEOUT): (_P.ENDED, "_end_timeout") for p in _LIVE},
    # The request is on its way: a cancel or hang-up cannot call it back.
    (_P.SUBMITTING, _I.CANCEL): (_P.SUBMITTING, "_note_late"),
    (_P.SUBMITTING, _I.HANGUP): (_P.SUBMITTING, "_note_late"),
    (_P.SUBMITTING, _I.REPLIED): (_P.ENDED, "_end_replied"),
}


class CaptureSession:
    """One payment on one call (see the module docstring)."""

    def __init__(self, payment_id: str, call_id: str, settings: CaptureSettings, prompts: PromptResolver,
                 language: str, *, amount: Decimal | None, currency: str, started_at: float,
                 today: Callable[[float], date] | None = None):
        self.payment_id = payment_id
        self.call_id = call_id
        self.settings = settings
        self.prompts = prompts
        self.language = language
        self.amount = amount
        self.currency = currency
        self.operation = "charge" if amount is not None else "tokenize"
        self.idempotency_key = f"cg-{payment_id}"
        self.started_at = started_at
        self._today = today or _utc_date
        self.phase = Phase.ARMING
        self.steps: tuple[Step, ...] = (Step.NUMBER, Step.EXPIRY, Step.CVV) + (
            (Step.POSTCODE,) if settings.collect_postcode else ())
        self.index = 0
        self.attempts = {s: 1 for s in self.steps}
        self.states = {s: "waiting" for s in self.steps}
        self.problems = {s: "" for s in self.steps}
        self._buffers = {s: DigitBuffer() for s in self.steps}
        self._done: dict[Step, str] = {}  #: accepted fields' digits until submit
        self.brand: cards.Brand | None = None
        self.last4 = ""
        self.result: PaymentResult | None = None
        self.late: list[str] = []  #: cancel/hang-up that came while submitting
        self.history: list[tuple[Phase, Input, Phase]] = []
        self._seq = 0
        self._from = Phase.ARMING

    # -- public view -----------------------------------------------------------------------------

    @property
    def step(self) -> Step | None:
        return self.steps[self.index] if self.phase is Phase.COLLECTING else None

    @property
    def finished(self) -> bool:
        return self.phase is Phase.ENDED

    @property
    def holds_digits(self) -> bool:
        """True while any keyed digit is still in this session's memory."""
        return any(len(b) for b in self._buffers.values()) or bool(self._done)

    def start(self) -> list[Command]:
        """The first commands: guard the agent, bound the whole capture, show the agent."""
        out: list[Command] = [GuardAgent(True), StartTimer(ARM_TIMER, self.settings.arm_timeout_s),
                              StartTimer(TOTAL_TIMER, self.settings.max_duration_s)]
        self._show(out, self.started_at, "securing the call: muting the recording, guarding the agent")
        return out

    def handle(self, event: PayEvent) -> list[Command]:
        if self.phase is Phase.ENDED:
            return []
        out: list[Command] = []
        classify = _CLASSIFIERS.get(type(event))
        step = classify(self, event, out) if classify else Input.NOTHING
        row = TRANSITIONS.get((self.phase, step))
        if row is not None:
            target, action = row
            self._from, self.phase = self.phase, target
            getattr(self, action)(event, out)
            self.history.append((self._from, step, target))
        return out

    # -- step 1: classify ----------------------------------------------------------------------------

    def _on_protected(self, event: Protected, out: list[Command]) -> Input:
        return Input.PROTECTED

    def _on_unprotected(self, event: ProtectionFailed, out: list[Command]) -> Input:
        return Input.UNPROTECTED

    def _on_key(self, event: Key, out: list[Command]) -> Input:
        if self.phase is not Phase.COLLECTING:
            return Input.NOTHING  # nobody asked for digits (arming, submitting)
        digit = event.digit
        current = self.steps[self.index]
        buffer = self._buffers[current]
        if digit == "*":
            return Input.RESTART
        if digit == "#":
            return self._evaluate(event.at, out) if len(buffer) else Input.NOTHING
        if len(digit) != 1 or digit not in "0123456789":
            return Input.NOTHING  # A-D, anything else: not part of any field
        buffer.append(digit)
        if current is Step.NUMBER:
            self.brand = cards.brand_of(buffer.reveal())
        if len(buffer) >= self._max_length(current):
            return self._evaluate(event.at, out)
        return Input.DIGIT

    def _on_timeout(self, event: Timeout, out: list[Command]) -> Input:
        if event.name == ARM_TIMER:
            return Input.UNPROTECTED if self.phase is Phase.ARMING else Input.NOTHING
        if event.name == TOTAL_TIMER:
            return Input.TIMEOUT
        if event.name == FIELD_TIMER and self.phase is Phase.COLLECTING:
            current = self.steps[self.index]
            if len(self._buffers[current]):
                return self._evaluate(event.at, out)
            return self._reject(current, "no-input", event.at, out)
        return Input.NOTHING

    def _on_cancel(self, event: Cancel, out: list[Command]) -> Input:
        return Input.CANCEL

    def _on_call_ended(self, event: CallEnded, out: list[Command]) -> Input:
        return Input.HANGUP

    def _on_prompt_failed(self, event: PromptFailed, out: list[Command]) -> Input:
        return Input.PROMPT_FAILED

    def _on_replied(self, event: ConnectorReplied, out: list[Command]) -> Input:
        return Input.REPLIED if self.phase is Phase.SUBMITTING else Input.NOTHING

    def _evaluate(self, at: float, out: list[Command]) -> Input:
        """The current field is complete: check it (this is where digits become a verdict)."""
        current = self.steps[self.index]
        buffer = self._buffers[current]
        digits = buffer.reveal()
        problem: str | None
        if current is Step.NUMBER:
            problem = cards.number_problem(digits)
            self.brand = cards.brand_of(digits) if problem is None else self.brand
        elif current is Step.EXPIRY:
            problem = cards.parse_expiry(digits, self._today(at))[1]
        elif current is Step.CVV:
            expected = self.brand.cvv_length if self.brand else 3
            problem = None if len(digits) == expected else "wrong-length"
        else:
            lo, hi = self.settings.postcode_min_digits, self.settings.postcode_max_digits
            problem = None if lo <= len(digits) <= hi else "wrong-length"
        if problem is not None:
            return self._reject(current, problem, at, out)
        self._done[current] = digits
        if current is Step.NUMBER:
            self.last4 = cards.last_four(digits)
        buffer.wipe()
        self.states[current] = "ok"
        self.problems[current] = ""
        entry: dict[str, object] = {"payment_id": self.payment_id, "step": current.value, "outcome": "accepted",
                                    "attempt": self.attempts[current]}
        if current is Step.NUMBER and self.brand is not None:
            entry["brand"] = self.brand.key
        out.append(LedgerEntry(self.call_id, "payment-step", at, entry))
        return Input.COMPLETE if self.index == len(self.steps) - 1 else Input.ACCEPTED

    def _reject(self, current: Step, problem: str, at: float, out: list[Command]) -> Input:
        entered = len(self._buffers[current])
        self._buffers[current].wipe()
        out.append(LedgerEntry(self.call_id, "payment-step", at, {
            "payment_id": self.payment_id, "step": current.value, "outcome": "rejected", "reason": problem,
            "digits_entered": entered, "attempt": self.attempts[current]}))
        if current is Step.NUMBER:
            self.brand = None
        self.problems[current] = problem
        if self.attempts[current] >= self.settings.max_attempts:
            return Input.EXHAUSTED
        self.attempts[current] += 1
        self.states[current] = "retry"
        return Input.REJECTED

    def _max_length(self, step: Step) -> int:
        if step is Step.NUMBER:
            return self.brand.max_length if self.brand else cards.MAX_PAN_LENGTH
        if step is Step.EXPIRY:
            return 4
        if step is Step.CVV:
            return self.brand.cvv_length if self.brand else 4
        return self.settings.postcode_max_digits

    def _expected(self, step: Step) -> int | None:
        entered = len(self._buffers[step])
        if step is Step.NUMBER:
            if self.brand is None:
                return None
            return next((n for n in sorted(self.brand.lengths) if n >= max(entered, self.brand.usual_length)),
                        self.brand.max_length)
        if step is Step.POSTCODE:
            return self.settings.postcode_max_digits
        return self._max_length(step)

    # -- step 2: actions (named in TRANSITIONS) ----------------------------------------------------------

    def _begin(self, event: PayEvent, out: list[Command]) -> None:
        out.append(CancelTimer(ARM_TIMER))
        out.append(LedgerEntry(self.call_id, "payment-step", event.at, {
            "payment_id": self.payment_id, "step": "protected", "outcome": "confirmed",
            "detail": "recording muted and agent guarded, confirmed by the PBX"}))
        self._play(out, "pay-start", event.at)
        self._ask(out, event.at, "")

    def _digit(self, event: Key, out: list[Command]) -> None:
        current = self.steps[self.index]
        self.states[current] = "entering"
        out.append(StartTimer(FIELD_TIMER, self.settings.inter_digit_timeout_s))
        self._show(out, event.at, "")

    def _restart_field(self, event: Key, out: list[Command]) -> None:
        current = self.steps[self.index]
        self._buffers[current].wipe()
        if current is Step.NUMBER:
            self.brand = None
        self._ask(out, event.at, f"{current.label}: caller started again")

    def _next_field(self, event: PayEvent, out: list[Command]) -> None:
        self.index += 1
        self._ask(out, event.at, "")

    def _ask_again(self, event: PayEvent, out: list[Command]) -> None:
        current = self.steps[self.index]
        self._play(out, "pay-retry", event.at)
        self._ask(out, event.at, f"{current.label}: {self.problems[current]}, asking again")

    def _ask(self, out: list[Command], at: float, message: str) -> None:
        current = self.steps[self.index]
        if self.states[current] != "retry":
            self.states[current] = "waiting"
        self._play(out, current.prompt_id, at)
        out.append(StartTimer(FIELD_TIMER, self.settings.first_digit_timeout_s))
        self._show(out, at, message or f"asking for the {current.label}")

    def _submit(self, event: PayEvent, out: list[Command]) -> None:
        out.append(CancelTimer(FIELD_TIMER))
        out.append(CancelTimer(TOTAL_TIMER))
        assert self.brand is not None  # the number was accepted
        number, expiry = self._done[Step.NUMBER], self._done[Step.EXPIRY]
        parsed, _ = cards.parse_expiry(expiry, self._today(event.at))
        assert parsed is not None
        card = CardData(number, expiry, self._done[Step.CVV], self._done.get(Step.POSTCODE, ""),
                        brand=self.brand.key, exp_year=parsed.year)
        self._done.clear()  # from here the digits live only in `card`, wiped by whoever sends it
        out.append(LedgerEntry(self.call_id, "payment-submitted", event.at, {
            "payment_id": self.payment_id, "operation": self.operation, "idempotency_key": self.idempotency_key,
            "amount": None if self.amount is None else str(self.amount), "currency": self.currency,
            "brand": self.brand.key, "last4": self.last4}))
        self._play(out, "pay-processing", event.at)
        out.append(Submit(card, self.operation, self.idempotency_key, self.amount, self.currency))
        self._show(out, event.at, f"sent to the payment gateway ({self.operation})")

    def _note_late(self, event: PayEvent, out: list[Command]) -> None:
        what = "hangup" if isinstance(event, CallEnded) else f"cancel by {getattr(event, 'by', '?')}"
        self.late.append(what)
        self._show(out, event.at, f"{what} while the gateway is deciding: waiting for its answer")

    def _end_replied(self, event: ConnectorReplied, out: list[Command]) -> None:
        outcome = {"approved": "approved" if self.operation == "charge" else "tokenized"}.get(
            event.status, event.status if event.status in ("declined", "failed", "unknown") else "failed")
        prompt = {"approved": "pay-approved", "tokenized": "pay-approved", "declined": "pay-declined"}.get(
            outcome, "pay-failed")
        reason = event.detail
        if self.late:
            reason = (reason + "; " if reason else "") + "after " + ", ".join(self.late)
        self._end(out, event.at, outcome, reason, prompt if "hangup" not in self.late else None,
                  token=event.token, reference=event.reference, attempts=event.attempts)

    def _end_unprotected(self, event: PayEvent, out: list[Command]) -> None:
        reason = getattr(event, "reason", "") or "recording mute or agent guard not confirmed in time"
        self._end(out, event.at, "error", f"not protected: {reason}", "pay-failed")

    def _end_exhausted(self, event: PayEvent, out: list[Command]) -> None:
        current = self.steps[self.index]
        self._end(out, event.at, "failed", f"{current.value}: {self.problems[current]} "
                  f"({self.settings.max_attempts} attempts)", "pay-failed")

    def _end_prompt_failed(self, event: PromptFailed, out: list[Command]) -> None:
        self._end(out, event.at, "error", f"prompt failed: {event.reason}", None)

    def _end_cancelled(self, event: Cancel, out: list[Command]) -> None:
        self._end(out, event.at, "cancelled", f"cancelled by {event.by}", "pay-cancelled")

    def _end_hangup(self, event: PayEvent, out: list[Command]) -> None:
        self._end(out, event.at, "hangup", "caller hung up", None)

    def _end_timeout(self, event: PayEvent, out: list[Command]) -> None:
        self._end(out, event.at, "timeout", f"not complete within {self.settings.max_duration_s:g} s",
                  "pay-failed")

    def _end(self, out: list[Command], at: float, outcome: str, reason: str, prompt: str | None, *,
             token: str = "", reference: str = "", attempts: int = 0) -> None:
        self._wipe()
        out.extend((CancelTimer(ARM_TIMER), CancelTimer(FIELD_TIMER), CancelTimer(TOTAL_TIMER)))
        if prompt is not None:
            self._play(out, prompt, at)
        out.append(GuardAgent(False))
        self.result = PaymentResult(
            self.payment_id, outcome, reason, self.brand.key if self.brand and self.last4 else "", self.last4,
            token, reference, self.idempotency_key if self._from is Phase.SUBMITTING else "", self.operation,
            "" if self.amount is None else str(self.amount), self.currency, attempts)
        self._show(out, at, f"ended: {outcome}" + (f" ({reason})" if reason else ""))
        out.append(Finish(self.result))

    # -- helpers ----------------------------------------------------------------------------------

    def _wipe(self) -> None:
        for buffer in self._buffers.values():
            buffer.wipe()
        self._done.clear()

    def _play(self, out: list[Command], prompt_id: str, at: float) -> None:
        try:
            out.append(PlayToCaller(self.prompts.resolve(prompt_id, self.language)))
        except UnknownPrompt as exc:
            out.append(LedgerEntry(self.call_id, "error", at, {
                "what": "payment prompt unavailable", "payment_id": self.payment_id, "detail": str(exc)}))

    def progress(self, at: float, message: str = "") -> Progress:
        views = []
        for s in self.steps:
            views.append(FieldView(s.value, s.label, len(self._buffers[s]) if self.states[s] != "ok" else
                                   (self._expected(s) or 0), self._expected(s), self.states[s], self.problems[s]))
        return Progress(self.payment_id, self.call_id, self.phase.value, self.step.value if self.step else None,
                        self.brand.name if self.brand else None, tuple(views), message, at, self._seq)

    def _show(self, out: list[Command], at: float, message: str) -> None:
        self._seq += 1
        out.append(ShowProgress(self.progress(at, message)))


def _utc_date(at: float) -> date:
    return datetime.fromtimestamp(at, timezone.utc).date()


_CLASSIFIERS: dict[type, Callable[..., Input]] = {
    Protected: CaptureSession._on_protected,
    ProtectionFailed: CaptureSession._on_unprotected,
    Key: CaptureSession._on_key,
    Timeout: CaptureSession._on_timeout,
    Cancel: CaptureSession._on_cancel,
    CallEnded: CaptureSession._on_call_ended,
    PromptFailed: CaptureSession._on_prompt_failed,
    ConnectorReplied: CaptureSession._on_replied,
}

__all__ = ["ARM_TIMER", "CallEnded", "Cancel", "CaptureSession", "CaptureSettings", "ConnectorReplied", "FIELD_TIMER",
           "FieldView", "Finish", "GuardAgent", "Key", "PayEvent", "PaymentResult", "Phase", "PlayToCaller",
           "Progress", "PromptFailed", "Protected", "ProtectionFailed", "ShowProgress", "Step", "Submit",
           "TOTAL_TIMER", "TRANSITIONS", "Timeout"]
