"""Data-subject requests: find everything about one number, export it, erase what may go.

``open`` searches the ledger's call index for the number (format-tolerant:
"+44 20 7946 0123" finds "+442079460123"), counts the calls, recordings,
ledger entries and access-log entries concerning them, and starts the
clock (``[vault] dsar_due_days``, 30 by default).  ``export`` and ``erase``
search again, so calls made after the request was opened are included.

The export bundle (a directory, written under a temporary name and renamed
when complete) holds the decrypted recordings, each call's timeline and an
``index.json``.  Other parties' numbers and names are redacted from the
timelines (they are someone else's personal data); redacted entries keep
their original hash for reference.  Who accessed the recordings is given by
role and action, not by staff name.

Erasure deletes every recording that nothing keeps, and says for each thing
it keeps why: a legal hold, a purpose that is a legal obligation until its
date, and the evidence itself - ledger entries (proof that notice and
consent were handled lawfully), the access log and the request record
(accountability) - which GDPR Art. 17(3)(b)/(e) allows to be kept.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import phonenumbers
from sqlalchemy import func, select

from callguard.ledger.erasure import purge_freed, shred_subject
from callguard.ledger.models import LedgerEntryRecord
from callguard.ledger.projection import number_key
from callguard.ledger.queries import calls_by_number, timeline
from callguard.vault.deletion import destroy
from callguard.vault.envelope import VaultError
from callguard.vault.holds import active_holds
from callguard.vault.models import DELETED, STORED, AccessLogRecord, DeletionRecord, DsarRequest, Recording
from callguard.vault.recordings import export as export_recording
from callguard.vault.service import Vault

KINDS = ("access", "erasure")
REDACTED = "[redacted: another party]"


def normalise_number(number: str) -> tuple[str, str]:
    """(E.164 when parseable else the digits, digits key); a clear error for non-numbers."""
    key = number_key(number)
    if not key:
        raise VaultError(f"{number!r} is not a phone number; give it as dialled, e.g. +442079460123")
    try:
        parsed = phonenumbers.parse(number, None)
        if phonenumbers.is_possible_number(parsed):
            return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164), key
    except phonenumbers.NumberParseException:
        pass
    return number.strip(), key


@dataclass
class Found:
    call_ids: list[str] = field(default_factory=list)
    recordings: list[Recording] = field(default_factory=list)
    ledger_entries: int = 0
    access_entries: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"calls": self.call_ids, "recordings": [r.id for r in self.recordings],
                "stored_recordings": sum(r.state == STORED for r in self.recordings),
                "ledger_entries": self.ledger_entries, "access_log_entries": self.access_entries}


def find(vault: Vault, number: str) -> Found:
    found = Found()
    with vault.session() as session:
        found.call_ids = [c.call_id for c in calls_by_number(session, number)]
        if not found.call_ids:
            return found
        found.recordings = list(session.scalars(select(Recording).where(Recording.call_id.in_(found.call_ids))
                                                .order_by(Recording.recorded_at)))
        found.ledger_entries = session.scalar(select(func.count()).select_from(LedgerEntryRecord)
                                              .where(LedgerEntryRecord.call_id.in_(found.call_ids))) or 0
        targets = found.call_ids + [r.id for r in found.recordings]
        found.access_entries = session.scalar(select(func.count()).select_from(AccessLogRecord)
                                              .where(AccessLogRecord.target.in_(targets))) or 0
    return found


@dataclass(frozen=True)
class DsarView:
    id: int
    label: str
    number: str
    kind: str
    status: str
    opened_at: float
    due_at: float
    opened_by: str
    found: dict[str, Any]
    exported_at: float | None
    export_path: str | None
    erased_at: float | None
    erase_report: dict[str, Any] | None
    closed_at: float | None
    close_reason: str | None

    @classmethod
    def of(cls, r: DsarRequest) -> "DsarView":
        return cls(r.id, r.label, r.number, r.kind, r.status, r.opened_at, r.due_at, r.opened_by,
                   json.loads(r.found or "{}"), r.exported_at, r.export_path, r.erased_at,
                   json.loads(r.erase_report) if r.erase_report else None, r.closed_at, r.close_reason)

    def overdue(self, now: float) -> bool:
        return self.closed_at is None and self.due_at < now

    def days_left(self, now: float) -> float:
        return (self.due_at - now) / 86400


def _request(vault: Vault, request_id: int) -> DsarRequest:
    with vault.session() as session:
        request = session.get(DsarRequest, request_id)
    if request is None:
        raise VaultError(f"no request DSAR-{request_id}; `callguard dsar list` shows them")
    return request


def open_request(vault: Vault, user: str | None, number: str, *, kind: str = "access", reason: str = "",
                 note: str = "") -> DsarView:
    if kind not in KINDS:
        raise VaultError(f"request kind must be one of {', '.join(KINDS)}, got {kind!r}")
    e164, key = normalise_number(number)
    actor = vault.authorize(user, "dsar-open", "dsar:new", reason or f"{kind} request received",
                            permission="dsar", detail={"kind": kind})
    found = find(vault, e164)
    now = vault.clock()
    with vault.session() as session, session.begin():
        request = DsarRequest(number=e164, number_key=key, kind=kind, opened_at=now,
                              due_at=now + vault.settings.dsar_due_days * 86400, opened_by=actor.name, note=note,
                              status="open", found=json.dumps(found.as_dict()))
        session.add(request)
    vault.record(actor, "dsar-open", request.label, reason, "done",
                 {"kind": kind, "calls": len(found.call_ids), "recordings": len(found.recordings)})
    return DsarView.of(request)


def list_requests(vault: Vault, user: str | None, *, overdue: bool = False, open_only: bool = False) -> list[DsarView]:
    vault.authorize(user, "dsar-list", "dsar:*", "", permission="dsar")
    now = vault.clock()
    stmt = select(DsarRequest).order_by(DsarRequest.due_at)
    if overdue or open_only:
        stmt = stmt.where(DsarRequest.closed_at.is_(None))
    if overdue:
        stmt = stmt.where(DsarRequest.due_at < now)
    with vault.session() as session:
        return [DsarView.of(r) for r in session.scalars(stmt)]


def show(vault: Vault, user: str | None, request_id: int) -> DsarView:
    vault.authorize(user, "dsar-show", f"DSAR-{request_id}", "", permission="dsar")
    return DsarView.of(_request(vault, request_id))


def _redact(value: Any, subject_key: str) -> tuple[Any, bool]:
    """Replace other parties' numbers and names; returns (value, changed)."""
    if isinstance(value, list):
        items = [_redact(v, subject_key) for v in value]
        return [v for v, _ in items], any(c for _, c in items)
    if not isinstance(value, dict):
        return value, False
    changed = False
    out: dict[str, Any] = {}
    is_party = "number" in value and ("channel" in value or "role" in value)
    other = is_party and number_key(value.get("number")) != subject_key
    for k, v in value.items():
        if other and k in ("number", "name") and v:
            out[k] = REDACTED
            changed = True
        else:
            out[k], c = _redact(v, subject_key)
            changed = changed or c
    return out, changed


