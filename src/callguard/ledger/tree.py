"""Each chain's Merkle tree in the database: stored nodes, proofs, catching up.

The maths is :mod:`callguard.evidence.merkle`; this module is its storage.
Leaf ``seq - 1`` of a chain is ``SHA-256(0x00 || bytes.fromhex(entry.hash))``
(:func:`entry_leaf`); the writer stores every interior node whose level is
a multiple of :data:`STRIDE` in ``merkle_nodes`` in the same transaction as
the entries, and keeps ``chain_heads.tree_size`` / ``tree_root`` current.
Everything else is computed on demand: a perfect subtree below a stored
level is folded from at most ``2**STRIDE`` hashes read in one range query.
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import Connection, insert, select, update

from callguard.evidence import merkle
from callguard.ledger.models import ChainHead, LedgerEntryRecord, MerkleNode

#: Stored levels are multiples of this (256 leaves per stored node).
STRIDE = 8

_E = LedgerEntryRecord.__table__.c
_N = MerkleNode.__table__.c


def entry_leaf(entry_hash_hex: str) -> bytes:
    """The RFC 9162 leaf hash of a ledger entry, from its hex entry hash."""
    return merkle.leaf_hash(bytes.fromhex(entry_hash_hex))


def stored_level(level: int) -> bool:
    return level > 0 and level % STRIDE == 0


class TreeError(Exception):
    """The stored tree cannot answer (missing nodes or entries)."""


class DbNodes:
    """A :class:`~callguard.evidence.merkle.NodeSource` reading one chain's tree.

    Reads whole tiles: the (up to) 256 hashes at a stored level ``b``
    (leaves for ``b = 0``) under one node of level ``b + 8``, in one range
    query, and folds every perfect subtree inside it once.  A proof in a
    10-million-entry chain is then three queries and a few hundred hashes.
    """

    TILE = 1 << STRIDE

    def __init__(self, connection: Connection, chain_id: str) -> None:
        self.connection = connection
        self.chain_id = chain_id
        self._cache: dict[tuple[int, int], bytes] = {}
        self._tiles: set[tuple[int, int]] = set()

    def _leaves(self, begin: int, count: int) -> list[bytes]:
        rows = self.connection.execute(
            select(_E.hash).where(_E.chain_id == self.chain_id, _E.seq > begin, _E.seq <= begin + count)
            .order_by(_E.seq)).scalars().all()
        return [entry_leaf(h) for h in rows]

    def _stored(self, level: int, begin: int, count: int) -> list[bytes]:
        rows = self.connection.execute(
            select(_N.hash).where(_N.chain_id == self.chain_id, _N.level == level, _N.idx >= begin,
                                  _N.idx < begin + count).order_by(_N.idx)).scalars().all()
        return [bytes(h) for h in rows]

    def _load_tile(self, base: int, tile: int) -> None:
        begin = tile * self.TILE
        hashes = self._leaves(begin, self.TILE) if base == 0 else self._stored(base, begin, self.TILE)
        level, index = base, begin
        while hashes:
            for i, digest in enumerate(hashes):
                self._cache[(level, index + i)] = digest
            hashes = [merkle.node_hash(hashes[i], hashes[i + 1]) for i in range(0, len(hashes) - 1, 2)]
            level, index = level + 1, index // 2
        self._tiles.add((base, tile))

    def perfect(self, level: int, index: int) -> bytes:
        key = (level, index)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        base = level - level % STRIDE  # a stored level is read as a row of its own tile
        tile = (index << (level - base)) // self.TILE
        if (base, tile) not in self._tiles:
            self._load_tile(base, tile)
        value = self._cache.get(key)
        if value is None:
            what = "entries" if base == 0 else f"Merkle nodes at level {base}"
            raise TreeError(f"chain {self.chain_id!r}: {what} under node ({level}, {index}) are missing; "
                            "run `callguard ledger verify`")
        return value


def collect_stored(nodes: list[dict[str, object]], chain_id: str):
    """An ``on_node`` callback that keeps the nodes the database stores."""

    def on_node(level: int, index: int, digest: bytes) -> None:
        if stored_level(level):
            nodes.append({"chain_id": chain_id, "level": level, "idx": index, "hash": digest})

    return on_node


def _hashes_from(connection: Connection, chain_id: str, after_seq: int, batch: int = 5000) -> Iterator[str]:
    last = after_seq
    while True:
        rows = connection.execute(
            select(_E.seq, _E.hash).where(_E.chain_id == chain_id, _E.seq > last).order_by(_E.seq).limit(batch)
        ).all()
        if not rows:
            return
        for seq, digest in rows:
            if seq != last + 1:
                raise TreeError(f"chain {chain_id!r}: seq {last + 1} is missing; the tree cannot be built past it. "
                                "Run `callguard ledger verify`")
            last = seq
            yield digest


def catch_up(connection: Connection, chain_id: str) -> merkle.CompactRange:
    """Bring the stored tree of ``chain_id`` up to its last entry; returns its compact range.

    A ledger written before the Merkle tree existed (or by a writer with it
    switched off) has ``tree_size`` NULL or behind: the missing nodes are
    computed from the entries as stored and inserted, once.  Run inside the
    caller's transaction.
    """
    head = connection.execute(select(ChainHead.__table__).where(ChainHead.__table__.c.chain_id == chain_id)).first()
    size = (head.tree_size or 0) if head is not None else 0
    nodes: list[dict[str, object]] = []
    compact = merkle.CompactRange.from_source(DbNodes(connection, chain_id), size) if size else merkle.CompactRange()
    compact.on_node = collect_stored(nodes, chain_id)
    for digest in _hashes_from(connection, chain_id, size):
        compact.append(entry_leaf(digest))
        if len(nodes) >= 1000:
            connection.execute(insert(MerkleNode.__table__), nodes)
            nodes.clear()
    if nodes:
        connection.execute(insert(MerkleNode.__table__), nodes)
    if head is not None and (head.tree_size != compact.size or head.tree_root != compact.root().hex()):
        connection.execute(update(ChainHead.__table__).where(ChainHead.__table__.c.chain_id == chain_id)
                           .values(tree_size=compact.size, tree_root=compact.root().hex()))
    compact.on_node = None
    return compact


def tree_head(connection: Connection, chain_id: str) -> tuple[int, bytes] | None:
    """(size, root) of the chain's tree as stored, or None if it has not been built."""
    row = connection.execute(select(ChainHead.tree_size, ChainHead.tree_root)
                             .where(ChainHead.chain_id == chain_id)).first()
    if row is None or row.tree_size is None or row.tree_root is None:
        return None
    return row.tree_size, bytes.fromhex(row.tree_root)


def inclusion(connection: Connection, chain_id: str, seq: int, size: int) -> list[bytes]:
    """The inclusion proof of entry ``seq`` in the chain's tree of ``size`` leaves."""
    return merkle.inclusion_proof(DbNodes(connection, chain_id), seq - 1, size)


def consistency(connection: Connection, chain_id: str, old_size: int, new_size: int) -> list[bytes]:
    return merkle.consistency_proof(DbNodes(connection, chain_id), old_size, new_size)


def root_at(connection: Connection, chain_id: str, size: int) -> bytes:
    """The root of the chain's tree when it had ``size`` leaves (from stored nodes)."""
    return merkle.tree_root(DbNodes(connection, chain_id), size)


__all__ = ["STRIDE", "DbNodes", "TreeError", "catch_up", "collect_stored", "consistency", "entry_leaf",
           "inclusion", "root_at", "stored_level", "tree_head"]
