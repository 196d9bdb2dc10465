"""The group-commit writer: acknowledgements, batching, resume, failures."""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time

import pytest
from sqlalchemy import event, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from callguard.ledger.sealed import Revealer

from callguard.core.commands import LedgerEntry
from callguard.ledger import (
    Ledger,
    LedgerError,
    calls_by_number,
    get_call,
    timeline,
    verify,
)
from callguard.ledger.models import LedgerEntryRecord
from callguard.ledger.process import LedgerProcess
from tests.ledger.support import T0, execute, sample_call, scalar


def entries(n: int, call_id: str = "call-1", t0: float = T0) -> list[LedgerEntry]:
    return [LedgerEntry(call_id, "consent", t0 + i / 1000, {"i": i, "decision": "granted"}) for i in range(n)]


def count_commits(ledger: Ledger) -> list[int]:
    """Count real COMMITs on the writer's engine from now on."""
    commits = [0]

    @event.listens_for(ledger.engine, "commit")
    def _commit(_conn):
        commits[0] += 1

    return commits


def test_append_acknowledges_each_entry_after_commit(open_ledger, raw_engine):
    ledger = open_ledger()
    acks = []
    seen_in_db = []

    def on_commit(done):
        # An acknowledged entry is already readable by another connection.
        seen_in_db.append(scalar(raw_engine, "SELECT hash FROM ledger_entries WHERE seq = :s", s=done.seq))
        acks.append(done)

    for entry in entries(50):
        ledger.append(entry, time.time(), on_commit)
    assert ledger.flush(timeout=10)
    assert [a.seq for a in acks] == list(range(1, 51))
    assert seen_in_db == [a.hash for a in acks]
    assert ledger.committed_seq == 50 and ledger.backlog == 0 and ledger.healthy
    assert verify(raw_engine).ok


def test_group_commit_batches_entries(open_ledger):
    ledger = open_ledger(batch_max=64, batch_wait_ms=0)
    commits = count_commits(ledger)
    # Hold the writer thread in the first entry's callback (it runs after that
    # commit) while 640 more entries queue up, as under a burst of calls.
    gate = threading.Event()
    ledger.append(LedgerEntry("call-0", "call-offered", T0), time.time(), lambda _done: gate.wait(10))
    for entry in entries(640):
        ledger.append(entry, time.time())
    gate.set()
    assert ledger.flush(timeout=20)
    assert ledger.stats.entries == 641 and ledger.stats.max_batch == 64
    # 1 commit for the first entry, then 640 entries in 10 full batches - not 640 commits.
    assert commits[0] == ledger.stats.transactions == 11


def test_batch_max_one_means_one_commit_per_entry(open_ledger):
    ledger = open_ledger("solo", batch_max=1)
    commits = count_commits(ledger)
    for entry in entries(30):
        ledger.append(entry, time.time())
    assert ledger.flush(timeout=20)
    assert commits[0] == 30 and ledger.stats.max_batch == 1


def test_reopen_resumes_the_chain(db_url, open_ledger, raw_engine):
    first = open_ledger()
    for entry in entries(10):
        first.append(entry, time.time())
    assert first.close(timeout=10)
    second = open_ledger()
    assert second.committed_seq == 10
    acks = []
    for entry in entries(5, t0=T0 + 60):
        second.append(entry, time.time(), acks.append)
    assert second.flush(timeout=10)
    assert [a.seq for a in acks] == [11, 12, 13, 14, 15]
    linked = scalar(raw_engine, "SELECT prev_hash FROM ledger_entries WHERE seq = 11")
    assert linked == scalar(raw_engine, "SELECT hash FROM ledger_entries WHERE seq = 10")
    assert verify(raw_engine).ok and verify(raw_engine).chains[0].entries == 15


def test_times_and_floats_round_trip_exactly(open_ledger, raw_engine):
    ledger = open_ledger()
    data = {"offset_s": 0.1 + 0.2, "tiny": 1e-7, "big": 2**53 + 1, "name": "Zoë 日本 \u202e",
            "nested": {"list": [1.5, None, True, "x"], "tuple": (1, 2)}, "odd": float("nan"),
            "surrogate": "bad\udcff"}
    at = 1_714_567_890.123456
    ledger.append(LedgerEntry("call-f", "notice-started", at, data), 1_714_567_890.654321)
    assert ledger.flush(timeout=10)
    (stored,) = timeline(raw_engine, "call-f")
    assert stored.pbx_time_us == 1_714_567_890_123_456
    assert stored.received_at_us == 1_714_567_890_654_321
    assert stored.data["offset_s"] == 0.1 + 0.2 and stored.data["tiny"] == 1e-7
    assert stored.data["big"] == 2**53 + 1 and stored.data["name"] == "Zoë 日本 \u202e"
    assert stored.data["nested"] == {"list": [1.5, None, True, "x"], "tuple": [1, 2]}
    assert stored.data["odd"] == "nan"  # kept readable, never dropped
    assert stored.data["surrogate"] == "bad\udcff"
    assert verify(raw_engine).ok


