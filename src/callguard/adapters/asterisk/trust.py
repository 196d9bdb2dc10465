"""What the Asterisk listener may believe, and how it checks the rest.

Asterisk 22 writes a caller-ID *number* raw into nearly every channel event
(DESIGN.md, fixtures ``asterisk22_crlf_*.ami``): a number holding CR/LF ends
the real frame and starts frames the caller wrote.  So no header of an
event, and no event, is evidence on its own.  The listener's rules:

* Asterisk's answers to *our* actions are matched by unguessable ids
  (:func:`~callguard.adapters.asterisk.protocol.new_id`), and values that
  are not caller data (``CHANNEL(linkedid)``, a variable only callguard's
  dialplan sets) read back with ``Getvar`` are facts.  :class:`Prober`
  reads them.
* Anything that makes a recording hear more (a resume, the end of a
  payment, a party leaving, a recording said to have stopped) acts only
  after such a read-back confirmed it (:func:`check_signal`).  Pausing is
  the safe direction and acts at once.
* A hotkey counts only from a staff channel of that very call, never from
  the recorded customer's own channel; the dialplan's signals
  (``callguard-signal``) count only from the recorded channel.
* Who is staff is what the PBX says about the endpoint: the channel name
  against ``[asterisk] staff_channels``, or ``CALLGUARD_STAFF=1`` that the
  dialplan's staff Gosub set on that channel.  Caller ID never decides.

Everything here but :class:`Prober` is pure: it decides from values.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from callguard.adapters.asterisk.manager import AmiManager

log = logging.getLogger("callguard.asterisk.trust")

#: Set by ``callguard-feature`` on the staff channel that pressed the hotkey: ``<action>:<seq>``.
HOTKEY_VARIABLE = "CALLGUARD_HOTKEY"
#: Set by ``callguard-signal`` on the recorded channel the IVR runs on: ``<action>:<seq>``.
SIGNAL_VARIABLE = "CALLGUARD_SIGNAL"
#: Set to 1 by ``callguard-staff`` (Dial ``U()``/``b()``, Queue gosub) on a staff leg.
STAFF_VARIABLE = "CALLGUARD_STAFF"
LINKEDID = "CHANNEL(linkedid)"
CONTEXT = "CHANNEL(context)"
APPNAME = "CHANNEL(appname)"
#: set by the site's dialplan before ``Gosub(callguard-join,s,1)`` + ``ConfBridge(<room>)``: the room
CONFERENCE_VARIABLE = "CALLGUARD_CONFERENCE"
#: a joined leg's own number: the extension or number dialled to reach it (Dial, transfer)
CALLER_NUMBER = "CALLERID(num)"

#: Signals that make the recording hear more: they need a read-back.
LOOSENING = frozenset({"resume", "payment-end"})
_SIGNAL_VALUE = re.compile(r"([a-z-]{1,20}):([0-9]{1,12})")


@dataclass(frozen=True, slots=True)
class StaffRule:
    """Which channels are staff: a channel-name pattern and/or the dialplan's mark.

    ``channels`` is matched against the whole channel name without the
    ``-<sequence>`` suffix Asterisk appends (``PJSIP/agent-101-00000003``
    -> ``PJSIP/agent-101``), e.g. ``PJSIP/agent-.*`` or
    ``(PJSIP|IAX2)/[0-9]{3,4}``.
    """

    channels: str = ""
    _pattern: re.Pattern[str] | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_pattern", re.compile(self.channels) if self.channels else None)

    def by_name(self, channel: str) -> bool:
        return self._pattern is not None and self._pattern.fullmatch(endpoint(channel)) is not None

    def is_staff(self, channel: str, mark: str | None) -> bool:
        """Staff when the name matches or the dialplan marked the channel."""
        return self.by_name(channel) or (mark or "").strip() == "1"


_SUFFIX = re.compile(r"-[0-9a-f]{8}(;[12])?$")


def endpoint(channel: str) -> str:
    """``PJSIP/agent-101-0000000a`` -> ``PJSIP/agent-101``; ``Local/x@ctx-0000000a;1`` -> ``Local/x@ctx``."""
    return _SUFFIX.sub("", channel)


@dataclass(frozen=True, slots=True)
class ChannelFacts:
    """What Asterisk itself said about a channel, read back with ``Getvar``."""

    name: str
    values: dict[str, str]

    def get(self, variable: str) -> str:
        return self.values.get(variable, "")

    @property
    def linkedid(self) -> str:
        return self.get(LINKEDID)

    @property
    def context(self) -> str:
        return self.get(CONTEXT)


class Prober:
    """Reads channel facts with ``Getvar`` (one action per variable, sent together)."""

    def __init__(self, manager: "AmiManager", timeout: float | None = None):
        self.manager = manager
        self.timeout = timeout
        self.reads = 0

    async def facts(self, channel: str, variables: Iterable[str]) -> ChannelFacts | None:
        """The variables' values, or None when Asterisk has no such channel (or did not answer)."""
        names = list(dict.fromkeys(variables))
        if any(ch in channel for ch in "\r\n\x00") or not channel:
            return None
        futures = [self.manager.send_action({"Action": "Getvar", "Channel": channel, "Variable": name},
                                            timeout=self.timeout) for name in names]
        self.reads += len(futures)
        answers = await asyncio.gather(*futures, return_exceptions=True)
        values: dict[str, str] = {}
        for name, answer in zip(names, answers):
            if isinstance(answer, BaseException):
                log.warning("Getvar %s on %s failed: %s", name, channel, answer)
                return None
            if not answer.ok:
                return None  # "No such channel": gone, or it never existed (a forged frame)
            value = answer.get("Value", "")
            # Variables callguard reads back are never caller data: a CR/LF (or a
            # second Value) means something else was read than what we set.
            values[name] = "" if ("\n" in value or "\r" in value) else value
        return ChannelFacts(channel, values)

    async def exists(self, channel: str) -> bool:
        return await self.facts(channel, [LINKEDID]) is not None


