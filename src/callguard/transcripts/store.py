"""Transcripts in the vault: sealed like recordings, read under ``transcript:read``, destroyed with them.

* Sealing: a fresh data key per transcript, wrapped for the vault's active
  public key into the same key store, the JSON encrypted in the same
  chunked AES-256-GCM envelope (:mod:`callguard.vault.envelope`) and read
  back authenticated before it is catalogued.  Reading needs the private
  key, as for recordings.
* Governance: a transcript takes its recording's purpose and retention
  date; it is destroyed (key shredded first) whenever its recording is -
  retention sweep, DSAR erasure, manual delete - so legal holds, which
  stop the recording's destruction, keep its transcript too.
* Reading: :func:`show` and :func:`search` authorize every call through
  :meth:`Vault.authorize` (access log first, ``granted`` or ``denied``),
  then log ``done`` with what was decrypted.

Search decrypts; there is no index.  An index of transcript words (even
hashed: the vocabulary of a call is small) is a second copy of the personal
data outside the envelope: readable by anyone who can read the database,
untouched by crypto-shredding (erasing a key would leave the words
findable), and needing its own retention and erasure.  Decrypting the
transcripts of a bounded date range (``--from``/``--to``) costs CPU per
search, but keeps "shred the key, the data is gone" true.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from sqlalchemy import select

from callguard.transcripts.models import Transcript
from callguard.transcripts.stage import Prepared
from callguard.vault.envelope import ChunkReader, IntegrityError, VaultError, encrypt_stream
from callguard.vault.keys import check_wrapped, wrap
from callguard.vault.models import DELETED, STORED
from callguard.vault.service import Actor, Vault

PERMISSION = "transcript:read"
FORMAT = "callguard-transcript/1"


@dataclass(frozen=True)
class Sealed:
    file: str
    key_id: str
    size: int
    sha256: str
    ciphertext_size: int
    ciphertext_sha256: str


def seal(vault: Vault, object_id: str, payload: bytes, recorded_at: float, suffix: str) -> Sealed:
    """Encrypt ``payload`` into the vault under a fresh data key; authenticated re-read before returning."""
    kid, public = vault.keyring.active()
    when = time.gmtime(recorded_at)
    relative = f"{when.tm_year:04d}/{when.tm_mon:02d}/{object_id}{suffix}"
    target = vault.ciphertext_path(relative)
    part = target.with_name(target.name + ".part")
    data_key = secrets.token_bytes(32)
    wrapped, ephemeral = wrap(data_key, public, object_id)
    vault.keystore.put(wrapped)
    try:
        if not check_wrapped(vault.keystore.get(object_id), ephemeral, public, data_key):
            raise VaultError(f"the key store entry for {object_id} did not read back correctly")
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(part, "xb") as out:
            result = encrypt_stream(io.BytesIO(payload), out, data_key=data_key, recording_id=object_id,
                                    key_id=kid, chunk_size=vault.settings.chunk_kib * 1024)
            out.flush()
            os.fsync(out.fileno())
        ciphertext = part.read_bytes()
        plain = b"".join(ChunkReader(io.BytesIO(ciphertext), data_key, where=str(part),
                                     expect_recording=object_id))
        if plain != payload:
            raise IntegrityError(f"{part}: re-read does not match what was written; the vault disk may be failing")
        os.replace(part, target)
    except BaseException:
        part.unlink(missing_ok=True)
        target.unlink(missing_ok=True)
        vault.keystore.shred(object_id)
        raise
    finally:
        data_key = b""
    return Sealed(relative, kid, len(payload), hashlib.sha256(payload).hexdigest(), len(ciphertext),
                  hashlib.sha256(ciphertext).hexdigest())


def store(vault: Vault, prepared: Prepared, *, recording_id: str, call_id: str, purpose: str,
          recorded_at: float, expires_at: float, actor: Actor) -> str | None:
    """Seal the (redacted) transcript and write its findings to the ledger; returns the transcript id."""
    if not prepared.coverage.covered or prepared.error:
        return None
    tid = uuid.uuid4().hex
    findings = [f.as_dict() for f in prepared.findings]
    payload = json.dumps({"format": FORMAT, "transcript_id": tid, "recording_id": recording_id, "call_id": call_id,
                          "engine": prepared.engine, "seconds": round(prepared.seconds, 3),
                          "words": [w.as_list() for w in prepared.words]}).encode()
    sealed = seal(vault, tid, payload, recorded_at, ".cgt")
    row = Transcript(id=tid, call_id=call_id, recording_id=recording_id, file=sealed.file, key_id=sealed.key_id,
                     purpose=purpose, recorded_at=recorded_at, created_at=vault.clock(), expires_at=expires_at,
                     state=STORED, engine=prepared.engine, notices=json.dumps(prepared.coverage.notices),
                     words=len(prepared.words), findings=json.dumps(findings), size=sealed.size,
                     sha256=sealed.sha256, ciphertext_size=sealed.ciphertext_size,
                     ciphertext_sha256=sealed.ciphertext_sha256)
    with vault.session() as session, session.begin():
        session.add(row)
    for finding in findings:
        vault.ledger_queue(call_id, "speech-redacted", {"recording_id": recording_id, "transcript_id": tid,
                                                        **finding, "engine": prepared.engine, "by": actor.name})
    committed = vault.ledger_append(call_id, "transcript-stored", {
        "transcript_id": tid, "recording_id": recording_id, "engine": prepared.engine,
        "notices": prepared.coverage.notices, "coverage": prepared.coverage.why, "words": len(prepared.words),
        "findings": len(findings), "sha256": sealed.sha256, "key_id": sealed.key_id, "purpose": purpose,
        "expires_at": expires_at, "by": actor.name})
    with vault.session() as session, session.begin():
        stored = session.get(Transcript, tid)
        assert stored is not None
        stored.ledger_seq = committed.seq
    return tid


def decrypt(vault: Vault, transcript: Transcript) -> dict[str, Any]:
    """The transcript's JSON (needs the private key of its key id), authenticated end to end."""
    from callguard.vault.recordings import data_key

    key = data_key(vault, transcript)  # type: ignore[arg-type] - needs only .id and .key_id
    path = vault.ciphertext_path(transcript.file)
    with open(path, "rb") as stream:
        plain = b"".join(ChunkReader(stream, key, where=str(path), expect_recording=transcript.id,
                                     expect_size=transcript.ciphertext_size))
    if hashlib.sha256(plain).hexdigest() != transcript.sha256:
        raise VaultError(f"transcript {transcript.id} decrypts to data whose SHA-256 differs from the catalogue")
    return json.loads(plain)