def export_bundle(vault: Vault, user: str | None, request_id: int, out_dir: Path, reason: str) -> Path:
    """Write ``<out_dir>/DSAR-<id>/`` with recordings, timelines, access history and an index."""
    request = _request(vault, request_id)
    label = request.label
    actor = vault.authorize(user, "dsar-export", label, reason, permission="dsar", detail={"to": str(out_dir)})
    target = out_dir / label
    part = out_dir / f".{label}.part"
    if target.exists():
        raise VaultError(f"{target} already exists; move it away or choose another --out directory")
    found = find(vault, request.number)
    try:
        shutil.rmtree(part, ignore_errors=True)
        (part / "recordings").mkdir(parents=True)
        (part / "timelines").mkdir()
        os.chmod(part, 0o700)
        calls = []
        with vault.session() as session:
            # timeline() opens sealed numbers and names while their keys exist ("[erased]" after)
            timelines = {call_id: timeline(session, call_id) for call_id in found.call_ids}
        for call_id, entries in timelines.items():
            exported = []
            for entry in entries:
                data, redacted = _redact(entry.data, request.number_key)
                record = entry.as_export()
                record["data"] = data
                if redacted:
                    record["redacted"] = True
                exported.append(record)
            safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in call_id)[:100]
            (part / "timelines" / f"{safe}.json").write_text(json.dumps(exported, indent=2, ensure_ascii=False))
            calls.append({"call_id": call_id, "timeline": f"timelines/{safe}.json",
                          "started": entries[0].pbx_time if entries else None})
        recordings = []
        for recording in found.recordings:
            info: dict[str, Any] = {"recording_id": recording.id, "call_id": recording.call_id,
                                    "purpose": recording.purpose, "recorded_at": recording.recorded_at,
                                    "retention_until": recording.expires_at, "state": recording.state,
                                    "sha256": recording.sha256, "duration_s": recording.duration_s}
            if recording.state == STORED:
                name = f"recordings/{recording.id}.wav"
                export_recording(vault, None, recording.id, reason, part / name, _actor=actor, _action="dsar-export")
                info["file"] = name
            recordings.append(info)
        from callguard.transcripts.store import export_for_calls

        transcripts = export_for_calls(vault, found.call_ids, part / "transcripts")
        targets = found.call_ids + [r.id for r in found.recordings]
        history = [{"at": e.at, "action": e.action, "by_role": e.role, "outcome": e.outcome}
                   for e in vault.access_log.events(targets=targets)]
        (part / "access-history.json").write_text(json.dumps(history, indent=2))
        index = {
            "request": label, "kind": request.kind, "subject_number": request.number,
            "opened_at": request.opened_at, "due_at": request.due_at, "generated_at": vault.clock(),
            "generated_by_role": actor.role, "calls": calls, "recordings": recordings,
            "transcripts": transcripts, "access_history": "access-history.json",
            "notes": ["Other parties' numbers and names are redacted from timelines; redacted entries keep their "
                      "original hash for reference and cannot be re-verified against it.",
                      "Each recording's sha256 is the SHA-256 of the audio as recorded; it matches the ledger."],
        }
        (part / "index.json").write_text(json.dumps(index, indent=2, ensure_ascii=False))
        (part / "README.txt").write_text(
            f"Data-subject access request {label}\n\nThis bundle holds every recorded call involving "
            f"{request.number} that callguard holds:\n- recordings/: the call recordings (WAV)\n"
            f"- transcripts/: transcripts of the calls, where they were transcribed (card data redacted)\n"
            f"- timelines/: what happened on each call (notice, consent, recording, pauses)\n"
            f"- access-history.json: when the recordings were accessed, by which role\n"
            f"- index.json: the list of all of the above with checksums\n")
        os.replace(part, target)
    except BaseException as exc:
        shutil.rmtree(part, ignore_errors=True)
        vault.record(actor, "dsar-export", label, reason, "failed", {"error": str(exc)})
        raise
    now = vault.clock()
    with vault.session() as session, session.begin():
        row = session.get(DsarRequest, request_id)
        assert row is not None
        row.exported_at, row.export_path = now, str(target.resolve())
        row.found = json.dumps(found.as_dict())
        if row.kind == "access" and row.closed_at is None:
            row.status, row.closed_at, row.closed_by, row.close_reason = "closed", now, actor.name, "bundle exported"
    vault.record(actor, "dsar-export", label, reason, "done",
                 {"to": str(target.resolve()), "calls": len(calls), "recordings": len(recordings)})
    return target


