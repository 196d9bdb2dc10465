"""The ledger writer: non-blocking ``append``, group commits on a thread.

Why a thread and not the event loop: a commit on SQLite with
``synchronous=FULL`` waits for an fsync (milliseconds), and PostgreSQL may
be slow or down; neither may ever delay a pause command on the event path.
``append`` only puts the entry on a queue (well under a microsecond).  The
writer thread takes everything queued so far (up to ``batch_max``), waits
up to ``batch_wait_ms`` for stragglers, and commits the batch in ONE
transaction: entries, chain head and the calls/parties index together.
While one commit is on disk, the next batch accumulates, so throughput
grows with load instead of collapsing into one fsync per entry.

Sequence numbers and hashes are assigned inside the transaction, from the
chain head as stored, so a retry after a failed commit simply recomputes
them; nothing is assigned that might not be written.

"Acknowledged" means committed: ``on_commit`` callbacks run (on the writer
thread) after the transaction's COMMIT returned, and ``committed_seq``
moves only then.  A database error never drops entries: the batch stays at
the head of the queue, the writer retries with exponential backoff, logs
what is wrong, and ``healthy`` / ``last_error`` say so to whoever monitors
the listener.
"""

from __future__ import annotations

import atexit
import itertools
import json
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from callguard.core.commands import LedgerEntry
from callguard.evidence.merkle import CompactRange
from callguard.evidence.pii import Sealer
from callguard.ledger.chain import GENESIS_HASH, encode_data, entry_hash, to_us
from callguard.ledger.db import (
    DEFAULT_BUSY_TIMEOUT_MS,
    LedgerError,
    describe_url,
    error_text,
    open_for_writing,
)
from callguard.ledger.handle import ID_LEN, Committed, LedgerHandle, OnCommit, WriterStats, check_entry
from callguard.ledger.models import ChainHead, LedgerEntryRecord, MerkleNode, PiiKey
from callguard.ledger.projection import ProjectedEntry, project
from callguard.ledger.tree import catch_up, collect_stored, entry_leaf

log = logging.getLogger("callguard.ledger")

#: Chain-head conflicts retried at once before backing off like any error.
MAX_QUICK_RETRIES = 5
#: While the same error repeats, log it at most this often.
LOG_EVERY_S = 30.0


@dataclass(slots=True)
class _Item:
    entry: LedgerEntry
    received_at: float
    on_commit: OnCommit | None
    data_text: str | None = None
    data_obj: object = None
    keys: list[dict[str, object]] = field(default_factory=list)  #: new pii_keys rows this entry needs
    subjects: dict[str, str | None] = field(default_factory=dict)  #: kid -> subject, for the index


@dataclass(slots=True)
class _Marker:
    """A flush (or stop) request: done once everything before it is committed."""

    stop: bool = False
    done: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True, slots=True)
class _Attempt:
    """What a transaction would leave as chain head if its COMMIT succeeded."""

    head: tuple[int, str]
    committed: list[Committed]
    tree: CompactRange | None


class _ChainMoved(Exception):
    """The stored chain head is not the one we built on (another writer?)."""


