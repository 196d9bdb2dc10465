"""Card payments a listener process left unfinished: found in the ledger, ended by the next process.

The card lives only in the memory of the process that collected it (by
design: :mod:`callguard.payments.secret`), so a listener killed mid-capture
takes the digits with it and nobody can finish that payment.  What the PBX
still holds is its side of the capture: the recording muted, the agent's
leg kept from the caller's keys and voice, a caller waiting for a prompt.
The next process finds those payments in the ledger - a ``payment-started``
with ``capture: true`` and no ``payment-ended`` for the same payment, on a
call of this listener's chain that has not ended - and ends each one as
``interrupted`` (or ``unknown`` when the card had already been sent to the
gateway: it may have been charged; the idempotency key is in the entry for
reconciliation).  The driver lifts the agent's guard and tells the caller;
the recording stays muted (the new process does not control that call).

:func:`find_orphans` is a pure read of the ledger; :func:`end_orphans`
writes the entries and asks the driver to act.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Protocol

from sqlalchemy import select
from sqlalchemy.engine import Engine as SqlEngine

from callguard.core import events as ev
from callguard.core.commands import LedgerEntry
from callguard.ledger.models import Call
from callguard.ledger.queries import timeline

log = logging.getLogger("callguard.payments")

#: How far back to look: longer than any capture can run, short enough to stay cheap.
LOOKBACK_S = 24 * 3600.0


@dataclass(frozen=True)
class Orphan:
    """One unfinished card payment, as the ledger knows it (nothing secret: no digit was ever written)."""

    call_id: str
    payment_id: str
    channel: str  #: the recorded (caller's) channel, from call-offered
    staff_leg: str
    language: str
    submitted: bool  #: the card reached the connector (it may have been charged)
    idempotency_key: str
    operation: str
    amount: str
    currency: str
    brand: str
    last4: str


def find_orphans(bind: SqlEngine, chain_id: str, now: float, lookback_s: float = LOOKBACK_S) -> list[Orphan]:
    """Captures started on ``chain_id`` whose call has not ended and that have no ``payment-ended``."""
    with bind.connect() as connection:
        call_ids = list(connection.scalars(
            select(Call.call_id).where(Call.chain_id == chain_id, Call.ended_at.is_(None),
                                       Call.first_seen >= now - lookback_s)))
    orphans = []
    for call_id in call_ids:
        entries = timeline(bind, call_id)
        started = {e.data["payment_id"]: e.data for e in entries
                   if e.kind == "payment-started" and isinstance(e.data, dict) and e.data.get("capture")}
        if not started or any(e.kind == "hangup" for e in entries):
            continue
        ended = {e.data.get("payment_id") for e in entries if e.kind == "payment-ended" and isinstance(e.data, dict)}
        offered = next((e.data for e in entries if e.kind == "call-offered" and isinstance(e.data, dict)), {})
        for payment_id, data in started.items():
            if payment_id in ended:
                continue
            submitted = next((e.data for e in entries if e.kind == "payment-submitted"
                              and isinstance(e.data, dict) and e.data.get("payment_id") == payment_id), None)
            orphans.append(Orphan(
                call_id, payment_id, str(offered.get("channel") or ""), str(data.get("staff_leg") or ""),
                str(offered.get("language") or ""), submitted is not None,
                str((submitted or {}).get("idempotency_key") or ""), str(data.get("operation") or ""),
                str(data.get("amount") or ""), str(data.get("currency") or ""),
                str((submitted or {}).get("brand") or ""), str((submitted or {}).get("last4") or "")))
    return orphans


def readable_ledger(sink: object) -> object | None:
    """The :class:`~callguard.ledger.Ledger` behind a sink (the vault's AutoIngest wraps it), if any."""
    for _ in range(4):
        if hasattr(sink, "engine") and hasattr(sink, "chain_id"):
            return sink
        sink = getattr(sink, "ledger", None)
        if sink is None:
            return None
    return None


class OrphanDriver(Protocol):
    def payment_orphan(self, orphan: Orphan) -> Awaitable[bool]:
        """Lift the guard on the agent's leg and tell the caller; False when the call is gone."""


def ended_entry(orphan: Orphan, at: float, call_present: bool) -> LedgerEntry:
    """The ``payment-ended`` a new process writes for an orphan."""
    if orphan.submitted:
        outcome, reason = "unknown", ("listener restarted while the gateway was deciding: it may have charged the "
                                      "card; reconcile with the idempotency key")
    else:
        outcome, reason = "interrupted", "listener restarted mid-capture; the card was never sent"
    return LedgerEntry(orphan.call_id, "payment-ended", at, {
        "source": ev.Source.ENGINE.value, "capture": True, "payment_id": orphan.payment_id, "outcome": outcome,
        "reason": reason, "after_restart": True, "call_present": call_present,
        "idempotency_key": orphan.idempotency_key, "operation": orphan.operation, "amount": orphan.amount,
        "currency": orphan.currency, "brand": orphan.brand, "last4": orphan.last4,
        "still_muted_for": ["card-capture"] if call_present else []})


async def end_orphans(bind: SqlEngine, chain_id: str, driver: OrphanDriver,
                      append: Callable[[LedgerEntry, float], None], *, now: Callable[[], float] = time.time,
                      pbx_now: Callable[[], float] = time.time,
                      ours: Callable[[str], bool] = lambda payment_id: False) -> list[Orphan]:
    """Find this chain's orphaned captures, let the driver release each, and end them in the ledger.

    ``ours(payment_id)``: a payment this process runs (never an orphan).
    """
    import asyncio

    found = await asyncio.to_thread(find_orphans, bind, chain_id, now())
    orphans = [o for o in found if not ours(o.payment_id)]
    for orphan in orphans:
        try:
            present = await driver.payment_orphan(orphan)
        except Exception:  # noqa: BLE001 - one call's trouble must not keep the others unfinished
            log.exception("payment %s on call %s: could not release the PBX side", orphan.payment_id,
                          orphan.call_id)
            present = True
        log.warning("payment %s on call %s was left unfinished by an earlier listener process: ended as %s",
                    orphan.payment_id, orphan.call_id, "unknown" if orphan.submitted else "interrupted")
        append(ended_entry(orphan, pbx_now(), present), now())
    return orphans


__all__ = ["LOOKBACK_S", "Orphan", "OrphanDriver", "end_orphans", "ended_entry", "find_orphans", "readable_ledger"]
