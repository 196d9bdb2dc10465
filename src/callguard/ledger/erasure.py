"""Crypto-shredding the personal data in the ledger: destroy keys, never touch an entry.

Entries are append-only and hash-chained; the numbers and names in them
are sealed (:mod:`callguard.evidence.pii`).  Forgetting a subject or an
expired call is deleting its ``pii_keys`` rows: the sealed values become
unreadable, every hash, chain, tree and old bundle still verifies.  The
index (``parties``) loses its lookup hashes for them, and parties indexed
in plain text by a release before sealing are blanked.

SQLite keeps deleted bytes in free pages and in the write-ahead log until
they are overwritten: the ledger connections run with ``secure_delete``
and :func:`purge_freed` checkpoints and truncates the WAL afterwards, so
the file holds no trace of the keys.  PostgreSQL keeps dead rows until
VACUUM (autovacuum, or ``VACUUM pii_keys``), and every database backup
keeps what it had: keep ``pii_keys`` out of long-lived backups, as the
vault's key store.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, delete, func, or_, select, update

from callguard.evidence.pii import ERASED, subject_of
from callguard.ledger.models import CallParty, PiiKey
from callguard.ledger.projection import number_key

log = logging.getLogger("callguard.ledger")


@dataclass(frozen=True)
class Shredded:
    keys: int  #: keys destroyed
    legacy_parties: int  #: index rows of pre-sealing ledgers blanked


def shred_subject(connection: Connection, number: str) -> Shredded:
    """Destroy every key of ``number``'s subject (all calls); blank its index rows."""
    subject, digits = subject_of(number), number_key(number)
    if subject is None:
        return Shredded(0, 0)
    keys = connection.execute(delete(PiiKey).where(PiiKey.subject == subject)).rowcount or 0
    connection.execute(update(CallParty).where(CallParty.number_key == subject).values(number_key=None))
    legacy = connection.execute(update(CallParty).where(or_(CallParty.number_key == digits, CallParty.number == number))
                                .values(number=ERASED, name=ERASED, number_key=None)).rowcount or 0
    return Shredded(keys, legacy)


def shred_calls(connection: Connection, call_ids: Collection[str]) -> Shredded:
    """Destroy every key of these calls (evidence retention ended); blank their index rows."""
    keys = legacy = 0
    ids = sorted(call_ids)
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        keys += connection.execute(delete(PiiKey).where(PiiKey.call_id.in_(chunk))).rowcount or 0
        legacy += connection.execute(update(CallParty).where(CallParty.call_id.in_(chunk))
                                     .values(number=ERASED, name=ERASED, number_key=None)).rowcount or 0
    return Shredded(keys, legacy)


def calls_with_keys(connection: Connection) -> dict[str, float]:
    """call id -> when the call was first seen (epoch seconds), for calls whose personal data is still readable."""
    from callguard.ledger.models import Call

    rows = connection.execute(select(PiiKey.call_id, func.min(Call.first_seen))
                              .join(Call, Call.call_id == PiiKey.call_id, isouter=True).group_by(PiiKey.call_id))
    return {call_id: first or 0.0 for call_id, first in rows}


def purge_freed(engine: Engine) -> None:
    """Make SQLite drop freed pages' contents from the WAL too (a no-op elsewhere)."""
    if engine.dialect.name != "sqlite":
        return
    raw = engine.raw_connection()  # outside any transaction: a checkpoint cannot run inside one
    try:
        busy, _, _ = raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        raw.close()
    if busy:
        log.warning("the SQLite write-ahead log could not be emptied (a reader is active); erased bytes stay "
                    "in it until the next checkpoint")


__all__ = ["Shredded", "calls_with_keys", "purge_freed", "shred_calls", "shred_subject"]