class Ledger(LedgerHandle):
    """A hash-chained ledger writer for one chain (one listener).

    Use :meth:`open`; it implements the runtime's ``LedgerSink`` protocol.

    With ``merkle`` (the default) every batch also extends the chain's
    RFC 9162 tree in the same transaction (see :mod:`callguard.ledger.tree`):
    one leaf hash and on average one node hash per entry, on this thread,
    never on the caller's.  ``merkle=False`` exists for the benchmark's
    baseline; a later writer with it on builds the missing part once.

    With ``seal`` (the default) numbers and names in entry data are sealed
    under per-call, per-subject keys (:mod:`callguard.evidence.pii`) before
    they are hashed; the keys go into ``pii_keys`` in the same transaction.
    """

    def __init__(self, engine: Engine, chain_id: str, *, batch_max: int = 256,
                 batch_wait_ms: float = 2.0, retry_min_s: float = 0.05, retry_max_s: float = 5.0,
                 url: str = "", merkle: bool = True, seal: bool = True) -> None:
        if not chain_id or len(chain_id) > ID_LEN:
            raise LedgerError(f"chain id must be 1..{ID_LEN} characters, got {chain_id!r}")
        if batch_max < 1:
            raise LedgerError(f"batch_max must be at least 1, got {batch_max}")
        super().__init__()
        self.engine = engine
        self.chain_id = chain_id
        self.url = url or describe_url(engine.url)
        self.batch_max = batch_max
        self.batch_wait_s = max(0.0, batch_wait_ms) / 1000
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.stats = WriterStats()
        self.merkle = merkle
        self.sealer = Sealer() if seal else None
        self._tree: CompactRange | None = None
        self._batch_hooks: list[Callable[[list[Committed]], None]] = []
        self._queue: queue.SimpleQueue[_Item | _Marker] = queue.SimpleQueue()
        self._pending: deque[_Item | _Marker] = deque()
        self._head: tuple[int, str] | None = None
        self._last_attempt: _Attempt | None = None
        self._committed_seq = 0
        self._append_counter = itertools.count(1)
        self._appended = 0  #: entries appended so far (this process)
        self._healthy = True
        self._last_error: str | None = None
        self._last_logged = 0.0
        self._closed = False
        self._abandon = threading.Event()
        self._head = self._load_head_at_open()
        self._committed_seq = self._head[0]
        self._thread = threading.Thread(target=self._run, name=f"callguard-ledger[{chain_id}]",
                                        daemon=True)
        self._thread.start()
        atexit.register(self._at_exit)

    # -- public API ----------------------------------------------------------

    @classmethod
    def open(cls, url: str | URL, chain_id: str, *, batch_max: int = 256, batch_wait_ms: float = 2.0,
             busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS, retry_min_s: float = 0.05,
             retry_max_s: float = 5.0, merkle: bool = True, seal: bool = True) -> Ledger:
        """Open (creating the schema if needed) and resume ``chain_id`` from its head.

        Fails fast with :class:`LedgerError` when the database cannot be
        reached at start-up: a wrong URL should stop the listener before it
        takes calls, not fill a queue forever.
        """
        engine = open_for_writing(url, busy_timeout_ms=busy_timeout_ms)
        try:
            return cls(engine, chain_id, batch_max=batch_max, batch_wait_ms=batch_wait_ms,
                       retry_min_s=retry_min_s, retry_max_s=retry_max_s, url=describe_url(url), merkle=merkle,
                       seal=seal)
        except BaseException:
            engine.dispose()
            raise

    def append(self, entry: LedgerEntry, received_at: float, on_commit: OnCommit | None = None) -> None:
        """Queue ``entry`` for the chain; returns at once (never touches the database).

        ``on_commit(Committed)`` is called on the writer thread once the entry
        is committed; from asyncio use ``loop.call_soon_threadsafe`` inside it.
        Raises ``TypeError`` / ``ValueError`` for an entry the schema cannot hold, here at the
        caller, so one bad entry can never block the queue behind it.  The
        data is serialised on the writer thread (to keep this call cheap), so
        ``entry.data`` must not be mutated afterwards; the engine builds a
        fresh dict per entry.
        """
        if self._closed:
            raise LedgerError(f"ledger {self.chain_id!r} is closed; entry {entry!r} not written")
        check_entry(entry, received_at)
        self._queue.put(_Item(entry, received_at, on_commit))
        self._appended = next(self._append_counter)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything appended before this call is committed.

        Returns False if that did not happen within ``timeout`` seconds
        (the database is failing: see :attr:`last_error`).
        """
        if not self._thread.is_alive():
            return self.backlog == 0
        marker = _Marker()
        self._queue.put(marker)
        return marker.done.wait(timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Commit what is queued, stop the writer and release the database.

        With a ``timeout`` and a database that stays down, gives up after
        that many seconds and logs how many entries were NOT written; returns
        whether everything was written.
        """
        if self._closed:
            return self.backlog == 0
        self._closed = True
        atexit.unregister(self._at_exit)
        marker = _Marker(stop=True)
        self._queue.put(marker)
        finished = marker.done.wait(timeout)
        if not finished:
            self._abandon.set()
        self._thread.join(None if finished else 5.0)
        lost = self.backlog
        if lost:
            log.error("ledger %s: closed with %d entries NOT written to %s (last error: %s)",
                      self.chain_id, lost, self.url, self._last_error)
        self._run_close_hooks(self.chain_id)
        self.engine.dispose()
        return lost == 0

    def on_batch(self, hook: Callable[[list[Committed]], None]) -> None:
        """Run ``hook(committed)`` on the writer thread after each transaction's COMMIT.

        After the entries' own ``on_commit`` callbacks.  The writer process
        (:mod:`callguard.ledger.process`) sends its acknowledgements this way,
        one message per transaction instead of one per entry.
        """
        self._batch_hooks.append(hook)

    @property
    def tree_head(self) -> tuple[int, bytes] | None:
        """(size, root hash) of the chain's Merkle tree as last committed (None without Merkle)."""
        tree = self._tree
        return None if tree is None else (tree.size, tree.root())

    @property
    def backlog(self) -> int:
        """Entries appended but not committed yet."""
        return max(0, self._appended - self.stats.entries)

    # -- head ----------------------------------------------------------------

    def _read_head(self, session: Session) -> tuple[int, str]:
        head = session.get(ChainHead, self.chain_id, populate_existing=True)
        if head is not None:
            return head.last_seq, head.last_hash
        count = session.scalar(select(func.count()).select_from(LedgerEntryRecord)
                               .where(LedgerEntryRecord.chain_id == self.chain_id))
        if count:
            raise LedgerError(f"chain {self.chain_id!r} has {count} entries but no chain head in "
                              f"{self.url}; run `callguard ledger verify` before writing to it")
        return 0, GENESIS_HASH

    def _load_head_at_open(self) -> tuple[int, str]:
        try:
            with Session(self.engine) as session:
                seq, last = self._read_head(session)
                if seq:
                    stored = session.get(LedgerEntryRecord, (self.chain_id, seq))
                    if stored is None or stored.hash != last:
                        log.warning("ledger %s: the last entry (seq %d) does not match the chain head; "
                                    "`callguard ledger verify` will report it; new entries continue "
                                    "from the head", self.chain_id, seq)
            if self.merkle:
                with self.engine.begin() as connection:
                    self._tree = catch_up(connection, self.chain_id)
            return seq, last
        except LedgerError:
            raise
        except Exception as exc:  # noqa: BLE001 - any driver error becomes one clear message
            raise LedgerError(f"cannot read chain {self.chain_id!r} from {self.url}: {error_text(exc)}") from None

    # -- writer thread -------------------------------------------------------

    def _run(self) -> None:
        delay, conflicts = self.retry_min_s, 0
        failing_since: float | None = None
        while True:
            if not self._pending:
                self._pending.append(self._queue.get())
            self._gather()
            # Markers at the front: everything before them is committed.
            while self._pending and isinstance(self._pending[0], _Marker):
                marker = self._pending.popleft()
                marker.done.set()
                if marker.stop:
                    return
            batch: list[_Item] = []
            for item in self._pending:
                if not isinstance(item, _Item) or len(batch) >= self.batch_max:
                    break
                batch.append(item)
            if not batch:
                continue
            try:
                committed = self._write(batch)
            except _ChainMoved as exc:
                # Nothing was written; build on the head as stored and retry at
                # once (with backoff only if it keeps happening).
                conflicts += 1
                self._head, self._last_attempt = None, None
                if conflicts <= MAX_QUICK_RETRIES:
                    if conflicts == 1:
                        log.warning("ledger %s: %s", self.chain_id, exc)
                    continue
                self._record_failure(exc, len(batch), delay, failing_since is None)
                failing_since = failing_since or time.monotonic()
                if self._abandon.wait(delay):
                    return
                delay = min(delay * 2, self.retry_max_s)
                continue
            except Exception as exc:  # noqa: BLE001 - every failure keeps the entries and retries
                self._record_failure(exc, len(batch), delay, failing_since is None)
                failing_since = failing_since or time.monotonic()
                if self._abandon.wait(delay):
                    return
                delay = min(delay * 2, self.retry_max_s)
                continue
            if failing_since is not None:
                log.warning("ledger %s: writing to %s again after %.1f s; queued entries are being committed",
                            self.chain_id, self.url, time.monotonic() - failing_since)
                failing_since = None
            delay, conflicts = self.retry_min_s, 0
            self._healthy = True
            for _ in committed:
                self._pending.popleft()
            self._acknowledge(batch, committed)
            for hook in self._batch_hooks:
                try:
                    hook(committed)
                except Exception:
                    log.exception("ledger %s: a batch hook failed", self.chain_id)

    def _gather(self) -> None:
        """Move everything queued into ``_pending``; wait briefly for a fuller batch."""
        entries = sum(isinstance(i, _Item) for i in self._pending)
        deadline: float | None = None
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                if (self.batch_wait_s <= 0 or entries >= self.batch_max
                        or isinstance(self._pending[-1], _Marker)):
                    return
                now = time.monotonic()
                deadline = deadline or now + self.batch_wait_s
                if now >= deadline:
                    return
                try:
                    item = self._queue.get(timeout=deadline - now)
                except queue.Empty:
                    return
            self._pending.append(item)
            entries += isinstance(item, _Item)

    def _record_failure(self, exc: Exception, count: int, delay: float, first: bool) -> None:
        self._healthy = False
        self.stats.failures += 1
        self._head = None  # re-read: the failed transaction may or may not have committed
        error = f"{type(exc).__name__}: {error_text(exc)}"
        now = time.monotonic()
        repeat = not first and error == self._last_error and now - self._last_logged < LOG_EVERY_S
        self._last_error = error
        if repeat:
            return
        self._last_logged = now
        message = ("ledger %s: cannot write %d entries to %s (%s); keeping them queued "
                   "(%d waiting) and retrying (next in %.2f s)")
        args = (self.chain_id, count, self.url, error, self.backlog, delay)
        if first:
            unexpected = not isinstance(exc, (LedgerError, _ChainMoved, SQLAlchemyError))
            log.error(message, *args, exc_info=unexpected)
        else:
            log.warning(message, *args)

    def _encode(self, item: _Item) -> None:
        if item.data_text is None:
            data = item.entry.data
            if self.sealer is not None:
                data, item.keys, item.subjects = self.sealer.seal(item.entry.call_id, data)
            item.data_text = encode_data(data)
            item.data_obj = json.loads(item.data_text)

    def _write(self, batch: list[_Item]) -> list[Committed]:
        """One transaction: head check, entries, index.  Returns what was committed."""
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            if self._head is None:
                self._head = self._read_head(session)
                attempt, self._last_attempt = self._last_attempt, None
                if attempt is not None and self._head == attempt.head:
                    # The COMMIT we saw fail had in fact gone through.
                    committed = attempt.committed
                    return self._committed(committed, attempt.head, attempt.tree)
                if self.merkle and (self._tree is None or self._tree.size != self._head[0]):
                    self._tree = catch_up(session.connection(), self.chain_id)
            committed, rows, projected = self._chain(batch)
            old_seq = self._head[0]
            new_head = (committed[-1].seq, committed[-1].hash)
            nodes: list[dict[str, object]] = []
            tree = self._grow_tree(committed, nodes)
            self._last_attempt = _Attempt(new_head, committed, tree)
            self._advance_head(session, old_seq, new_head, tree)
            session.execute(insert(LedgerEntryRecord.__table__), rows)  # Core: no ORM bookkeeping
            if nodes:
                session.execute(insert(MerkleNode.__table__), nodes)
            keys = [{**row, "created_at": time.time()} for item in batch for row in item.keys]
            if keys:
                session.execute(insert(PiiKey.__table__), keys)
            project(session, projected)
        return self._committed(committed, new_head, tree)

    def _grow_tree(self, committed: list[Committed], nodes: list[dict[str, object]]) -> CompactRange | None:
        """The tree with ``committed`` appended (a copy: a failed commit leaves ours as it was)."""
        if not self.merkle:
            return None
        assert self._tree is not None
        tree = CompactRange(self._tree.size, self._tree.hashes, collect_stored(nodes, self.chain_id))
        for done in committed:
            tree.append(entry_leaf(done.hash))
        tree.on_node = None
        return tree

    def _chain(self, batch: list[_Item]) -> tuple[list[Committed], list[dict[str, object]], list[ProjectedEntry]]:
        """Seq numbers and hashes for ``batch``, continuing from the current head."""
        assert self._head is not None
        seq, prev = self._head
        committed, rows, projected = [], [], []
        for item in batch:
            self._encode(item)
            seq += 1
            entry = item.entry
            fields = {
                "chain_id": self.chain_id, "seq": seq, "call_id": entry.call_id,
                "kind": entry.kind, "pbx_time_us": to_us(entry.at),
                "received_at_us": to_us(item.received_at), "prev_hash": prev,
            }
            digest = entry_hash(data=item.data_obj, **fields)  # type: ignore[arg-type]
            rows.append({**fields, "data": item.data_text, "hash": digest})
            projected.append(ProjectedEntry(self.chain_id, entry.call_id, entry.kind, entry.at,
                                            item.data_obj, item.subjects))  # type: ignore[arg-type]
            committed.append(Committed(self.chain_id, seq, digest, entry.call_id, entry.kind))
            prev = digest
        return committed, rows, projected

    def _advance_head(self, session: Session, old_seq: int, new_head: tuple[int, str],
                      tree: CompactRange | None) -> None:
        """Move the stored head, but only from where we built (optimistic check)."""
        seq, last = new_head
        tree_values = {} if tree is None else {"tree_size": tree.size, "tree_root": tree.root().hex()}
        if old_seq == 0 and session.get(ChainHead, self.chain_id) is None:
            session.add(ChainHead(chain_id=self.chain_id, last_seq=seq, last_hash=last,
                                  updated_at=time.time(), **tree_values))
            session.flush()
            return
        result = session.execute(
            update(ChainHead)
            .where(ChainHead.chain_id == self.chain_id, ChainHead.last_seq == old_seq)
            .values(last_seq=seq, last_hash=last, updated_at=time.time(), **tree_values)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise _ChainMoved(f"chain {self.chain_id!r} head moved past seq {old_seq}: "
                              "is another listener writing with the same chain id?")

    def _committed(self, committed: list[Committed], head: tuple[int, str],
                   tree: CompactRange | None) -> list[Committed]:
        self._head = head
        if tree is not None:
            self._tree = tree
        self._last_attempt = None
        self._committed_seq = head[0]
        self.stats.transactions += 1
        self.stats.entries += len(committed)
        self.stats.max_batch = max(self.stats.max_batch, len(committed))
        return committed

    def _acknowledge(self, batch: list[_Item], committed: list[Committed]) -> None:
        for item, done in zip(batch, committed):
            if item.on_commit is None:
                continue
            try:
                item.on_commit(done)
            except Exception:
                log.exception("ledger %s: on_commit callback for seq %d failed", self.chain_id, done.seq)

    def _at_exit(self) -> None:
        """Interpreter exit without close(): try to commit what is queued."""
        if not self._closed:
            self.close(timeout=5.0)


__all__ = ["Committed", "Ledger", "LedgerHandle", "OnCommit", "WriterStats", "check_entry"]
