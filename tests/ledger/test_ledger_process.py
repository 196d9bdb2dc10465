"""The ledger writer in its own process: same promises as the thread writer, and crashes on either side."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from sqlalchemy import func, select

from callguard.core.commands import LedgerEntry
from callguard.ledger import LedgerError, open_for_reading, verify
from callguard.ledger.models import LedgerEntryRecord
from callguard.ledger.process import LedgerProcess
from tests.ledger.support import T0, scalar
from tests.ledger.test_ledger_writer import entries, wait_until

CHAIN = "asterisk@pbx1"


@pytest.fixture
def open_process():
    opened: list[LedgerProcess] = []

    def factory(url: str, **options) -> LedgerProcess:
        options.setdefault("batch_wait_ms", 1.0)
        ledger = LedgerProcess.open(url, CHAIN, **options)
        opened.append(ledger)
        return ledger

    yield factory
    for ledger in opened:
        ledger.close(timeout=10)


def stored_count(url: str) -> int:
    engine = open_for_reading(url)
    try:
        with engine.connect() as connection:
            return connection.scalar(select(func.count()).select_from(LedgerEntryRecord))
    finally:
        engine.dispose()


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie (the test runner is not its parent) counts as gone too.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "Z"


def test_entries_are_committed_and_acknowledged_by_the_writer_process(db_url, open_process, raw_engine):
    ledger = open_process(db_url)
    assert ledger.pid != os.getpid()
    acks = []
    seen_in_db = []

    def on_commit(done):  # runs in this process, once the child's COMMIT returned
        seen_in_db.append(scalar(raw_engine, "SELECT hash FROM ledger_entries WHERE seq = :s", s=done.seq))
        acks.append(done)

    for i, entry in enumerate(entries(300)):
        ledger.append(entry, time.time(), on_commit if i % 10 == 0 else None)
    assert ledger.flush(timeout=20)
    assert [a.seq for a in acks] == list(range(1, 301, 10))
    assert seen_in_db == [a.hash for a in acks]
    assert ledger.committed_seq == 300 and ledger.backlog == 0 and ledger.healthy
    assert ledger.stats.entries == 300 and 1 <= ledger.stats.transactions <= 300
    assert ledger.tree_head is not None and ledger.tree_head[0] == 300
    assert ledger.close(timeout=10)
    assert verify(raw_engine).ok


def test_a_reopened_process_ledger_resumes_the_chain(sqlite_url, open_process):
    first = open_process(sqlite_url)
    for entry in entries(5):
        first.append(entry, time.time())
    assert first.close(timeout=10)
    second = open_process(sqlite_url)
    assert second.committed_seq == 5
    second.append(LedgerEntry("call-2", "hangup", T0 + 9), time.time())
    assert second.flush(timeout=10) and second.committed_seq == 6


def test_bad_appends_fail_at_the_caller_and_open_errors_are_clear(sqlite_url, open_process, tmp_path):
    ledger = open_process(sqlite_url)
    with pytest.raises(TypeError, match="LedgerEntry"):
        ledger.append({"kind": "consent"}, time.time())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        ledger.append(LedgerEntry("c", "consent", math.nan), time.time())
    assert ledger.close(timeout=10)
    with pytest.raises(LedgerError, match="closed"):
        ledger.append(LedgerEntry("c", "consent", T0), time.time())
    with pytest.raises(LedgerError, match="does not exist"):
        LedgerProcess.open(f"sqlite:///{tmp_path}/missing-dir/ledger.sqlite", CHAIN)


def test_a_killed_writer_process_is_replaced_and_loses_nothing(db_url, open_process, raw_engine, caplog):
    ledger = open_process(db_url)
    acks = []
    for entry in entries(100):
        ledger.append(entry, time.time(), acks.append)
    assert ledger.flush(timeout=20)
    first = ledger.pid
    os.kill(first, signal.SIGKILL)
    for entry in entries(100, call_id="call-2"):  # appended while it dies and is replaced
        ledger.append(entry, time.time(), acks.append)
    assert ledger.flush(timeout=30), ledger.last_error
    assert ledger.pid != first
    assert "writer process exited unexpectedly" in caplog.text and "took over" in caplog.text
    assert ledger.committed_seq >= 200 and ledger.backlog == 0 and ledger.healthy
    # Everything acknowledged is stored; an entry committed just before the kill may be there twice.
    stored = {row for row in raw_engine.connect().execute(
        select(LedgerEntryRecord.call_id, LedgerEntryRecord.data))}
    assert len(stored) == 200
    assert sorted(a.seq for a in acks) == sorted({a.seq for a in acks}) and len(acks) == 200
    assert ledger.close(timeout=10)
    assert verify(raw_engine).ok


def test_interrupts_sent_to_the_process_group_do_not_stop_the_writer(sqlite_url, open_process):
    ledger = open_process(sqlite_url)
    os.kill(ledger.pid, signal.SIGINT)
    os.kill(ledger.pid, signal.SIGTERM)
    ledger.append(LedgerEntry("c", "consent", T0), time.time())
    assert ledger.flush(timeout=10)
    assert ledger.stats.failures == 0, "the child survived: the listener decides when the ledger closes"


def test_a_killed_listener_leaves_its_entries_committed_by_the_writer(sqlite_url):
    """SIGKILL the listener right after it appended: the child sees the pipe close and commits them."""
    script = textwrap.dedent(f"""
        import os, sys, time
        from callguard.core.commands import LedgerEntry
        from callguard.ledger.process import LedgerProcess
        ledger = LedgerProcess.open({sqlite_url!r}, {CHAIN!r}, batch_wait_ms=50)
        for i in range(500):
            ledger.append(LedgerEntry(f"call-{{i // 10}}", "consent", time.time(), {{"i": i}}), time.time())
        print(ledger.pid, flush=True)
        time.sleep(60)
    """)
    listener = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout is not None
        child = int(listener.stdout.readline())
        listener.kill()
    finally:
        listener.wait(10)
    assert wait_until(lambda: gone(child), timeout=30), "the writer process outlived its work"
    assert stored_count(sqlite_url) == 500
    engine = open_for_reading(sqlite_url)
    try:
        assert verify(engine).ok
    finally:
        engine.dispose()


def test_the_listener_ledger_runs_in_a_process_unless_configured_otherwise(sqlite_url):
    from callguard.config import parse_config
    from callguard.ledger import Ledger
    from callguard.wiring import build_ledger

    default = parse_config({"ledger": {"url": sqlite_url}}, "<test>", environ={})
    ledger = build_ledger(default, "chain-a")
    try:
        assert isinstance(ledger, LedgerProcess) and ledger.pid != os.getpid()
        ledger.append(LedgerEntry("c", "consent", T0), time.time())
        assert ledger.flush(timeout=10) and ledger.committed_seq == 1
    finally:
        assert ledger.close(timeout=10)
    threaded = parse_config({"ledger": {"url": sqlite_url, "writer": "thread"}}, "<test>", environ={})
    ledger = build_ledger(threaded, "chain-b")
    try:
        assert isinstance(ledger, Ledger)
    finally:
        ledger.close(timeout=10)
    with pytest.raises(Exception, match="writer"):
        parse_config({"ledger": {"url": sqlite_url, "writer": "fork"}}, "<test>", environ={})


def test_readers_next_to_the_listener_can_read_the_chain(sqlite_url, open_process):
    """The payments desk finds an earlier process's unfinished captures through the sink's engine."""
    from callguard.ledger import timeline
    from callguard.payments.orphans import readable_ledger

    ledger = open_process(sqlite_url)
    ledger.append(LedgerEntry("call-9", "call-offered", T0, {"channel": "PJSIP/a-1"}), time.time())
    assert ledger.flush(timeout=10)
    assert readable_ledger(ledger) is ledger
    with ledger.engine.connect() as connection:
        assert [e.kind for e in timeline(connection, "call-9")] == ["call-offered"]
