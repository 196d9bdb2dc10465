"""The ledger writer in a process of its own, so the listener's GIL stays with the event loop.

Why a process: the threaded :class:`~callguard.ledger.writer.Ledger` does
its encoding, hashing, Merkle tree, sealing and SQLAlchemy work on a thread
of the listener's interpreter.  That work needs the GIL, so every time the
event loop comes back from a syscall while the writer runs, it waits (up to
the switch interval, longer when the machine is busy and the writer thread
is not scheduled promptly), and the writer's garbage triggers the cyclic
GC in whichever thread allocates next.  Measured on the 1,000-call pause
bench (bench/asterisk_pause_latency.py): see the notes of issue 15.

Here the listener keeps only what must be on its side: ``append`` checks the
entry, pickles it (a few microseconds) and writes it into a pipe without
blocking; the child process (``python -m callguard.ledger.process``) runs
an ordinary :class:`Ledger` built by the same factory the listener would
have used (so sealing, Merkle tree and checkpointer come along unchanged)
and sends back, per transaction, what was committed.  ``on_commit``
callbacks, ``committed_seq``, ``healthy``, ``last_error``, ``flush`` and
``close`` mean what they mean on :class:`Ledger`.

Nothing is dropped on the way: every appended entry is kept here until the
child acknowledges its COMMIT.  If the child dies (killed, out of memory),
a new one is started and everything not yet acknowledged is sent again, so
an entry whose COMMIT happened just before the crash can appear twice in
the chain (still a valid chain; the audit counts each fact once).  If the
listener dies instead, the child sees the pipe close, commits what it has
received and exits.
"""

from __future__ import annotations

import atexit
import collections
import fcntl
import functools
import itertools
import logging
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from callguard.core.commands import LedgerEntry
from callguard.ledger.handle import Committed, LedgerError, LedgerHandle, OnCommit, WriterStats, check_entry

log = logging.getLogger("callguard.ledger")

_HEADER = struct.Struct("<I")
#: Pipe buffer asked for (Linux allows up to /proc/sys/fs/pipe-max-size, 1 MiB by default):
#: ~2,000 entries in flight before ``append`` has to leave bytes to the sender thread.
PIPE_SIZE = 1 << 20
#: Without an ``on_commit`` waiting, acknowledgements are sent at most this often: every
#: message wakes a thread of the listener, which then wants the GIL.
ACK_EVERY_S = 0.1
#: How long the child may take to import, open the database and report its head.
START_TIMEOUT_S = 60.0
#: When the listener vanishes (pipe closed without ``close``): how long the child keeps
#: trying to commit what it received.
ORPHAN_CLOSE_S = 30.0
#: Restart delays after the child died unexpectedly.
RESTART_MIN_S, RESTART_MAX_S = 0.1, 5.0


def _frame(message: object) -> bytes:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(payload)) + payload


class _FrameReader:
    """Length-prefixed pickles from a blocking pipe (both directions are our own processes)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buf = bytearray()

    def read(self, timeout: float | None = None) -> list[Any] | None:
        """Every whole message available (waiting for at least one); None at end of file."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            messages = self._parse()
            if messages:
                return messages
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                    raise TimeoutError
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                return None
            self._buf += chunk

    def _parse(self) -> list[Any]:
        messages, offset, buf = [], 0, self._buf
        while len(buf) - offset >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buf, offset)
            end = offset + _HEADER.size + size
            if end > len(buf):
                break
            messages.append(pickle.loads(buf[offset + _HEADER.size:end]))
            offset = end
        del buf[:offset]
        return messages


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _widen(fd: int) -> None:
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except (OSError, AttributeError):  # not Linux, or above the per-user pipe limit: the default works too
        pass


