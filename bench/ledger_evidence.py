"""Evidence costs, measured: the ledger with and without its Merkle tree, proofs in a big log, verify.

    python bench/ledger_evidence.py throughput [--entries 50000]
    python bench/ledger_evidence.py proofs [--size 10000000] [--db PATH]
    python bench/ledger_evidence.py verify [--entries 1000000]

* throughput: durable entries/s of :class:`callguard.ledger.Ledger` (SQLite,
  WAL, synchronous=FULL, group commit) with the Merkle tree and personal-data
  sealing on, against the same writer with both off (the baseline), same run,
  same entries, same directory.
* proofs: inclusion and consistency proofs from the stored tree of a
  ``--size``-entry chain (built once into ``--db``: random entry hashes, the
  nodes the writer would store), each verified; the baseline is reading the
  entry itself by its key, the cheapest query the ledger answers.
* verify: ``ledger verify`` (chains, trees, every checkpoint's signature and
  root) over ``--entries`` entries written by the real writer with a signed
  checkpoint every 100k entries, against the chain-only walk of the same rows.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import create_engine

from callguard.core.commands import LedgerEntry
from callguard.evidence import merkle
from callguard.evidence.checkpointer import Checkpointer
from callguard.evidence.note import Signer
from callguard.ledger import Ledger
from callguard.ledger.tree import STRIDE, consistency, inclusion, stored_level
from callguard.ledger.verify import Anchor, verify
from ledger_write import KINDS  # noqa: E402 - bench/ is on sys.path when run as a script

CALL = KINDS  # the same realistic call as bench/ledger_write.py


def entries(n: int, offset: int = 0) -> list[LedgerEntry]:
    t0 = 1_714_567_890.0
    return [LedgerEntry(f"call-{(offset + i) // len(CALL)}", CALL[i % len(CALL)][0], t0 + (offset + i) * 0.01,
                        dict(CALL[i % len(CALL)][1])) for i in range(n)]


def write(url: str, chain: str, batch: list[LedgerEntry], **options: bool) -> float:
    ledger = Ledger.open(url, chain, **options)
    started = time.perf_counter()
    for entry in batch:
        ledger.append(entry, entry.at)
    assert ledger.flush(timeout=3600)
    elapsed = time.perf_counter() - started
    ledger.close()
    return elapsed


def throughput(args: argparse.Namespace) -> None:
    batch = entries(args.entries)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.sqlite'}"
        write(url, "warm-up", entries(2000))
        base = write(url, "bench@baseline", batch, merkle=False, seal=False)
        full = write(url, "bench@evidence", batch, merkle=True, seal=True)
        merkle_only = write(url, "bench@merkle", batch, merkle=True, seal=False)
    n = args.entries
    print(f"durable entries/s, {n} entries, SQLite synchronous=FULL, group commit:")
    print(f"  baseline (no tree, no sealing): {n / base:9.0f}/s")
    print(f"  Merkle tree:                    {n / merkle_only:9.0f}/s  ({base / merkle_only:.2f}x the baseline's rate)")
    print(f"  Merkle tree + sealing:          {n / full:9.0f}/s  ({base / full:.2f}x the baseline's rate)")


def build_big_tree(path: Path, size: int) -> bytes:
    """A chain of ``size`` random entry hashes and the nodes the writer would have stored; returns the root."""
    db = sqlite3.connect(path)
    db.executescript("""
        PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;
        CREATE TABLE ledger_entries (chain_id VARCHAR(255), seq BIGINT, call_id VARCHAR(255), kind VARCHAR(64),
            pbx_time_us BIGINT, received_at_us BIGINT, data TEXT, prev_hash VARCHAR(64), hash VARCHAR(64),
            PRIMARY KEY (chain_id, seq));
        CREATE TABLE merkle_nodes (chain_id VARCHAR(255), level SMALLINT, idx BIGINT, hash BLOB,
            PRIMARY KEY (chain_id, level, idx));
        CREATE TABLE chain_heads (chain_id VARCHAR(255) PRIMARY KEY, last_seq BIGINT, last_hash VARCHAR(64),
            updated_at FLOAT, tree_size BIGINT, tree_root VARCHAR(64));""")
    nodes: list[tuple[str, int, int, bytes]] = []
    tree = merkle.CompactRange(on_node=lambda lv, ix, h: stored_level(lv) and nodes.append(("big", lv, ix, h)))
    rng = random.Random(7)
    chunk = 200_000
    for start in range(0, size, chunk):
        rows = []
        for seq in range(start + 1, min(size, start + chunk) + 1):
            digest = rng.randbytes(32).hex()
            rows.append(("big", seq, "c", "k", 0, 0, "{}", "", digest))
            tree.append(merkle.leaf_hash(bytes.fromhex(digest)))
        db.executemany("INSERT INTO ledger_entries VALUES (?,?,?,?,?,?,?,?,?)", rows)
        db.executemany("INSERT INTO merkle_nodes VALUES (?,?,?,?)", nodes)
        nodes.clear()
        db.commit()
        print(f"  built {min(size, start + chunk)} / {size}", end="\r", flush=True)
    db.execute("INSERT INTO chain_heads VALUES ('big', ?, '', 0, ?, ?)", (size, size, tree.root().hex()))
    db.commit()
    db.close()
    print()
    return tree.root()


def percentiles(samples: list[float]) -> str:
    samples = sorted(samples)
    return (f"median {statistics.median(samples) * 1000:.2f} ms, p99 {samples[int(len(samples) * 0.99) - 1] * 1000:.2f} ms,"
            f" max {samples[-1] * 1000:.2f} ms")


def proofs(args: argparse.Namespace) -> None:
    path = Path(args.db)
    if not path.exists():
        print(f"building a {args.size}-entry chain in {path} (once) ...")
        build_big_tree(path, args.size)
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as connection:
        size, root_hex = connection.exec_driver_sql(
            "SELECT tree_size, tree_root FROM chain_heads WHERE chain_id = 'big'").one()
        root = bytes.fromhex(root_hex)
        rng = random.Random(11)
        lookup, incl, cons = [], [], []
        for _ in range(args.samples):
            seq = rng.randrange(1, size + 1)
            t = time.perf_counter()
            digest = connection.exec_driver_sql(
                "SELECT hash FROM ledger_entries WHERE chain_id = 'big' AND seq = ?", (seq,)).scalar_one()
            lookup.append(time.perf_counter() - t)
            t = time.perf_counter()
            proof = inclusion(connection, "big", seq, size)
            incl.append(time.perf_counter() - t)
            merkle.verify_inclusion(seq - 1, size, merkle.leaf_hash(bytes.fromhex(digest)), proof, root)
            old = rng.randrange(1, size)
            t = time.perf_counter()
            proof = consistency(connection, "big", old, size)
            cons.append(time.perf_counter() - t)
            old_root = merkle.tree_root(_nodes(connection), old)
            merkle.verify_consistency(old, size, old_root, root, proof)
    engine.dispose()
    print(f"proofs in a {size}-entry chain (nodes stored every {STRIDE} levels), {args.samples} random samples, "
          "each verified:")
    print(f"  baseline: read one entry by key: {percentiles(lookup)}")
    print(f"  inclusion proof:                 {percentiles(incl)}  "
          f"(median {statistics.median(incl) / statistics.median(lookup):.1f}x the lookup)")
    print(f"  consistency proof:               {percentiles(cons)}  "
          f"(median {statistics.median(cons) / statistics.median(lookup):.1f}x the lookup)")


def _nodes(connection):  # type: ignore[no-untyped-def]
    from callguard.ledger.tree import DbNodes

    return DbNodes(connection, "big")


def verify_bench(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        url = f"sqlite:///{Path(tmp) / 'verify.sqlite'}"
        engine = create_engine(url)
        signer = Signer("bench/ledger", Ed25519PrivateKey.generate())
        step = 100_000
        started = time.perf_counter()
        ledger = Ledger.open(url, "asterisk@bench")
        for offset in range(0, args.entries, step):
            for entry in entries(min(step, args.entries - offset), offset):
                ledger.append(entry, entry.at)
            assert ledger.flush(timeout=3600)
            Checkpointer(ledger.engine, signer, "bench").checkpoint_now()
        ledger.close()
        print(f"wrote {args.entries} entries with a checkpoint every {step} in {time.perf_counter() - started:.0f} s")
        from callguard.evidence.note import open_checkpoint
        from callguard.ledger.models import CheckpointRecord
        from sqlalchemy.orm import Session

        t = time.perf_counter()
        with Session(engine) as session:
            anchors = {"asterisk@bench": [Anchor(cp.size, cp.root_hash, f"#{r.id}") for r in
                                          session.query(CheckpointRecord).all()
                                          for cp in [open_checkpoint(r.note, signer.verifier)]]}
        report = verify(engine, anchors=anchors)
        full = time.perf_counter() - t
        assert report.ok and report.chains[0].anchors_checked == len(anchors["asterisk@bench"])
        t = time.perf_counter()
        n = 0
        with engine.connect() as connection:
            for _ in connection.exec_driver_sql("SELECT hash FROM ledger_entries ORDER BY chain_id, seq"):
                n += 1
        scan = time.perf_counter() - t
        engine.dispose()
    print(f"ledger verify of {args.entries} entries (hashes, links, tree rebuilt, "
          f"{len(anchors['asterisk@bench'])} signed checkpoints): {full:.1f} s ({args.entries / full:.0f} entries/s)")
    print(f"  baseline: reading the same rows' hashes only: {scan:.1f} s; verify = {full / scan:.1f}x that")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default=None, help="where temporary databases go (default: the system's)")
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("throughput")
    p.add_argument("--entries", type=int, default=50_000)
    p = sub.add_parser("proofs")
    p.add_argument("--size", type=int, default=10_000_000)
    p.add_argument("--db", default=str(Path(tempfile.gettempdir()) / "callguard-bench-10m.sqlite"))
    p.add_argument("--samples", type=int, default=200)
    p = sub.add_parser("verify")
    p.add_argument("--entries", type=int, default=1_000_000)
    args = parser.parse_args()
    {"throughput": throughput, "proofs": proofs, "verify": verify_bench}[args.what](args)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