def _date(t: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(t))


def erase(vault: Vault, user: str | None, request_id: int, reason: str) -> dict[str, Any]:
    """Delete what may be deleted; returns (and stores) what was deleted and what was kept, and why."""
    request = _request(vault, request_id)
    label = request.label
    actor = vault.authorize(user, "dsar-erase", label, reason, permission="dsar")
    found = _found_for_erasure(vault, request)
    now = vault.clock()
    deleted: list[dict[str, Any]] = []
    kept: list[dict[str, str]] = []
    already: list[dict[str, Any]] = []
    legal_duty = set(vault.settings.legal_duty_purposes)
    for recording in found.recordings:
        what = f"recording {recording.id} of call {recording.call_id}"
        if recording.state == DELETED:
            with vault.session() as session:
                record = session.scalars(select(DeletionRecord).where(DeletionRecord.recording_id == recording.id)).first()
            already.append({"recording_id": recording.id, "deleted_at": recording.deleted_at,
                            "cause": record.cause if record else None})
            continue
        with vault.session() as session:
            holds = active_holds(session, recording)
        if holds:
            why = "; ".join(f"legal hold #{h.id}{f' (case {h.case_ref})' if h.case_ref else ''} placed by "
                            f"{h.placed_by} on {_date(h.placed_at)}: {h.reason}" for h in holds)
            kept.append({"what": what, "why": why})
            continue
        if recording.purpose in legal_duty and recording.expires_at > now:
            kept.append({"what": what, "why": f"kept for purpose {recording.purpose!r}, a legal obligation, "
                                              f"until {_date(recording.expires_at)}; it will be deleted then"})
            continue
        destroyed = destroy(vault, actor, recording.id, cause="dsar-erasure", reason=f"{label}: {reason}",
                            dsar_id=request_id)
        deleted.append({"recording_id": recording.id, "call_id": recording.call_id,
                        "deletion_id": destroyed.deletion_id})
    with vault.session() as session, session.begin():
        shredded = shred_subject(session.connection(), request.number)
    if found.ledger_entries:
        kept.append({"what": f"ledger: {found.ledger_entries} entries on {len(found.call_ids)} calls, without the "
                             f"requester's number and name: {shredded.keys} personal-data key(s) destroyed "
                             f"(crypto-shredding), {shredded.legacy_parties} older index row(s) blanked",
                     "why": "evidence that notice, consent and recording decisions were handled lawfully; kept to "
                            "establish and defend legal claims and to demonstrate compliance (GDPR Art. 5(2), "
                            "17(3)(b) and (e)); the ledger is append-only and hash-chained, and still verifies"})
    if found.access_entries:
        kept.append({"what": f"access log: {found.access_entries} entries about these calls and recordings",
                     "why": "accountability record of who accessed personal data and why (GDPR Art. 5(2), 30)"})
    kept.append({"what": f"this request ({label}) and its deletion records",
                 "why": "proof that the request was received and answered, and when"})
    report = {"request": label, "erased_at": now, "deleted": deleted, "kept": kept, "already_deleted": already}
    with vault.session() as session, session.begin():
        row = session.get(DsarRequest, request_id)
        assert row is not None
        row.erased_at, row.erase_report = now, json.dumps(report)
        row.found = json.dumps(found.as_dict())
        # The request record stays as proof it was answered, but not the number it was about.
        row.number, row.number_key = mask_number(row.number), "erased"
        if row.kind == "erasure" and row.closed_at is None:
            row.status, row.closed_at, row.closed_by, row.close_reason = "closed", now, actor.name, "erasure done"
    purge_freed(vault.engine)
    vault.record(actor, "dsar-erase", label, reason, "done",
                 {"deleted": len(deleted), "kept": len(kept), "already_deleted": len(already)})
    purge_freed(vault.engine)
    return report


