"""A process killed with SIGKILL loses no acknowledged entry, and the chain still verifies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import select

from callguard.ledger import Ledger, open_for_reading, verify
from callguard.ledger.models import LedgerEntryRecord

CHILD = Path(__file__).with_name("crash_writer.py")
CHAIN = "asterisk@crashy"


def run_and_kill(url: str, acks_before_kill: int) -> tuple[int, list[int]]:
    """Start the writer, SIGKILL it after some acks; return (seq at start, acked seqs)."""
    child = subprocess.Popen([sys.executable, str(CHILD), url, CHAIN], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        ready = child.stdout.readline()
        assert ready.startswith("ready"), ready + child.stderr.read()  # type: ignore[union-attr]
        start = int(ready.split()[1])
        acked: list[int] = []
        deadline = time.monotonic() + 30
        while len(acked) < acks_before_kill and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            acked.append(int(line))
        os.kill(child.pid, signal.SIGKILL)
        # Lines already in the pipe were printed after their commit: they count too.
        acked.extend(int(line) for line in child.stdout.read().split())
    finally:
        child.kill()
        child.wait(10)
    assert child.returncode == -signal.SIGKILL
    assert len(acked) >= acks_before_kill, "the child did not acknowledge enough entries"
    return start, acked


def test_sigkill_loses_no_acknowledged_entry(db_url):
    everything: list[int] = []
    for round_, count in enumerate((300, 200)):
        start, acked = run_and_kill(db_url, count)
        assert acked == list(range(start + 1, start + 1 + len(acked))), "acks in chain order"
        if round_:
            assert start >= everything[-1], "the second run resumed the chain after the crash"
        everything.extend(acked)
        engine = open_for_reading(db_url)
        try:
            with engine.connect() as connection:
                stored = set(connection.scalars(
                    select(LedgerEntryRecord.seq).where(LedgerEntryRecord.chain_id == CHAIN)))
            missing = set(acked) - stored
            assert not missing, f"acknowledged entries lost: {sorted(missing)[:10]}"
            report = verify(engine)
            assert report.ok, [str(p) for p in report.problems]
            assert report.chains[0].head_seq == max(stored) >= max(acked)
        finally:
            engine.dispose()
    # After two crashes the chain still accepts and links new entries.
    ledger = Ledger.open(db_url, CHAIN)
    try:
        from callguard.core.commands import LedgerEntry

        ledger.append(LedgerEntry("after", "hangup", time.time(), {"cause": "16"}), time.time())
        assert ledger.flush(10)
    finally:
        ledger.close(10)
    engine = open_for_reading(db_url)
    try:
        assert verify(engine).ok
    finally:
        engine.dispose()
