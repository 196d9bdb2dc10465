"""Ingest: encrypt a finished recording, prove the ciphertext, then remove the plaintext.

Order of operations (each step only if the previous one succeeded):

1. check the request: permission, the call is in the ledger and its
   recording has stopped, the file is a regular file (no symlink games);
2. scan the plaintext for DTMF leaks (we hold the audio now; later only a
   private-key holder could);
3. fresh data key; wrap it for the active public key; write the wrapped key
   to the key store and *read it back*, proving it opens to the data key
   with the ephemeral secret only we hold (no private key needed);
4. encrypt to ``<rid>.cgv.part`` (SHA-256 of the plaintext computed on the
   way), fsync, then **authenticated re-read**: decrypt every chunk from
   disk with the data key still in memory, check sizes and the tag chain,
   hash the ciphertext; rename into place;
5. catalogue row + ``recording-stored`` ledger entry (size, duration,
   SHA-256, key id, ciphertext SHA-256) + access-log entry;
6. only then unlink the plaintext.

Why the re-read proves enough without the private key: the data key is
fresh and known only to this process, so a chunk that authenticates under
it with the right index and final flag is exactly the chunk we wrote;
every chunk authenticating in order means the file decrypts to the bytes
we hashed.  After this function returns the data key is gone and only the
private key can read the recording.  Later keyless checks use the stored
ciphertext SHA-256 and tag chain (``callguard vault verify``).

If anything fails, what was written (key store entry, ciphertext) is
removed and the plaintext stays where it was.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import stat
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import select

from callguard.config import Config
from callguard.ledger.queries import get_call, timeline
from callguard.wav import AudioFormatError
from callguard.vault.container import NotAudio, probe
from callguard.vault.envelope import ChunkReader, IntegrityError, VaultError, encrypt_stream
from callguard.vault.keys import check_wrapped, wrap
from callguard.vault.leaks import classify, recording_window, summary
from callguard.vault.models import QUARANTINED, STORED, Recording
from callguard.vault.service import Actor, Vault

log = logging.getLogger("callguard.vault")


class NotReady(VaultError):
    """The ledger does not (yet) show the call or its recording as stopped.

    On the live path the PBX event that triggers ingest can arrive a few
    milliseconds before the ledger writer commits the matching entry;
    :class:`VaultIngestor` retries these, a person at the CLI gets the message.
    """


@dataclass(frozen=True)
class IngestResult:
    recording_id: str
    call_id: str
    path: Path
    size: int
    duration_s: float | None
    sha256: str
    key_id: str
    purpose: str
    expires_at: float
    plaintext_removed: bool
    dtmf: dict[str, Any] | None
    ledger_seq: int
    #: why the ledger says this call must have no recording (then it is stored QUARANTINED), else None
    quarantined: str | None = None
    #: what the transcription stage did (None: no purpose declares transcription)
    transcription: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"recording_id": self.recording_id, "call_id": self.call_id, "file": str(self.path),
                "size": self.size, "duration_s": self.duration_s, "sha256": self.sha256,
                "key_id": self.key_id, "purpose": self.purpose, "expires_at": self.expires_at,
                "plaintext_removed": self.plaintext_removed, "dtmf_leaks": (self.dtmf or {}).get("leaks"),
                "ledger_seq": self.ledger_seq, "quarantined": self.quarantined,
                "transcription": self.transcription}


class _HashingReader:
    """A read-through wrapper hashing every byte read (the ciphertext SHA-256 on re-read)."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.hash = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.hash.update(data)
        return data

    def seekable(self) -> bool:
        return False


