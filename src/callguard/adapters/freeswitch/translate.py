"""ESL events -> engine events, pure functions (no sockets, no clock).

FreeSWITCH tells us what happened in two places: the outbound socket of
the call the dialplan parked with ``socket ... async full`` (its channel
data and ``myevents``), and the listener's inbound connection (recording
events, hotkey CUSTOM events, hangups, bridges).  Both arrive here as
:class:`~callguard.adapters.freeswitch.wire.ESLEvent` objects and leave
as ``(call_id, Event)`` pairs; the call id is the UUID of the channel the
outbound socket controls (the dialplan exports it to every other leg as
``callguard_call``).

Every ``at`` is FreeSWITCH's own clock (``Event-Date-Timestamp``, in
microseconds), falling back to the receive time the caller passes in.
UUIDs are used in commands, so anything that does not look like one is
refused here (:func:`safe_uuid`), not escaped later.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from callguard.core import events as ev

from .wire import ESLEvent

#: FreeSWITCH UUIDs (and ``origination_uuid`` values a site might choose).
_UUID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,127}")
#: conference names we put in ``conference <name> ...`` commands
_ROOM = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

#: CUSTOM subclasses the shipped dialplan fires, and what they mean.
CUSTOM_SIGNALS: dict[str, type[ev.Event]] = {
    "callguard::pause": ev.PauseRequested,
    "callguard::resume": ev.ResumeRequested,
    "callguard::payment_start": ev.PaymentStarted,
    "callguard::payment_end": ev.PaymentEnded,
}
#: Events the inbound connection subscribes to (CUSTOM subclasses go last).
INBOUND_EVENTS = ["CHANNEL_HANGUP_COMPLETE", "CHANNEL_BRIDGE", "RECORD_START", "RECORD_STOP",
                  "BACKGROUND_JOB"]
INBOUND_CUSTOM = [*CUSTOM_SIGNALS, "conference::maintenance"]


def safe_uuid(value: str | None) -> str | None:
    """``value`` if it is usable in a command (UUID-like), else None."""
    if value and _UUID.fullmatch(value):
        return value
    return None


def event_time(event: ESLEvent | Mapping[str, str], received_at: float) -> float:
    """FreeSWITCH's ``Event-Date-Timestamp`` in epoch seconds, else ``received_at``."""
    if isinstance(event, ESLEvent):
        stamp = event.timestamp
    else:
        raw = event.get("Event-Date-Timestamp") or ""
        stamp = int(raw) / 1_000_000 if raw.isdigit() else None
    return received_at if stamp is None else stamp


def hangup_cause(cause: str | None) -> str:
    """FreeSWITCH hangup causes as the engine's words (``NORMAL_CLEARING`` -> ``normal``)."""
    if not cause:
        return "normal"
    cause = cause.strip().upper()
    return {"NORMAL_CLEARING": "normal", "ORIGINATOR_CANCEL": "caller-cancel",
            "USER_BUSY": "busy", "NO_ANSWER": "no-answer"}.get(cause, cause.lower().replace("_", "-"))


@dataclass(frozen=True, slots=True)
class Offer:
    """What the outbound ``connect`` reply tells us about a parked channel.

    ``call_id == channel`` for the call's own leg.  A leg whose exported
    ``callguard_call`` names another call is a party joining that call
    (the shipped dialplan sends answered agent / transfer legs through the
    socket before bridging them, so they hear the notice first).
    """

    call_id: str
    channel: str
    party: ev.Party
    answered: bool
    at: float
    #: the conference this leg is about to enter (``callguard_conference``, set by the site's dialplan)
    conference: str | None = None
    #: every UUID the b-leg headers tie this leg to (originator, other leg, bridge partner)
    ties: tuple[str, ...] = ()
    #: the other half of a loopback pair (``other_loopback_leg_uuid``): the same party, not a new one
    peer: str | None = None

    @property
    def is_join(self) -> bool:
        """Another call's leg (an exported ``callguard_call``) or a conference entrant."""
        return self.call_id != self.channel or self.conference is not None

    def event(self) -> ev.Event:
        if self.is_join:
            return ev.PartyJoined(self.at, self.party, announceable=True)
        return ev.CallOffered(self.at, self.call_id, self.channel, (self.party,), answered=self.answered)


