"""Who is who on a FreeSWITCH call: the place where the listener decides trust.

No sockets, no clock: the listener (``listener.py``, the lifecycle) feeds
this module what arrived and does what it answers.  Three questions are
answered here and nowhere else:

* **Which call does a leg belong to?**  The exported ``callguard_call``,
  else the b-leg headers FreeSWITCH puts on every leg it originated
  (``Other-Leg-Unique-ID``, ``variable_originator``, ``signal_bond``...:
  :data:`~.translate.TIE_HEADERS`), else the conference it is entering.
  Conference member events carry no ``variable_*`` headers at all (fixture
  conference_join), so members are mapped by ``Unique-ID`` and
  ``Conference-Name``.
* **Is a leg staff?**  Only if the dial string marked it with the
  configured channel variable (``{callguard_staff=true}user/1000``).
  Caller-id fields never decide: a b-leg carries the *customer's* number,
  and a loopback agent's callee id is a context name (fixture
  agent_leg_socket).  A leg that shows up in the bridge or the conference
  before its own socket session (the two race on two connections) is
  *arriving*: the listener asks FreeSWITCH for the mark (``uuid_getvar``),
  keeps the recording silent meanwhile, and waits ``join_grace_s`` for the
  socket session before calling it an unannounced party.
* **May a signal act?**  Pausing and starting a payment segment make the
  recording hear less: they act at once, whoever sent them.  A resume or
  the end of a payment segment makes it hear more, so it acts only when
  it came from a staff leg of that very call (or, for the end of an IVR
  payment segment, from the recorded leg whose IVR started it) AND
  FreeSWITCH confirms, out of band, what only that leg's feature
  extension can have written there (:class:`ReadBack`).  ESL encodes
  header values, but an event's claims are still only claims: any leg whose
  dialplan a caller can steer can fire a CUSTOM event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from callguard.core import events as ev

from .translate import Membership, Offer, marked

if TYPE_CHECKING:
    from callguard.config import FreeswitchConfig

#: what the shipped feature extensions write on the pressing leg before firing the event
HOTKEY_VARIABLE = "callguard_hotkey"
#: flags callguard_features.xml keeps on the recorded leg
PAUSE_FLAG = "callguard_paused"
PAYMENT_FLAG = "callguard_payment"


def on_join_path(execute_on_answer: str | None) -> bool:
    """Will this answered leg reach the listener's socket?  (Its ``execute_on_answer``, read back.)

    The shipped dial string runs ``callguard_agent`` (which ends in
    ``callguard_join``, the socket) on answer.  A leg without it will never
    be announced: no point waiting for its socket session.
    """
    text = execute_on_answer or ""
    return "callguard_agent" in text or "callguard_join" in text


@dataclass(frozen=True)
class MappingSettings:
    """The mapping's own settings (``[freeswitch] staff_variable``, ``join_grace_s``)."""

    staff_variable: str = "callguard_staff"
    join_grace_s: float = 1.5

    @classmethod
    def from_config(cls, fs: "FreeswitchConfig") -> "MappingSettings":
        return cls(fs.staff_variable, fs.join_grace_s)


@dataclass
class Legs:
    """Every leg of one controlled call, and what is known about each."""

    call_id: str
    channel: str
    parties: set[str] = field(default_factory=set)
    staff: set[str] = field(default_factory=set)
    #: legs seen in the bridge or the conference whose identity is not settled yet
    arriving: dict[str, ev.Party] = field(default_factory=dict)
    conference: str | None = None
    #: loopback halves not seen yet -> the half that is already a party (the same person)
    aliases: dict[str, str] = field(default_factory=dict)

    def knows(self, leg: str) -> bool:
        return leg == self.channel or leg in self.parties or leg in self.arriving

    def knows_set(self) -> set[str]:
        return {self.channel, *self.parties, *self.arriving}


@dataclass(frozen=True)
class OfferVerdict:
    """What to do with a socket session that just connected.

    ``kind``: ``call`` (a new call to control), ``join`` (feed ``party`` as an
    announceable join of ``call_id``), ``release`` (let it go on at once with
    ``outcome``: a leg we already settled, or one of a call we do not control).
    """

    kind: str
    call_id: str = ""
    party: ev.Party | None = None
    outcome: str = ""
    settled_arrival: bool = False  #: the leg was arriving: stop waiting for it