def for_call(vault: Vault, call_id: str, *, stored_only: bool = True) -> list[Transcript]:
    stmt = select(Transcript).where(Transcript.call_id == call_id).order_by(Transcript.recorded_at)
    if stored_only:
        stmt = stmt.where(Transcript.state == STORED)
    with vault.session() as session:
        return list(session.scalars(stmt))


def show(vault: Vault, user: str | None, call_id: str, reason: str) -> list[dict[str, Any]]:
    """Every stored transcript of ``call_id``, decrypted (``transcript:read``, logged)."""
    actor = vault.authorize(user, "transcript-read", call_id, reason, permission=PERMISSION)
    try:
        rows = for_call(vault, call_id)
        if not rows:
            raise VaultError(f"no stored transcript for call {call_id!r} (not transcribed, or deleted; "
                             f"`callguard ledger show {call_id}` says which)")
        out = [decrypt(vault, row) for row in rows]
    except Exception as exc:
        vault.record(actor, "transcript-read", call_id, reason, "failed", {"error": str(exc)})
        raise
    vault.record(actor, "transcript-read", call_id, reason, "done", {"transcripts": [r.id for r in rows]})
    return out


@dataclass(frozen=True)
class Hit:
    call_id: str
    transcript_id: str
    at_s: float
    snippet: str


