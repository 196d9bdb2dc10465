"""Walk every hash chain and say exactly which entry is wrong, and how.

For each chain, entries are read in seq order and each is checked three
ways: its own hash (content edited?), its seq (an entry missing?) and its
``prev_hash`` link to the entry before (an entry removed, inserted or
moved?).  The chain head is then compared with the last entry (tail cut
off or replaced?).

One tampering should give one message at the right seq, so the checks
explain each other instead of piling up: a row whose hash is wrong is
diagnosed with a one-row look-ahead (the next entry still links to the
original hash when only the ``hash`` column was edited, or to the stored
hash when the content was edited), a moved row is recognised because its
stored hash is valid for the seq it came from, and the broken link right
after a row already reported is not reported again.

The walk also rebuilds the chain's RFC 9162 Merkle tree from the stored
entry hashes and checks it against the tree head, the stored nodes, and
every *anchor*: a checkpoint (from the database or from a witness) saying
what the root was at some size.  That closes the gap a hash chain leaves
open: someone who rewrites a whole chain and recomputes every hash (and
the tree, and the chain head) still cannot produce the root of a
checkpoint published before the rewrite.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, Row, select
from sqlalchemy.orm import Session

from callguard.evidence.merkle import CompactRange
from callguard.ledger.chain import GENESIS_HASH, entry_hash, stored_entry_hash
from callguard.ledger.models import ChainHead, LedgerEntryRecord, MerkleNode
from callguard.ledger.tree import entry_leaf, stored_level

#: Problems kept per chain; the rest are only counted.
MAX_PROBLEMS = 50
#: How far from its position a moved entry is looked for when no link names it.
MOVE_WINDOW = 16

_E = LedgerEntryRecord.__table__.c
_H = ChainHead.__table__
_N = MerkleNode.__table__.c


@dataclass(frozen=True, slots=True)
class Anchor:
    """What a checkpoint says the chain's tree root was at ``size`` (``label`` says which checkpoint)."""

    size: int
    root: bytes
    label: str


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding, pinned to an entry (``seq`` None: about the chain itself)."""

    chain_id: str
    seq: int | None
    call_id: str | None
    kind: str | None
    what: str

    def __str__(self) -> str:
        if self.seq is None:
            return f"chain {self.chain_id!r}: {self.what}"
        where = f" (call {self.call_id!r}, {self.kind})" if self.call_id is not None else ""
        return f"chain {self.chain_id!r} seq {self.seq}{where}: {self.what}"


@dataclass(slots=True)
class ChainReport:
    """What ``verify`` found for one chain."""

    chain_id: str
    entries: int = 0
    last_seq: int = 0
    head_seq: int | None = None
    head_hash: str | None = None
    problems: list[Problem] = field(default_factory=list)
    problem_count: int = 0
    tree_size: int | None = None
    tree_root: str | None = None
    anchors_checked: int = 0

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def add(self, problem: Problem) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)


@dataclass(slots=True)
class VerifyReport:
    """Every chain walked."""

    chains: list[ChainReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.chains)

    @property
    def problems(self) -> list[Problem]:
        return [p for c in self.chains for p in c.problems]


@dataclass(slots=True)
class _Row:
    seq: int
    call_id: str
    kind: str
    stored: str
    prev_hash: str
    computed: str | None
    data_error: str | None
    issues: list[str] = field(default_factory=list)
    content_bad: bool = False
    moved_from: int | None = None


def _computed_hash(chain_id: str, row: object, seq: int | None = None) -> tuple[str | None, str | None]:
    if seq is None and isinstance(row.data, str):  # type: ignore[attr-defined]
        try:
            quick = stored_entry_hash(
                chain_id=chain_id, seq=row.seq, call_id=row.call_id, kind=row.kind,  # type: ignore[attr-defined]
                pbx_time_us=row.pbx_time_us, received_at_us=row.received_at_us,  # type: ignore[attr-defined]
                data_text=row.data, prev_hash=row.prev_hash)  # type: ignore[attr-defined]
        except (TypeError, ValueError):
            quick = None
        if quick is not None and quick == row.hash:  # type: ignore[attr-defined]
            return quick, None
    try:
        data = json.loads(row.data)  # type: ignore[attr-defined]
    except (TypeError, ValueError) as exc:
        return None, f"data is not valid JSON ({exc})"
    try:
        digest = entry_hash(
            chain_id=chain_id, seq=row.seq if seq is None else seq,  # type: ignore[attr-defined]
            call_id=row.call_id, kind=row.kind,  # type: ignore[attr-defined]
            pbx_time_us=row.pbx_time_us, received_at_us=row.received_at_us,  # type: ignore[attr-defined]
            data=data, prev_hash=row.prev_hash,  # type: ignore[attr-defined]
        )
    except (TypeError, ValueError) as exc:
        return None, f"entry cannot be hashed ({exc})"
    return digest, None


class _ChainWalker:
    def __init__(self, connection: Connection, chain_id: str, head: Row[Any] | None,
                 anchors: list[Anchor] | None = None):
        self.connection = connection
        self.chain_id = chain_id
        self.report = ChainReport(chain_id, head_seq=head.last_seq if head else None,
                                  head_hash=head.last_hash if head else None)
        self.head_tree = (head.tree_size, head.tree_root) if head is not None else (None, None)
        self.anchors: dict[int, list[Anchor]] = {}
        for anchor in anchors or ():
            self.anchors.setdefault(anchor.size, []).append(anchor)
        self.stored_nodes = {(r.level, r.idx): bytes(r.hash) for r in connection.execute(
            select(_N.level, _N.idx, _N.hash).where(_N.chain_id == chain_id))}
        self.tree = CompactRange(on_node=self._on_node)
        self.bad_nodes = 0

    def _on_node(self, level: int, index: int, digest: bytes) -> None:
        if stored_level(level):
            stored = self.stored_nodes.get((level, index))
            if stored is not None and stored != digest:
                self.bad_nodes += 1

    def _grow(self, stored_hash: str) -> None:
        try:
            self.tree.append(entry_leaf(stored_hash))
        except ValueError:
            self.tree.append(entry_leaf("00" * 32))  # a mangled hash column: reported by the chain checks
        for anchor in self.anchors.get(self.tree.size, ()):
            self.report.anchors_checked += 1
            if self.tree.root() != anchor.root:
                self.report.add(Problem(self.chain_id, None, None, None,
                                        f"the tree root at size {anchor.size} does not match {anchor.label}: the "
                                        "ledger's history up to that checkpoint was rewritten after it was signed"))

    def _check_tree(self) -> None:
        report = self.report
        size, root = self.head_tree
        report.tree_size, report.tree_root = self.tree.size, self.tree.root().hex()
        for anchor_size, anchors in self.anchors.items():
            if anchor_size > self.tree.size:
                for anchor in anchors:
                    report.add(Problem(self.chain_id, None, None, None,
                                       f"{anchor.label} covers {anchor_size} entries but the chain has only "
                                       f"{self.tree.size}: entries were removed after it was signed"))
        if report.problem_count:
            return  # the entries are already reported; a tree that disagrees is only a consequence
        if self.bad_nodes:
            report.add(Problem(self.chain_id, None, None, None,
                               f"{self.bad_nodes} stored Merkle node(s) differ from the tree rebuilt from the "
                               "entries: proofs from this database would not verify"))
        if size is not None and (size != self.tree.size or root != report.tree_root):
            report.add(Problem(self.chain_id, None, None, None,
                               f"the chain head records a tree of {size} entries with root {root}, but the "
                               f"entries give {self.tree.size} with root {report.tree_root}"))

    def _rows(self) -> Iterator[object]:
        stmt = (select(LedgerEntryRecord.__table__).where(_E.chain_id == self.chain_id).order_by(_E.seq)
                .execution_options(yield_per=2000))
        yield from self.connection.execute(stmt)

    def _seq_of_hash(self, digest: str) -> int | None:
        if digest == GENESIS_HASH:
            return 0
        return self.connection.scalar(
            select(_E.seq).where(_E.chain_id == self.chain_id, _E.hash == digest).limit(1)
        )

    def _moved_from(self, raw: object, row: _Row) -> int | None:
        """The seq this row's content was written at, if it was moved here.

        Candidates: one after the entry its ``prev_hash`` names, one before
        the entry that links to it, then the neighbourhood (both neighbours
        may have moved too).  The seq is inside the hash, so a match is proof.
        """
        candidates: list[int] = []
        before = self._seq_of_hash(row.prev_hash)
        if before is not None:
            candidates.append(before + 1)
        after = self.connection.scalar(
            select(_E.seq).where(_E.chain_id == self.chain_id, _E.prev_hash == row.stored).limit(1))
        if after is not None:
            candidates.append(after - 1)
        candidates.extend(row.seq + d for d in range(-MOVE_WINDOW, MOVE_WINDOW + 1))
        for seq in dict.fromkeys(candidates):
            if seq < 1 or seq == row.seq:
                continue
            digest, _ = _computed_hash(self.chain_id, raw, seq=seq)
            if digest == row.stored:
                return seq
        return None

    def _finish(self, row: _Row, next_link: str | None) -> None:
        """Word the content finding of ``row`` once the hash that links to it is known.

        ``next_link`` is the following entry's ``prev_hash`` (or the chain
        head's hash for the last entry).
        """
        if row.content_bad and row.data_error is None and row.moved_from is None:
            if next_link is not None and next_link == row.computed:
                row.issues.append("the stored hash was altered (the next entry still links to "
                                  "the original, which matches this content)")
            else:
                row.issues.append("content was edited after it was written: its hash no longer "
                                  "matches its data, times, kind or call id")
        if row.issues:
            self.report.add(Problem(self.chain_id, row.seq, row.call_id, row.kind, "; ".join(row.issues)))

    def walk(self) -> ChainReport:
        report = self.report
        previous: _Row | None = None
        expected = 1
        for raw in self._rows():
            computed, data_error = _computed_hash(self.chain_id, raw)
            row = _Row(raw.seq, raw.call_id, raw.kind, raw.hash, raw.prev_hash,  # type: ignore[attr-defined]
                       computed, data_error)
            report.entries += 1
            self._grow(row.stored)
            if row.seq != expected:
                after = f"seq {expected - 1}" if expected > 1 else "the start of the chain"
                gap = f"seq {expected}" if row.seq == expected + 1 else f"seq {expected}..{row.seq - 1}"
                row.issues.append(f"{gap} missing (deleted): this entry follows {after}")
            elif previous is None:
                if row.prev_hash != GENESIS_HASH:
                    row.issues.append("the first entry does not start from the genesis hash")
            elif row.prev_hash not in (previous.stored, previous.computed) and not previous.issues:
                row.issues.append(f"prev_hash does not match entry seq {previous.seq}: an entry "
                                  "was removed, inserted or moved here")
            if data_error is not None:
                row.content_bad = True
                row.issues.append(data_error)
            elif computed != row.stored:
                row.content_bad = True
                row.moved_from = self._moved_from(raw, row)
                if row.moved_from is not None:
                    row.issues.append(f"this is the entry written as seq {row.moved_from}: it was moved "
                                      "here (entries reordered)")
            if previous is not None:
                self._finish(previous, row.prev_hash)
            previous = row
            expected = row.seq + 1
        if previous is not None:
            self._finish(previous, report.head_hash if report.head_seq == previous.seq else None)
            report.last_seq = previous.seq
        self._check_head(previous)
        self._check_tree()
        return report

    def _check_head(self, last: _Row | None) -> None:
        report, head_seq = self.report, self.report.head_seq
        if head_seq is None:
            if last is not None:
                report.add(Problem(self.chain_id, None, None, None,
                                   "chain head row is missing: the tail of this chain cannot be checked"))
            return
        if last is None:
            report.add(Problem(self.chain_id, 1 if head_seq else None, None, None,
                               f"the chain head records seq {head_seq} but the chain has no entries: all deleted"))
        elif last.seq < head_seq:
            gap = f"seq {last.seq + 1}" if head_seq == last.seq + 1 else f"seq {last.seq + 1}..{head_seq}"
            report.add(Problem(self.chain_id, last.seq + 1, None, None,
                               f"{gap} missing at the end (the chain head records seq {head_seq}): tail truncated"))
        elif last.seq > head_seq:
            report.add(Problem(self.chain_id, head_seq + 1, None, None,
                               f"seq {head_seq + 1}..{last.seq} lie beyond the chain head (seq {head_seq}): "
                               "added outside the ledger writer"))
        elif report.head_hash not in (last.stored, last.computed):
            report.add(Problem(self.chain_id, last.seq, last.call_id, last.kind,
                               "does not match the hash recorded in the chain head: the last entry was replaced"))


def _connection_of(bind: Engine | Connection | Session) -> tuple[Connection, bool]:
    if isinstance(bind, Engine):
        connection = bind.connect()
        if connection.dialect.name == "postgresql":
            # One snapshot for the whole walk: a listener committing meanwhile must not look like
            # entries "beyond the chain head" (SQLite's read transaction is a snapshot already).
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
        return connection, True
    if isinstance(bind, Session):
        return bind.connection(), False
    return bind, False


def chain_ids(connection: Connection) -> list[str]:
    """Every chain with a head or entries, sorted."""
    heads = set(connection.scalars(select(_H.c.chain_id)))
    entries = set(connection.scalars(select(_E.chain_id).distinct()))
    return sorted(heads | entries)


def verify(bind: Engine | Connection | Session, chain_id: str | None = None,
           anchors: dict[str, list[Anchor]] | None = None) -> VerifyReport:
    """Check one chain or every chain; see :class:`VerifyReport`.

    ``anchors`` (chain id -> checkpoints) are roots the rebuilt trees must match.
    """
    connection, owned = _connection_of(bind)
    anchors = anchors or {}
    try:
        ids = [chain_id] if chain_id is not None else sorted(set(chain_ids(connection)) | set(anchors))
        report = VerifyReport()
        for cid in ids:
            head = connection.execute(select(_H).where(_H.c.chain_id == cid)).first()
            report.chains.append(_ChainWalker(connection, cid, head, anchors.get(cid)).walk())
        return report
    finally:
        if owned:
            connection.close()


__all__ = ["MAX_PROBLEMS", "Anchor", "ChainReport", "Problem", "VerifyReport", "chain_ids", "verify"]
