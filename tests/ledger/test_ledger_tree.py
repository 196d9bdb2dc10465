"""The writer keeps each chain's RFC 9162 tree in the database; proofs come from it."""

from __future__ import annotations

from sqlalchemy import func, select

from callguard.core.commands import LedgerEntry
from callguard.evidence import merkle
from callguard.ledger import export_entries
from callguard.ledger.models import MerkleNode
from callguard.ledger.tree import DbNodes, consistency, entry_leaf, inclusion, root_at, tree_head

T0 = 1_714_567_890.0


def _write(ledger, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        ledger.append(LedgerEntry(f"call-{i // 7}", "consent", T0 + i, {"decision": "granted", "i": i}), T0 + i)
    assert ledger.flush(timeout=60)


def test_tree_head_and_proofs_match_the_entries(open_ledger, raw_engine):
    ledger = open_ledger("asterisk@pbx1", batch_max=37)
    _write(ledger, 600)
    leaves = [entry_leaf(e.hash) for e in export_entries(raw_engine, chain_id="asterisk@pbx1")]
    assert ledger.tree_head == (600, merkle.root(leaves))
    with raw_engine.connect() as connection:
        assert tree_head(connection, "asterisk@pbx1") == ledger.tree_head
        # Two stored nodes at level 8 (leaves 0-255, 256-511), nothing else yet.
        assert connection.scalar(select(func.count()).select_from(MerkleNode)) == 2
        for seq in (1, 256, 257, 600):
            proof = inclusion(connection, "asterisk@pbx1", seq, 600)
            merkle.verify_inclusion(seq - 1, 600, leaves[seq - 1], proof, merkle.root(leaves))
        old_root = root_at(connection, "asterisk@pbx1", 300)
        assert old_root == merkle.root(leaves[:300])
        merkle.verify_consistency(300, 600, old_root, merkle.root(leaves),
                                  consistency(connection, "asterisk@pbx1", 300, 600))


def test_a_ledger_written_without_the_tree_gets_it_built_when_reopened(open_ledger, raw_engine):
    ledger = open_ledger("asterisk@pbx1", merkle=False)
    _write(ledger, 300)
    assert ledger.tree_head is None
    ledger.close()
    with raw_engine.connect() as connection:
        assert tree_head(connection, "asterisk@pbx1") is None
    reopened = open_ledger("asterisk@pbx1")
    _write(reopened, 10, start=300)
    leaves = [entry_leaf(e.hash) for e in export_entries(raw_engine, chain_id="asterisk@pbx1")]
    assert reopened.tree_head == (310, merkle.root(leaves))
    with raw_engine.connect() as connection:
        assert merkle.tree_root(DbNodes(connection, "asterisk@pbx1"), 310) == merkle.root(leaves)
