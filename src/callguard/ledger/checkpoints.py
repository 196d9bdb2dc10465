"""Signed checkpoints in the database: store, list, record where they were published."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, insert, select

from callguard.ledger.models import ChainHead, CheckpointRecord, Publication

_C = CheckpointRecord.__table__.c


@dataclass(frozen=True)
class StoredCheckpoint:
    id: int
    chain_id: str
    tree_size: int
    root_hash: str
    signed_at: float
    key_name: str
    note: str


def _row(row: object) -> StoredCheckpoint:
    return StoredCheckpoint(row.id, row.chain_id, row.tree_size, row.root_hash, row.signed_at,  # type: ignore[attr-defined]
                            row.key_name, row.note)  # type: ignore[attr-defined]


def store(connection: Connection, chain_id: str, tree_size: int, root_hash: bytes, signed_at: float,
          key_name: str, note: str) -> StoredCheckpoint:
    result = connection.execute(insert(CheckpointRecord.__table__).values(
        chain_id=chain_id, tree_size=tree_size, root_hash=root_hash.hex(), signed_at=signed_at,
        key_name=key_name, note=note))
    return StoredCheckpoint(result.inserted_primary_key[0], chain_id, tree_size, root_hash.hex(), signed_at,
                            key_name, note)


def latest(connection: Connection, chain_id: str) -> StoredCheckpoint | None:
    row = connection.execute(select(CheckpointRecord.__table__).where(_C.chain_id == chain_id)
                             .order_by(_C.tree_size.desc(), _C.id.desc()).limit(1)).first()
    return None if row is None else _row(row)


def for_chain(connection: Connection, chain_id: str) -> list[StoredCheckpoint]:
    rows = connection.execute(select(CheckpointRecord.__table__).where(_C.chain_id == chain_id)
                              .order_by(_C.tree_size, _C.id))
    return [_row(r) for r in rows]


def covering(connection: Connection, chain_id: str, seq: int) -> StoredCheckpoint | None:
    """The newest checkpoint of ``chain_id`` whose tree includes entry ``seq``."""
    row = connection.execute(select(CheckpointRecord.__table__)
                             .where(_C.chain_id == chain_id, _C.tree_size >= seq)
                             .order_by(_C.tree_size.desc(), _C.id.desc()).limit(1)).first()
    return None if row is None else _row(row)


def tree_heads(connection: Connection) -> Sequence[tuple[str, int | None, str | None]]:
    """(chain id, tree size, tree root hex) of every chain."""
    return [tuple(r) for r in connection.execute(  # type: ignore[misc]
        select(ChainHead.chain_id, ChainHead.tree_size, ChainHead.tree_root).order_by(ChainHead.chain_id))]


def record_publication(connection: Connection, checkpoint_id: int, witness: str, at: float, outcome: str,
                       detail: str = "") -> None:
    connection.execute(insert(Publication.__table__).values(checkpoint_id=checkpoint_id, witness=witness, at=at,
                                                            outcome=outcome, detail=detail))


__all__ = ["StoredCheckpoint", "covering", "for_chain", "latest", "record_publication", "store", "tree_heads"]
