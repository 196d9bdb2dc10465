"""Reading the vault: list, listen, export, delete and verify recordings.

Each function authorizes (and logs) first.  Decryption needs the private
key of the recording's key id, so it only works on hosts where
``[vault] private_keys`` holds that key; everywhere else the error says so.
Listening streams plaintext only after a first pass authenticated the whole
file, so a truncated or tampered recording plays nothing at all; exporting
writes the file only after every chunk and the plaintext SHA-256 checked out.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterable

from sqlalchemy import select

from callguard.evidence.pii import subject_of
from callguard.ledger.queries import calls_of_number
from callguard.vault.deletion import Destroyed, destroy
from callguard.vault.envelope import ChunkReader, VaultError, decrypt_to_file, scan_structure
from callguard.vault.holds import HoldView, active_holds
from callguard.vault.keys import unwrap
from callguard.vault.models import DELETED, QUARANTINED, STORED, DeletionRecord, Recording
from callguard.vault.service import Actor, Vault


@dataclass(frozen=True)
class RecordingView:
    """Catalogue facts about one recording (no content)."""

    id: str
    call_id: str
    state: str
    purpose: str
    recorded_at: float
    ingested_at: float
    expires_at: float
    deleted_at: float | None
    size: int
    duration_s: float | None
    sha256: str
    key_id: str
    dtmf_leaks: int | None
    ledger_seq: int | None

    @classmethod
    def of(cls, r: Recording) -> "RecordingView":
        return cls(r.id, r.call_id, r.state, r.purpose, r.recorded_at, r.ingested_at, r.expires_at, r.deleted_at,
                   r.size, r.duration_s, r.sha256, r.key_id, r.dtmf_leaks, r.ledger_seq)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class NotFound(VaultError):
    """No such recording in the catalogue."""


def _load(vault: Vault, recording_id: str, *, allowed: tuple[str, ...] = (STORED,)) -> Recording:
    """The catalogue row, if its state allows what the caller does (serving: only ``stored``)."""
    with vault.session() as session:
        recording = session.get(Recording, recording_id)
    if recording is None:
        raise NotFound(f"no recording {recording_id!r} in the vault catalogue (`callguard recordings list`)")
    if recording.state in allowed:
        return recording
    if recording.state == QUARANTINED:
        raise VaultError(f"recording {recording_id} of call {recording.call_id} is quarantined: the ledger says "
                         f"the call must have no recording (`callguard recordings show {recording_id}`). It is "
                         f"kept encrypted as evidence and never played or exported; delete it with "
                         f"`callguard recordings delete {recording_id} --reason ...` when the incident is closed")
    raise VaultError(f"recording {recording_id} was deleted on {recording.deleted_at:.0f}; "
                     f"`callguard recordings show {recording_id}` has the deletion record")


def data_key(vault: Vault, recording: Recording) -> bytes:
    """Unwrap the recording's data key with the private key for its key id."""
    private = vault.private_keys.get(recording.key_id)
    return unwrap(vault.keystore.get(recording.id), private, recording.id)


def list_recordings(vault: Vault, user: str | None, *, call_id: str | None = None, number: str | None = None,
                    purpose: str | None = None, include_deleted: bool = False, limit: int = 200,
                    reason: str = "") -> list[RecordingView]:
    # The access log is append-only: it names a number by its subject hash, never the number itself,
    # so an erasure request leaves nothing readable behind (the hash is what the ledger index uses).
    target = call_id or (f"subject:{subject_of(number) or '-'}" if number else "*")
    vault.authorize(user, "list", target, reason)
    stmt = select(Recording).order_by(Recording.recorded_at.desc()).limit(limit)
    if call_id:
        stmt = stmt.where(Recording.call_id == call_id)
    if number:
        stmt = stmt.where(Recording.call_id.in_(calls_of_number(number)))
    if purpose:
        stmt = stmt.where(Recording.purpose == purpose)
    if not include_deleted:
        stmt = stmt.where(Recording.state.in_((STORED, QUARANTINED)))
    with vault.session() as session:
        return [RecordingView.of(r) for r in session.scalars(stmt)]


@dataclass
class RecordingDetail:
    recording: RecordingView
    holds: list[HoldView]
    deletion: dict[str, Any] | None
    dtmf: dict[str, Any] | None
    quarantined: str | None = None  #: why it is kept but never served


def show(vault: Vault, user: str | None, recording_id: str, reason: str = "") -> RecordingDetail:
    actor = vault.authorize(user, "show", recording_id, reason, permission="list")

    def work() -> RecordingDetail:
        recording = _load(vault, recording_id, allowed=(STORED, QUARANTINED, DELETED))
        with vault.session() as session:
            holds = [HoldView.of(h) for h in active_holds(session, recording)]
            deletion = session.scalars(select(DeletionRecord)
                                       .where(DeletionRecord.recording_id == recording_id)).first()
            quarantined = _quarantine_reason(session, recording) if recording.state == QUARANTINED else None
        return RecordingDetail(
            RecordingView.of(recording), holds,
            {"at": deletion.deleted_at, "by": deletion.actor, "cause": deletion.cause, "reason": deletion.reason,
             "key_shredded": deletion.key_shredded} if deletion else None,
            json.loads(recording.dtmf_report) if recording.dtmf_report else None, quarantined)

    detail = _guarded(vault, actor, "show", recording_id, reason, work)
    vault.record(actor, "show", recording_id, reason, "done", {"state": detail.recording.state})
    return detail