class LedgerProcess(LedgerHandle):
    """A :class:`~callguard.ledger.writer.Ledger` run by a child process; same API.

    ``factory(*args, **kwargs)`` is called in the child and must return a
    :class:`Ledger` (``Ledger.open``, or ``wiring.build_ledger`` with the
    thread writer); factory and arguments are pickled to the child.

    ``ingest(ledger)``, also called in the child, may return a sink to put in
    front of that ledger there: the vault's
    :class:`~callguard.vault.autoingest.AutoIngest`, so recordings are
    encrypted in the writer process too, off the listener's GIL (None: it
    logged why not).  :attr:`ingests` then says which it was, and the
    listener does not ingest itself.
    """

    def __init__(self, factory: Callable[..., Any], *args: Any, chain_id: str, read_url: str | None = None,
                 ingest: Callable[[Any], Any] | None = None, start_timeout_s: float = START_TIMEOUT_S,
                 **kwargs: Any) -> None:
        super().__init__()
        self._owner = os.getpid()
        self.chain_id = chain_id
        self.url = f"the database of chain {chain_id!r}"  #: until the child names it (password hidden)
        self._read_url = read_url
        self._engine: Any = None
        self.stats = WriterStats()
        self._opener = ("open", factory, args, kwargs, ingest, logging.getLogger("callguard").getEffectiveLevel())
        #: None: no ingest was asked of the child; else whether it ingests recordings
        self.ingests: bool | None = None
        self._start_timeout_s = start_timeout_s
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)
        self._pending: collections.deque[tuple[int, bytes]] = collections.deque()  #: appended, not yet acknowledged
        self._callbacks: dict[int, OnCommit] = {}
        self._overflow: collections.deque[bytes] = collections.deque()  #: bytes the pipe could not take yet
        self._wake = threading.Event()
        self._flushes: dict[int, list[Any]] = {}  #: token -> [event, result]
        self._tokens = itertools.count(1)
        self._stats_base = WriterStats()
        self._tree_head: tuple[int, bytes] | None = None
        self._closed = False  #: close() was called (appends refused from then on)
        self._close_timeout: float | None = None
        self._finished = threading.Event()
        self._close_ok = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._to_child: int | None = None
        self._reader: _FrameReader | None = None
        self._proc, self._reader, self._to_child = self._spawn()
        self._threads = [threading.Thread(target=self._receive, name=f"callguard-ledger-acks[{chain_id}]", daemon=True),
                         threading.Thread(target=self._drain, name=f"callguard-ledger-pipe[{chain_id}]", daemon=True)]
        for thread in self._threads:
            thread.start()
        atexit.register(self._at_exit)

    @classmethod
    def open(cls, url: str, chain_id: str, **ledger_options: Any) -> LedgerProcess:
        """``Ledger.open(url, chain_id, **ledger_options)`` in a child process."""
        from callguard.ledger.writer import Ledger  # only named here: the child imports it

        return cls(Ledger.open, url, chain_id, chain_id=chain_id, read_url=url, **ledger_options)

    # -- the Ledger API ------------------------------------------------------------------

    def append(self, entry: LedgerEntry, received_at: float, on_commit: OnCommit | None = None) -> None:
        """Queue ``entry`` for the chain: a pickle and a non-blocking pipe write, never a wait."""
        if self._closed:
            raise LedgerError(f"ledger {self.chain_id!r} is closed; entry {entry!r} not written")
        check_entry(entry, received_at)
        data = entry.data if type(entry.data) is dict else dict(entry.data)
        with self._lock:
            n = next(self._numbers)
            frame = _frame((n, entry.call_id, entry.kind, entry.at, data, received_at, on_commit is not None))
            self._pending.append((n, frame))
            if on_commit is not None:
                self._callbacks[n] = on_commit
            self._send(frame)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything appended before this call is committed (False after ``timeout``)."""
        if self._finished.is_set():
            return self.backlog == 0
        token = next(self._tokens)
        waiter = self._flushes[token] = [threading.Event(), False]
        with self._lock:
            self._send(_frame(("flush", token)))
        try:
            return waiter[0].wait(timeout) and waiter[1]
        finally:
            self._flushes.pop(token, None)

    def close(self, timeout: float | None = None) -> bool:
        """Commit what is queued, stop the child and run the close hooks; True if nothing was lost."""
        if self._closed or os.getpid() != self._owner:  # a forked copy must not stop its parent's writer
            return self.backlog == 0
        self._closed = True
        atexit.unregister(self._at_exit)
        with self._lock:
            self._close_timeout = timeout
            self._send(_frame(("close", timeout)))
        # The child gives up after ``timeout`` and then needs a moment to say so.
        if not self._finished.wait(None if timeout is None else timeout + 10.0):
            log.error("ledger %s: the writer process did not finish within %s s; stopping it", self.chain_id, timeout)
        self._stop_child()
        self._wake.set()
        for thread in self._threads:
            thread.join(5.0)
        lost = self.backlog
        if lost and not self._close_ok:
            log.error("ledger %s: closed with %d entries NOT written to %s (last error: %s)",
                      self.chain_id, lost, self.url, self._last_error)
        self._run_close_hooks(self.chain_id)
        if self._engine is not None:
            self._engine.dispose()
        return lost == 0

    @property
    def tree_head(self) -> tuple[int, bytes] | None:
        return self._tree_head

    @property
    def backlog(self) -> int:
        """Entries appended but not acknowledged as committed yet."""
        return len(self._pending)

    @property
    def engine(self) -> Any:
        """A read-only SQLAlchemy engine on the ledger's database, in this process (opened on first use).

        For readers next to the listener (the payments desk looks for captures an
        earlier process left unfinished); writing stays with the child.  Importing
        SQLAlchemy costs the listener ~30 MiB, so nothing opens it unless needed.
        """
        if self._engine is None:
            if self._read_url is None:
                raise AttributeError(f"ledger {self.chain_id!r}: no database URL to read from")
            from callguard.ledger.db import open_for_reading

            self._engine = open_for_reading(self._read_url)
        return self._engine

    @property
    def pid(self) -> int | None:
        """The writer process (for monitoring, and for tests that kill it)."""
        return None if self._proc is None else self._proc.pid

    # -- sending (any thread) ----------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        """Write ``data`` now if the pipe takes it, else leave it to the sender thread (lock held)."""
        fd = self._to_child
        if self._overflow or fd is None:
            self._overflow.append(data)
            self._wake.set()
            return
        try:
            written = os.write(fd, data)
        except (BlockingIOError, BrokenPipeError):
            written = 0  # full, or the child is gone (the receiver restarts it and re-sends)
        if written < len(data):
            self._overflow.append(data[written:])
            self._wake.set()

    def _drain(self) -> None:
        """The sender thread: moves what the pipe could not take, waiting for room without the GIL."""
        while not self._finished.is_set():
            self._wake.wait()
            self._wake.clear()
            while not self._finished.is_set():
                with self._lock:
                    fd = self._to_child
                    if not self._overflow or fd is None:
                        break
                    chunk = self._overflow[0]
                    try:
                        written = os.write(fd, chunk)
                    except (BlockingIOError, BrokenPipeError):
                        written = 0
                    if written == len(chunk):
                        self._overflow.popleft()
                    else:
                        self._overflow[0] = chunk[written:]
                if written < len(chunk):
                    try:
                        select.select([], [fd], [], 0.5)
                    except (OSError, ValueError):  # closed under us: the child is being replaced
                        pass

    # -- the child --------------------------------------------------------------------------

    def _spawn(self) -> tuple[subprocess.Popen[bytes], _FrameReader, int]:
        """Start a child, open its ledger, and wait for its chain head (LedgerError if it cannot)."""
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        _widen(to_child_w)
        package_root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
        try:
            proc = subprocess.Popen([sys.executable, "-m", "callguard.ledger.process", str(to_child_r),
                                     str(from_child_w)], pass_fds=(to_child_r, from_child_w), env=env,
                                    stdin=subprocess.DEVNULL)
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        reader = _FrameReader(from_child_r)
        try:
            _write_all(to_child_w, _frame(self._opener))
            answer = self._handshake(reader)
        except BaseException:
            proc.kill()
            proc.wait()
            os.close(to_child_w)
            os.close(from_child_r)
            raise
        os.set_blocking(to_child_w, False)
        _, self._committed_seq, self._tree_head, self.url, ingests = answer
        if self._opener[4] is not None:
            self.ingests = ingests
        return proc, reader, to_child_w

    def _handshake(self, reader: _FrameReader) -> tuple[Any, ...]:
        deadline = time.monotonic() + self._start_timeout_s
        while True:
            try:
                messages = reader.read(max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise LedgerError(f"the ledger writer process for chain {self.chain_id!r} did not start within "
                                  f"{self._start_timeout_s:.0f} s") from None
            if messages is None:
                raise LedgerError(f"the ledger writer process for chain {self.chain_id!r} exited while starting "
                                  "(its error is above)")
            for message in messages:
                if message[0] == "log":
                    self._log(message)
                elif message[0] == "failed":
                    raise LedgerError(message[1])
                elif message[0] == "ready":
                    return message

    def _stop_child(self) -> None:
        proc = self._proc
        if proc is None:
            return
        try:
            proc.wait(5.0)
        except subprocess.TimeoutExpired:
            log.error("ledger %s: the writer process %d did not exit; killing it", self.chain_id, proc.pid)
            proc.kill()
            proc.wait()

    def _receive(self) -> None:
        """The receiver thread: acknowledgements, status and log records from the child."""
        while True:
            assert self._reader is not None
            messages = self._reader.read()
            if messages is None:
                if self._finished.is_set() or not self._restart():
                    break
                continue
            for message in messages:
                self._handle(message)
            if self._finished.is_set():
                break
        self._finished.set()
        with self._lock:
            self._release_fds()
        os.close(self._reader.fd)

    def _handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "batch":
            _, upto, acks, self._committed_seq, self._tree_head, stats, self._healthy, self._last_error = message
            with self._lock:
                while self._pending and self._pending[0][0] <= upto:
                    self._pending.popleft()
                callbacks = [(self._callbacks.pop(n), done) for n, done in acks if n in self._callbacks]
            self._update_stats(stats)
            for callback, done in callbacks:
                try:
                    callback(done)
                except Exception:
                    log.exception("ledger %s: on_commit callback for seq %d failed", self.chain_id, done.seq)
        elif kind == "status":
            _, self._healthy, self._last_error, stats = message
            self._update_stats(stats)
        elif kind == "log":
            self._log(message)
        elif kind == "flushed":
            waiter = self._flushes.get(message[1])
            if waiter is not None:
                waiter[1] = message[2]
                waiter[0].set()
        elif kind == "closed":
            self._close_ok = message[1]
            self._finished.set()

    def _update_stats(self, stats: tuple[int, int, int, int]) -> None:
        base = self._stats_base
        transactions, entries, max_batch, failures = stats
        self.stats.transactions = base.transactions + transactions
        self.stats.entries = base.entries + entries
        self.stats.max_batch = max(base.max_batch, max_batch)
        self.stats.failures = base.failures + failures

    @staticmethod
    def _log(message: tuple[Any, ...]) -> None:
        _, name, level, text = message
        logging.getLogger(name).log(level, "%s", text)

    def _restart(self) -> bool:
        """The child died on its own: start another and send it everything not acknowledged.

        False if close() was called before a new child could be started.
        """
        assert self._proc is not None and self._reader is not None
        code = self._proc.wait()
        os.close(self._reader.fd)
        with self._lock:
            self._release_fds()
            waiting = len(self._pending)
        self._healthy = False
        self._last_error = f"the ledger writer process exited unexpectedly (exit code {code})"
        self._stats_base = WriterStats(self.stats.transactions, self.stats.entries, self.stats.max_batch,
                                       self.stats.failures + 1)
        log.error("ledger %s: %s; starting another and sending it the %d entries not yet acknowledged",
                  self.chain_id, self._last_error, waiting)
        delay = RESTART_MIN_S
        while True:
            try:
                proc, reader, fd = self._spawn()
            except LedgerError as exc:
                if self._closed:
                    return False
                log.error("ledger %s: cannot restart the writer process (%s); retrying in %.1f s",
                          self.chain_id, exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, RESTART_MAX_S)
                continue
            break
        with self._lock:  # appends wait here, so nothing new overtakes what is re-sent
            self._proc, self._reader, self._to_child = proc, reader, fd
            self._overflow.clear()  # a frame cut in the old pipe is re-sent whole below
            for _, frame in self._pending:
                self._send(frame)
            for token in list(self._flushes):
                self._send(_frame(("flush", token)))
            if self._closed:
                self._send(_frame(("close", self._close_timeout)))
        log.warning("ledger %s: a new writer process (%d) took over", self.chain_id, proc.pid)
        return True

    def _release_fds(self) -> None:
        fd, self._to_child = self._to_child, None
        if fd is not None:
            os.close(fd)

    def _at_exit(self) -> None:
        """Interpreter exit without close(): commit what is queued."""
        if not self._closed:
            self.close(timeout=5.0)


# -- the child process -----------------------------------------------------------------------


class _Outbox:
    """The child's side of the answers: one lock, whole messages."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()

    def send(self, message: object) -> None:
        data = _frame(message)
        with self._lock:
            try:
                _write_all(self._fd, data)
            except BrokenPipeError:
                pass  # the listener is gone; we still commit what we have


