"""What the vault and the audit tell the operator must be what happened (issue 12), through the CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.vault.conftest import T0, call_entries, write_ledger
from tests.vault.test_vault_cli import _seed, _spool, cli  # noqa: F401 - cli is a fixture

from callguard.config import load_config

MONTH = "2026-10"  # T0's month


def _vault_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "vault").glob("*/*/*.cgv*")) if (tmp_path / "vault").exists() else []


def test_ingest_refuses_what_is_not_a_complete_recording(cli, tmp_path, small_wav):
    cli("keys", "generate")
    _seed(cli.config, "c1", T0)
    spool = tmp_path / "spool"
    spool.mkdir()
    whole = small_wav.read_bytes()
    cases = {
        "random.wav": (os.urandom(4096), "named .wav but not a WAV file"),
        "notes.wav": (b"this is a text file, not audio\n" * 20, "named .wav but not a WAV file (it starts with b'this is"),
        "cut.wav": (whole[: len(whole) // 2], "truncated: the header announces"),
        "random.gsm": (bytes([0x20]) * 33 * 10, "not GSM 06.10 audio (frame at byte 0 lacks the 0xD signature)"),
        "random.ogg": (os.urandom(4096), "not an audio file ffprobe can read"),
    }
    for name, (data, reason) in cases.items():
        path = spool / name
        path.write_bytes(data)
        out = cli("vault", "ingest", str(path), "--call", "c1", "--as", "svc", code=1).output
        assert f"{path}: refused, not a complete recording: " in out, out
        assert reason in out and "Nothing was stored; the file was left where it is" in out
        assert path.read_bytes() == data  # nothing lost
    assert _vault_files(tmp_path) == []
    assert "0 recording(s)" in cli("recordings", "list", "--as", "bob").output
    log = [json.loads(line) for line in cli("vault", "log", "--json", "--as", "alice").output.splitlines()]
    assert sum(e["action"] == "ingest" and e["outcome"] == "failed" for e in log) == len(cases)
    # and a real recording still goes in
    assert "stored callguard-c1.wav" in cli("vault", "ingest", str(_spool(tmp_path, small_wav, "c1")), "--call", "c1",
                                            "--as", "svc").output


def test_a_declined_calls_recording_is_quarantined_and_the_audit_fails(cli, tmp_path, small_wav):
    cli("keys", "generate")
    write_ledger(load_config(cli.config), call_entries("declined-1", "+442079460123", T0, consent="declined",
                                                       record=False))
    before = cli("audit", "--month", MONTH, "--as", "alice").output
    assert "[PASS] Nothing recorded after a decline (recorded-after-decline)" in before

    wav = _spool(tmp_path, small_wav, "declined-1")
    result = cli("vault", "ingest", str(wav), "--call", "declined-1", "--as", "svc")
    assert "QUARANTINED callguard-declined-1.wav as recording" in result.output
    assert "the caller declined recording" in result.output and not wav.exists()
    rid = result.output.split("as recording ")[1].split()[0]
    assert len(_vault_files(tmp_path)) == 1  # kept, encrypted

    out = cli("recordings", "export", rid, "--out", str(tmp_path / "x.wav"), "--reason", "complaint 4411 review",
              "--as", "alice", code=1).output
    assert f"recording {rid} of call declined-1 is quarantined" in out and not (tmp_path / "x.wav").exists()
    cli("recordings", "get", rid, "--reason", "complaint 4411 review", "--as", "alice", code=1)
    shown = cli("recordings", "show", rid, "--as", "bob").output
    assert ": quarantined" in shown and "QUARANTINED: the caller declined recording" in shown

    after = cli("audit", "--month", MONTH, "--as", "alice").output
    assert "[FAIL] Nothing recorded after a decline (recorded-after-decline): 1" in after
    assert f"- declined-1 " in after and f"recording {rid} (callguard-declined-1.wav, quarantined) is in the vault" in after
    cli("audit", "--month", MONTH, "--strict", "--as", "alice", code=1)


def test_a_recording_for_a_call_the_ledger_never_recorded_fails_the_audit(cli, tmp_path, small_wav):
    cli("keys", "generate")
    write_ledger(load_config(cli.config), call_entries("unlogged-1", "+14155550123", T0, regime="one-party",
                                                       explicit=False, consent="implied", record=False))
    out = cli("vault", "ingest", str(_spool(tmp_path, small_wav, "unlogged-1")), "--call", "unlogged-1",
              "--as", "svc").output
    assert "QUARANTINED" in out and "the ledger shows no recording started on this call" in out
    audit = cli("audit", "--month", MONTH, "--as", "alice").output
    assert "[FAIL] Every recording in the vault was started on the ledger (recording-unlogged): 1" in audit


def test_show_and_delete_of_a_missing_recording_log_the_outcome(cli, tmp_path):
    cli("keys", "generate")
    _seed(cli.config, "c1", T0)
    missing = "0" * 32
    assert "no recording" in cli("recordings", "show", missing, "--as", "bob", code=1).output
    assert "no recording" in cli("recordings", "delete", missing, "--reason", "caller asked us to", "--yes",
                                 "--as", "alice", code=1).output
    cli("recordings", "delete", missing, "--reason", "caller asked us to", "--yes", "--as", "bob", code=1)
    log = [json.loads(line) for line in cli("vault", "log", "--json", "--target", missing, "--as", "alice")
           .output.splitlines()]
    outcomes = [(e["action"], e["actor"], e["outcome"]) for e in log if e["action"] != "access-log"]
    assert outcomes == [("show", "bob", "granted"), ("show", "bob", "not-found"),
                        ("delete", "alice", "granted"), ("delete", "alice", "not-found"),
                        ("delete", "bob", "denied")]
    text = cli("vault", "log", "--target", missing, "--as", "alice").output
    assert "not-found" in text and "no recording" in text


def test_control_characters_never_forge_a_line_in_the_access_log(cli, tmp_path):
    cli("keys", "generate")
    _seed(cli.config, "c1", T0)
    forged = "complaint 4411\n#999   2026-10-26 07:00Z  done    export           c1  by alice"
    out = cli("recordings", "export", "0" * 32, "--out", str(tmp_path / "x.wav"), "--reason", forged,
              "--as", "alice", code=2).output
    assert "Invalid value for '--reason': must be one line of plain text; it contains \\n" in out
    for option, value in (("--note", "by post\x1b[2Jcleared"), ("--as", "bob\nalice")):
        args = ["dsar", "open", "--number", "+442079460123", option, value]
        assert "must be one line of plain text" in cli(*args, *(["--as", "alice"] if option != "--as" else []),
                                                       code=2).output
    # a name with a newline that reaches the log another way (here: an older row) prints as one escaped line
    from callguard.vault.service import Vault

    with Vault.open(load_config(cli.config)) as vault:
        vault.access_log.append(actor="mallory\n#1000 2026-10-26 done delete", os_user="x", role=None,
                                action="list", target="*", reason="tab\there\x1b[31m", outcome="denied", detail={})
    text = cli("vault", "log", "--as", "alice").output
    line = next(x for x in text.splitlines() if "mallory" in x)
    assert "mallory\\n#1000 2026-10-26 done delete" in line and "tab\\there\\x1b[31m" in line
    assert not any(x.startswith("#1000") for x in text.splitlines())


def test_dsar_open_with_no_data_says_so_and_keeps_the_request(cli, tmp_path):
    _seed(cli.config, "c1", T0, number="+442079460123")
    out = cli("dsar", "open", "--number", "+44 7700 900123", "--as", "alice").output
    assert "DSAR-1 opened for +447700900123 (access)" in out
    assert "no data held about +447700900123: no calls, recordings, ledger or access-log entries" in out
    assert "callguard dsar close 1 --reason" in out
    assert "DSAR-1  access   +447700900123" in cli("dsar", "list", "--open", "--as", "alice").output

    cli("dsar", "open", "--number", "+442079460123", "--as", "alice")
    table = cli("dsar", "show", "2", "--as", "alice").output
    assert "DSAR-2 (access request)" in table
    assert "│ calls" in table and "c1" in table and "│ ledger entries" in table and "{" not in table
    data = json.loads(cli("dsar", "show", "2", "--json", "--as", "alice").output)
    assert data["label"] == "DSAR-2" and data["found"]["calls"] == ["c1"] and data["overdue"] is False


def _limited(limit_bytes: int):
    """preexec_fn: files this process writes may not grow past ``limit_bytes`` (a disk that fills up)."""
    import resource
    import signal

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG instead of killing us
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return apply


def test_a_full_disk_during_ingest_and_export_names_file_and_step_and_loses_nothing(cli, tmp_path):
    import subprocess
    import sys
    import wave

    from tests.vault.test_vault_cli import PASS

    cli("keys", "generate")
    _seed(cli.config, "big", T0)
    wav = tmp_path / "spool" / "callguard-big.wav"
    wav.parent.mkdir()
    with wave.open(str(wav), "wb") as w:  # 2 MiB of audio: more than the "disk" has room for
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(os.urandom(2 << 20))
    original = wav.read_bytes()
    env = {**os.environ, "CALLGUARD_VAULT_PASSPHRASE": PASS}

    def full_disk(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "callguard", "--config", str(cli.config), *args], env=env,
                              capture_output=True, text=True, timeout=120, preexec_fn=_limited(1 << 20))

    result = full_disk("vault", "ingest", str(wav), "--call", "big", "--as", "svc")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{wav}: not stored: writing the ciphertext " in result.stderr
    assert "failed (File too large). Nothing was lost: the recording is still at" in result.stderr
    assert wav.read_bytes() == original and _vault_files(tmp_path) == []

    rid = cli("vault", "ingest", str(wav), "--call", "big", "--keep-plaintext", "--as", "svc").output
    rid = rid.split("as recording ")[1].split()[0]
    out = tmp_path / "copy.wav"
    result = full_disk("recordings", "export", rid, "--out", str(out), "--reason", "complaint 4411 review",
                       "--as", "alice")
    assert result.returncode == 1
    assert f"{out}: writing the decrypted copy failed (File too large). Nothing was lost" in result.stderr
    assert not out.exists() and not out.with_name("copy.wav.part").exists()
    assert "1 recording(s) checked" in cli("vault", "verify", "--deep", "--as", "alice").output


def test_the_audit_counts_each_fact_once(cli):
    from callguard.core.commands import LedgerEntry

    declined = call_entries("dup-decline", "+442079460123", T0, consent="declined", record=False)
    twice = [e for e in declined if e.kind in ("consent", "continued")]
    violation = LedgerEntry("dup-decline", "violation", T0 + 20, {"what": "test", "detail": "written twice"})
    joined = call_entries("joiner-no", "+442079460124", T0 + 100, extra=[
        ("consent", 5.0, {"decision": "declined", "party": "joiner", "channel": "PJSIP/guest"}),
        ("recording-stopped", 5.5, {"reason": "joiner-declined"})])
    write_ledger(load_config(cli.config), sorted(declined + twice + [violation, violation], key=lambda e: e.at)
                 + joined)
    out = cli("audit", "--month", MONTH, "--as", "alice").output
    assert "calls: 2" in out and "consent decisions: declined 1, granted 1" in out
    assert "[FAIL] No violations logged by the engine (engine-violation): 1" in out