def _found_for_erasure(vault: Vault, request: DsarRequest) -> Found:
    """What to erase: found by number the first time; afterwards the number is masked and its
    lookups shredded, so a repeated erasure works from the calls recorded the first time."""
    if request.erased_at is None:
        return find(vault, request.number)
    found = Found(call_ids=list(json.loads(request.found or "{}").get("calls", [])))
    if found.call_ids:
        with vault.session() as session:
            found.recordings = list(session.scalars(select(Recording).where(Recording.call_id.in_(found.call_ids))
                                                    .order_by(Recording.recorded_at)))
    return found


def mask_number(number: str) -> str:
    """"+442079460123" -> "+44*******23": enough to recognise a request, not to call anyone."""
    return number[:3] + "*" * max(0, len(number) - 5) + number[-2:] if len(number) > 5 else "*" * len(number)


def close(vault: Vault, user: str | None, request_id: int, reason: str) -> DsarView:
    """Close a request by hand (e.g. identity not verified, request withdrawn)."""
    actor = vault.authorize(user, "dsar-close", f"DSAR-{request_id}", reason, permission="dsar")
    with vault.session() as session, session.begin():
        row = session.get(DsarRequest, request_id)
        if row is None:
            raise VaultError(f"no request DSAR-{request_id}")
        if row.closed_at is not None:
            raise VaultError(f"DSAR-{request_id} is already closed ({row.close_reason})")
        row.status, row.closed_at, row.closed_by, row.close_reason = "closed", vault.clock(), actor.name, reason
    vault.record(actor, "dsar-close", f"DSAR-{request_id}", reason, "done")
    return DsarView.of(row)


__all__ = ["DsarView", "Found", "KINDS", "close", "erase", "export_bundle", "find", "list_requests",
           "normalise_number", "open_request", "show"]
