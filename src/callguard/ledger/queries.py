"""Reading the ledger: a call's timeline, calls by number, export.

Everything here takes an ``Engine``, ``Connection`` or ``Session`` and only
reads.  A call's timeline is in write order (seq), which is the engine's
causal order; PBX times may tie or, after a clock step, even go backwards,
so they are shown but never used to reorder one chain.
"""

from __future__ import annotations

import dataclasses
import heapq
import json
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import groupby
from typing import Any

from sqlalchemy import Connection, Engine, Select, or_, select
from sqlalchemy.orm import Session, selectinload

from callguard.evidence.pii import subject_of
from callguard.ledger.models import Call, CallParty, LedgerEntryRecord
from callguard.ledger.projection import number_key
from callguard.ledger.sealed import Revealer

_E = LedgerEntryRecord.__table__.c


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """A ledger entry as stored, with its data parsed."""

    chain_id: str
    seq: int
    call_id: str
    kind: str
    pbx_time_us: int
    received_at_us: int
    data: Any
    prev_hash: str
    hash: str

    @property
    def pbx_time(self) -> float:
        return self.pbx_time_us / 1_000_000

    @property
    def received_at(self) -> float:
        return self.received_at_us / 1_000_000

    def as_export(self) -> dict[str, Any]:
        """One JSONL record: every hashed field, so the hash can be re-checked offline."""
        return {
            "chain_id": self.chain_id,
            "seq": self.seq,
            "call_id": self.call_id,
            "kind": self.kind,
            "pbx_time": self.pbx_time,
            "pbx_time_us": self.pbx_time_us,
            "received_at": self.received_at,
            "received_at_us": self.received_at_us,
            "data": self.data,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


def _stored(row: Any) -> StoredEntry:
    try:
        data = json.loads(row.data)
    except (TypeError, ValueError):
        data = row.data  # tampered or damaged: show it as it is, `verify` names it
    return StoredEntry(row.chain_id, row.seq, row.call_id, row.kind, row.pbx_time_us,
                       row.received_at_us, data, row.prev_hash, row.hash)


def _connection(bind: Engine | Connection | Session) -> tuple[Connection, bool]:
    if isinstance(bind, Engine):
        return bind.connect(), True
    if isinstance(bind, Session):
        return bind.connection(), False
    return bind, False


def timeline(bind: Engine | Connection | Session, call_id: str, *, reveal: bool = True) -> list[StoredEntry]:
    """Every entry of ``call_id`` in order (seq within a chain, merged by PBX time across chains).

    ``reveal`` (for display): sealed numbers and names are opened, or read
    ``[erased]`` once their key is destroyed; such entries no longer match
    their hash.  ``reveal=False`` gives the data exactly as hashed.
    """
    connection, owned = _connection(bind)
    try:
        rows = connection.execute(
            select(LedgerEntryRecord.__table__).where(_E.call_id == call_id).order_by(_E.chain_id, _E.seq)
        )
        chains = [[_stored(r) for r in group] for _, group in groupby(rows, key=lambda r: r.chain_id)]
        if reveal:
            revealer = Revealer(connection)
            chains = [[dataclasses.replace(e, data=d) for e, d in zip(chain, revealer.data([e.data for e in chain]))]
                      for chain in chains]
    finally:
        if owned:
            connection.close()
    if len(chains) <= 1:
        return chains[0] if chains else []
    return list(heapq.merge(*chains, key=lambda e: e.pbx_time_us))


def export_entries(bind: Engine | Connection | Session, *, call_id: str | None = None,
                   chain_id: str | None = None) -> Iterator[StoredEntry]:
    """Stream entries in (chain, seq) order, optionally for one call or chain."""
    connection, owned = _connection(bind)
    try:
        stmt = select(LedgerEntryRecord.__table__).order_by(_E.chain_id, _E.seq)
        if call_id is not None:
            stmt = stmt.where(_E.call_id == call_id)
        if chain_id is not None:
            stmt = stmt.where(_E.chain_id == chain_id)
        for row in connection.execute(stmt.execution_options(yield_per=2000)):
            yield _stored(row)
    finally:
        if owned:
            connection.close()


def get_call(session: Session, call_id: str) -> Call | None:
    """The indexed call with its parties, or None."""
    return session.scalars(
        select(Call).where(Call.call_id == call_id).options(selectinload(Call.parties))
    ).first()


def recent_calls(session: Session, limit: int = 20) -> list[Call]:
    """The latest calls first."""
    return list(session.scalars(
        select(Call).order_by(Call.first_seen.desc(), Call.call_id).limit(limit)
        .options(selectinload(Call.parties))
    ))


def calls_of_number(number: str) -> Select[tuple[str]]:
    """The ids of the calls ``number`` took part in, as a subquery (for every lookup by number).

    Matches by the subject hash of its digits (sealed ledgers), by its
    digits, or exactly as given, so that "+1 415-555-0123" finds "+14155550123".
    """
    keys = [k for k in (number_key(number), subject_of(number)) if k]
    match = CallParty.number == number  # ledgers written before sealing keep the number as given
    if keys:
        match = or_(match, CallParty.number_key.in_(keys))
    return select(CallParty.call_id).where(match)


def calls_by_number(session: Session, number: str) -> list[Call]:
    """Calls in which ``number`` took part, latest first (for access requests)."""
    ids = calls_of_number(number)
    return list(session.scalars(
        select(Call).where(Call.call_id.in_(ids)).order_by(Call.first_seen.desc(), Call.call_id)
        .options(selectinload(Call.parties))
    ))


__all__ = ["StoredEntry", "calls_by_number", "calls_of_number", "export_entries", "get_call", "recent_calls", "timeline"]
