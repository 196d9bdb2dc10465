"""Retention: each recording expires when its purpose's period ends; the sweep deletes it.

The deadline is stamped on the recording at ingest (``recorded_at`` + the
purpose's days from ``[retention]``), so changing the config later does not
silently extend or shorten what was promised for existing recordings.

The sweep selects stored recordings whose deadline has passed and that no
active legal hold covers - one indexed query, ordered oldest first - then,
with ``apply``, crypto-shreds each one and writes its deletion record.  A
dry run (the default in the CLI) changes nothing but is recorded too, with
the same report, so the audit can tell "sweep ran, nothing to do" from
"sweep never ran".
"""

from __future__ import annotations

import gc
import json
from collections import Counter
from dataclasses import dataclass, field
from contextlib import contextmanager
from typing import Callable, Iterator, NamedTuple

from sqlalchemy import func, or_, select

from callguard.ledger.erasure import calls_with_keys, purge_freed, shred_calls
from callguard.vault.deletion import destroy
from callguard.vault.models import QUARANTINED, STORED, LegalHold, Recording, SweepRun

#: states whose ciphertext is kept until its retention date (a quarantined recording expires like any other)
KEPT = (STORED, QUARANTINED)
from callguard.vault.service import Vault

Progress = Callable[[int, int], None]


class Expired(NamedTuple):
    recording_id: str
    call_id: str
    purpose: str
    expires_at: float


@dataclass
class SweepReport:
    sweep_id: int
    now: float
    applied: bool
    due: list[Expired] = field(default_factory=list)
    held: list[Expired] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    #: calls whose personal data in the ledger is past its evidence retention ([evidence] retention_days)
    evidence_due: list[str] = field(default_factory=list)
    evidence_keys_shredded: int = 0

    def by_purpose(self) -> dict[str, int]:
        return dict(Counter(e.purpose for e in self.due))

    def as_dict(self) -> dict[str, object]:
        return {"sweep_id": self.sweep_id, "now": self.now, "applied": self.applied, "due": len(self.due),
                "by_purpose": self.by_purpose(), "held": len(self.held), "deleted": len(self.deleted),
                "failed": self.failed, "evidence_due": len(self.evidence_due),
                "evidence_keys_shredded": self.evidence_keys_shredded,
                "oldest_due": min((e.expires_at for e in self.due), default=None)}


def _active_holds(session) -> tuple[set[str], set[str]]:  # type: ignore[no-untyped-def]
    """(recording ids, call ids) under an active hold: a small table, read whole."""
    recordings: set[str] = set()
    calls: set[str] = set()
    for recording_id, call_id in session.execute(
            select(LegalHold.recording_id, LegalHold.call_id).where(LegalHold.released_at.is_(None))):
        (recordings.add(recording_id) if recording_id else calls.add(call_id))
    return recordings, calls


def _fetch_all(session, stmt) -> list[tuple]:  # type: ignore[no-untyped-def]
    """Run ``stmt`` on the session's DBAPI cursor and return plain tuples.

    The sweep may select hundreds of thousands of rows (the first sweep
    after a migration); SQLAlchemy's per-row result processing would cost
    several times the query itself, and the cyclic GC would rescan the
    growing list again and again, so this one hot query skips both (see
    :func:`_no_gc`).
    """
    connection = session.connection()
    compiled = stmt.compile(dialect=connection.dialect)
    params = compiled.construct_params()
    args = [params[name] for name in compiled.positiontup] if compiled.positional else params
    cursor = connection.connection.driver_connection.cursor()
    try:
        cursor.execute(compiled.string, args)
        return cursor.fetchall()
    finally:
        cursor.close()


