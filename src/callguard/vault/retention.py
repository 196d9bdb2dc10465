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

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from sqlalchemy import func, select

from callguard.vault.deletion import destroy
from callguard.vault.holds import hold_condition
from callguard.vault.models import STORED, Recording, SweepRun
from callguard.vault.service import Vault

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class Expired:
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

    def by_purpose(self) -> dict[str, int]:
        return dict(Counter(e.purpose for e in self.due))

    def as_dict(self) -> dict[str, object]:
        return {"sweep_id": self.sweep_id, "now": self.now, "applied": self.applied, "due": len(self.due),
                "by_purpose": self.by_purpose(), "held": len(self.held), "deleted": len(self.deleted),
                "failed": self.failed,
                "oldest_due": min((e.expires_at for e in self.due), default=None)}


def select_expired(session, now: float, *, limit: int | None = None) -> list[Expired]:  # type: ignore[no-untyped-def]
    """Stored, past their deadline, not under hold: what the sweep deletes."""
    r = Recording
    stmt = (select(r.id, r.call_id, r.purpose, r.expires_at)
            .where(r.state == STORED, r.expires_at <= now, ~hold_condition(r.id, r.call_id))
            .order_by(r.expires_at))
    if limit:
        stmt = stmt.limit(limit)
    return [Expired(*row) for row in session.execute(stmt)]


def select_held(session, now: float) -> list[Expired]:  # type: ignore[no-untyped-def]
    """Past their deadline but kept by a legal hold (reported, never deleted)."""
    r = Recording
    stmt = (select(r.id, r.call_id, r.purpose, r.expires_at)
            .where(r.state == STORED, r.expires_at <= now, hold_condition(r.id, r.call_id))
            .order_by(r.expires_at))
    return [Expired(*row) for row in session.execute(stmt)]


def stored_by_purpose(session) -> dict[str, int]:  # type: ignore[no-untyped-def]
    rows = session.execute(select(Recording.purpose, func.count()).where(Recording.state == STORED)
                           .group_by(Recording.purpose))
    return {purpose: count for purpose, count in rows}


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
        report = SweepReport(sweep_id, now, apply, select_expired(session, now), select_held(session, now))
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
