"""Legal holds: a recording under hold is never deleted, whatever its retention says.

A hold is placed on a call (covering every recording of that call, also
ones ingested later) or on one recording.  Placing and releasing both need
the ``hold`` permission and a reason, and both go into the access log and
onto the call's ledger timeline.  A released hold stays in the table with
who released it, when and why.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from callguard.ledger.queries import get_call
from callguard.vault.envelope import VaultError
from callguard.vault.models import LegalHold, Recording
from callguard.vault.service import Vault


@dataclass(frozen=True)
class HoldView:
    id: int
    call_id: str
    recording_id: str | None
    case_ref: str | None
    reason: str
    placed_by: str
    placed_at: float
    released_at: float | None
    released_by: str | None
    release_reason: str | None

    @classmethod
    def of(cls, hold: LegalHold) -> "HoldView":
        return cls(hold.id, hold.call_id, hold.recording_id, hold.case_ref, hold.reason, hold.placed_by,
                   hold.placed_at, hold.released_at, hold.released_by, hold.release_reason)

    @property
    def scope(self) -> str:
        return f"recording {self.recording_id}" if self.recording_id else f"call {self.call_id}"


def active_holds(session: Session, recording: Recording) -> list[LegalHold]:
    return list(session.scalars(select(LegalHold).where(
        LegalHold.released_at.is_(None),
        or_(LegalHold.recording_id == recording.id,
            and_(LegalHold.recording_id.is_(None), LegalHold.call_id == recording.call_id)),
    ).order_by(LegalHold.id)))


def place(vault: Vault, user: str | None, reason: str, *, call_id: str | None = None,
          recording_id: str | None = None, case_ref: str | None = None) -> HoldView:
    if bool(call_id) == bool(recording_id):
        raise VaultError("name exactly one of --call or --recording to hold")
    target = recording_id or call_id or ""
    actor = vault.authorize(user, "hold-place", target, reason, permission="hold",
                            detail={"case": case_ref} if case_ref else None)
    with vault.session() as session, session.begin():
        if recording_id:
            recording = session.get(Recording, recording_id)
            if recording is None:
                raise VaultError(f"no recording {recording_id} in the vault catalogue")
            call_id = recording.call_id
        elif get_call(session, call_id or "") is None:
            raise VaultError(f"call {call_id!r} is not in the ledger; check the id (`callguard ledger show`)")
        hold = LegalHold(call_id=call_id, recording_id=recording_id, case_ref=case_ref, reason=reason.strip(),
                         placed_by=actor.name, placed_at=vault.clock())
        session.add(hold)
    view = HoldView.of(hold)
    vault.ledger_append(view.call_id, "legal-hold-placed", {
        "hold_id": view.id, "recording_id": recording_id, "case": case_ref, "reason": view.reason,
        "by": actor.name})
    vault.record(actor, "hold-place", target, reason, "done", {"hold_id": view.id})
    return view


def release(vault: Vault, user: str | None, hold_id: int, reason: str) -> HoldView:
    actor = vault.authorize(user, "hold-release", f"hold-{hold_id}", reason, permission="hold")
    with vault.session() as session, session.begin():
        hold = session.get(LegalHold, hold_id)
        if hold is None:
            raise VaultError(f"no legal hold #{hold_id}; `callguard hold list` shows the active ones")
        if hold.released_at is not None:
            raise VaultError(f"hold #{hold_id} was already released on {hold.released_at:.0f} by {hold.released_by}")
        hold.released_at, hold.released_by, hold.release_reason = vault.clock(), actor.name, reason.strip()
    view = HoldView.of(hold)
    vault.ledger_append(view.call_id, "legal-hold-released", {
        "hold_id": hold_id, "recording_id": view.recording_id, "reason": view.release_reason, "by": actor.name})
    vault.record(actor, "hold-release", f"hold-{hold_id}", reason, "done", {"call_id": view.call_id})
    return view


def list_holds(vault: Vault, user: str | None, *, include_released: bool = False) -> list[HoldView]:
    vault.authorize(user, "hold-list", "*", "", permission="list")
    with vault.session() as session:
        stmt = select(LegalHold).order_by(LegalHold.id)
        if not include_released:
            stmt = stmt.where(LegalHold.released_at.is_(None))
        return [HoldView.of(h) for h in session.scalars(stmt)]


__all__ = ["HoldView", "active_holds", "list_holds", "place", "release"]