@dataclass(frozen=True)
class ReadBack:
    """A channel variable FreeSWITCH must confirm before a signal may act.

    ``expect`` is the exact value, ``""`` for "unset", or :data:`MARKED`
    for any true value (the staff mark).
    """

    channel: str
    variable: str
    expect: str

    def accepts(self, value: str) -> bool:
        value = value.strip()
        if self.expect == MARKED:
            return marked(value)
        if self.expect == "":
            return value in ("", "_undef_") or value.startswith("-ERR")
        return value == self.expect


MARKED = "<marked>"


@dataclass(frozen=True)
class Verdict:
    """May a signal act: at once (``reads`` empty), after ``reads`` confirm, or never (``reason``)."""

    allowed: bool
    reads: tuple[ReadBack, ...] = ()
    reason: str = ""


class LegMap:
    """The listener's view of which leg belongs to which call, and who is staff."""

    def __init__(self, settings: MappingSettings | None = None):
        self.settings = settings or MappingSettings()
        self.calls: dict[str, Legs] = {}
        #: conference name -> its members now (every conference: a recorded call may enter later)
        self.rooms: dict[str, dict[str, ev.Party]] = {}

    # -- calls ------------------------------------------------------------------------------

    def add_call(self, call_id: str, channel: str) -> Legs:
        legs = self.calls.get(call_id)
        if legs is None:
            legs = self.calls[call_id] = Legs(call_id, channel)
        return legs

    def drop_call(self, call_id: str) -> None:
        self.calls.pop(call_id, None)

    def call_of_leg(self, leg: str) -> Legs | None:
        """The call a leg is a party of (or arriving in), if any."""
        legs = self.calls.get(leg)
        if legs is not None:
            return legs
        for legs in self.calls.values():
            if legs.knows(leg):
                return legs
        return None

    def call_in_room(self, room: str) -> Legs | None:
        for legs in self.calls.values():
            if legs.conference == room:
                return legs
        return None

    # -- socket sessions --------------------------------------------------------------------

    def on_offer(self, offer: Offer, controlled: bool) -> OfferVerdict:
        """A socket session connected.  ``controlled``: the engine already has ``offer.call_id``."""
        if not offer.is_join:
            return OfferVerdict("call", offer.call_id, offer.party)
        legs = self.calls.get(offer.call_id) if controlled else None
        if legs is None:
            legs = next((self.calls[t] for t in offer.ties if t in self.calls), None)
        if legs is None and offer.conference is not None:
            legs = self.call_in_room(offer.conference)
        if legs is None:
            return OfferVerdict("release", outcome="not-recorded")  # a leg of a call we do not control
        leg = offer.channel
        if offer.peer is not None and offer.peer in legs.parties or legs.aliases.get(leg) in legs.parties:
            offer_peer = offer.peer if offer.peer in legs.parties else legs.aliases[leg]
            # The far half of a loopback pair (loopback copies execute_on_answer and the dial
            # string's variables to it): the party its other half already is.
            arriving = legs.arriving.pop(leg, None) is not None
            legs.parties.add(leg)
            if offer_peer in legs.staff:
                legs.staff.add(leg)
            return OfferVerdict("release", legs.call_id, outcome="not-required" if leg in legs.staff
                                else "not-recorded", settled_arrival=arriving)
        if leg in legs.arriving:
            del legs.arriving[leg]
            self._settle(legs, offer.party)
            return OfferVerdict("join", legs.call_id, offer.party, settled_arrival=True)
        if leg in legs.parties:
            # Settled before its socket connected (the bridge came first): never leave it waiting.
            return OfferVerdict("release", legs.call_id, outcome="not-required" if leg in legs.staff
                                else "not-recorded")
        if offer.peer is not None and offer.peer not in legs.knows_set():
            legs.aliases[offer.peer] = leg  # its other half, when it shows up, is this party
        self._settle(legs, offer.party)
        return OfferVerdict("join", legs.call_id, offer.party)

    def _settle(self, legs: Legs, party: ev.Party) -> None:
        legs.parties.add(party.channel)
        if party.staff:
            legs.staff.add(party.channel)

    # -- bridges and conferences -------------------------------------------------------------

    def entered(self, legs: Legs, party: ev.Party) -> bool:
        """A leg showed up in the call's bridge or conference.  True: identify it (it is new)."""
        if legs.knows(party.channel):
            return False
        alias = legs.aliases.get(party.channel)
        if alias is not None and alias in legs.parties:
            # The bridged half of a loopback pair whose far half already joined: the same party.
            legs.parties.add(party.channel)
            if alias in legs.staff:
                legs.staff.add(party.channel)
            return False
        legs.arriving[party.channel] = party
        return True

    def identified(self, legs: Legs, leg: str, staff: bool) -> ev.Party | None:
        """FreeSWITCH answered the staff-mark question for an arriving leg.

        Returns the party to feed as joined (unannounced) when it is staff;
        None when it is not staff (wait for its socket session) or already
        settled meanwhile.
        """
        party = legs.arriving.get(leg)
        if party is None or not staff:
            return None
        del legs.arriving[leg]
        party = ev.Party(party.channel, party.number, party.name, role="agent", staff=True)
        self._settle(legs, party)
        return party

    def grace_over(self, legs: Legs, leg: str) -> ev.Party | None:
        """No socket session came in time: the leg reached the call unannounced (None: settled meanwhile)."""
        party = legs.arriving.pop(leg, None)
        if party is None:
            return None
        party = ev.Party(party.channel, party.number, party.name, role="joiner", staff=False)
        self._settle(legs, party)
        return party

    def left(self, legs: Legs, leg: str) -> bool:
        """A leg hung up or left the conference; True if it was one of the call's legs."""
        known = leg in legs.parties or leg in legs.arriving
        legs.arriving.pop(leg, None)
        legs.parties.discard(leg)
        return known

    def on_membership(self, member: Membership) -> list[tuple[Legs, ev.Party, bool]]:
        """A conference member came or went: ``(call, party, joined)`` for every call it concerns.

        The recorded caller entering a room makes everyone already there a
        party of its call; anyone entering a room that holds a recorded
        call is a party of that call.
        """
        room = self.rooms.setdefault(member.conference, {})
        out: list[tuple[Legs, ev.Party, bool]] = []
        own = self.calls.get(member.channel)
        if member.joined:
            room[member.channel] = member.party
            if own is not None:
                own.conference = member.conference
                out += [(own, party, True) for leg, party in room.items() if leg != member.channel]
            for legs in self.calls.values():
                if legs.conference == member.conference and legs is not own:
                    out.append((legs, member.party, True))
            return out
        room.pop(member.channel, None)
        if not room:
            self.rooms.pop(member.conference, None)
        if own is not None:
            own.conference = None
        for legs in self.calls.values():
            if legs.conference == member.conference and legs is not own:
                out.append((legs, member.party, False))
        return out

    # -- signals ----------------------------------------------------------------------------

    def may_act(self, legs: Legs, signal: ev.Event, origin: str, flag_source: ev.Source | None) -> Verdict:
        """May a CUSTOM signal from leg ``origin`` act on this call?

        ``flag_source``: who started the pause or payment segment the signal
        would end (from the engine's session).
        """
        if isinstance(signal, (ev.PauseRequested, ev.PaymentStarted)):
            return Verdict(True)  # the safe direction: at once, whoever asked
        if not isinstance(signal, (ev.ResumeRequested, ev.PaymentEnded)):
            return Verdict(False, reason="not a signal")
        action = "resume" if isinstance(signal, ev.ResumeRequested) else "payment_end"
        if origin in legs.staff:
            return Verdict(True, (ReadBack(origin, HOTKEY_VARIABLE, action),
                                  ReadBack(origin, self.settings.staff_variable, MARKED)))
        if origin == legs.channel and isinstance(signal, ev.PaymentEnded) and flag_source is ev.Source.IVR:
            # The recorded leg's own IVR ends the payment segment its IVR began:
            # the feature extension cleared the flag on this leg before firing.
            return Verdict(True, (ReadBack(origin, PAYMENT_FLAG, ""),))
        who = "the recorded caller's own leg" if origin == legs.channel else f"leg {origin or '?'}"
        return Verdict(False, reason=f"{action} from {who}, which is not a staff leg of call {legs.call_id}")


__all__ = ["on_join_path", "HOTKEY_VARIABLE", "MARKED", "PAUSE_FLAG", "PAYMENT_FLAG", "LegMap", "Legs", "MappingSettings",
           "OfferVerdict", "ReadBack", "Verdict"]