def _open_source(path: Path) -> tuple[int, os.stat_result]:
    """Open the plaintext without following a symlink; it must be a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise VaultError(f"{path}: no such file") from None
    except OSError as exc:
        if exc.errno == 40:  # ELOOP: it is a symlink
            raise VaultError(f"{path}: is a symbolic link; ingest the real file (callguard never follows "
                             f"links out of the spool directory)") from None
        raise VaultError(f"{path}: cannot open: {exc.strerror}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise VaultError(f"{path}: not a regular file")
    return fd, info


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ingest_file(vault: Vault, path: str | os.PathLike[str], call_id: str, *, purpose: str | None = None,
                user: str | None = None, reason: str = "recording stopped", recorded_at: float | None = None,
                keep_plaintext: bool = False) -> IngestResult:
    """Encrypt ``path`` into the vault for ``call_id``; see the module docstring for the steps."""
    source = Path(path)
    purpose = purpose or vault.settings.default_purpose
    actor = vault.authorize(user, "ingest", call_id, reason, detail={"file": source.name, "purpose": purpose})
    try:
        result = _ingest(vault, actor, source, call_id, purpose, reason, recorded_at, keep_plaintext)
    except Exception as exc:
        vault.record(actor, "ingest", call_id, reason, "failed", {"file": source.name, "error": str(exc)})
        raise
    vault.record(actor, "ingest", call_id, reason, "done", result.as_dict())
    return result


def _ingest(vault: Vault, actor: Actor, source: Path, call_id: str, purpose: str, reason: str,
            recorded_at: float | None, keep_plaintext: bool) -> IngestResult:
    days = vault.retention_days(purpose)
    if not os.path.lexists(source):
        raise VaultError(f"{source}: no such file")
    with vault.session() as session:
        if get_call(session, call_id) is None:
            raise NotReady(f"call {call_id!r} is not in the ledger; a recording is only stored with its "
                           f"evidence (check the id with `callguard ledger show`)")
        entries = timeline(session, call_id)
        existing = session.scalars(select(Recording).where(Recording.call_id == call_id,
                                                           Recording.source_name == source.name)).first()
    if existing is not None:
        raise VaultError(f"{source.name} of call {call_id} is already in the vault as recording "
                         f"{existing.id} ({existing.state}); nothing was changed")
    window = recording_window(entries, source.name)
    if vault.settings.require_call_ended and not window.stopped:
        raise NotReady(f"the ledger does not show the recording of call {call_id} as stopped; the PBX may "
                       f"still be writing {source.name}. Ingest after recording-stopped/hangup")
    fd, before = _open_source(source)
    os.close(fd)  # checked: a regular file, not a link; reopened below for encryption
    try:
        facts = probe(source)
    except NotAudio as exc:
        raise VaultError(f"{source}: refused, not a complete recording: {exc}. Nothing was stored; the file "
                         f"was left where it is") from None
    from callguard.vault.audit import unlawful_recording

    quarantine = unlawful_recording(entries)
    dtmf = None
    if vault.settings.scan_dtmf:
        from callguard.vault.dtmf import scan as scan_dtmf  # numpy: only when scanning

        try:
            tones, _ = scan_dtmf(source)
            dtmf = summary(classify(tones, window), window)
        except AudioFormatError as exc:
            dtmf = {"skipped": str(exc)}
    prepared = None
    # A site that declared no transcription never loads an engine; an unlawful recording is not transcribed.
    if vault.config.transcripts.purposes and not quarantine:
        from callguard.transcripts.stage import prepare

        prepared = prepare(vault.config.transcripts, source, entries, purpose)
    try:
        return _seal_recording(vault, actor, source, call_id, purpose, recorded_at, keep_plaintext, days, window,
                               before, facts, dtmf, quarantine, prepared)
    finally:
        if prepared is not None and prepared.audio != source:
            prepared.audio.unlink(missing_ok=True)


def _seal_recording(vault: Vault, actor: Actor, source: Path, call_id: str, purpose: str, recorded_at: float | None,
                    keep_plaintext: bool, days: int, window: Any, before: os.stat_result, facts: Any,
                    dtmf: dict[str, Any] | None, quarantine: tuple[str, str] | None, prepared: Any) -> IngestResult:
    """Steps 3-6 of the module docstring; ``prepared.audio`` (the redacted copy) is what gets encrypted."""
    kid, public = vault.keyring.active()
    payload = prepared.audio if prepared is not None else source
    now = vault.clock()
    started = recorded_at if recorded_at is not None else (window.started_at or before.st_mtime)
    rid = uuid.uuid4().hex
    when = time.gmtime(started)
    relative = f"{when.tm_year:04d}/{when.tm_mon:02d}/{rid}.cgv"
    target = vault.ciphertext_path(relative)
    part = target.with_name(target.name + ".part")
    data_key = secrets.token_bytes(32)
    wrapped, ephemeral = wrap(data_key, public, rid)
    wrote_key = False
    fd = -1
    step = "re-opening the recording"
    try:
        fd, reopened = _open_source(source)
        if (reopened.st_ino, reopened.st_dev) != (before.st_ino, before.st_dev):
            raise VaultError(f"{source} was replaced while it was being scanned; nothing was stored")
        if payload != source:
            os.close(fd)
            fd = -1
            fd, _ = _open_source(payload)
        step = f"writing its wrapped key to the key store {vault.keystore.dir}"
        vault.keystore.put(wrapped)
        wrote_key = True
        if not check_wrapped(vault.keystore.get(rid), ephemeral, public, data_key):
            raise VaultError(f"the key store entry for {rid} did not read back correctly; "
                             f"check the key store disk ({vault.keystore.dir})")
        step = f"writing the ciphertext {part}"
        target.parent.mkdir(parents=True, exist_ok=True)
        chunk = vault.settings.chunk_kib * 1024
        with os.fdopen(fd, "rb") as plain, open(part, "xb") as out:
            fd = -1
            encrypted = encrypt_stream(plain, out, data_key=data_key, recording_id=rid, key_id=kid,
                                       chunk_size=chunk)
            out.flush()
            os.fsync(out.fileno())
        after = os.stat(source, follow_symlinks=False)
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns) \
                or encrypted.plaintext_size != os.stat(payload).st_size:
            raise VaultError(f"{source} changed while it was being encrypted (is the PBX still writing it?); "
                             f"nothing was stored, try again when the recording has finished")
        step = f"re-reading the ciphertext {part}"
        with open(part, "rb") as raw:
            hashing = _HashingReader(raw)
            reader = ChunkReader(hashing, data_key, where=str(part), expect_recording=rid)  # type: ignore[arg-type]
            for _ in reader:
                pass
        if (reader.plaintext_size != encrypted.plaintext_size or reader.chunks != encrypted.chunks
                or reader.tag_chain != encrypted.tag_chain
                or part.stat().st_size != encrypted.ciphertext_size):
            raise IntegrityError(f"{part}: re-read does not match what was written (sizes or tag chain); "
                                 f"the vault disk may be failing. The plaintext was kept")
        ciphertext_sha256 = hashing.hash.hexdigest()
        step = f"moving the ciphertext into place as {target}"
        os.replace(part, target)
        _fsync_dir(target.parent)
    except BaseException as exc:
        if fd >= 0:
            os.close(fd)
        part.unlink(missing_ok=True)
        target.unlink(missing_ok=True)
        if wrote_key:
            vault.keystore.shred(rid)
        if isinstance(exc, OSError):  # a full disk, a quota, a read-only mount: say where, and that nothing is lost
            raise VaultError(f"{source}: not stored: {step} failed ({exc.strerror or exc}). Nothing was lost: "
                             f"the recording is still at {source} and the partial vault files were removed; "
                             f"free space there and ingest again") from exc
        raise
    finally:
        data_key = b""
        del ephemeral
    expires = started + days * 86400
    duration, rate, channels = facts.duration_s, facts.sample_rate, facts.channels
    row = Recording(
        id=rid, call_id=call_id, file=relative, source_name=source.name[:255], key_id=kid, purpose=purpose,
        recorded_at=started, ingested_at=now, expires_at=expires, state=QUARANTINED if quarantine else STORED, size=encrypted.plaintext_size,
        duration_s=duration, sample_rate=rate, channels=channels,
        sha256=encrypted.plaintext_sha256 or "", ciphertext_size=encrypted.ciphertext_size,
        ciphertext_sha256=ciphertext_sha256, tag_chain=encrypted.tag_chain, chunk_size=chunk,
        dtmf_scanned_at=now if dtmf and "skipped" not in dtmf else None,
        dtmf_tones=len(dtmf["tones"]) if dtmf and "tones" in dtmf else None,
        dtmf_leaks=dtmf.get("leaks") if dtmf else None,
        dtmf_report=json.dumps(dtmf) if dtmf else None,
    )
    try:
        with vault.session() as session, session.begin():
            session.add(row)
        committed = vault.ledger_append(call_id, "recording-quarantined" if quarantine else "recording-stored", {
            "recording_id": rid, "file": source.name, "size": row.size, "duration_s": duration,
            "sha256": row.sha256, "key_id": kid, "ciphertext_sha256": ciphertext_sha256,
            "tag_chain": row.tag_chain, "purpose": purpose, "expires_at": expires,
            "dtmf_leaks": row.dtmf_leaks, "by": actor.name,
            **({"check": quarantine[0], "why": quarantine[1]} if quarantine else {}),
            **({"transcription": prepared.summary()} if prepared is not None else {}),
        })
        with vault.session() as session, session.begin():
            stored = session.get(Recording, rid)
            assert stored is not None
            stored.ledger_chain, stored.ledger_seq, stored.ledger_hash = committed.chain_id, committed.seq, committed.hash
    except BaseException:
        # The plaintext is still there: undo the vault side so a retry starts clean.
        with vault.session() as session, session.begin():
            leftover = session.get(Recording, rid)
            if leftover is not None and leftover.ledger_seq is None:
                session.delete(leftover)
        vault.keystore.shred(rid)
        target.unlink(missing_ok=True)
        raise
    if prepared is not None:
        from callguard.transcripts.store import store as store_transcript

        try:
            store_transcript(vault, prepared, recording_id=rid, call_id=call_id, purpose=purpose,
                             recorded_at=started, expires_at=expires, actor=actor)
        except Exception as exc:  # noqa: BLE001 - the (redacted) recording is stored; say what is missing
            log.error("vault: call %s: transcript not stored: %s", call_id, exc)
            vault.ledger_append(call_id, "transcript-failed", {"recording_id": rid, "error": str(exc)})
    removed = False
    if not keep_plaintext:
        source.unlink()
        _fsync_dir(source.parent)
        removed = True
    if quarantine:
        log.warning("vault: call %s: %s QUARANTINED as %s (%s): kept encrypted, never served; the audit reports it",
                    call_id, source.name, rid, quarantine[1])
    else:
        log.info("vault: call %s: %s stored as %s (%d bytes, key %s)%s", call_id, source.name, rid, row.size, kid,
                 "" if removed else ", plaintext kept")
    return IngestResult(rid, call_id, target, row.size, duration, row.sha256, kid, purpose, expires, removed,
                        dtmf, committed.seq, quarantine[1] if quarantine else None,
                        prepared.summary() if prepared is not None else None)


class VaultIngestor:
    """What an adapter calls on recording-stopped: ingest off the event loop, one at a time.

    ``submit`` returns at once with a Future; failures are logged and the
    plaintext stays in the spool directory for a later `callguard vault
    ingest` (nothing is ever lost by a failed ingest).
    """

    #: Waits between attempts while the ledger catches up with the PBX (seconds).
    retry_delays: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0)

    def __init__(self, config: Config, *, user: str | None = None) -> None:
        self.config = config
        self.user = user
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="callguard-vault")
        self._vault: Vault | None = None
        self._lock = threading.Lock()

    def _get_vault(self) -> Vault:
        with self._lock:
            if self._vault is None:
                self._vault = Vault.open(self.config)
            return self._vault

    def _run(self, call_id: str, path: Path) -> IngestResult:
        for delay in (*self.retry_delays, None):
            try:
                return ingest_file(self._get_vault(), path, call_id, user=self.user)
            except NotReady as exc:
                if delay is None:
                    log.error("vault: %s; %s kept for a later `callguard vault ingest`", exc, path)
                    raise
                time.sleep(delay)
            except VaultError as exc:  # a refusal or a failed check: the message says what and why
                log.error("vault: %s of call %s not stored: %s; the plaintext was kept", path, call_id, exc)
                raise
            except Exception:
                log.exception("vault: ingest of %s for call %s failed; the plaintext was kept", path, call_id)
                raise
        raise AssertionError("unreachable")

    def submit(self, call_id: str, path: str | os.PathLike[str]) -> "Future[IngestResult]":
        return self._executor.submit(self._run, call_id, Path(path))

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        if self._vault is not None:
            self._vault.close()


def on_recording_stopped(config: Config, call_id: str, path: str | os.PathLike[str],
                         user: str | None = None) -> IngestResult:
    """Synchronous one-shot ingest (for scripts and dialplan hooks); see :class:`VaultIngestor`."""
    with Vault.open(config) as vault:
        return ingest_file(vault, path, call_id, user=user)


__all__ = ["IngestResult", "NotReady", "VaultIngestor", "ingest_file", "on_recording_stopped"]
