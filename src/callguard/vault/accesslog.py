"""The access log: every attempt to touch the vault, allowed or denied, hash-chained.

Each row's hash is SHA-256 over this canonical JSON (sorted keys, no
whitespace, ASCII)::

    {"action", "actor", "at_us", "detail": {...}, "os_user", "outcome",
     "prev_hash", "reason", "role", "seq", "target"}

and ``prev_hash`` is the previous row's hash (64 zeros for the first).  An
edited, deleted or reordered row breaks the chain; :func:`verify_log` names
the first break.  The database refuses UPDATE and DELETE on the table as
well (triggers, see :mod:`callguard.ledger.append_only`).

An entry is committed *before* the action it allows runs, in its own short
transaction: if the log cannot be written, the action does not happen.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from callguard.vault.models import AccessLogRecord

GENESIS = "0" * 64
_RETRIES = 8


def _canonical(fields: Mapping[str, Any]) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def entry_hash(fields: Mapping[str, Any]) -> str:
    return hashlib.sha256(_canonical(fields)).hexdigest()


def _hashed_fields(row: AccessLogRecord, detail: Any) -> dict[str, Any]:
    return {"seq": row.seq, "at_us": row.at_us, "actor": row.actor, "os_user": row.os_user,
            "role": row.role, "action": row.action, "target": row.target, "reason": row.reason,
            "outcome": row.outcome, "detail": detail, "prev_hash": row.prev_hash}


@dataclass(frozen=True, slots=True)
class AccessEvent:
    """One access-log row, parsed."""

    seq: int
    at: float
    actor: str
    os_user: str
    role: str | None
    action: str
    target: str
    reason: str
    outcome: str
    detail: dict[str, Any]
    hash: str

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at, "actor": self.actor, "os_user": self.os_user,
                "role": self.role, "action": self.action, "target": self.target, "reason": self.reason,
                "outcome": self.outcome, "detail": self.detail, "hash": self.hash}


def _event(row: AccessLogRecord) -> AccessEvent:
    try:
        detail = json.loads(row.detail)
    except ValueError:
        detail = {"unparsable": row.detail}
    return AccessEvent(row.seq, row.at_us / 1e6, row.actor, row.os_user, row.role, row.action, row.target,
                       row.reason, row.outcome, detail, row.hash)


class AccessLog:
    """Appends to and reads the chained access log."""

    def __init__(self, engine: Engine, clock=time.time) -> None:
        self.engine = engine
        self.clock = clock

    def append(self, *, actor: str, os_user: str, role: str | None, action: str, target: str,
               reason: str, outcome: str, detail: Mapping[str, Any] | None = None) -> AccessEvent:
        """Commit one entry (retrying if another writer took the same seq)."""
        detail_obj = json.loads(json.dumps(dict(detail or {}), sort_keys=True, default=str))
        detail_text = json.dumps(detail_obj, sort_keys=True, separators=(",", ":"))
        last_error: Exception | None = None
        for _ in range(_RETRIES):
            try:
                with Session(self.engine, expire_on_commit=False) as session, session.begin():
                    last = session.execute(
                        select(AccessLogRecord.seq, AccessLogRecord.hash).order_by(AccessLogRecord.seq.desc()).limit(1)
                    ).first()
                    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
                    row = AccessLogRecord(seq=seq, at_us=round(self.clock() * 1_000_000), actor=actor[:128],
                                          os_user=os_user[:128], role=role, action=action, target=target[:255],
                                          reason=reason, outcome=outcome, detail=detail_text, prev_hash=prev,
                                          hash="")
                    row.hash = entry_hash(_hashed_fields(row, detail_obj))
                    session.add(row)
                return _event(row)
            except IntegrityError as exc:  # another writer took this seq: re-read the head
                last_error = exc
        raise RuntimeError(f"could not append to the access log after {_RETRIES} attempts: {last_error}")

    def events(self, *, since: float | None = None, until: float | None = None, actor: str | None = None,
               targets: list[str] | None = None, actions: list[str] | None = None) -> Iterator[AccessEvent]:
        stmt = select(AccessLogRecord).order_by(AccessLogRecord.seq)
        if since is not None:
            stmt = stmt.where(AccessLogRecord.at_us >= round(since * 1e6))
        if until is not None:
            stmt = stmt.where(AccessLogRecord.at_us < round(until * 1e6))
        if actor is not None:
            stmt = stmt.where(AccessLogRecord.actor == actor)
        if targets is not None:
            stmt = stmt.where(AccessLogRecord.target.in_(targets))
        if actions is not None:
            stmt = stmt.where(AccessLogRecord.action.in_(actions))
        with Session(self.engine) as session:
            for row in session.scalars(stmt.execution_options(yield_per=1000)):
                yield _event(row)


@dataclass(frozen=True)
class LogVerification:
    entries: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_log(engine: Engine, limit: int = 20) -> LogVerification:
    """Walk the whole chain: seq gaps, broken links and rows whose hash does not match."""
    problems: list[str] = []
    count = 0
    expected_seq, prev = 1, GENESIS
    with Session(engine) as session:
        for row in session.scalars(select(AccessLogRecord).order_by(AccessLogRecord.seq)
                                   .execution_options(yield_per=2000)):
            count += 1
            if len(problems) >= limit:
                continue
            if row.seq != expected_seq:
                problems.append(f"access log: entry {expected_seq} is missing (next is {row.seq})")
            if row.prev_hash != prev:
                problems.append(f"access log: entry {row.seq} does not link to the previous entry "
                                f"(an entry before it was changed, removed or reordered)")
            try:
                detail = json.loads(row.detail)
            except ValueError:
                detail = row.detail
            if entry_hash(_hashed_fields(row, detail)) != row.hash:
                problems.append(f"access log: entry {row.seq} ({row.action} by {row.actor}) was modified "
                                f"after it was written")
            expected_seq, prev = row.seq + 1, row.hash
    return LogVerification(count, problems)


__all__ = ["AccessEvent", "AccessLog", "GENESIS", "LogVerification", "entry_hash", "verify_log"]