def test_calls_and_parties_are_indexed_in_the_same_transaction(open_ledger, raw_engine):
    ledger = open_ledger()
    for entry in sample_call("call-A") + sample_call("call-B", T0 + 3600, caller="+1 (415) 555-0199"):
        ledger.append(entry, entry.at)
    assert ledger.flush(timeout=10)
    with Session(raw_engine) as session:
        call = get_call(session, "call-A")
        assert call is not None
        assert (call.chain_id, call.regime, call.recording_allowed) == ("asterisk@pbx1", "all-party", True)
        assert call.recording_file == "callguard-call-A.wav"
        assert (call.final_state, call.hangup_cause) == ("recording", "16")
        assert call.answered_at == pytest.approx(T0 + 0.5, abs=1e-6)
        assert call.ended_at == pytest.approx(T0 + 120.5, abs=1e-6)
        assert call.entry_count == 14
        assert not any("+14155550123" in (p.number or "") for p in call.parties)  # sealed in the index too
        numbers = Revealer(session.connection()).data([p.number for p in call.parties])
        parties = [(p.role, n, p.jurisdiction, p.regime) for p, n in zip(call.parties, numbers)]
        assert parties == [("caller", "+14155550123", "US-CA", "all-party"),
                           ("agent", "2001", "internal", "one-party"),
                           ("joiner", "+442079460000", "GB", "gdpr")]
        # Calls by number, whatever the formatting (access requests).
        assert [c.call_id for c in calls_by_number(session, "+14155550123")] == ["call-A"]
        assert [c.call_id for c in calls_by_number(session, "+14155550199")] == ["call-B"]
        assert [c.call_id for c in calls_by_number(session, "+442079460000")] == ["call-B", "call-A"]
        assert calls_by_number(session, "+15550000000") == []


def test_timeline_is_in_write_order(open_ledger, raw_engine):
    ledger = open_ledger()
    calls = sample_call("call-A")
    for entry in calls:
        ledger.append(entry, entry.at)
    assert ledger.flush(timeout=10)
    assert [e.kind for e in timeline(raw_engine, "call-A")] == [e.kind for e in calls]
    assert timeline(raw_engine, "nope") == []