@dataclass(frozen=True, slots=True)
class Signal:
    """``<action>:<seq>`` as the dialplan wrote it into a channel variable."""

    action: str
    seq: int

    @classmethod
    def parse(cls, value: str) -> "Signal | None":
        m = _SIGNAL_VALUE.fullmatch(value.strip())
        return cls(m.group(1), int(m.group(2))) if m else None


def check_signal(action: str, claimed_channel: str, controlled: str, linkedid: str,
                 facts: ChannelFacts | None, last_seq: int, staff: StaffRule) -> tuple[Signal | None, str]:
    """Confirm a loosening signal from its read-back; ``(signal, "")`` or ``(None, why not)``.

    From the recorded channel only the dialplan's ``callguard-signal`` counts
    (``CALLGUARD_SIGNAL``); from any other channel only a staff channel of
    the same call whose ``callguard-feature`` Gosub wrote ``CALLGUARD_HOTKEY``.
    The sequence number must be newer than the last one acted on, so an old
    value cannot be replayed by a forged event.
    """
    if facts is None:
        return None, f"channel {claimed_channel!r} does not exist on the PBX"
    if claimed_channel == controlled:
        variable = SIGNAL_VARIABLE
    else:
        if facts.linkedid != linkedid:
            return None, f"channel {claimed_channel!r} belongs to another call"
        if not staff.is_staff(claimed_channel, facts.get(STAFF_VARIABLE)):
            return None, f"channel {claimed_channel!r} is not a staff channel"
        variable = HOTKEY_VARIABLE
    signal = Signal.parse(facts.get(variable))
    if signal is None:
        return None, f"{variable} on {claimed_channel!r} is not set by callguard's dialplan"
    if signal.action != action:
        return None, f"{variable} on {claimed_channel!r} says {signal.action!r}, not {action!r}"
    if signal.seq <= last_seq:
        return None, f"{variable} on {claimed_channel!r} was already acted on (sequence {signal.seq})"
    return signal, ""


def variables_for_signal(claimed_channel: str, controlled: str) -> list[str]:
    """What :func:`check_signal` needs read back for a signal from ``claimed_channel``."""
    if claimed_channel == controlled:
        return [LINKEDID, SIGNAL_VARIABLE]
    return [LINKEDID, STAFF_VARIABLE, HOTKEY_VARIABLE]


__all__ = [
    "APPNAME",
    "CALLER_NUMBER",
    "CONFERENCE_VARIABLE",
    "CONTEXT",
    "ChannelFacts",
    "HOTKEY_VARIABLE",
    "LINKEDID",
    "LOOSENING",
    "Prober",
    "SIGNAL_VARIABLE",
    "STAFF_VARIABLE",
    "Signal",
    "StaffRule",
    "check_signal",
    "endpoint",
    "variables_for_signal",
]
