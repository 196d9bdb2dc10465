"""Taking over the calls an earlier listener process had decided (restart, crash, takeover).

The listener marks every call it controls with ``CALLGUARD_CALL=<call id>``
on the recorded channel.  A new process (the same one restarted after a
crash, or another one taking over - issue 15 builds high availability on
this) finds them in ``CoreShowChannels`` and reads back, per marked channel,
what the PBX itself says: is the recording still running
(``MIXMONITOR(<id>,filename)``), did the dialplan leave a pause or a
payment on the channel, was the recording silent.  :func:`find_live_calls`
returns that as :class:`LiveCall`; the listener feeds each one to the engine
as :class:`~callguard.core.events.CallAdopted`, which re-asserts the mute
when anything wants the recording silent.

Calls the ledger still has "in progress" that are not live any more were
lost with the earlier process: :func:`callguard.adapters.reconcile.lost_calls` finds them so the
listener can close each with an explicit ``listener-lost`` entry instead of
leaving them open forever.

Only channel *names* are taken from ``CoreShowChannels`` (they precede any
caller-controlled header); everything else is read back with ``Getvar``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Iterable

from callguard.adapters.asterisk.trust import CALLER_NUMBER, LINKEDID, Prober

#: set by the listener on the recorded channel when it takes a call
CALL_VARIABLE = "CALLGUARD_CALL"
MIXMON_ID_VARIABLE = "CALLGUARD_MIXMON_ID"
CONSENT_VARIABLE = "CALLGUARD_CONSENT"
PAUSE_VARIABLE = "CALLGUARD_PAUSED"
PAYMENT_VARIABLE = "CALLGUARD_PAYMENT"
MUTED_VARIABLE = "CALLGUARD_MUTED"


@dataclass(frozen=True, slots=True)
class LiveCall:
    """A call marked by an earlier process, as the PBX describes it now."""

    call_id: str
    channel: str
    linkedid: str
    mixmon_id: str
    recording: bool
    decision: str
    paused: bool
    payment: bool
    muted: bool
    number: str | None


async def find_live_calls(prober: Prober, channels: Iterable[str], known: set[str],
                          concurrency: int = 32) -> list[LiveCall]:
    """The marked calls among ``channels`` that are not in ``known`` (call ids already controlled)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(name: str) -> LiveCall | None:
        async with gate:
            mark = await prober.facts(name, [CALL_VARIABLE])
            call_id = mark.get(CALL_VARIABLE) if mark is not None else ""
            if not call_id or call_id in known:
                return None
            facts = await prober.facts(name, [LINKEDID, MIXMON_ID_VARIABLE, CONSENT_VARIABLE, PAUSE_VARIABLE,
                                              PAYMENT_VARIABLE, MUTED_VARIABLE, CALLER_NUMBER])
            if facts is None:
                return None
            mixmon = facts.get(MIXMON_ID_VARIABLE)
            running = False
            if mixmon:
                file = await prober.facts(name, [f"MIXMONITOR({mixmon},filename)"])
                running = file is not None and bool(file.get(f"MIXMONITOR({mixmon},filename)"))
            number = facts.get(CALLER_NUMBER)
            return LiveCall(call_id, name, facts.linkedid or call_id, mixmon, running, facts.get(CONSENT_VARIABLE),
                            facts.get(PAUSE_VARIABLE) == "1", facts.get(PAYMENT_VARIABLE) == "1",
                            facts.get(MUTED_VARIABLE) == "1", None if number in ("", "<unknown>") else number)

    found = await asyncio.gather(*(one(name) for name in channels))
    return [call for call in found if call is not None]


__all__ = ["CALL_VARIABLE", "LiveCall", "find_live_calls"]