def _snippet(words: list[list[Any]], index: int, length: int, context: int = 6) -> str:
    lo, hi = max(0, index - context), min(len(words), index + length + context)
    return " ".join(str(w[0]) for w in words[lo:hi])


def search(vault: Vault, user: str | None, text: str, *, start: float, end: float, reason: str,
           limit: int = 100) -> list[Hit]:
    """Calls recorded in [start, end) whose transcript contains ``text`` (words, case-insensitive)."""
    needle = text.lower().split()
    if not needle:
        raise VaultError("search text is empty")
    actor = vault.authorize(user, "transcript-search", "*", reason, permission=PERMISSION,
                            detail={"text": text, "from": start, "to": end})
    hits: list[Hit] = []
    read: list[str] = []
    try:
        with vault.session() as session:
            rows = list(session.scalars(select(Transcript).where(
                Transcript.state == STORED, Transcript.recorded_at >= start, Transcript.recorded_at < end)
                .order_by(Transcript.recorded_at)))
        for row in rows:
            words = decrypt(vault, row)["words"]
            read.append(row.id)
            lowered = [str(w[0]).lower() for w in words]
            for i in range(len(lowered) - len(needle) + 1):
                if lowered[i:i + len(needle)] == needle:
                    hits.append(Hit(row.call_id, row.id, float(words[i][1]), _snippet(words, i, len(needle))))
                    break
            if len(hits) >= limit:
                break
    except Exception as exc:
        vault.record(actor, "transcript-search", "*", reason, "failed", {"error": str(exc), "read": read})
        raise
    vault.record(actor, "transcript-search", "*", reason, "done",
                 {"read": read, "matched": [h.call_id for h in hits]})
    return hits


def destroy_for_recording(vault: Vault, actor: Actor, recording_id: str, *, cause: str, reason: str,
                          wait_for_ledger: bool = True) -> list[str]:
    """Crypto-shred and delete every transcript made from ``recording_id`` (called by vault deletion)."""
    with vault.session() as session:
        rows = list(session.scalars(select(Transcript).where(Transcript.recording_id == recording_id,
                                                             Transcript.state == STORED)))
    destroyed = []
    for row in rows:
        shredded = vault.keystore.shred(row.id)
        vault.ciphertext_path(row.file).unlink(missing_ok=True)
        with vault.session() as session, session.begin():
            stored = session.get(Transcript, row.id)
            assert stored is not None
            stored.state, stored.deleted_at = DELETED, vault.clock()
        data = {"transcript_id": row.id, "recording_id": recording_id, "cause": cause, "reason": reason,
                "key_shredded": shredded, "by": actor.name}
        if wait_for_ledger:
            vault.ledger_append(row.call_id, "transcript-deleted", data)
        else:
            vault.ledger_queue(row.call_id, "transcript-deleted", data)
        destroyed.append(row.id)
    return destroyed


def export_for_calls(vault: Vault, call_ids: Iterable[str], directory: Path) -> list[dict[str, Any]]:
    """DSAR export: each stored transcript of the calls as ``transcripts/<id>.json`` (already redacted)."""
    out = []
    for call_id in call_ids:
        for row in for_call(vault, call_id):
            directory.mkdir(parents=True, exist_ok=True)
            target = directory / f"{row.id}.json"
            target.write_text(json.dumps(decrypt(vault, row), indent=1))
            os.chmod(target, 0o600)
            out.append({"transcript_id": row.id, "call_id": call_id, "recording_id": row.recording_id,
                        "file": f"transcripts/{row.id}.json"})
    return out


__all__ = ["FORMAT", "Hit", "PERMISSION", "Sealed", "decrypt", "destroy_for_recording", "export_for_calls",
           "for_call", "search", "seal", "show", "store"]