@contextmanager
def _no_gc() -> Iterator[None]:
    """Pause the cyclic GC while building big lists of tuples (they hold no cycles)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def _past_due(session, now: float) -> tuple[list[Expired], list[Expired]]:  # type: ignore[no-untyped-def]
    """(due, held): stored recordings past ``now``, split by whether a hold covers them.

    One range scan on the covering sweep index (state, expires_at, id,
    call_id, purpose) - no table lookups - and the holds applied from
    in-memory sets, which stays fast even for a backlog of hundreds of
    thousands (a correlated hold lookup per row would not).
    """
    r = Recording
    held_recordings, held_calls = _active_holds(session)
    due: list[Expired] = []
    held: list[Expired] = []
    make = Expired._make
    with _no_gc():
        for row in _fetch_all(session, select(r.id, r.call_id, r.purpose, r.expires_at)
                              .where(or_(*(r.state == state for state in KEPT)), r.expires_at <= now).order_by(r.expires_at)):
            (held if row[0] in held_recordings or row[1] in held_calls else due).append(make(row))
    return due, held


def select_expired(session, now: float) -> list[Expired]:  # type: ignore[no-untyped-def]
    """Stored, past their deadline, not under hold: what the sweep deletes, oldest first."""
    return _past_due(session, now)[0]


def select_held(session, now: float) -> list[Expired]:  # type: ignore[no-untyped-def]
    """Past their deadline but kept by a legal hold (reported, never deleted)."""
    return _past_due(session, now)[1]


def stored_by_purpose(session) -> dict[str, int]:  # type: ignore[no-untyped-def]
    rows = session.execute(select(Recording.purpose, func.count()).where(Recording.state == STORED)
                           .group_by(Recording.purpose))
    return {purpose: count for purpose, count in rows}


def evidence_due(vault: Vault, session, now: float) -> list[str]:  # type: ignore[no-untyped-def]
    """Calls whose numbers and names in the ledger have outlived their evidence retention.

    A call's period is the longest of its recordings' purposes in
    ``[evidence] retention_days``; a call without a recording uses
    ``[vault] default_purpose``.  A purpose not listed there keeps the data
    until an erasure request: how long evidence of lawful recording must
    stay attributable is the site's legal decision, so nothing is shredded
    by default.  A legal hold on the call or on any of its recordings keeps
    it readable.
    """
    keyed = calls_with_keys(session.connection())
    if not keyed:
        return []
    held_recordings, held_calls = _active_holds(session)
    purposes: dict[str, set[str]] = {}
    ids = sorted(keyed)
    for start in range(0, len(ids), 500):
        for call_id, rid, purpose in session.execute(select(Recording.call_id, Recording.id, Recording.purpose)
                                                     .where(Recording.call_id.in_(ids[start:start + 500]))):
            purposes.setdefault(call_id, set()).add(purpose)
            if rid in held_recordings:
                held_calls.add(call_id)
    days_for = vault.config.evidence.retention_days
    if not days_for:
        return []
    due = []
    for call_id, first_seen in keyed.items():
        periods = [days_for.get(p) for p in purposes.get(call_id) or {vault.settings.default_purpose}]
        if call_id in held_calls or None in periods:
            continue
        days = max(p for p in periods if p is not None)
        if first_seen + days * 86400 <= now:
            due.append(call_id)
    return sorted(due)


def sweep(vault: Vault, user: str | None, *, apply: bool = False, now: float | None = None,
          progress: Progress | None = None, reason: str = "scheduled retention sweep") -> SweepReport:
    """Select (and with ``apply``, delete) what has expired; always records the run."""
    now = vault.clock() if now is None else now
    actor = vault.authorize(user, "retention-sweep", "*", reason, permission="retention",
                            detail={"apply": apply, "now": now})
    with vault.session() as session, session.begin():
        run = SweepRun(started_at=vault.clock(), actor=actor.name, applied=apply)
        session.add(run)
        session.flush()
        sweep_id = run.id
    with vault.session() as session:
        due, held = _past_due(session, now)
        calls_due = evidence_due(vault, session, now)
    report = SweepReport(sweep_id, now, apply, due, held, evidence_due=calls_due)
    if apply:
        total = len(report.due)
        for done, item in enumerate(report.due, 1):
            try:
                destroy(vault, actor, item.recording_id, cause="retention-expired",
                        reason=f"retention for purpose {item.purpose!r} ended", sweep_id=sweep_id,
                        wait_for_ledger=False)
                report.deleted.append(item.recording_id)
            except Exception as exc:  # noqa: BLE001 - one bad file must not stop the sweep
                report.failed[item.recording_id] = str(exc)
            if progress is not None:
                progress(done, total)
        vault.ledger_flush()
        if calls_due:
            with vault.session() as session, session.begin():
                report.evidence_keys_shredded = shred_calls(session.connection(), calls_due).keys
            purge_freed(vault.engine)
    with vault.session() as session, session.begin():
        run = session.get(SweepRun, sweep_id)
        assert run is not None
        run.finished_at = vault.clock()
        run.selected, run.deleted, run.held, run.failed = (len(report.due), len(report.deleted), len(report.held),
                                                           len(report.failed))
        run.report = json.dumps(report.as_dict())
    vault.record(actor, "retention-sweep", "*", reason, "failed" if report.failed else "done", report.as_dict())
    return report


__all__ = ["Expired", "SweepReport", "select_expired", "select_held", "stored_by_purpose", "sweep"]
