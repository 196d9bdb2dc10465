"""Taking over the calls an earlier listener process decided (restart after a crash, HA takeover).

Everything a new process needs is on FreeSWITCH's channels, written there
by the shipped dialplan and by the listener while it ran:

* ``callguard_call`` (exported by ``callguard_inbound``): the call id on
  every leg of the call; the recorded leg is the one whose own UUID it is;
* ``callguard_decision``: what the listener decided (or ``not-recorded``
  from the dialplan's fail-closed path);
* ``callguard_recording``: the recording's path, named before it started;
  whether it still runs is read from FreeSWITCH's media bugs
  (``uuid_buglist``: a ``session_record`` bug on that path);
* ``callguard_paused`` / ``callguard_payment``: a pause or payment segment
  the dialplan's feature extensions flagged (and masked) on the recorded leg;
* ``callguard_masked``: the listener's own mark that the recording is
  silent for a reason of its own (a joiner who has not agreed, an API pause);
* the staff mark (``[freeswitch] staff_variable``) on the other legs.

Only UUIDs, names and rates are taken from the channel list (``show
channels as json``, which FreeSWITCH builds with a JSON encoder); every
fact is read back per channel with ``uuid_getvar``.  The I/O is injected
(:data:`Api`), so this module stays free of sockets and clocks.

The result, :class:`LiveCall`, becomes a :class:`~callguard.core.events.CallAdopted`
for the engine, which re-asserts the mask whenever anything wants the
recording silent: an adopted call is never louder than it was.
"""

from __future__ import annotations

import asyncio
import json
import posixpath
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from callguard.core import events as ev

from .commands import DECISION_VARIABLE, RECORDING_VARIABLE, Wire
from .mapping import PAUSE_FLAG, PAYMENT_FLAG
from .translate import marked, safe_uuid

#: the listener's mark on the recorded leg while it keeps the recording silent (any reason)
MASKED_VARIABLE = "callguard_masked"
CALL_VARIABLE = "callguard_call"
#: what uuid_getvar answers for a variable that is not set (or a channel that is gone)
_UNSET = ("", "_undef_")

#: ``api <command>`` -> the reply body, None when there was no answer
Api = Callable[[bytes], Awaitable[str | None]]


class AdoptionError(RuntimeError):
    """FreeSWITCH's channel list could not be read (no answer, or not the JSON 1.10 sends)."""


@dataclass(frozen=True, slots=True)
class ChannelRow:
    """One line of ``show channels as json``: only what is not caller-controlled."""

    uuid: str
    name: str
    rate: int


def channel_rows(text: str) -> list[ChannelRow]:
    """Parse ``show channels as json`` (``{"row_count": N, "rows": [...]}``; no ``rows`` when empty)."""
    try:
        data = json.loads(text)
    except ValueError:
        raise AdoptionError(f"the channel list is not JSON: {text.strip()[:120]!r}") from None
    if not isinstance(data, dict) or not isinstance(data.get("row_count"), int):
        raise AdoptionError(f"the channel list has no row_count: {text.strip()[:120]!r}")
    rows = []
    for row in data.get("rows") or ():
        uuid = safe_uuid(row.get("uuid") if isinstance(row, dict) else None)
        if uuid is None:
            continue
        rate = str(row.get("read_rate") or "")
        rows.append(ChannelRow(uuid, str(row.get("name") or ""),
                               int(rate) if rate.isdigit() and 0 < int(rate) <= 192000 else 8000))
    return rows


_BUG = re.compile(r"<media-bug>\s*<function>([^<]*)</function>\s*<target>([^<]*)</target>")


def recording_running(buglist: str | None, path: str) -> bool:
    """Does ``uuid_buglist`` show our ``record_session`` / ``uuid_record`` on ``path``?"""
    return any(function == "session_record" and target == path for function, target in _BUG.findall(buglist or ""))


def _set(value: str | None) -> str:
    value = (value or "").strip()
    return "" if value in _UNSET or value.startswith("-ERR") else value


@dataclass(frozen=True, slots=True)
class LiveLeg:
    """Another leg of an adopted call (an agent, a joiner; both halves of a loopback agent carry the marks)."""

    uuid: str
    staff: bool


@dataclass(frozen=True, slots=True)
class LiveCall:
    """A call an earlier process controlled, as FreeSWITCH describes it now."""

    call_id: str
    rate: int
    number: str | None
    name: str | None
    decision: str
    recording_path: str
    recording: bool  #: the recording still runs (a media bug on its path)
    paused: bool
    payment: bool
    masked: bool
    legs: tuple[LiveLeg, ...] = ()

    @property
    def channel(self) -> str:
        return self.call_id

    @property
    def file_name(self) -> str:
        return posixpath.basename(self.recording_path)

    def event(self, at: float) -> ev.CallAdopted:
        caller = ev.Party(self.channel, self.number, self.name, "caller")
        staff = tuple(ev.Party(leg.uuid, None, None, "agent", staff=True) for leg in self.legs if leg.staff)
        return ev.CallAdopted(at, self.call_id, self.channel, (caller, *staff), self.recording, self.file_name,
                              self.decision, self.paused, self.payment, self.masked)


async def find_live_calls(api: Api, wire: Wire, rows: Iterable[ChannelRow], known: set[str], *,
                          staff_variable: str, concurrency: int = 32) -> list[LiveCall]:
    """The calls among ``rows`` that carry callguard's marks and are not in ``known`` (already controlled)."""
    gate = asyncio.Semaphore(concurrency)
    rows = list(rows)

    async def read(uuid: str, name: str) -> str:
        async with gate:
            return _set(await api(wire.getvar(uuid, name)))

    marks = await asyncio.gather(*(read(row.uuid, CALL_VARIABLE) for row in rows))
    recorded = {row.uuid: row for row, call in zip(rows, marks) if call == row.uuid and call not in known}
    others: dict[str, list[str]] = {}
    for row, call in zip(rows, marks):
        if call in recorded and call != row.uuid:
            others.setdefault(call, []).append(row.uuid)

    async def leg(uuid: str) -> LiveLeg:
        return LiveLeg(uuid, marked(await read(uuid, staff_variable)))

    async def call(row: ChannelRow) -> LiveCall | None:
        names = (DECISION_VARIABLE, RECORDING_VARIABLE, PAUSE_FLAG, PAYMENT_FLAG, MASKED_VARIABLE,
                 "caller_id_number", "caller_id_name")
        decision, path, paused, payment, masked, number, name = await asyncio.gather(
            *(read(row.uuid, n) for n in names))
        if not await _still_there(api, wire, row.uuid, gate):
            return None
        running = False
        if path:
            async with gate:
                running = recording_running(await api(wire.buglist(row.uuid)), path)
        legs = await asyncio.gather(*(leg(uuid) for uuid in others.get(row.uuid, ())))
        return LiveCall(row.uuid, row.rate, number or None, name or None, decision, path, running,
                        bool(paused), bool(payment), marked(masked), tuple(legs))

    found = await asyncio.gather(*(call(row) for row in recorded.values()))
    return [c for c in found if c is not None]


async def _still_there(api: Api, wire: Wire, uuid: str, gate: asyncio.Semaphore) -> bool:
    """A channel that hung up while we read it answers every getvar with an error: not a call to adopt."""
    async with gate:
        return _set(await api(wire.exists(uuid))) == "true"


__all__ = ["AdoptionError", "Api", "CALL_VARIABLE", "ChannelRow", "LiveCall", "LiveLeg", "MASKED_VARIABLE",
           "channel_rows", "find_live_calls", "recording_running"]