def test_two_chains_write_concurrently_without_contention(open_ledger, raw_engine):
    a, b = open_ledger("asterisk@pbx1"), open_ledger("freeswitch@pbx2")

    def feed(ledger, call_id):
        for entry in entries(200, call_id):
            ledger.append(entry, time.time())

    threads = [threading.Thread(target=feed, args=(a, "A")), threading.Thread(target=feed, args=(b, "B"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert a.flush(20) and b.flush(20)
    report = verify(raw_engine)
    assert report.ok and sorted((c.chain_id, c.entries) for c in report.chains) == [
        ("asterisk@pbx1", 200), ("freeswitch@pbx2", 200)]


def test_two_writers_on_one_chain_id_keep_the_chain_valid(open_ledger, raw_engine, caplog):
    """A misconfiguration (two listeners, one chain id) must not corrupt the chain."""
    a, b = open_ledger("shared"), open_ledger("shared")
    for i in range(5):
        for entry in entries(20, f"A{i}"):
            a.append(entry, time.time())
        for entry in entries(20, f"B{i}"):
            b.append(entry, time.time())
        assert a.flush(20) and b.flush(20)
    report = verify(raw_engine)
    assert report.ok, report.problems
    assert report.chains[0].entries == 200
    assert "another listener" in caplog.text


def test_commit_that_succeeded_but_reported_failure_is_not_duplicated(open_ledger, raw_engine, monkeypatch):
    """COMMIT reached the database but the client saw an error: retry must not write twice."""
    ledger = open_ledger(retry_min_s=0.01)
    dialect = ledger.engine.dialect
    real_commit = dialect.do_commit
    failed = []

    def commit_then_fail(dbapi_connection):
        real_commit(dbapi_connection)
        if not failed:
            failed.append(True)
            raise OperationalError("COMMIT", {}, Exception("connection lost after commit"))

    monkeypatch.setattr(dialect, "do_commit", commit_then_fail)
    acks = []
    for entry in entries(8):
        ledger.append(entry, time.time(), acks.append)
    assert ledger.flush(timeout=10)
    assert failed and [a.seq for a in acks] == list(range(1, 9))
    assert scalar(raw_engine, "SELECT count(*) FROM ledger_entries") == 8
    assert verify(raw_engine).ok


def wait_until(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture(params=["thread", "process"])
def opener(request):
    """``Ledger.open`` or its child-process twin: both make the same promises."""
    return Ledger.open if request.param == "thread" else LedgerProcess.open


def test_locked_database_keeps_entries_queued_and_recovers(sqlite_url, tmp_path, caplog, opener):
    """SQLite locked by someone else: nothing lost, nothing blocks, the error is visible."""
    caplog.set_level(logging.WARNING, logger="callguard.ledger")
    ledger = opener(sqlite_url, "asterisk@pbx1", busy_timeout_ms=20, retry_min_s=0.02, retry_max_s=0.1)
    blocker = sqlite3.connect(tmp_path / "ledger.sqlite", isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        slowest = 0.0
        for entry in entries(40):
            started = time.perf_counter()
            ledger.append(entry, time.time())
            slowest = max(slowest, time.perf_counter() - started)
        assert slowest < 0.01, "append() must not wait for the database"
        assert wait_until(lambda: not ledger.healthy)
        assert "locked" in (ledger.last_error or "")
        assert not ledger.flush(timeout=0.2)
        assert ledger.committed_seq == 0 and ledger.backlog == 40
        assert wait_until(lambda: "keeping them queued" in caplog.text)  # (from the child: a moment later)
        blocker.execute("ROLLBACK")
        assert ledger.flush(timeout=10)
        assert ledger.healthy and ledger.committed_seq == 40
        assert wait_until(lambda: "again after" in caplog.text)
    finally:
        blocker.close()
        ledger.close(timeout=10)
    from callguard.ledger import open_for_reading

    engine = open_for_reading(sqlite_url)
    assert verify(engine).ok and verify(engine).chains[0].entries == 40
    engine.dispose()


def test_close_with_database_down_reports_unwritten_entries(sqlite_url, tmp_path, caplog, opener):
    ledger = opener(sqlite_url, "asterisk@pbx1", busy_timeout_ms=10, retry_min_s=0.02)
    blocker = sqlite3.connect(tmp_path / "ledger.sqlite", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        for entry in entries(3):
            ledger.append(entry, time.time())
        assert ledger.close(timeout=0.3) is False
        assert "closed with 3 entries NOT written" in caplog.text
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


def test_bad_appends_fail_at_the_caller(open_ledger):
    ledger = open_ledger()
    with pytest.raises(TypeError, match="LedgerEntry"):
        ledger.append({"kind": "consent"}, time.time())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        ledger.append(LedgerEntry("c", "consent", math.nan), time.time())
    with pytest.raises(ValueError, match="too long"):
        ledger.append(LedgerEntry("c" * 300, "consent", T0), time.time())
    ledger.append(LedgerEntry("c", "consent", T0), time.time())
    assert ledger.close(timeout=10)
    with pytest.raises(LedgerError, match="closed"):
        ledger.append(LedgerEntry("c", "consent", T0), time.time())


def test_failing_callback_does_not_stop_the_writer(open_ledger, caplog):
    ledger = open_ledger()

    def boom(_done):
        raise RuntimeError("callback bug")

    ledger.append(LedgerEntry("c", "consent", T0), time.time(), boom)
    acks = []
    ledger.append(LedgerEntry("c", "hangup", T0 + 1), time.time(), acks.append)
    assert ledger.flush(timeout=10)
    assert [a.seq for a in acks] == [2]
    assert "on_commit callback for seq 1 failed" in caplog.text


def test_open_errors_are_clear(tmp_path):
    with pytest.raises(LedgerError, match="does not exist"):
        Ledger.open(f"sqlite:///{tmp_path}/missing-dir/ledger.sqlite", "c")
    with pytest.raises(LedgerError, match="in-memory"):
        Ledger.open("sqlite://", "c")
    with pytest.raises(LedgerError, match="not a database URL"):
        Ledger.open("not a url", "c")
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LedgerError, match="not a database"):
        Ledger.open(f"sqlite:///{garbage}", "c")
    with pytest.raises(LedgerError, match="chain id"):
        Ledger.open(f"sqlite:///{tmp_path}/ok.sqlite", "")


def test_entries_without_head_refuse_to_fork(db_url, open_ledger, raw_engine):
    ledger = open_ledger()
    ledger.append(LedgerEntry("c", "consent", T0), time.time())
    assert ledger.close(timeout=10)
    execute(raw_engine, "DELETE FROM chain_heads")
    with pytest.raises(LedgerError, match="no chain head"):
        Ledger.open(db_url, "asterisk@pbx1")


def test_sqlite_settings(sqlite_url):
    ledger = Ledger.open(sqlite_url, "asterisk@pbx1")
    try:
        with ledger.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
    finally:
        ledger.close()


def test_models_share_one_metadata():
    from callguard.ledger.models import Base

    assert {"calls", "parties", "ledger_entries", "chain_heads"} <= set(Base.metadata.tables)
    assert LedgerEntryRecord.__table__.metadata is Base.metadata
    assert select(LedgerEntryRecord.seq) is not None
