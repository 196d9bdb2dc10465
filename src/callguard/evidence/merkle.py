"""RFC 9162 Merkle tree maths: hashes, roots, inclusion and consistency proofs.

Pure functions, no storage: where the tree's nodes come from is the
caller's business (a :class:`NodeSource`), as in transparency-dev's tessera,
which keeps its tree maths apart from its tiles.  Everything follows
RFC 9162 section 2.1 (identical to RFC 6962 for these parts):

* leaf hash ``SHA-256(0x00 || leaf)``, interior node ``SHA-256(0x01 || left || right)``,
  empty tree ``SHA-256("")``;
* the tree over ``n`` leaves splits at ``k``, the largest power of two
  smaller than ``n`` (so the left subtree is always perfect);
* ``inclusion_proof`` is PATH(m, D[n]) (2.1.3.1), ``consistency_proof`` is
  PROOF(m, D[n]) (2.1.4.1), and the two ``verify_*`` functions are the
  verification algorithms of 2.1.3.2 and 2.1.4.2, step by step.

Why not a library: the proofs must come from *stored* interior nodes (a
10-million-entry ledger answers in milliseconds) and no maintained Python
package exposes node storage; the algorithms are short and are checked
against the published test vectors of transparency-dev/merkle.

A "perfect" subtree at ``(level, index)`` covers leaves
``[index * 2**level, (index + 1) * 2**level)``; level 0 is the leaf hashes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256


class ProofError(ValueError):
    """A proof does not verify, or was asked for with impossible sizes."""


def leaf_hash(leaf: bytes) -> bytes:
    """``SHA-256(0x00 || leaf)``."""
    return _sha256(LEAF_PREFIX + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``."""
    return _sha256(NODE_PREFIX + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def fold(level_hashes: Sequence[bytes]) -> bytes:
    """The root of a tree whose leaves' *hashes* are ``level_hashes`` (any count >= 1).

    Pairs neighbours level by level; an odd node at the right edge is carried
    up unchanged, which gives exactly the RFC's split-at-a-power-of-two tree.
    """
    if not level_hashes:
        return EMPTY_ROOT
    nodes = list(level_hashes)
    while len(nodes) > 1:
        paired = [node_hash(nodes[i], nodes[i + 1]) for i in range(0, len(nodes) - 1, 2)]
        if len(nodes) % 2:
            paired.append(nodes[-1])
        nodes = paired
    return nodes[0]


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over the given leaf hashes (RFC 9162 2.1.1)."""
    return fold(leaf_hashes)


class NodeSource(Protocol):
    """Where hashes of perfect subtrees come from (storage, memory, a bundle)."""

    def perfect(self, level: int, index: int) -> bytes:
        """Hash of the perfect subtree of ``2**level`` leaves starting at leaf ``index << level``."""


class ListSource:
    """A :class:`NodeSource` over an in-memory list of leaf hashes (tests, small trees)."""

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        self.leaves = leaf_hashes

    def perfect(self, level: int, index: int) -> bytes:
        begin = index << level
        return fold(self.leaves[begin:begin + (1 << level)])


def subtree_root(source: NodeSource, begin: int, end: int) -> bytes:
    """MTH(D[begin:end]) for a range the RFC recursion produces.

    ``begin`` is a multiple of the largest power of two not exceeding
    ``end - begin`` (true for every subtree of a log tree), so the range
    splits into perfect subtrees from the left, each fetched from ``source``.
    """
    size = end - begin
    if size <= 0:
        raise ProofError(f"empty range [{begin}, {end})")
    parts: list[bytes] = []
    while begin < end:
        level = (end - begin).bit_length() - 1
        # The largest perfect subtree that starts at `begin` and fits.
        while begin & ((1 << level) - 1):
            level -= 1
        parts.append(source.perfect(level, begin >> level))
        begin += 1 << level
    result = parts[-1]
    for left in reversed(parts[:-1]):
        result = node_hash(left, result)
    return result


def tree_root(source: NodeSource, size: int) -> bytes:
    """The root hash of the tree of the first ``size`` leaves."""
    return EMPTY_ROOT if size == 0 else subtree_root(source, 0, size)


def inclusion_proof(source: NodeSource, index: int, size: int) -> list[bytes]:
    """PATH(index, D[size]): the audit path of leaf ``index`` (0-based) in a tree of ``size``."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of size {size}")
    path: list[bytes] = []
    begin, end = 0, size
    while end - begin > 1:
        k = split_point(end - begin)
        if index < begin + k:
            path.append(subtree_root(source, begin + k, end))
            end = begin + k
        else:
            path.append(subtree_root(source, begin, begin + k))
            begin += k
    path.reverse()
    return path


