"""SQLAlchemy 2.0 models: the evidence ledger and the call index derived from it.

``Base`` is the one declarative base of callguard: other areas (the vault)
add their tables to the same ``Base.metadata`` so one ``create_all`` builds
the whole schema.  Importing this module has no side effects: no engine, no
connection, no table creation.

Two kinds of table live here:

* ``ledger_entries`` and ``chain_heads`` are the evidence.  Every entry is
  hash-chained to the previous one of the same chain (see
  :mod:`callguard.ledger.chain`); times are integer microseconds so the
  hashed values round-trip exactly through any database.
* ``calls`` and ``parties`` are an index for queries ("which calls involved
  this number?").  They are derived from the entries in the same
  transaction, are not hashed, and can always be rebuilt from the entries.

``ledger_entries`` is append-only in the database too (triggers, see
:mod:`callguard.ledger.append_only`); ``chain_heads``, ``calls`` and
``parties`` are updated by the writer and stay writable.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, LargeBinary, SmallInteger, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from callguard.ledger.append_only import append_only
from callguard.ledger.handle import ID_LEN  # generous bound for PBX identifiers (channel names, UUIDs, Linkedids)

#: Length of a hex SHA-256 digest.
HASH_LEN = 64


class Base(DeclarativeBase):
    """The declarative base every callguard table belongs to."""


class Call(Base):
    """One call as seen by the ledger: a summary kept current by the writer."""

    __tablename__ = "calls"

    call_id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    #: The chain of the first entry seen for the call (the listener that handled it).
    chain_id: Mapped[str] = mapped_column(String(ID_LEN), index=True)
    #: The controlled / recorded channel from "call-offered".
    channel: Mapped[str | None] = mapped_column(String(ID_LEN))
    #: PBX time (epoch seconds) of the first and last entry of the call.
    first_seen: Mapped[float] = mapped_column(Float, index=True)
    last_seen: Mapped[float] = mapped_column(Float)
    #: When the call was answered, derived from the notice offsets.
    answered_at: Mapped[float | None] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float)
    #: Session state at hangup ("hangup" entry), e.g. "recording", "declined".
    final_state: Mapped[str | None] = mapped_column(String(64))
    hangup_cause: Mapped[str | None] = mapped_column(String(128))
    #: The rule regime applied last ("rule-applied"); it may tighten mid-call.
    regime: Mapped[str | None] = mapped_column(String(32))
    recording_allowed: Mapped[bool | None]
    #: Bare recording file name from "recording-requested".
    recording_file: Mapped[str | None] = mapped_column(String(ID_LEN))
    entry_count: Mapped[int] = mapped_column(Integer, default=0)

    parties: Mapped[list[CallParty]] = relationship(
        back_populates="call", order_by="CallParty.id", cascade="all, delete-orphan"
    )


class CallParty(Base):
    """One leg of a call, with the jurisdiction and regime the policy gave it."""

    __tablename__ = "parties"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.call_id", ondelete="CASCADE"), index=True)
    channel: Mapped[str | None] = mapped_column(String(ID_LEN))
    #: The number as the PBX gave it, sealed (JSON of :mod:`callguard.evidence.pii`);
    #: plain text in ledgers written before sealing.
    number: Mapped[str | None] = mapped_column(Text)
    #: The subject lookup hash of the number (``pii.subject_of``), for requests (DSAR);
    #: before sealing, the number's digits.
    number_key: Mapped[str | None] = mapped_column(String(ID_LEN), index=True)
    name: Mapped[str | None] = mapped_column(Text)
    role: Mapped[str | None] = mapped_column(String(32))
    jurisdiction: Mapped[str | None] = mapped_column(String(32))
    regime: Mapped[str | None] = mapped_column(String(32))
    joined_at: Mapped[float] = mapped_column(Float)

    call: Mapped[Call] = relationship(back_populates="parties")


class LedgerEntryRecord(Base):
    """One hash-chained evidence entry.

    ``(chain_id, seq)`` is the key: seq counts from 1 without gaps inside a
    chain, so a deleted entry shows up as a gap and a reordered one as a
    broken ``prev_hash`` link.
    """

    __tablename__ = "ledger_entries"

    chain_id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    call_id: Mapped[str] = mapped_column(String(ID_LEN))
    kind: Mapped[str] = mapped_column(String(64))
    #: PBX clock, integer microseconds since the epoch (exact in every database).
    pbx_time_us: Mapped[int] = mapped_column(BigInteger)
    #: The listener's receive time, integer microseconds since the epoch.
    received_at_us: Mapped[int] = mapped_column(BigInteger)
    #: The entry's data as JSON text.
    data: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(HASH_LEN))
    hash: Mapped[str] = mapped_column(String(HASH_LEN))

    __table_args__ = (
        Index("ix_ledger_entries_call", "call_id", "chain_id", "seq"),
        Index("ix_ledger_entries_hash", "hash"),
    )

    @property
    def pbx_time(self) -> float:
        return self.pbx_time_us / 1_000_000

    @property
    def received_at(self) -> float:
        return self.received_at_us / 1_000_000


class ChainHead(Base):
    """The last entry of each chain: what ``verify`` checks the tail against."""

    __tablename__ = "chain_heads"

    chain_id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    last_hash: Mapped[str] = mapped_column(String(HASH_LEN))
    #: Wall-clock time of the last commit (epoch seconds), for `ledger verify`.
    updated_at: Mapped[float] = mapped_column(Float)
    #: Leaves in the chain's Merkle tree and its root (hex); NULL until the
    #: tree is built (a ledger written before the Merkle tree existed).
    tree_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    tree_root: Mapped[str | None] = mapped_column(String(HASH_LEN), nullable=True)


class MerkleNode(Base):
    """Stored interior nodes of each chain's RFC 9162 tree, every 8th level.

    Leaf ``seq - 1`` of a chain is ``SHA-256(0x00 || entry hash bytes)``.
    A node at ``(level, idx)`` is the root of leaves ``[idx << level,
    (idx + 1) << level)``; only levels 8, 16, 24, ... are kept (one row per
    256 entries, like the tiles of transparency-dev's tessera), so any proof
    is a few range reads plus at most a few hundred hashes.
    """

    __tablename__ = "merkle_nodes"

    chain_id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class CheckpointRecord(Base):
    """A signed checkpoint (C2SP tlog-checkpoint note) of one chain's tree."""

    __tablename__ = "checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    chain_id: Mapped[str] = mapped_column(String(ID_LEN))
    tree_size: Mapped[int] = mapped_column(BigInteger)
    root_hash: Mapped[str] = mapped_column(String(HASH_LEN))
    signed_at: Mapped[float] = mapped_column(Float)
    key_name: Mapped[str] = mapped_column(String(ID_LEN))
    #: The signed note, exactly as published.
    note: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index("ix_checkpoints_chain_size", "chain_id", "tree_size"),)


