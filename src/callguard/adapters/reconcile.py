"""Calls an earlier listener process left open in the ledger: closed honestly on start-up.

A listener killed mid-call (kill -9, a crash, a node that lost its lease)
leaves its calls "in progress" in the ledger.  A new process adopts those it
still finds live on the PBX; each of the rest gets one ``listener-lost``
entry saying what is known: nothing after the last entry the earlier process
wrote.  Nobody can say whether the call went on recorded, muted or not at
all after that, so the entry does not guess ("outcome unknown from T"), and
the calls index shows the call as ended in state ``unknown`` instead of in
progress forever.

Shared by both listeners (PBX-neutral): the adapter says which call ids are
live, this module finds and closes the others.  Plain SQL on purpose: a
listener process keeps the ORM models (and what they pull in) out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol

from callguard.core.commands import LedgerEntry

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine as SqlEngine

log = logging.getLogger("callguard.reconcile")

#: How far back the ledger is searched for calls left open.
LOOKBACK_S = 24 * 3600.0
LOST_KIND = "listener-lost"


class LedgerAppend(Protocol):
    def append(self, entry: LedgerEntry, received_at: float) -> None: ...


@dataclass(frozen=True, slots=True)
class LostCall:
    call_id: str
    last_seen: float  #: PBX time of its last ledger entry: nothing is known after it


def lost_calls(bind: "SqlEngine", chain_id: str, live: set[str], started: float, now: float | None = None,
               lookback_s: float = LOOKBACK_S) -> list[LostCall]:
    """Calls of ``chain_id`` the ledger has in progress (no end), first seen before ``started``
    (this process's start: later ones are its own), that name a channel (``ha:<scope>`` term
    records do not), and not in ``live``."""
    from sqlalchemy import text

    now = time.time() if now is None else now
    with bind.connect() as connection:
        rows = connection.execute(text(
            "SELECT call_id, last_seen FROM calls WHERE chain_id = :chain AND ended_at IS NULL "
            "AND channel IS NOT NULL AND first_seen >= :since AND first_seen < :started"),
            {"chain": chain_id, "since": now - lookback_s, "started": started}).all()
    return [LostCall(call_id, float(last_seen)) for call_id, last_seen in rows if call_id not in live]


def ledger_reader(sink: object) -> object | None:
    """The ledger behind a sink that can also be read (``engine`` and ``chain_id``), if any."""
    for _ in range(4):
        if hasattr(sink, "engine") and hasattr(sink, "chain_id"):
            return sink
        sink = getattr(sink, "ledger", None)
        if sink is None:
            return None
    return None


def lost_entry(call: LostCall, now: float) -> LedgerEntry:
    """The one entry that closes a lost call."""
    since = datetime.fromtimestamp(call.last_seen, timezone.utc).isoformat(timespec="seconds")
    return LedgerEntry(call.call_id, LOST_KIND, now, {
        "detail": f"listener lost, outcome unknown from {since}", "since": call.last_seen,
        "confirmed_by": "listener"})


async def close_lost_calls(sink: LedgerAppend, live: Callable[[], set[str]], started: float,
                           now: float) -> list[str]:
    """Write ``listener-lost`` for every open call of ``sink``'s chain that is not ``live()``; their ids.

    ``live`` is asked again after the (threaded) read, so a call adopted or
    offered meanwhile is never closed.  A ledger that cannot be read (an
    in-memory sink, a database down) is logged and skipped: reconciling
    must never stop a listener from serving calls.
    """
    ledger: Any = ledger_reader(sink)
    if ledger is None:
        return []
    try:
        lost = await asyncio.to_thread(lost_calls, ledger.engine, ledger.chain_id, live(), started, now)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        log.error("could not look for calls left open in the ledger (%s); they stay in progress until the next "
                  "start", exc)
        return []
    closed = []
    still_live = live()
    for call in lost:
        if call.call_id in still_live:
            continue
        log.warning("call %s: left in progress by an earlier listener process and gone from the PBX; closed as "
                    "lost (outcome unknown)", call.call_id)
        sink.append(lost_entry(call, now), now)
        closed.append(call.call_id)
    return closed


__all__ = ["LOOKBACK_S", "LOST_KIND", "LostCall", "close_lost_calls", "ledger_reader", "lost_calls", "lost_entry"]