class _LogForwarder(logging.Handler):
    """Log records of the child go to the listener's logging, as if written there."""

    def __init__(self, outbox: _Outbox, level: int) -> None:
        super().__init__(level)
        self._outbox = outbox

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self._outbox.send(("log", record.name, record.levelno, text))


class _Acks:
    """What the child has committed and not yet told the listener."""

    def __init__(self, ledger: Any, outbox: _Outbox) -> None:
        self._ledger = ledger
        self._outbox = outbox
        self._lock = threading.Lock()
        self._upto = 0
        self._wanted: list[tuple[int, Committed]] = []
        self._unsent = False
        self._sent_at = 0.0
        self._status: tuple[Any, ...] = ()

    def on_commit(self, n: int, want: bool, done: Committed) -> None:
        with self._lock:
            self._upto = n
            self._unsent = True
            if want:
                self._wanted.append((n, done))

    def after_batch(self, _committed: list[Committed]) -> None:
        if self._wanted or time.monotonic() - self._sent_at >= ACK_EVERY_S:
            self.send()

    def send(self) -> None:
        """Tell the listener what is committed (if anything is new)."""
        ledger = self._ledger
        with self._lock:
            if not self._unsent:
                return
            wanted, self._wanted, self._unsent = self._wanted, [], False
            self._sent_at = time.monotonic()
            self._outbox.send(("batch", self._upto, wanted, ledger.committed_seq, ledger.tree_head,
                               self._stats(), ledger.healthy, ledger.last_error))

    def tick(self) -> None:
        """Periodic: unsent acknowledgements, and health changes (a failing database sends no batches)."""
        self.send()
        status = (self._ledger.healthy, self._ledger.last_error, self._ledger.stats.failures)
        if status != self._status:
            self._status = status
            self._outbox.send(("status", status[0], status[1], self._stats()))

    def _stats(self) -> tuple[int, int, int, int]:
        s = self._ledger.stats
        return s.transactions, s.entries, s.max_batch, s.failures