def _quarantine_reason(session, recording: Recording) -> str:  # type: ignore[no-untyped-def]
    """The ``why`` of the recording's ``recording-quarantined`` ledger entry."""
    from callguard.ledger.queries import timeline

    for entry in timeline(session, recording.call_id):
        data = entry.data if isinstance(entry.data, dict) else {}
        if entry.kind == "recording-quarantined" and data.get("recording_id") == recording.id:
            return str(data.get("why", ""))
    return "the ledger shows no recording for this call"


def _guarded(vault: Vault, actor: Actor, action: str, recording_id: str, reason: str, work):  # type: ignore[no-untyped-def]
    """Run ``work``; an error is logged as the attempt's outcome (``not-found`` or ``failed``) and re-raised."""
    try:
        result = work()
    except Exception as exc:
        vault.record(actor, action, recording_id, reason, "not-found" if isinstance(exc, NotFound) else "failed",
                     {"error": str(exc)})
        raise
    return result


def listen(vault: Vault, user: str | None, recording_id: str, reason: str, sink: BinaryIO) -> int:
    """Stream the verified plaintext to ``sink`` (a pipe to a player); returns bytes written."""
    actor = vault.authorize(user, "listen", recording_id, reason)

    def work() -> int:
        recording = _load(vault, recording_id)
        key = data_key(vault, recording)
        path = vault.ciphertext_path(recording.file)
        digest = hashlib.sha256()
        with open(path, "rb") as stream:  # pass 1: authenticate everything, release nothing
            for plain in ChunkReader(stream, key, where=str(path), expect_recording=recording.id,
                                     expect_size=recording.ciphertext_size):
                digest.update(plain)
        if digest.hexdigest() != recording.sha256:
            raise VaultError(f"recording {recording_id} decrypts to data whose SHA-256 differs from the one "
                             f"recorded at ingest; not played")
        written = 0
        with open(path, "rb") as stream:  # pass 2: the same authenticated bytes, to the player
            for plain in ChunkReader(stream, key, where=str(path), expect_recording=recording.id):
                sink.write(plain)
                written += len(plain)
        sink.flush()
        return written

    written = _guarded(vault, actor, "listen", recording_id, reason, work)
    vault.record(actor, "listen", recording_id, reason, "done", {"bytes": written})
    return written


def export(vault: Vault, user: str | None, recording_id: str, reason: str, out: Path, *,
           _actor: Actor | None = None, _action: str = "export") -> Path:
    """Decrypt to ``out`` (mode 0600); only a fully verified file appears there."""
    actor = _actor or vault.authorize(user, "export", recording_id, reason, detail={"to": str(out)})

    def work() -> Path:
        recording = _load(vault, recording_id)
        key = data_key(vault, recording)
        decrypt_to_file(vault.ciphertext_path(recording.file), out, key, expect_recording=recording.id,
                        expect_size=recording.ciphertext_size, expect_sha256=recording.sha256)
        return out

    _guarded(vault, actor, _action, recording_id, reason, work)
    if _actor is None:
        vault.record(actor, "export", recording_id, reason, "done", {"to": str(out.resolve())})
    return out


def delete(vault: Vault, user: str | None, recording_id: str, reason: str) -> Destroyed:
    """Crypto-shred one recording before its retention ends (refused under legal hold)."""
    actor = vault.authorize(user, "delete", recording_id, reason)

    def work() -> Destroyed:
        recording = _load(vault, recording_id, allowed=(STORED, QUARANTINED))
        with vault.session() as session:
            holds = active_holds(session, recording)
        if holds:
            message = "; ".join(f"#{h.id} ({h.reason})" for h in holds)
            raise VaultError(f"recording {recording_id} is under legal hold {message}; release the hold first "
                             f"(`callguard hold release ID --reason ...`)")
        return destroy(vault, actor, recording_id, cause="manual", reason=reason)

    destroyed = _guarded(vault, actor, "delete", recording_id, reason, work)
    vault.record(actor, "delete", recording_id, reason, "done", destroyed.__dict__)
    return destroyed


@dataclass
class VerifyResult:
    checked: int = 0
    deep: int = 0
    problems: dict[str, str] = field(default_factory=dict)
    orphans: list[str] = field(default_factory=list)


