"""What happened on a call, as the engine sees it.

Adapters translate wire messages (AMI events, ESL events, simulator steps)
into these frozen dataclasses and feed them to :class:`CallSession.handle`.
Every event carries ``at``: the PBX's own clock in epoch seconds when the
wire message had one (AMI ``Timestamp``, ESL ``Event-Date-Timestamp``),
otherwise the adapter's receive time.  Evidence offsets are computed from
``at`` so they reflect what the PBX did, not when we happened to read it.

Nothing here does I/O; equality and hashing come from the dataclasses so
events can be replayed and compared in tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Mapping


class Source(str, Enum):
    """Who asked for a pause, resume or payment segment."""

    HOTKEY = "agent-hotkey"
    IVR = "ivr"
    API = "api"
    ENGINE = "engine"

    @classmethod
    def parse(cls, text: str | None) -> "Source":
        """Map a wire ``Source:`` value to a member; unknown text is IVR.

        The dialplan snippets send ``agent-hotkey`` or ``ivr``; anything else
        (a typo in a site's own dialplan) is still a dialplan signal.
        """
        if not text:
            return cls.IVR
        value = text.strip().lower()
        for member in cls:
            if member.value == value:
                return member
        if value in ("hotkey", "agent", "feature"):
            return cls.HOTKEY
        return cls.IVR


@dataclass(frozen=True, slots=True)
class Party:
    """One leg of a call.

    ``number`` is the raw caller-controlled string exactly as the PBX sent
    it (it may be hostile: never put it in a path or a dialplan expression).
    ``channel`` is the PBX's handle for the leg (Asterisk channel name,
    FreeSWITCH UUID); it is what commands target.

    ``staff`` is what the PBX marked on the leg (a channel variable the
    site's dialplan sets in the dial string), never what its caller id
    says: True a staff leg, False an outside party, None the adapter cannot
    tell (the policy's ``internal_numbers`` then decides, as before).
    """

    channel: str
    number: str | None
    name: str | None = None
    role: str = "caller"
    staff: bool | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """Base class: ``at`` is PBX time in epoch seconds."""

    at: float


@dataclass(frozen=True, slots=True)
class CallOffered(Event):
    """A call reached callguard's control point (AsyncAGI, outbound socket).

    ``channel`` is the leg callguard controls and records (the caller's leg
    parked in AsyncAGI / the outbound socket).  ``parties`` are the legs
    known at that moment: usually the caller and, when the dialplan already
    knows it, the dialled number.
    """

    call_id: str
    channel: str
    parties: tuple[Party, ...]
    answered: bool = True


@dataclass(frozen=True, slots=True)
class CallAdopted(Event):
    """A call decided by an earlier listener process, found live on the PBX and taken over.

    What the PBX still says about it: ``recording`` (the recording still
    runs), the pause / payment signals the dialplan left on the channel, and
    ``muted`` (the earlier process had the recording silent).  The session
    resumes in the matching state and re-asserts the mute when any reason
    for silence is found: an adopted call is never louder than it was.
    Reusable by any listener that restarts or takes over (high availability).
    """

    call_id: str
    channel: str
    parties: tuple[Party, ...]
    recording: bool
    recording_file: str = ""
    decision: str = ""
    paused: bool = False
    payment: bool = False
    muted: bool = False


@dataclass(frozen=True, slots=True)
class CallAnswered(Event):
    """The leg callguard controls was answered (media can be played)."""


@dataclass(frozen=True, slots=True)
class NoticeStarted(Event):
    """The PBX confirmed the notice prompt began playing to ``channel``."""

    channel: str


@dataclass(frozen=True, slots=True)
class DigitsCollected(Event):
    """The notice + consent gather ended.

    ``digits`` is what the caller pressed (``""`` on timeout).  The notice
    has ended (or was cut short by the keypress) when this arrives, so it
    is also the "notice finished" evidence point.
    """

    channel: str
    digits: str


@dataclass(frozen=True, slots=True)
class PromptFailed(Event):
    """The PBX could not play the prompt (missing file, channel gone)."""

    channel: str
    reason: str


@dataclass(frozen=True, slots=True)
class RecordingStarted(Event):
    """PBX confirmation that the recording runs (MixMonitorStart, RECORD_START)."""

    recording_ref: str = ""


@dataclass(frozen=True, slots=True)
class RecordingMuted(Event):
    """PBX confirmation that the recording now writes silence."""


@dataclass(frozen=True, slots=True)
class RecordingUnmuted(Event):
    """PBX confirmation that the recording writes audio again."""


@dataclass(frozen=True, slots=True)
class RecordingStopped(Event):
    """PBX confirmation that the recording ended (StopMixMonitor, RECORD_STOP)."""


@dataclass(frozen=True, slots=True)
class CommandFailed(Event):
    """The PBX rejected or never answered a command we sent.

    ``command`` is the :class:`~callguard.core.commands.Command` class name
    (e.g. ``"MuteRecording"``) so the session can decide what is unsafe.
    """

    command: str
    reason: str


@dataclass(frozen=True, slots=True)
class PauseRequested(Event):
    """Agent hotkey, IVR signal or API call asked to pause the recording.

    ``actor`` names the authenticated user behind an API request (empty for
    hotkeys and dialplan signals, whose identity is the PBX's staff leg).
    """

    source: Source = Source.API
    actor: str = ""


@dataclass(frozen=True, slots=True)
class ResumeRequested(Event):
    """Agent hotkey, IVR signal or API call asked to resume the recording.

    ``actor`` names the authenticated user behind an API request (empty for
    hotkeys and dialplan signals, whose identity is the PBX's staff leg).
    """

    source: Source = Source.API
    actor: str = ""


@dataclass(frozen=True, slots=True)
class PaymentStarted(Event):
    """A payment segment began: card data may be spoken or keyed now.

    ``actor`` names the authenticated user behind an API request (empty for
    hotkeys and dialplan signals, whose identity is the PBX's staff leg).
    """

    source: Source = Source.IVR
    actor: str = ""


@dataclass(frozen=True, slots=True)
class PaymentEnded(Event):
    """The payment segment ended.

    ``actor`` names the authenticated user behind an API request (empty for
    hotkeys and dialplan signals, whose identity is the PBX's staff leg).
    """

    source: Source = Source.IVR
    actor: str = ""


@dataclass(frozen=True, slots=True)
class CaptureStarted(Event):
    """callguard itself takes a card from the caller's keypad (:mod:`callguard.payments`).

    Unlike :class:`PaymentStarted` (a signal that card data may be spoken),
    only :class:`CaptureEnded` for the same ``payment_id`` lifts this mute:
    no hotkey, IVR signal or API resume can unmute a capture in progress.
    """

    payment_id: str
    source: Source = Source.API
    staff_leg: str = ""
    operation: str = "charge"  #: charge | tokenize
    amount: str = ""
    currency: str = ""
    actor: str = ""  #: the authenticated user behind an API request


@dataclass(frozen=True, slots=True)
class CaptureEnded(Event):
    """The card capture ended; ``result`` is ledger-safe (outcome, brand, last four, token)."""

    payment_id: str
    result: Mapping[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True, slots=True)
class PartyJoined(Event):
    """A new party entered the call (transfer, conference, added line).

    ``announceable`` is True when the PBX parked the new leg where we can
    play the notice to it before it hears the call (Asterisk ``U()`` Gosub
    into AsyncAGI, FreeSWITCH outbound socket).  False means the party is
    already in the bridge unannounced.
    """

    party: Party
    announceable: bool = True


@dataclass(frozen=True, slots=True)
class PartyArriving(Event):
    """A leg is entering the call and who it is is not known yet.

    FreeSWITCH bridges an answered leg before that leg's own socket session
    connects (the two race on two connections).  Until a
    :class:`PartyJoined` (or :class:`PartyLeft`) for ``channel`` settles
    who it is, the recording is kept silent: an unknown party is heard by
    nobody's tape.
    """

    channel: str


@dataclass(frozen=True, slots=True)
class PartyLeft(Event):
    """A party left the call; the remaining parties keep the call going."""

    channel: str


@dataclass(frozen=True, slots=True)
class ListenerStopping(Event):
    """The listener is shutting down: nobody will be left to mask a payment.

    A recording still running is stopped (fail safe), logged once with the
    reason; the PBX's own stop confirmation that may follow is logged as a
    confirmation, not as a second stop.
    """


@dataclass(frozen=True, slots=True)
class TimerFired(Event):
    """A timer the session asked for with ``StartTimer`` ran out."""

    name: str


@dataclass(frozen=True, slots=True)
class HungUp(Event):
    """The controlled leg hung up: the call is over for callguard."""

    cause: str = "normal"
    channel: str = field(default="")


__all__ = [
    "CallAdopted",
    "CallAnswered",
    "CallOffered",
    "CaptureEnded",
    "CaptureStarted",
    "CommandFailed",
    "DigitsCollected",
    "Event",
    "HungUp",
    "ListenerStopping",
    "NoticeStarted",
    "Party",
    "PartyArriving",
    "PartyJoined",
    "PartyLeft",
    "PauseRequested",
    "PaymentEnded",
    "PaymentStarted",
    "PromptFailed",
    "RecordingMuted",
    "RecordingStarted",
    "RecordingStopped",
    "RecordingUnmuted",
    "ResumeRequested",
    "Source",
    "TimerFired",
]