class Publication(Base):
    """Where a checkpoint was sent (witness directory / HTTPS witness) and how it went."""

    __tablename__ = "checkpoint_publications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    checkpoint_id: Mapped[int] = mapped_column(ForeignKey("checkpoints.id"), index=True)
    witness: Mapped[str] = mapped_column(String(ID_LEN))
    at: Mapped[float] = mapped_column(Float)
    #: "published", "cosigned", "refused", "failed"
    outcome: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text, default="")


class PiiKey(Base):
    """A per-call, per-subject key that seals personal data in ledger entries.

    Deleting the row is crypto-shredding: the sealed values in the
    (append-only, hash-chained) entries stay as they are, so every chain,
    tree and bundle still verifies, but nobody can read them any more.
    ``subject`` is a lookup hash of the phone number's digits (NULL for a
    party without a number) so a data-subject request finds its keys.
    """

    __tablename__ = "pii_keys"

    kid: Mapped[str] = mapped_column(String(32), primary_key=True)
    call_id: Mapped[str] = mapped_column(String(ID_LEN), index=True)
    subject: Mapped[str | None] = mapped_column(String(HASH_LEN), index=True, nullable=True)
    key: Mapped[bytes] = mapped_column(LargeBinary(32))
    created_at: Mapped[float] = mapped_column(Float)


append_only(LedgerEntryRecord.__table__, "ledger entries are append-only evidence of the notice, consent and "
            "recording decisions of each call; record a correction as a new entry (the writer never "
            "changes or removes one)")
append_only(MerkleNode.__table__, "Merkle tree nodes are derived from the evidence once and never change")
append_only(CheckpointRecord.__table__, "signed checkpoints are published evidence; sign a new one instead")

__all__ = ["HASH_LEN", "Base", "Call", "CallParty", "ChainHead", "CheckpointRecord", "LedgerEntryRecord", "MerkleNode",
           "PiiKey", "Publication"]
