"""``callguard ledger ...`` driven the way an operator runs it."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine

from callguard.cli import main
from callguard.ledger import Ledger
from tests.ledger.support import drop_append_only, execute, sample_call

CHAIN = "asterisk@pbx1"


def fill(url: str) -> str:
    """Two calls on one chain and one call on another."""
    a = Ledger.open(url, CHAIN)
    b = Ledger.open(url, "freeswitch@pbx2")
    for entry in sample_call("call-A"):
        a.append(entry, entry.at + 0.002)
    for entry in sample_call("call-B", 1_714_571_490.0, caller="+4915112345678", name="Jörg\x1b[31m"):
        a.append(entry, entry.at)
    for entry in sample_call("call-C", 1_714_575_090.0):
        b.append(entry, entry.at)
    assert a.close(10) and b.close(10)
    return url


@pytest.fixture
def ledger_db(db_url):
    return fill(db_url)


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_verify_clean(ledger_db):
    result = run("ledger", "verify", "--db", ledger_db)
    assert result.exit_code == 0, result.output
    assert f"chain '{CHAIN}': 28 entries, head seq 28 " in result.output
    assert "chain 'freeswitch@pbx2': 14 entries, head seq 14 " in result.output
    assert "all 2 chain(s) verified" in result.output


def test_verify_tampered_exits_1_and_names_the_entry(ledger_db, raw_engine):
    drop_append_only(raw_engine)  # a plain edit is refused; the tamperer has DDL rights
    execute(raw_engine, "UPDATE ledger_entries SET data = replace(data, 'granted', 'declined') "
            "WHERE chain_id = :c AND seq = 19", c=CHAIN)
    execute(raw_engine, "DELETE FROM ledger_entries WHERE chain_id = 'freeswitch@pbx2' AND seq = 3")
    result = CliRunner().invoke(main, ["ledger", "verify", "--db", ledger_db])
    assert result.exit_code == 1
    assert f"chain '{CHAIN}' seq 19 (call 'call-B', consent): content was edited" in result.output
    assert "chain 'freeswitch@pbx2' seq 4 (call 'call-C', notice-ended): seq 3 missing (deleted)" \
        in result.output
    assert "ledger verification FAILED: 2 problem(s) in 2 of 2 chain(s)" in result.output
    assert "Traceback" not in result.output


def test_verify_one_chain_and_unknown_chain(ledger_db):
    result = run("ledger", "verify", "--db", ledger_db, "--chain", "freeswitch@pbx2")
    assert result.exit_code == 0 and CHAIN not in result.output
    result = CliRunner().invoke(main, ["ledger", "verify", "--db", ledger_db, "--chain", "nope"])
    assert result.exit_code == 1 and "no chain 'nope'" in result.output


def test_show_prints_the_timeline(ledger_db):
    result = run("ledger", "show", "call-A", "--db", ledger_db)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"call call-A  (chain {CHAIN}, 14 entries)"
    assert "answered     2024-05-01 12:51:30.623Z" in result.output
    assert "rule         all-party  recording allowed" in result.output
    assert "recording    callguard-call-A.wav" in result.output
    assert any("+442079460000" in line and "gdpr" in line for line in lines if line.startswith("  party"))
    notice = next(line for line in lines if "notice-started" in line)
    assert "+0.400s" in notice and "notice" in notice and "[en]" in notice and "abababababab" in notice
    kinds = [line.split()[4] for line in lines if line.startswith("  2024-")]
    assert kinds == [e.kind for e in sample_call("call-A")]
    muted = next(line for line in lines if "recording-muted" in line)
    assert "+30.012s" in muted and "12.0 ms" in muted


def test_show_escapes_caller_controlled_text(ledger_db):
    result = run("ledger", "show", "call-B", "--db", ledger_db)
    assert result.exit_code == 0
    assert "\x1b" not in result.output and "Jörg\\x1b[31m" in result.output


def test_show_unknown_call(ledger_db):
    result = CliRunner().invoke(main, ["ledger", "show", "no-such-call", "--db", ledger_db])
    assert result.exit_code == 1
    assert "no ledger entries for call 'no-such-call'" in result.output and "ledger calls" in result.output


def test_export_jsonl_entries_recheck_offline(ledger_db):
    result = run("ledger", "export", "--format", "jsonl", "--call", "call-A", "--db", ledger_db)
    assert result.exit_code == 0
    records = [json.loads(line) for line in result.output.splitlines()]
    assert [r["seq"] for r in records] == list(range(1, 15))
    # The recipe from callguard/ledger/chain.py, with nothing but json + hashlib.
    prev = "0" * 64
    for r in records:
        doc = {k: r[k] for k in ("chain_id", "seq", "call_id", "kind", "pbx_time_us", "received_at_us",
                                 "data", "prev_hash")}
        canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        assert hashlib.sha256(canonical.encode()).hexdigest() == r["hash"]
        assert r["prev_hash"] == prev
        prev = r["hash"]


def test_export_everything_to_a_file(ledger_db, tmp_path):
    out = tmp_path / "ledger.jsonl"
    result = run("ledger", "export", "--db", ledger_db, "--output", str(out))
    assert result.exit_code == 0
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 42
    assert {r["chain_id"] for r in records} == {CHAIN, "freeswitch@pbx2"}
    assert "exported 42 entries" in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["ledger.jsonl"] or "ledger.sqlite" in {
        p.name for p in tmp_path.iterdir()}


def test_export_bad_input_writes_nothing(ledger_db, tmp_path):
    out = tmp_path / "never.jsonl"
    result = CliRunner().invoke(main, ["ledger", "export", "--format", "csv", "--db", ledger_db, "-o", str(out)])
    assert result.exit_code == 2 and "'csv'" in result.output and "jsonl" in result.output
    result = CliRunner().invoke(main, ["ledger", "export", "--call", "ghost", "--db", ledger_db, "-o", str(out)])
    assert result.exit_code == 1 and "no ledger entries for call 'ghost'" in result.output
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".never")]


def test_calls_lists_recent_and_by_number(ledger_db):
    result = run("ledger", "calls", "--db", ledger_db)
    assert result.exit_code == 0
    ids = [line.split()[2] for line in result.output.splitlines()[1:]]
    assert ids == ["call-C", "call-B", "call-A"]
    result = run("ledger", "calls", "--db", ledger_db, "--number", "+49 151 12345678")
    assert [line.split()[2] for line in result.output.splitlines()[1:]] == ["call-B"]
    result = run("ledger", "calls", "--db", ledger_db, "--number", "+15550000000")
    assert "no calls with number '+15550000000'" in result.output


def test_missing_sqlite_file_is_not_created(tmp_path):
    missing = tmp_path / "nothing-here.sqlite"
    for command in (["verify"], ["show", "x"], ["export"], ["calls"]):
        result = CliRunner().invoke(main, ["ledger", *command, "--db", f"sqlite:///{missing}"])
        assert result.exit_code == 1, command
        assert "does not exist" in result.output and "--db" in result.output
    assert not missing.exists()


def test_unusable_databases_give_clear_errors(tmp_path):
    not_ledger = tmp_path / "other.sqlite"
    import sqlite3

    sqlite3.connect(not_ledger).execute("CREATE TABLE t (x)").connection.close()
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"definitely not sqlite" * 50)
    cases = {
        f"sqlite:///{not_ledger}": "is not a callguard ledger",
        f"sqlite:///{garbage}": "file is not a database",
        "nonsense": "is not a database URL",
        "postgresql+psycopg://u:secret@127.0.0.1:1/x": "cannot open ledger postgresql+psycopg://u:***@",
        "mysql+nosuchdriver://h/db": "database driver not available",
    }
    for url, message in cases.items():
        result = CliRunner().invoke(main, ["ledger", "verify", "--db", url])
        assert result.exit_code == 1, (url, result.output)
        assert message in result.output, (url, result.output)
        assert "secret" not in result.output and "Traceback" not in result.output


def test_url_comes_from_the_config(ledger_db, tmp_path, monkeypatch):
    config = tmp_path / "callguard.toml"
    config.write_text(f'[ledger]\nurl = "{ledger_db}"\n', encoding="utf-8")
    result = run("--config", str(config), "ledger", "verify")
    assert result.exit_code == 0 and "all 2 chain(s) verified" in result.output
    monkeypatch.setenv("CALLGUARD_LEDGER__URL", f"sqlite:///{tmp_path}/elsewhere.sqlite")
    result = CliRunner().invoke(main, ["--config", str(config), "ledger", "verify"])
    assert result.exit_code == 1 and "elsewhere.sqlite' does not exist" in result.output


def test_real_subprocess(sqlite_url):
    """The installed console script, as an operator runs it (the clean case runs via CliRunner)."""
    ledger_db = fill(sqlite_url)
    raw_engine = create_engine(sqlite_url)
    script = Path(sys.executable).with_name("callguard")
    command = [str(script)] if script.exists() else [sys.executable, "-c",
                                                     "from callguard.cli import main; main()"]
    drop_append_only(raw_engine)
    execute(raw_engine, "UPDATE ledger_entries SET hash = :h WHERE chain_id = :c AND seq = 2", h="0" * 64, c=CHAIN)
    bad = subprocess.run([*command, "ledger", "verify", "--db", ledger_db], capture_output=True, text=True,
                         timeout=60, check=False)
    assert bad.returncode == 1
    assert f"chain '{CHAIN}' seq 2 (call 'call-A', rule-applied): the stored hash was altered" in bad.stdout
    assert "Error: ledger verification FAILED" in bad.stderr and "Traceback" not in bad.stderr
    raw_engine.dispose()