def verify(vault: Vault, user: str | None, recording_ids: Iterable[str] | None = None, *, deep: bool = False,
           reason: str = "integrity check") -> VerifyResult:
    """Integrity of stored recordings, with or without the private key.

    Always (no key): the file exists, its header names the recording, the
    ciphertext SHA-256 matches the catalogue, the chunk structure and tag
    chain match, the wrapped key is in the key store.  With ``deep`` (needs
    the private key): every chunk authenticates and the plaintext SHA-256
    matches.  Also lists orphan ``.cgv`` files the catalogue does not know.
    """
    actor = vault.authorize(user, "verify", "*" if recording_ids is None else ",".join(recording_ids)[:200],
                            reason, permission="audit", detail={"deep": deep})
    result = VerifyResult()
    stmt = select(Recording).where(Recording.state.in_((STORED, QUARANTINED)))
    if recording_ids is not None:
        stmt = stmt.where(Recording.id.in_(list(recording_ids)))
    with vault.session() as session:
        recordings = list(session.scalars(stmt))
    known = set()
    for recording in recordings:
        result.checked += 1
        path = vault.ciphertext_path(recording.file)
        known.add(os.path.realpath(path))
        try:
            _verify_keyless(vault, recording, path)
            if deep:
                key = data_key(vault, recording)
                digest = hashlib.sha256()
                with open(path, "rb") as stream:
                    for plain in ChunkReader(stream, key, where=str(path), expect_recording=recording.id,
                                             expect_size=recording.ciphertext_size):
                        digest.update(plain)
                if digest.hexdigest() != recording.sha256:
                    raise VaultError("plaintext SHA-256 differs from the catalogue")
                result.deep += 1
        except Exception as exc:  # noqa: BLE001 - report every recording's problem
            result.problems[recording.id] = str(exc)
    if recording_ids is None and vault.dir.exists():
        for path in vault.dir.glob("*/*/*.cgv"):
            if os.path.realpath(path) not in known:
                with vault.session() as session:
                    row = session.get(Recording, path.stem)
                if row is None or row.state == DELETED:
                    result.orphans.append(str(path))
    vault.record(actor, "verify", "*", reason, "done" if not result.problems else "failed",
                 {"checked": result.checked, "deep": result.deep, "problems": result.problems,
                  "orphans": result.orphans})
    return result


def _verify_keyless(vault: Vault, recording: Recording, path: Path) -> None:
    if not path.exists():
        raise VaultError(f"ciphertext {path} is missing")
    size = path.stat().st_size
    if size != recording.ciphertext_size:
        raise VaultError(f"ciphertext is {size} bytes, the catalogue says {recording.ciphertext_size} "
                         f"({'truncated' if size < recording.ciphertext_size else 'extended'})")
    with open(path, "rb") as stream:
        header, chunks, chain = scan_structure(stream, where=str(path))
        if header.recording_id != recording.id:
            raise VaultError(f"the file holds recording {header.recording_id}, not {recording.id} (swapped)")
        if chain != recording.tag_chain:
            raise VaultError("chunk tags do not match the catalogue (chunks replaced or reordered)")
        stream.seek(0)
        digest = hashlib.sha256()
        while block := stream.read(1 << 20):
            digest.update(block)
    if digest.hexdigest() != recording.ciphertext_sha256:
        raise VaultError("ciphertext SHA-256 differs from the catalogue (modified on disk)")
    if not vault.keystore.exists(recording.id):
        raise VaultError("its wrapped key is missing from the key store (unreadable: shredded or not mounted)")


def rescan_dtmf(vault: Vault, user: str | None, recording_id: str, reason: str = "DTMF leak scan") -> dict[str, Any]:
    """Scan a stored recording for keypad tones (needs its private key) and update the catalogue.

    For recordings ingested with ``scan_dtmf`` off, or to re-check with a
    newer detector.  The audio is decrypted chunk by chunk in memory and
    never written to disk.
    """
    from callguard.ledger.queries import timeline
    from callguard.wav import AudioFormatError
    from callguard.vault.dtmf import scan as scan_audio
    from callguard.vault.envelope import DecryptingReader
    from callguard.vault.leaks import classify, recording_window, summary

    actor = vault.authorize(user, "dtmf-scan", recording_id, reason, permission="audit")

    def work() -> dict[str, Any]:
        recording = _load(vault, recording_id)
        key = data_key(vault, recording)
        with vault.session() as session:
            window = recording_window(timeline(session, recording.call_id), recording.source_name)
        with open(vault.ciphertext_path(recording.file), "rb") as stream:
            audio = DecryptingReader(stream, key, where=recording.file, expect_recording=recording.id,
                                     expect_size=recording.ciphertext_size)
            try:
                tones, _ = scan_audio(audio)  # type: ignore[arg-type]
                report = summary(classify(tones, window), window)
            except AudioFormatError as exc:
                report = {"skipped": str(exc)}
        with vault.session() as session, session.begin():
            row = session.get(Recording, recording_id)
            assert row is not None
            row.dtmf_report = json.dumps(report)
            if "skipped" not in report:
                row.dtmf_scanned_at, row.dtmf_tones, row.dtmf_leaks = vault.clock(), len(report["tones"]), report["leaks"]
        return report

    report = _guarded(vault, actor, "dtmf-scan", recording_id, reason, work)
    vault.record(actor, "dtmf-scan", recording_id, reason, "done", {"leaks": report.get("leaks")})
    return report


__all__ = ["NotFound", "RecordingDetail", "RecordingView", "VerifyResult", "data_key", "delete", "export", "list_recordings", "rescan_dtmf",
           "listen", "show", "verify"]
