"""The vault commands as a user runs them: click's CliRunner, and one real subprocess."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from callguard.cli import main
from callguard.config import load_config

from tests.vault.conftest import ME, T0, USERS, call_entries, write_ledger

PASS = "correct horse battery staple"
DAY = 86400


def _toml(tmp: Path, **vault: object) -> Path:
    users = {**USERS, "svc": "service"}
    settings = {"dir": str(tmp / "vault"), "private_keys": str(tmp / "private"), "chunk_kib": 4,
                "bind_os_user": False, **vault}
    lines = [f'[ledger]\nurl = "sqlite:///{tmp / "callguard.sqlite"}"\n', "[vault]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    lines += ["", "[users]"] + [f'"{u}" = "{r}"' for u, r in users.items()]
    path = tmp / "callguard.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def cli(tmp_path, monkeypatch):
    cfg = _toml(tmp_path)
    monkeypatch.setenv("CALLGUARD_VAULT_PASSPHRASE", PASS)
    runner = CliRunner()

    def run(*args: str, code: int = 0, input: str | None = None):
        result = runner.invoke(main, ["--config", str(cfg), *args], input=input, catch_exceptions=False)
        assert result.exit_code == code, (args, result.output)
        return result

    run.config = cfg  # type: ignore[attr-defined]
    return run


def _seed(cfg: Path, call_id: str, t0: float, number: str = "+442079460123") -> None:
    write_ledger(load_config(cfg), call_entries(call_id, number, t0))


def _spool(tmp: Path, small_wav: Path, call_id: str) -> Path:
    (tmp / "spool").mkdir(exist_ok=True)
    return Path(shutil.copy(small_wav, tmp / "spool" / f"callguard-{call_id}.wav"))


def test_keys_ingest_access_rotation(cli, tmp_path, small_wav):
    out = cli("keys", "generate").output
    old = re.search(r"key ([0-9a-f]{16}) \(active", out).group(1)
    private = tmp_path / "private" / f"{old}.pem"
    assert oct(private.stat().st_mode & 0o777) == "0o600"
    assert b"ENCRYPTED PRIVATE KEY" in private.read_bytes()
    spare = cli("keys", "generate").output  # a second key is kept in reserve, not activated
    assert "(active" not in spare
    _seed(cli.config, "c1", T0)
    wav = _spool(tmp_path, small_wav, "c1")
    original = wav.read_bytes()
    out = cli("vault", "ingest", str(wav), "--call", "c1", "--as", "svc").output
    rid1 = re.search(r"as recording ([0-9a-f]{32})", out).group(1)
    assert not wav.exists() and "plaintext removed" in out
    assert rid1 in cli("recordings", "list", "--as", "bob").output
    cli("recordings", "export", rid1, "--out", str(tmp_path / "a.wav"), "--reason", "complaint 4411 review",
        "--as", "alice")
    assert (tmp_path / "a.wav").read_bytes() == original
    listened = cli("recordings", "get", rid1, "--reason", "QA coaching session", "--as", "bob")
    assert listened.stdout_bytes == original
    denied = cli("recordings", "export", rid1, "--out", str(tmp_path / "b.wav"), "--reason", "personal copy please",
                 "--as", "bob", code=1)
    assert "access denied" in denied.output and "may not export" in denied.output
    assert not (tmp_path / "b.wav").exists()
    log = cli("vault", "log", "--denied", "--as", "dave").output
    assert re.search(rf"denied\s+export\s+{rid1}\s+by bob \(qa, os:\S+\)\s+why: personal copy please", log)
    assert "1 entry" in log
    trail = [json.loads(line)
             for line in cli("vault", "log", "--target", rid1, "--json", "--as", "dave").output.splitlines()]
    assert [(e["actor"], e["action"], e["outcome"]) for e in trail] == [
        ("alice", "export", "granted"), ("alice", "export", "done"), ("bob", "listen", "granted"),
        ("bob", "listen", "done"), ("bob", "export", "denied"), ("dave", "access-log", "granted")]
    # rotation: new recordings use the new key, the old one stays readable
    new = re.search(r"key ([0-9a-f]{16}) \(active", cli("keys", "rotate").output).group(1)
    assert new != old
    _seed(cli.config, "c2", T0 + 60)
    out = cli("vault", "ingest", str(_spool(tmp_path, small_wav, "c2")), "--call", "c2", "--as", "svc").output
    rid2 = re.search(r"as recording ([0-9a-f]{32})", out).group(1)
    assert f"key {new}" in out
    listing = cli("keys", "list").output
    assert re.search(rf"{old} .*retired", listing) and re.search(rf"{new} .*active", listing)
    for rid, name in ((rid1, "r1.wav"), (rid2, "r2.wav")):
        cli("recordings", "export", rid, "--out", str(tmp_path / name), "--reason", "rotation check", "--as", "alice")
    # re-wrap the old recordings, then the old private key can go
    out = cli("keys", "rewrap", "--from", old, "--reason", "retire the 2026 key", "--as", "dave").output
    assert "1 recording(s) moved" in out
    (tmp_path / "private" / f"{old}.pem").unlink()
    cli("recordings", "export", rid1, "--out", str(tmp_path / "r1b.wav"), "--reason", "after rewrap", "--as", "alice")
    assert (tmp_path / "r1b.wav").read_bytes() == original
    # integrity check without keys; a tampered file is named and the exit code says so
    assert "2 recording(s) checked" in cli("vault", "verify", "--as", "dave").output
    cipher = next((tmp_path / "vault").glob("*/*/*.cgv"))
    cipher.write_bytes(cipher.read_bytes()[:-1])
    bad = cli("vault", "verify", "--as", "dave", code=1).output
    assert "PROBLEM" in bad and "truncated" in bad
    status = cli("vault", "status", "--as", "bob").output
    assert "stored" in status and new in status


def test_retention_holds_dsar_audit(cli, tmp_path, small_wav):
    cli("keys", "generate")
    old_t0 = time.time() - 200 * DAY  # recorded 200 days ago: qa (90 days) has expired
    for call_id in ("r1", "r2"):
        _seed(cli.config, call_id, old_t0)
        cli("vault", "ingest", str(_spool(tmp_path, small_wav, call_id)), "--call", call_id, "--as", "svc")
    out = cli("retention", "sweep", "--as", "svc").output
    assert "DRY RUN" in out and "due for deletion: 2" in out
    assert "legal hold #1 placed on call r2" in cli("hold", "place", "--call", "r2", "--reason",
                                                    "claim 2026-77 pending", "--case", "2026-77", "--as", "erin").output
    out = cli("retention", "sweep", "--apply", "--show", "--as", "svc").output
    assert "deleted: 1, failed: 0" in out and "on legal hold (kept): 1" in out
    assert "ACTIVE" in cli("hold", "list", "--as", "erin").output
    cli("hold", "release", "1", "--reason", "claim withdrawn by the caller", "--as", "erin")
    assert "due for deletion: 1" in cli("retention", "sweep", "--as", "svc").output
    # DSAR: the number is found, exported, then erased
    out = cli("dsar", "open", "--number", "+44 20 7946 0123", "--as", "alice").output
    assert "DSAR-1 opened for +442079460123" in out and "calls: 2" in out
    out = cli("dsar", "export", "1", "--out", str(tmp_path / "bundles"), "--as", "alice").output
    assert "1 recording(s)" in out
    assert (tmp_path / "bundles" / "DSAR-1" / "index.json").exists()
    cli("dsar", "open", "--number", "+442079460123", "--kind", "erasure", "--as", "alice")
    out = cli("dsar", "erase", "2", "--yes", "--as", "alice").output
    assert "deleted: 1 recording(s)" in out and "why:" in out
    assert "0 request(s)" in cli("dsar", "list", "--overdue", "--as", "alice").output
    month = time.strftime("%Y-%m", time.gmtime(old_t0))
    html = tmp_path / "audit.html"
    out = cli("audit", "--month", month, "--html", str(html), "--as", "alice").output
    assert "RESULT:" in out and "<svg" in html.read_text()
    # the calls are 200 days old but the vault got its first recording today: no sweep was due back then
    assert "RESULT: 0 violation(s)" in cli("audit", "--month", month, "--strict", "--as", "alice").output
    denied = cli("dsar", "list", "--as", "bob", code=1).output
    assert "may not dsar" in denied


def test_clear_errors(cli, tmp_path, small_wav):
    out = cli("recordings", "list", "--as", "bob", code=1).output
    assert "callguard.sqlite' does not exist" in out and "[ledger] url" in out
    assert not (tmp_path / "callguard.sqlite").exists()  # a typo never creates an empty database
    _seed(cli.config, "other", T0)
    out = cli("vault", "ingest", str(tmp_path / "missing.wav"), "--call", "x", "--as", "svc", code=1).output
    assert "Error:" in out and "no such file" in out and "Traceback" not in out
    cli("keys", "generate")
    wav = _spool(tmp_path, small_wav, "ghost")
    out = cli("vault", "ingest", str(wav), "--call", "ghost", "--as", "svc", code=1).output
    assert "not in the ledger" in out and wav.exists()
    out = cli("recordings", "export", "0" * 32, "--out", str(tmp_path / "x.wav"), "--reason", "testing errors",
              "--as", "alice", code=1).output
    assert "no recording" in out
    out = cli("audit", "--month", "Nov-2026", "--as", "alice", code=1).output
    assert "month must look like 2026-11" in out
    bad = tmp_path / "bad.toml"
    bad.write_text('[roles]\nqa = ["lsten"]\n[users]\nzed = "nobody"\n')
    result = CliRunner().invoke(main, ["--config", str(bad), "recordings", "list"])
    assert result.exit_code == 1
    assert "unknown permission 'lsten' (did you mean 'listen'?)" in result.output
    assert "[users] zed: unknown role 'nobody'" in result.output


def test_identity_is_bound_to_the_os_account(tmp_path, monkeypatch):
    cfg = _toml(tmp_path, bind_os_user=True)
    _seed(cfg, "c1", T0)
    runner = CliRunner()
    result = runner.invoke(main, ["--config", str(cfg), "recordings", "list", "--as", "alice"])
    assert result.exit_code == 1 and "is not the account running this command" in result.output
    # acting as yourself works (the test account is mapped to the service role, which may not list)
    result = runner.invoke(main, ["--config", str(cfg), "recordings", "list"])
    assert result.exit_code == 1 and f"'{ME}' (role service) may not list" in result.output


def test_real_subprocess(tmp_path, small_wav, monkeypatch):
    """The entry point in its own process, as a PBX hook or cron would run it: ingest, then export."""
    cfg = _toml(tmp_path)
    monkeypatch.setenv("CALLGUARD_VAULT_PASSPHRASE", PASS)
    assert CliRunner().invoke(main, ["--config", str(cfg), "keys", "generate"]).exit_code == 0
    _seed(cfg, "p1", T0)
    wav = _spool(tmp_path, small_wav, "p1")
    env = {**os.environ, "CALLGUARD_VAULT_PASSPHRASE": PASS}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "callguard", "--config", str(cfg), *args], env=env,
                              capture_output=True, text=True, timeout=120)

    done = run("vault", "ingest", str(wav), "--call", "p1", "--as", "svc", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["plaintext_removed"] and not wav.exists()
    out = tmp_path / "copy.wav"
    done = run("recordings", "export", result["recording_id"], "--out", str(out), "--reason", "court order 12/26",
               "--as", "alice")
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == small_wav.read_bytes() and "verified; logged" in done.stdout
    check = CliRunner().invoke(main, ["--config", str(cfg), "vault", "verify", "--deep", "--as", "dave"])
    assert check.exit_code == 0 and "1 decrypted" in check.output and "chain intact" in check.output


def test_recordings_by_number_on_a_sealed_ledger_and_the_access_log_never_holds_the_number(cli, tmp_path, small_wav):
    """The ledger seals numbers (issue 16): a lookup by number still finds the call's recordings, formatted any
    way, and the append-only access log names the request by the subject hash, never the number itself."""
    cli("keys", "generate")
    _seed(cli.config, "c9", T0, number="+442079460999")
    cli("vault", "ingest", str(_spool(tmp_path, small_wav, "c9")), "--call", "c9", "--as", "svc")
    for written in ("+442079460999", "+44 20 7946 0999"):
        listed = cli("recordings", "list", "--number", written, "--as", "bob").output
        assert "c9" in listed, listed
    assert "c9" not in cli("recordings", "list", "--number", "+442079460998", "--as", "bob").output
    log = cli("vault", "log", "--as", "alice").output
    assert "subject:" in log
    for form in ("442079460999", "+442079460999", "7946 0999"):
        assert form not in log
    raw = (tmp_path / "callguard.sqlite").read_bytes()
    assert b"442079460999" not in raw and b"7946 0999" not in raw