def _value(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value; FreeSWITCH writes an empty value as ``_undef_``."""
    value = headers.get(name)
    return None if value in (None, "", "_undef_") else value


def _party_number(headers: Mapping[str, str], prefix: str) -> tuple[str | None, str | None]:
    """The number and name of the person on a leg.

    On an inbound leg that is the caller id; on an outbound (b-) leg
    FreeSWITCH copies the *caller's* id into the caller profile and puts
    the dialled party in the destination/callee fields.
    """
    direction = (_value(headers, f"{prefix}Direction") or _value(headers, "Call-Direction") or "inbound").lower()
    if direction == "outbound":
        number = _value(headers, f"{prefix}Callee-ID-Number") or _value(headers, f"{prefix}Destination-Number")
        name = _value(headers, f"{prefix}Callee-ID-Name")
    else:
        number = _value(headers, f"{prefix}Caller-ID-Number") or _value(headers, f"{prefix}ANI")
        name = _value(headers, f"{prefix}Caller-ID-Name")
    return number, name


#: b-leg headers naming the leg a b-leg belongs to (fixture agent_leg_socket), most specific first
TIE_HEADERS = ("variable_callguard_call", "Other-Leg-Unique-ID", "variable_originator",
               "variable_originating_leg_uuid", "variable_signal_bond", "variable_bridge_to")


def marked(value: str | None) -> bool:
    """Is a channel variable set to a true value (``true``/``yes``/``1``/``on``)?"""
    return (value or "").strip().lower() in ("true", "yes", "1", "on")


def offer_from_channel_data(headers: Mapping[str, str], received_at: float,
                            staff_variable: str = "callguard_staff") -> Offer | None:
    """The ``connect`` reply of an outbound socket -> :class:`Offer`, or None if unusable.

    None means the channel's UUID is not UUID-like (we will not put it in a
    command): the caller of this function releases the channel at once and
    the dialplan's fail-closed path takes over.

    A leg is staff when the dial string marked it (``variable_<staff_variable>``);
    its caller id is the customer's on a b-leg and never decides anything.
    """
    channel = safe_uuid(headers.get("Unique-ID") or headers.get("variable_uuid"))
    if channel is None:
        return None
    exported = headers.get("variable_callguard_call")
    call_id = safe_uuid(exported) if exported else channel
    if call_id is None:
        return None
    number, name = _party_number(headers, "Caller-")
    answered = (headers.get("Answer-State") or "answered").lower() == "answered"
    ties = tuple(dict.fromkeys(t for t in (safe_uuid(headers.get(h)) for h in TIE_HEADERS)
                               if t is not None and t != channel))
    conference = _value(headers, "variable_callguard_conference")
    conference = conference if conference and _ROOM.fullmatch(conference) else None
    if call_id == channel and conference is None:
        party = ev.Party(channel=channel, number=number, name=name, role="caller", staff=False)
    else:
        staff = marked(headers.get(f"variable_{staff_variable}"))
        party = ev.Party(channel=channel, number=number, name=name, role="agent" if staff else "joiner",
                         staff=staff)
    return Offer(call_id, channel, party, answered, event_time(headers, received_at), conference=conference,
                 ties=ties, peer=safe_uuid(headers.get("variable_other_loopback_leg_uuid")))


@dataclass(frozen=True, slots=True)
class Membership:
    """A ``conference::maintenance`` ``add-member`` / ``del-member``.

    These carry no ``variable_*`` headers (fixture conference_join), so no
    ``callguard_call``: the listener maps them by ``Unique-ID`` (a call it
    controls, or a leg of one) and ``Conference-Name``.
    """

    conference: str
    channel: str
    party: ev.Party
    joined: bool  #: add-member (True) or del-member (False)
    at: float
    member_id: str = ""


@dataclass(frozen=True, slots=True)
class Translated:
    """One engine event for one call, plus adapter-only facts."""

    call_id: str
    event: ev.Event
    #: the channel the event came from (the agent leg for a hotkey)
    origin: str = ""


def _call_of(event: ESLEvent) -> str | None:
    """Which call a leg belongs to: its exported ``callguard_call``, else itself."""
    return safe_uuid(event.get("variable_callguard_call") or event.get("callguard_call")) \
        or safe_uuid(event.get("Unique-ID"))


def translate_inbound(event: ESLEvent, received_at: float) -> Translated | Membership | None:
    """An event from the inbound connection -> engine event (None: not ours).

    Header lookups are in place (no dict per event), which is what keeps a
    busy box's event stream cheap.
    """
    name = event.headers.raw("Event-Name")
    if name == "CUSTOM":
        subclass = event.subclass
        kind = CUSTOM_SIGNALS.get(subclass)
        if kind is not None:
            call = _call_of(event)
            if call is None:
                return None
            source = ev.Source.parse(event.get("callguard_source"))
            return Translated(call, kind(event_time(event, received_at), source=source),  # type: ignore[call-arg]
                              origin=event.get("Unique-ID") or "")
        if subclass == "conference::maintenance" and event.get("Action") in ("add-member", "del-member"):
            return _membership(event, received_at)
        return None
    if name == "RECORD_START":
        call = safe_uuid(event.get("Unique-ID"))
        if call is None:
            return None
        return Translated(call, ev.RecordingStarted(event_time(event, received_at),
                                                    recording_ref=event.get("Record-File-Path") or ""))
    if name == "RECORD_STOP":
        call = safe_uuid(event.get("Unique-ID"))
        if call is None:
            return None
        at = event_time(event, received_at)
        if event.get("Answer-State") == "hangup" or event.get("Channel-State") == "CS_HANGUP":
            # The media bug closing because the channel hung up (verified: such a
            # RECORD_STOP carries Answer-State hangup and the Hangup-Cause).
            return Translated(call, ev.HungUp(at, cause=hangup_cause(event.get("Hangup-Cause")), channel=call))
        return Translated(call, ev.RecordingStopped(at))
    if name == "CHANNEL_HANGUP_COMPLETE":
        channel = safe_uuid(event.get("Unique-ID"))
        call = _call_of(event)
        if channel is None or call is None:
            return None
        return Translated(call, ev.HungUp(event_time(event, received_at),
                                          cause=hangup_cause(event.get("Hangup-Cause")), channel=channel))
    if name == "CHANNEL_BRIDGE":
        return _joined(event, received_at, prefix="Other-Leg-")
    return None


def _membership(event: ESLEvent, received_at: float) -> Membership | None:
    room = event.get("Conference-Name") or ""
    leg = safe_uuid(event.get("Unique-ID"))
    if leg is None or not _ROOM.fullmatch(room):
        return None
    number, name = _party_number(event.headers, "Caller-")
    return Membership(room, leg, ev.Party(channel=leg, number=number, name=name, role="joiner"),
                      event.get("Action") == "add-member", event_time(event, received_at),
                      event.get("Member-ID") or "")


def _joined(event: ESLEvent, received_at: float, prefix: str) -> Translated | None:
    """A leg entered the call's bridge; who it is (staff or not) is decided by the listener."""
    call = _call_of(event)
    leg = safe_uuid(event.get("Other-Leg-Unique-ID") or event.get("Bridge-B-Unique-ID"))
    if call is None or leg is None or leg == call:
        return None
    headers = event.headers
    number, name = _party_number(headers, prefix)
    party = ev.Party(channel=leg, number=number, name=name, role="joiner")
    return Translated(call, ev.PartyJoined(event_time(event, received_at), party, announceable=False),
                      origin=leg)


