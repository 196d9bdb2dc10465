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

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from callguard.ledger.append_only import append_only

#: Length of a hex SHA-256 digest.
HASH_LEN = 64
#: Generous bound for PBX identifiers (channel names, UUIDs, Linkedids).
ID_LEN = 255


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
    #: The number exactly as the PBX gave it (caller-controlled; may be junk).
    number: Mapped[str | None] = mapped_column(String(ID_LEN))
    #: ``number`` reduced to a leading "+" and digits, for lookups (DSAR).
    number_key: Mapped[str | None] = mapped_column(String(ID_LEN), index=True)
    name: Mapped[str | None] = mapped_column(String(ID_LEN))
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


append_only(LedgerEntryRecord.__table__, "ledger entries are append-only evidence of the notice, consent and "
            "recording decisions of each call; record a correction as a new entry (the writer never "
            "changes or removes one)")

__all__ = ["HASH_LEN", "Base", "Call", "CallParty", "ChainHead", "LedgerEntryRecord"]
