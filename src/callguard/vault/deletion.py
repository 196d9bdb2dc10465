"""Destroying a recording: crypto-shred first, then the ciphertext, then the records.

Order matters.  The wrapped key is destroyed first: from that moment every
copy of the ciphertext (vault, replicas, backups) is unreadable, so even if
a later step fails the recording is gone.  Marking the catalogue first and
shredding second would risk the opposite - a recording reported deleted but
still readable.  Each destruction leaves a deletion record (who, when, why,
what: the plaintext SHA-256 and key id identify exactly which recording) and
a ``recording-deleted`` entry on the call's ledger timeline.
"""

from __future__ import annotations

from dataclasses import dataclass

from callguard.vault.envelope import VaultError
from callguard.vault.models import DELETED, DeletionRecord, Recording
from callguard.vault.service import Actor, Vault

CAUSES = ("retention-expired", "dsar-erasure", "manual")


@dataclass(frozen=True)
class Destroyed:
    recording_id: str
    call_id: str
    key_shredded: bool
    ciphertext_removed: bool
    deletion_id: int


def destroy(vault: Vault, actor: Actor, recording_id: str, *, cause: str, reason: str,
            sweep_id: int | None = None, dsar_id: int | None = None, wait_for_ledger: bool = True) -> Destroyed:
    """Crypto-shred and delete one stored recording (no permission or hold checks here)."""
    if cause not in CAUSES:
        raise VaultError(f"internal: unknown deletion cause {cause!r}")
    with vault.session() as session:
        recording = session.get(Recording, recording_id)
        if recording is None or recording.state == DELETED:
            raise VaultError(f"recording {recording_id} is not stored (already deleted or unknown)")
        call_id, path = recording.call_id, vault.ciphertext_path(recording.file)
    key_shredded = vault.keystore.shred(recording_id)
    try:
        path.unlink()
        removed = True
    except FileNotFoundError:
        removed = False
    now = vault.clock()
    with vault.session() as session, session.begin():
        recording = session.get(Recording, recording_id)
        assert recording is not None
        recording.state, recording.deleted_at = DELETED, now
        record = DeletionRecord(
            recording_id=recording_id, call_id=call_id, deleted_at=now, actor=actor.name, cause=cause,
            reason=reason, purpose=recording.purpose, expires_at=recording.expires_at, sha256=recording.sha256,
            key_id=recording.key_id, key_shredded=key_shredded, ciphertext_removed=removed, sweep_id=sweep_id,
            dsar_id=dsar_id)
        session.add(record)
        session.flush()
        deletion_id = record.id
        sha256, purpose = recording.sha256, recording.purpose
    data = {"recording_id": recording_id, "cause": cause, "reason": reason, "sha256": sha256, "purpose": purpose,
            "key_shredded": key_shredded, "ciphertext_removed": removed, "deletion_id": deletion_id,
            "by": actor.name}
    if wait_for_ledger:
        vault.ledger_append(call_id, "recording-deleted", data)
    else:
        vault.ledger_queue(call_id, "recording-deleted", data)
    # A transcript never outlives its audio (retention, DSAR erasure, manual delete alike).
    from callguard.transcripts.store import destroy_for_recording

    destroy_for_recording(vault, actor, recording_id, cause=cause, reason=reason, wait_for_ledger=wait_for_ledger)
    return Destroyed(recording_id, call_id, key_shredded, removed, deletion_id)


__all__ = ["CAUSES", "Destroyed", "destroy"]