def _child_main(fd_in: int, fd_out: int) -> int:
    # The listener decides when we stop: a Ctrl-C or SIGTERM sent to the whole process group
    # (terminal, systemd) must not kill us before the listener's close() has flushed the chain.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    outbox, reader = _Outbox(fd_out), _FrameReader(fd_in)
    messages = reader.read()
    if not messages or messages[0][0] != "open":
        return 2
    _, factory, args, kwargs, make_front, level = messages.pop(0)
    root = logging.getLogger()
    root.setLevel(level)
    root.addHandler(_LogForwarder(outbox, level))
    try:
        ledger = factory(*args, **kwargs)
    except LedgerError as exc:
        outbox.send(("failed", str(exc)))
        return 1
    except Exception as exc:  # noqa: BLE001 - whatever it was, the listener must hear it, not hang
        outbox.send(("failed", f"cannot open the ledger: {type(exc).__name__}: {exc}"))
        return 1
    front = make_front(ledger) if make_front is not None else None
    sink = front if front is not None else ledger
    acks = _Acks(ledger, outbox)
    ledger.on_batch(acks.after_batch)
    outbox.send(("ready", ledger.committed_seq, ledger.tree_head, ledger.url, front is not None))

    def close(timeout: float | None) -> bool:
        if front is not None:  # commits, then finishes the ingests of the calls that ended
            front.close(30.0 if timeout is None else timeout)
        return ledger.close(timeout)
    stop = threading.Event()

    def ticker() -> None:
        while not stop.wait(ACK_EVERY_S):
            acks.tick()

    def flusher(token: int) -> None:
        ok = ledger.flush()
        acks.send()
        outbox.send(("flushed", token, ok))

    threading.Thread(target=ticker, name="callguard-ledger-ticker", daemon=True).start()
    while True:
        for message in messages:
            if type(message[0]) is int:
                n, call_id, kind, at, data, received_at, want = message
                sink.append(LedgerEntry(call_id, kind, at, data), received_at,
                            on_commit=functools.partial(acks.on_commit, n, want))
            elif message[0] == "flush":
                threading.Thread(target=flusher, args=(message[1],), daemon=True).start()
            elif message[0] == "close":
                ok = close(message[1])
                stop.set()
                acks.send()
                outbox.send(("closed", ok))
                return 0
        messages = reader.read()
        if messages is None:  # the listener is gone without closing: keep what it sent
            close(ORPHAN_CLOSE_S)
            return 0


if __name__ == "__main__":
    sys.exit(_child_main(int(sys.argv[1]), int(sys.argv[2])))


__all__ = ["LedgerProcess"]
