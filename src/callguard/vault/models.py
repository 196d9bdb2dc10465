"""The vault's tables, on the ledger's ``Base`` so one database holds all the evidence.

* ``vault_recordings``: the catalogue, one row per encrypted recording:
  where the ciphertext is, which key it is wrapped for, what it contained
  (size, duration, plaintext SHA-256), its purpose and retention deadline,
  and the ledger entry that recorded its storage.
* ``vault_holds``: legal holds, on one recording or on every recording of a call.
* ``vault_deletions``: one row per destroyed recording - when, by whom, why,
  and what was destroyed (the wrapped key and the ciphertext).
* ``vault_access_log``: every access attempt, allowed or denied, hash-chained.
* ``vault_dsar_requests``: data-subject requests with their 30-day clock.
* ``vault_sweeps``: every retention sweep, dry run or applied (the audit checks
  that sweeps ran on schedule).

Times are epoch seconds (floats) except in the access log, whose hashed
time is integer microseconds so the hash round-trips through any database.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from callguard.ledger.append_only import append_only
from callguard.ledger.models import HASH_LEN, ID_LEN, Base

RID_LEN = 32
KID_LEN = 16
STORED = "stored"
DELETED = "deleted"
#: kept encrypted as evidence but never served: the ledger says the call must have no recording
QUARANTINED = "quarantined"


class Recording(Base):
    __tablename__ = "vault_recordings"

    id: Mapped[str] = mapped_column(String(RID_LEN), primary_key=True)
    call_id: Mapped[str] = mapped_column(String(ID_LEN), index=True)
    #: Ciphertext path relative to the vault directory.
    file: Mapped[str] = mapped_column(String(512))
    #: The PBX's bare file name (never a path).
    source_name: Mapped[str] = mapped_column(String(ID_LEN))
    key_id: Mapped[str] = mapped_column(String(KID_LEN), index=True)
    purpose: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[float] = mapped_column(Float, index=True)
    ingested_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(16), default=STORED)
    deleted_at: Mapped[float | None] = mapped_column(Float)
    size: Mapped[int] = mapped_column(BigInteger)
    duration_s: Mapped[float | None] = mapped_column(Float)
    sample_rate: Mapped[int | None] = mapped_column(Integer)
    channels: Mapped[int | None] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(HASH_LEN), index=True)
    ciphertext_size: Mapped[int] = mapped_column(BigInteger)
    ciphertext_sha256: Mapped[str] = mapped_column(String(HASH_LEN))
    tag_chain: Mapped[str] = mapped_column(String(HASH_LEN))
    chunk_size: Mapped[int] = mapped_column(Integer)
    #: The "recording-stored" ledger entry (chain, seq, hash): the evidence link.
    ledger_chain: Mapped[str | None] = mapped_column(String(ID_LEN))
    ledger_seq: Mapped[int | None] = mapped_column(BigInteger)
    ledger_hash: Mapped[str | None] = mapped_column(String(HASH_LEN))
    #: DTMF scan: when, how many tones, how many outside muted spans, details (JSON).
    dtmf_scanned_at: Mapped[float | None] = mapped_column(Float)
    dtmf_tones: Mapped[int | None] = mapped_column(Integer)
    dtmf_leaks: Mapped[int | None] = mapped_column(Integer)
    dtmf_report: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        # The retention sweep's selection (stored and expired, oldest first), covering the
        # columns it reads so the scan never touches the table itself.
        Index("ix_vault_recordings_sweep", "state", "expires_at", "id", "call_id", "purpose"),
    )


class LegalHold(Base):
    __tablename__ = "vault_holds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: A hold on a call covers every recording of the call, including later ones.
    call_id: Mapped[str] = mapped_column(String(ID_LEN), index=True)
    #: Set when the hold covers one recording only.
    recording_id: Mapped[str | None] = mapped_column(String(RID_LEN), index=True)
    case_ref: Mapped[str | None] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    placed_by: Mapped[str] = mapped_column(String(128))
    placed_at: Mapped[float] = mapped_column(Float)
    released_by: Mapped[str | None] = mapped_column(String(128))
    released_at: Mapped[float | None] = mapped_column(Float, index=True)
    release_reason: Mapped[str | None] = mapped_column(Text)


class DeletionRecord(Base):
    __tablename__ = "vault_deletions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    recording_id: Mapped[str] = mapped_column(String(RID_LEN), index=True)
    call_id: Mapped[str] = mapped_column(String(ID_LEN), index=True)
    deleted_at: Mapped[float] = mapped_column(Float, index=True)
    actor: Mapped[str] = mapped_column(String(128))
    #: retention-expired | dsar-erasure | manual
    cause: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    purpose: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[float] = mapped_column(Float)
    sha256: Mapped[str] = mapped_column(String(HASH_LEN))
    key_id: Mapped[str] = mapped_column(String(KID_LEN))
    key_shredded: Mapped[bool] = mapped_column(Boolean)
    ciphertext_removed: Mapped[bool] = mapped_column(Boolean)
    sweep_id: Mapped[int | None] = mapped_column(Integer)
    dsar_id: Mapped[int | None] = mapped_column(Integer)


class AccessLogRecord(Base):
    __tablename__ = "vault_access_log"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at_us: Mapped[int] = mapped_column(BigInteger, index=True)
    #: Who asked (the --as user) and the operating-system account that ran the command.
    actor: Mapped[str] = mapped_column(String(128), index=True)
    os_user: Mapped[str] = mapped_column(String(128))
    role: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32), index=True)
    target: Mapped[str] = mapped_column(String(ID_LEN), index=True)
    reason: Mapped[str] = mapped_column(Text)
    #: granted | denied | done | failed
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(HASH_LEN))
    hash: Mapped[str] = mapped_column(String(HASH_LEN))


class DsarRequest(Base):
    __tablename__ = "vault_dsar_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    number: Mapped[str] = mapped_column(String(64))
    number_key: Mapped[str] = mapped_column(String(64), index=True)
    #: access | erasure
    kind: Mapped[str] = mapped_column(String(16))
    opened_at: Mapped[float] = mapped_column(Float)
    due_at: Mapped[float] = mapped_column(Float)
    opened_by: Mapped[str] = mapped_column(String(128))
    note: Mapped[str] = mapped_column(Text, default="")
    #: open | exported | erased | closed
    status: Mapped[str] = mapped_column(String(16))
    found: Mapped[str] = mapped_column(Text)
    exported_at: Mapped[float | None] = mapped_column(Float)
    export_path: Mapped[str | None] = mapped_column(String(1024))
    erased_at: Mapped[float | None] = mapped_column(Float)
    erase_report: Mapped[str | None] = mapped_column(Text)
    closed_at: Mapped[float | None] = mapped_column(Float)
    closed_by: Mapped[str | None] = mapped_column(String(128))
    close_reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_vault_dsar_open", "closed_at", "due_at"),)

    @property
    def label(self) -> str:
        return f"DSAR-{self.id}"


class SweepRun(Base):
    __tablename__ = "vault_sweeps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    started_at: Mapped[float] = mapped_column(Float, index=True)
    finished_at: Mapped[float | None] = mapped_column(Float)
    actor: Mapped[str] = mapped_column(String(128))
    applied: Mapped[bool] = mapped_column(Boolean)
    selected: Mapped[int] = mapped_column(Integer, default=0)
    deleted: Mapped[int] = mapped_column(Integer, default=0)
    held: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    report: Mapped[str] = mapped_column(Text, default="{}")


# Defence in depth: the access log's hash chain already makes an edit detectable.
append_only(AccessLogRecord.__table__, "the vault access log is append-only: it is the record of who "
            "touched personal data and why; it is never edited or pruned")
append_only(DeletionRecord.__table__, "deletion records are append-only proof of what was destroyed, "
            "when, by whom and why; they are never edited or removed")

VAULT_TABLES = [m.__table__ for m in (Recording, LegalHold, DeletionRecord, AccessLogRecord, DsarRequest,
                                      SweepRun)]

__all__ = [
    "AccessLogRecord",
    "DELETED",
    "DeletionRecord",
    "DsarRequest",
    "LegalHold",
    "Recording",
    "QUARANTINED",
    "STORED",
    "SweepRun",
    "VAULT_TABLES",
]
