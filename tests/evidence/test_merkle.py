"""RFC 9162 tree maths against the published vectors (transparency-dev/merkle
proof/verify_test.go, the RFC 6962 reference tree of eight leaves) and
against a from-the-definition implementation for every small tree."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callguard.evidence import merkle as m

LEAVES = [bytes.fromhex(h) for h in
          ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]]
ROOTS = [bytes.fromhex(h) for h in [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]]
# (leaf index 0-based, tree size, proof)
INCLUSION = [
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]
CONSISTENCY = [
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (6, 7, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]
HASHES = [m.leaf_hash(leaf) for leaf in LEAVES]
SOURCE = m.ListSource(HASHES)


def mth(leaf_hashes: list[bytes]) -> bytes:
    """MTH straight from RFC 9162 2.1.1 (recursive), as the oracle."""
    n = len(leaf_hashes)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaf_hashes[0]
    k = m.split_point(n)
    return m.node_hash(mth(leaf_hashes[:k]), mth(leaf_hashes[k:]))


def test_roots_of_the_reference_tree():
    assert m.root([]) == hashlib.sha256(b"").digest()
    for size in range(1, 9):
        assert m.root(HASHES[:size]) == ROOTS[size - 1]
        assert m.tree_root(SOURCE, size) == ROOTS[size - 1]


@pytest.mark.parametrize("index,size,proof", INCLUSION)
def test_inclusion_vectors(index, size, proof):
    expected = [bytes.fromhex(h) for h in proof]
    assert m.inclusion_proof(m.ListSource(HASHES[:size]), index, size) == expected
    m.verify_inclusion(index, size, HASHES[index], expected, ROOTS[size - 1])
    # Corruptions from the reference test: wrong index, size, leaf, root; garbage; flipped bits.
    bad = [
        (index + 1, size, HASHES[index], expected, ROOTS[size - 1]),
        (index, size * 2, HASHES[index], expected, ROOTS[size - 1]),
        (index, size, m.leaf_hash(b"WrongLeaf"), expected, ROOTS[size - 1]),
        (index, size, HASHES[index], expected, m.EMPTY_ROOT),
        (index, size, HASHES[index], expected + [ROOTS[size - 1]], ROOTS[size - 1]),
        (index, size, HASHES[index], [ROOTS[size - 1]] + expected, ROOTS[size - 1]),
        (index, size, HASHES[index], expected[:-1], ROOTS[size - 1]),
    ]
    for i in range(len(expected)):
        flipped = list(expected)
        flipped[i] = bytes([flipped[i][0] ^ 8]) + flipped[i][1:]
        bad.append((index, size, HASHES[index], flipped, ROOTS[size - 1]))
    for args in bad:
        with pytest.raises(m.ProofError):
            m.verify_inclusion(*args)


@pytest.mark.parametrize("old,new,proof", CONSISTENCY)
def test_consistency_vectors(old, new, proof):
    expected = [bytes.fromhex(h) for h in proof]
    assert m.consistency_proof(m.ListSource(HASHES[:new]), old, new) == expected
    m.verify_consistency(old, new, ROOTS[old - 1], ROOTS[new - 1], expected)
    bad = [
        (old - 1 or 3, new, ROOTS[old - 1], ROOTS[new - 1], expected),
        (old, new, ROOTS[new - 1], ROOTS[old - 1], expected),
        (old, new, ROOTS[old - 1], ROOTS[new - 1], []),
        (old, new, ROOTS[old - 1], ROOTS[new - 1], expected[:-1]),
        (old, new, ROOTS[old - 1], ROOTS[new - 1], expected + [ROOTS[old - 1]]),
        (old, new, ROOTS[old - 1], ROOTS[new - 1], [expected[0]] + expected),
    ]
    for i in range(len(expected)):
        flipped = list(expected)
        flipped[i] = bytes([flipped[i][0] ^ 16]) + flipped[i][1:]
        bad.append((old, new, ROOTS[old - 1], ROOTS[new - 1], flipped))
    for args in bad:
        with pytest.raises(m.ProofError):
            m.verify_consistency(*args)


def test_consistency_edge_cases():
    m.verify_consistency(0, 5, m.EMPTY_ROOT, ROOTS[4], [])
    m.verify_consistency(3, 3, ROOTS[2], ROOTS[2], [])
    with pytest.raises(m.ProofError, match="different root hashes"):
        m.verify_consistency(3, 3, ROOTS[2], ROOTS[3], [])
    with pytest.raises(m.ProofError, match="backwards"):
        m.verify_consistency(4, 3, ROOTS[3], ROOTS[2], [])


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=300), st.data())
def test_every_proof_verifies_against_the_definition(size, data):
    leaves = [m.leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    source = m.ListSource(leaves)
    root = mth(leaves)
    assert m.tree_root(source, size) == root
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    m.verify_inclusion(index, size, leaves[index], m.inclusion_proof(source, index, size), root)
    old = data.draw(st.integers(min_value=0, max_value=size))
    m.verify_consistency(old, size, mth(leaves[:old]), root, m.consistency_proof(source, old, size))
    if 0 < old < size:
        other = mth(leaves[:old - 1] + [m.leaf_hash(b"rewritten")])
        with pytest.raises(m.ProofError, match="rewritten"):
            m.verify_consistency(old, size, other, root, m.consistency_proof(source, old, size))


def test_compact_range_matches_the_tree_and_reports_every_node():
    seen: dict[tuple[int, int], bytes] = {}
    leaves = [m.leaf_hash(bytes([i])) for i in range(70)]
    compact = m.CompactRange(on_node=lambda level, index, h: seen.__setitem__((level, index), h))
    for size, leaf in enumerate(leaves, 1):
        compact.append(leaf)
        assert compact.root() == mth(leaves[:size])
    assert seen[(6, 0)] == mth(leaves[:64])
    assert seen[(2, 16)] == mth(leaves[64:68])
    resumed = m.CompactRange.from_source(m.ListSource(leaves), 45)
    for leaf in leaves[45:]:
        resumed.append(leaf)
    assert resumed.root() == compact.root()
