"""Ledger write throughput: group commit vs. one commit per entry, same run.

    python bench/ledger_write.py [--entries 20000] [--naive 1000]

Both sides write the same entries (hash chain, chain head, calls/parties
index) to a SQLite file with the same settings (WAL, synchronous=FULL,
BEGIN IMMEDIATE) in the same directory:

* group commit: :class:`callguard.ledger.Ledger` (``append`` + background
  thread, batches up to ``batch_max``);
* baseline: the straightforward SQLAlchemy loop, one transaction per entry,
  on the caller's thread;

and reports entries/s, the ratio, and what ``append`` costs on the event
path (median / p99 microseconds) against the baseline's per-entry latency
(what the event path would pay if it wrote synchronously).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import update
from sqlalchemy.orm import Session

from callguard.core.commands import LedgerEntry
from callguard.ledger import Ledger
from callguard.ledger.chain import GENESIS_HASH, encode_data, entry_hash, to_us
from callguard.ledger.db import open_for_writing
from callguard.ledger.models import ChainHead, LedgerEntryRecord
from callguard.ledger.projection import ProjectedEntry, project

KINDS = [
    ("call-offered", {"channel": "PJSIP/alice-0001", "language": "en", "parties": [
        {"channel": "PJSIP/alice-0001", "number": "+14155550123", "name": "Alice", "role": "caller",
         "jurisdiction": "US-CA", "regime": "all-party"}]}),
    ("rule-applied", {"regime": "all-party", "recording_allowed": True, "explicit_consent": True,
                      "reasons": ["California requires all-party consent"]}),
    ("notice-started", {"prompt_id": "notice", "language": "en", "sha256": "ab" * 32, "offset_s": 0.41}),
    ("notice-ended", {"offset_s": 6.2, "digits": "1"}),
    ("consent", {"decision": "granted", "digits": "1", "attempt": 1}),
    ("recording-requested", {"file": "callguard-x.wav"}),
    ("recording-started", {"file": "callguard-x.wav", "confirmed_by": "pbx", "latency_s": 0.12}),
    ("recording-muted", {"reasons": ["payment"], "confirmed_by": "pbx", "latency_s": 0.011}),
    ("recording-unmuted", {"confirmed_by": "pbx", "latency_s": 0.009}),
    ("hangup", {"cause": "16", "state": "recording", "offset_s": 120.0}),
]


def make_entries(n: int) -> list[LedgerEntry]:
    t0 = 1_714_567_890.0
    return [LedgerEntry(f"call-{i // len(KINDS)}", KINDS[i % len(KINDS)][0], t0 + i * 0.01,
                        KINDS[i % len(KINDS)][1]) for i in range(n)]


def group_commit(url: str, entries: list[LedgerEntry]) -> tuple[float, list[int], Ledger]:
    ledger = Ledger.open(url, "bench@group")
    costs: list[int] = []
    clock = time.perf_counter_ns
    started = time.perf_counter()
    for entry in entries:
        t = clock()
        ledger.append(entry, entry.at)
        costs.append(clock() - t)
    assert ledger.flush(timeout=600)
    elapsed = time.perf_counter() - started
    ledger.close()
    return elapsed, costs, ledger


def naive(url: str, entries: list[LedgerEntry]) -> tuple[float, list[int]]:
    """One transaction per entry: what a direct SQLAlchemy implementation does."""
    engine = open_for_writing(url)
    chain, prev = "bench@naive", GENESIS_HASH
    latencies: list[int] = []
    started = time.perf_counter()
    for seq, entry in enumerate(entries, start=1):
        t = time.perf_counter_ns()
        text = encode_data(entry.data)
        data = json.loads(text)
        fields = {"chain_id": chain, "seq": seq, "call_id": entry.call_id, "kind": entry.kind,
                  "pbx_time_us": to_us(entry.at), "received_at_us": to_us(entry.at), "prev_hash": prev}
        digest = entry_hash(data=data, **fields)
        with Session(engine) as session, session.begin():
            session.add(LedgerEntryRecord(data=text, hash=digest, **fields))
            if seq == 1:
                session.add(ChainHead(chain_id=chain, last_seq=seq, last_hash=digest, updated_at=time.time()))
            else:
                session.execute(update(ChainHead).where(ChainHead.chain_id == chain)
                                .values(last_seq=seq, last_hash=digest, updated_at=time.time()))
            project(session, [ProjectedEntry(chain, entry.call_id, entry.kind, entry.at, data)])
        prev = digest
        latencies.append(time.perf_counter_ns() - t)
    elapsed = time.perf_counter() - started
    engine.dispose()
    return elapsed, latencies


def pct(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=20000, help="entries through the group-commit writer")
    parser.add_argument("--naive", type=int, default=1000, help="entries through the one-commit-per-entry loop")
    parser.add_argument("--dir", default=None, help="directory for the SQLite files (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        group_url = f"sqlite:///{Path(tmp) / 'group.sqlite'}"
        naive_url = f"sqlite:///{Path(tmp) / 'naive.sqlite'}"
        g_elapsed, costs, ledger = group_commit(group_url, make_entries(args.entries))
        n_elapsed, latencies = naive(naive_url, make_entries(args.naive))
    g_rate, n_rate = args.entries / g_elapsed, args.naive / n_elapsed
    print(f"SQLite file, WAL, synchronous=FULL ({tmp})")
    print(f"group commit writer : {args.entries:>6} entries in {g_elapsed:7.2f} s = {g_rate:>9,.0f} entries/s "
          f"({ledger.stats.transactions} transactions, largest batch {ledger.stats.max_batch})")
    print(f"one commit per entry: {args.naive:>6} entries in {n_elapsed:7.2f} s = {n_rate:>9,.0f} entries/s")
    print(f"throughput ratio    : {g_rate / n_rate:.1f}x")
    median_append, p99_append = statistics.median(costs) / 1000, pct(costs, 0.99)
    median_sync, p99_sync = statistics.median(latencies) / 1000, pct(latencies, 0.99)
    print(f"event-path cost of append(): median {median_append:.2f} us, p99 {p99_append:.2f} us")
    print(f"synchronous write per entry : median {median_sync:.0f} us, p99 {p99_sync:.0f} us "
          f"({median_sync / median_append:,.0f}x the median append)")


if __name__ == "__main__":
    main()