def consistency_proof(source: NodeSource, old_size: int, new_size: int) -> list[bytes]:
    """PROOF(old_size, D[new_size]) (RFC 9162 2.1.4.1); empty when there is nothing to prove."""
    if not 0 <= old_size <= new_size:
        raise ProofError(f"no consistency proof from size {old_size} to {new_size}")
    if old_size in (0, new_size):
        return []
    # SUBPROOF(m, D[begin:end], b), unrolled: each step adds the sibling
    # subtree; the recursion emits them innermost first, hence the reverse.
    proof: list[bytes] = []
    begin, end, m, whole = 0, new_size, old_size, True
    while m != end - begin:
        k = split_point(end - begin)
        if m <= k:
            proof.append(subtree_root(source, begin + k, end))
            end = begin + k
        else:
            proof.append(subtree_root(source, begin, begin + k))
            begin, m, whole = begin + k, m - k, False
    if not whole:
        proof.append(subtree_root(source, begin, end))
    proof.reverse()
    return proof


def _check_hash(name: str, value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{name} is {len(value)} bytes, not a SHA-256 hash")


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root an inclusion proof leads to (RFC 9162 2.1.3.2 steps 1-4)."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    _check_hash("the leaf hash", leaf)
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        _check_hash("a proof hash", p)
        if sn == 0:
            raise ProofError("the inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the inclusion proof is too short for the tree size")
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root_hash: bytes) -> None:
    """Raise :class:`ProofError` unless ``leaf`` is leaf ``index`` of the tree with ``root_hash``."""
    _check_hash("the root hash", root_hash)
    if root_from_inclusion_proof(index, size, leaf, proof) != root_hash:
        raise ProofError(f"the inclusion proof of leaf {index} does not lead to the root hash of tree size {size}")


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> None:
    """Raise :class:`ProofError` unless tree ``old_root`` is a prefix of tree ``new_root`` (2.1.4.2)."""
    if not 0 <= old_size <= new_size:
        raise ProofError(f"tree size went backwards ({old_size} -> {new_size})")
    _check_hash("the old root hash", old_root)
    _check_hash("the new root hash", new_root)
    if old_size == new_size:
        if proof:
            raise ProofError("a consistency proof between equal sizes must be empty")
        if old_root != new_root:
            raise ProofError(f"two different root hashes for the same tree size {old_size}: the history was "
                             "rewritten (or they are roots of different logs)")
        return
    if old_size == 0:
        if proof:
            raise ProofError("a consistency proof from the empty tree must be empty")
        return
    if not proof:
        raise ProofError("the consistency proof is empty")
    for p in proof:
        _check_hash("a proof hash", p)
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # step 2: an exact power of two
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:  # step 4
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("the consistency proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the consistency proof is too short for the tree sizes")
    if fr != old_root:
        raise ProofError(f"the consistency proof does not lead to the old root hash (size {old_size}): "
                         "the history before it was rewritten")
    if sr != new_root:
        raise ProofError(f"the consistency proof does not lead to the new root hash (size {new_size}): the newer "
                         f"tree does not extend the older one (history rewritten, or the proof is wrong)")


class CompactRange:
    """The right edge of a growing tree: one perfect-subtree hash per set bit of ``size``.

    Appending a leaf costs one hash on average (merges cascade like a binary
    counter); ``on_node(level, index, hash)`` sees every interior node as it
    completes, which is how storage learns the nodes it keeps.  This is
    transparency-dev's compact range, for ranges that start at leaf 0.
    """

    def __init__(self, size: int = 0, hashes: Iterable[bytes] = (),
                 on_node: Callable[[int, int, bytes], None] | None = None) -> None:
        self.size = size
        self.hashes = list(hashes)  #: perfect subtrees left to right (largest first)
        if len(self.hashes) != bin(size).count("1"):
            raise ValueError(f"a compact range of size {size} needs {bin(size).count('1')} hashes")
        self.on_node = on_node

    @classmethod
    def from_source(cls, source: NodeSource, size: int,
                    on_node: Callable[[int, int, bytes], None] | None = None) -> CompactRange:
        """The compact range of the first ``size`` leaves of ``source``."""
        hashes, begin = [], 0
        for level in range(size.bit_length() - 1, -1, -1):
            if size >> level & 1:
                hashes.append(source.perfect(level, begin >> level))
                begin += 1 << level
        return cls(size, hashes, on_node)

    def append(self, leaf: bytes) -> None:
        """Add one leaf *hash*."""
        node, index, level = leaf, self.size, 0
        while index & 1:
            node = node_hash(self.hashes.pop(), node)
            index >>= 1
            level += 1
            if self.on_node is not None:
                self.on_node(level, index, node)
        self.hashes.append(node)
        self.size += 1

    def root(self) -> bytes:
        """The root hash of the tree of the leaves appended so far."""
        if not self.hashes:
            return EMPTY_ROOT
        result = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            result = node_hash(left, result)
        return result


__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "ListSource",
    "NodeSource",
    "ProofError",
    "consistency_proof",
    "fold",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root",
    "root_from_inclusion_proof",
    "split_point",
    "subtree_root",
    "tree_root",
    "verify_consistency",
    "verify_inclusion",
]