def translate_outbound(event: ESLEvent, call_id: str, channel: str, received_at: float,
                       collect_var: str) -> ev.Event | None:
    """An event on a call's outbound socket -> engine event for ``call_id``.

    ``play_and_get_digits`` reports the keypress in its
    ``CHANNEL_EXECUTE_COMPLETE`` as ``variable_<collect_var>``; a key the
    regex refused is in ``variable_<collect_var>_invalid``.  Neither is
    set on timeout or hangup.
    """
    name = event.headers.raw("Event-Name")
    at = event_time(event, received_at)
    if name == "CHANNEL_EXECUTE" and event.get("Application") == "play_and_get_digits":
        return ev.NoticeStarted(at, channel=channel)
    if name == "CHANNEL_EXECUTE_COMPLETE" and event.get("Application") == "play_and_get_digits":
        digits = event.get(f"variable_{collect_var}") or event.get(f"variable_{collect_var}_invalid") or ""
        return ev.DigitsCollected(at, channel=channel, digits=digits[:32])
    if name == "CHANNEL_HANGUP":
        # On a joiner's leg the engine reads this as that party leaving.
        return ev.HungUp(at, cause=hangup_cause(event.get("Hangup-Cause")), channel=channel)
    return None


__all__ = [
    "CUSTOM_SIGNALS",
    "INBOUND_CUSTOM",
    "INBOUND_EVENTS",
    "Membership",
    "Offer",
    "TIE_HEADERS",
    "Translated",
    "event_time",
    "hangup_cause",
    "marked",
    "offer_from_channel_data",
    "safe_uuid",
    "translate_inbound",
    "translate_outbound",
]
