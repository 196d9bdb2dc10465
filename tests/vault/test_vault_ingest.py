"""Ingest and access, end to end on a real SQLite ledger and real audio."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import time
from pathlib import Path

import pytest
from sqlalchemy import select, text

from callguard.ledger.queries import timeline
from callguard.vault.accesslog import verify_log
from callguard.vault.envelope import TamperedError, VaultError
from callguard.vault.ingest import VaultIngestor, ingest_file
from callguard.vault.models import Recording
from callguard.vault.recordings import delete, export, list_recordings, listen, show, verify
from callguard.vault.service import AccessDenied, Vault

from tests.vault.conftest import T0, call_entries, recording_start, spool_copy, with_vault, write_ledger
from tests.vault.vault_audio import concat, digit_sequence, noise_wav, silence_wav, speech_wav


@pytest.fixture(scope="module")
def payment_audio(tmp_path_factory):
    """0-1.5 s noise, a PIN "1234" typed before the pause (a leak), digital silence where the
    PBX muted the payment segment (4-8 s), then speech."""
    work = tmp_path_factory.mktemp("payment-audio")
    parts = [
        noise_wav(work / "a.wav", 1.5, 8000, 0.03),
        digit_sequence(work, "1234", 8000),
        noise_wav(work / "b.wav", 4.0 - 1.5 - 0.64, 8000, 0.03),
        silence_wav(work / "muted.wav", 4.1),
        speech_wav(work / "c.wav", "Thank you, the payment went through.", 8000),
    ]
    return concat(parts, work / "callguard-call-1.wav")


@pytest.fixture
def call_with_payment(config, tmp_path, payment_audio):
    entries = call_entries("call-1", "+442079460123", T0, payment=(4.0, 8.0))
    write_ledger(config, entries)
    spool = tmp_path / "spool"
    spool.mkdir()
    return entries, Path(shutil.copy(payment_audio, spool / payment_audio.name))


def test_ingest_encrypts_verifies_and_removes_plaintext(vault, config, call_with_payment, tmp_path):
    entries, wav = call_with_payment
    original = wav.read_bytes()
    result = ingest_file(vault, wav, "call-1")
    assert not wav.exists()
    assert result.plaintext_removed and result.size == len(original)
    assert result.sha256 == hashlib.sha256(original).hexdigest()
    assert result.path.exists() and original[44:2000] not in result.path.read_bytes()
    assert result.duration_s == pytest.approx(len(original[44:]) / 16000, abs=0.01)
    # retention stamped from the recording's start on the PBX clock
    assert result.expires_at == pytest.approx(recording_start(entries) + 90 * 86400)
    # the ledger timeline of the call carries the storage facts
    with vault.session() as s:
        stored = [e for e in timeline(s, "call-1") if e.kind == "recording-stored"]
        row = s.get(Recording, result.recording_id)
    assert len(stored) == 1
    data = stored[0].data
    assert (data["sha256"], data["size"], data["key_id"]) == (result.sha256, len(original), result.key_id)
    assert data["ciphertext_sha256"] == hashlib.sha256(result.path.read_bytes()).hexdigest()
    assert (row.ledger_seq, row.ledger_hash) == (stored[0].seq, stored[0].hash)
    # the PIN typed before the pause is a leak; nothing was found in the muted span
    dtmf = result.dtmf
    assert dtmf["leaked_digits"] == "1234" and dtmf["mute_failures"] == 0
    assert dtmf["muted_spans"][0][0] == pytest.approx(4.05, abs=0.01)
    # a privacy officer can export it; the bytes are exactly the original
    out = export(vault, "alice", result.recording_id, "DSAR 17 copy for the caller", tmp_path / "out.wav")
    assert out.read_bytes() == original
    # a QA reviewer can listen (streamed), not export
    sink = io.BytesIO()
    assert listen(vault, "bob", result.recording_id, "QA review of call quality", sink) == len(original)
    assert sink.getvalue() == original
    with pytest.raises(AccessDenied, match="role qa.*may not export"):
        export(vault, "bob", result.recording_id, "want a copy for myself", tmp_path / "bob.wav")
    assert not (tmp_path / "bob.wav").exists()
    # an agent cannot even list; an unknown user is nobody
    with pytest.raises(AccessDenied, match="role agent.*may not list"):
        list_recordings(vault, "carol")
    with pytest.raises(AccessDenied, match="'mallory' is not a vault user"):
        listen(vault, "mallory", result.recording_id, "just curious about it", io.BytesIO())
    with pytest.raises(AccessDenied, match="needs a reason"):
        listen(vault, "bob", result.recording_id, "qa", io.BytesIO())
    # every attempt, allowed or denied, is in the chained log with who/what/when/why
    events = list(vault.access_log.events())
    denied = [(e.actor, e.action, e.outcome) for e in events if e.outcome == "denied"]
    assert denied == [("bob", "export", "denied"), ("carol", "list", "denied"), ("mallory", "listen", "denied"),
                      ("bob", "listen", "denied")]
    done = [(e.actor, e.action) for e in events if e.outcome == "done"]
    assert ("alice", "export") in done and ("bob", "listen") in done
    bob_export = next(e for e in events if e.actor == "bob" and e.action == "export")
    assert bob_export.target == result.recording_id and bob_export.reason == "want a copy for myself"
    assert bob_export.at == pytest.approx(vault.clock())
    assert verify_log(vault.engine).ok


def test_access_log_is_append_only_and_tamper_evident(vault, call_with_payment):
    _, wav = call_with_payment
    ingest_file(vault, wav, "call-1")
    list_recordings(vault, "bob")
    with vault.engine.begin() as conn, pytest.raises(Exception, match="append-only"):
        conn.execute(text("UPDATE vault_access_log SET actor = 'nobody' WHERE seq = 1"))
    with vault.engine.begin() as conn, pytest.raises(Exception, match="append-only"):
        conn.execute(text("DELETE FROM vault_access_log WHERE seq = 2"))
    # someone with schema rights drops the trigger and edits: the chain names the entry
    with vault.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER vault_access_log_no_update"))
        conn.execute(text("UPDATE vault_access_log SET reason = 'routine' WHERE seq = 2"))
    report = verify_log(vault.engine)
    assert not report.ok and "entry 2" in report.problems[0] and "modified" in report.problems[0]


def test_ingest_refusals_keep_the_plaintext(vault, config, tmp_path):
    wav = noise_wav(tmp_path / "callguard-x.wav", 1)
    with pytest.raises(VaultError, match="not in the ledger"):
        ingest_file(vault, wav, "no-such-call")
    # call still recording: the PBX may still be writing the file
    entries = [e for e in call_entries("live", "+14155550100", T0) if e.kind not in ("recording-stopped", "hangup")]
    write_ledger(config, entries)
    with pytest.raises(VaultError, match="not show the recording of call live as stopped"):
        ingest_file(vault, wav, "live")
    link = tmp_path / "link.wav"
    link.symlink_to(wav)
    write_ledger(config, call_entries("done", "+14155550100", T0))
    with pytest.raises(VaultError, match="symbolic link"):
        ingest_file(vault, link, "done")
    with pytest.raises(VaultError, match="purpose 'marketing' has no retention period"):
        ingest_file(vault, wav, "done", purpose="marketing")
    assert wav.exists()
    with vault.session() as s:
        assert s.scalars(select(Recording)).all() == []
    # no key material or ciphertext left behind by the refusals
    assert not list((vault.dir).glob("*/*/*.cgv*"))
    ingest_file(vault, wav, "done")
    copy = noise_wav(tmp_path / "callguard-x.wav", 1)
    with pytest.raises(VaultError, match="already in the vault"):
        ingest_file(vault, copy, "done")
    assert copy.exists()


def test_no_active_key_means_no_ingest(tmp_path, config, clock):
    write_ledger(config, call_entries("c", "+14155550100", T0))
    wav = noise_wav(tmp_path / "n.wav", 1)
    cfg = with_vault(config, keyring=str(tmp_path / "empty-ring"))
    with Vault.open(cfg, clock=clock) as v, pytest.raises(VaultError, match="no active vault key"):
        ingest_file(v, wav, "c")
    assert wav.exists()


def test_tampered_ciphertext_is_refused_and_verify_names_it(vault, call_with_payment, tmp_path):
    _, wav = call_with_payment
    result = ingest_file(vault, wav, "call-1")
    assert verify(vault, "dave", deep=False).problems == {}
    data = bytearray(result.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    result.path.write_bytes(bytes(data))
    problems = verify(vault, "dave").problems
    assert "ciphertext SHA-256 differs" in problems[result.recording_id]
    with pytest.raises(TamperedError, match="failed authentication"):
        export(vault, "alice", result.recording_id, "court order 2026/11", tmp_path / "x.wav")
    assert not (tmp_path / "x.wav").exists() and not (tmp_path / "x.wav.part").exists()
    sink = io.BytesIO()
    with pytest.raises(TamperedError):
        listen(vault, "bob", result.recording_id, "QA review of call quality", sink)
    assert sink.getvalue() == b""
    failed = [e for e in vault.access_log.events() if e.outcome == "failed"]
    assert {e.action for e in failed} == {"verify", "export", "listen"}


def test_wrong_private_key_is_a_clear_error(vault, config, call_with_payment, tmp_path):
    _, wav = call_with_payment
    result = ingest_file(vault, wav, "call-1")
    from callguard.vault.keys import generate_pair, private_pem
    # someone replaces the private key file with another key under the same name
    (tmp_path / "private" / f"{result.key_id}.pem").write_bytes(private_pem(generate_pair(), None))
    with Vault.open(config, clock=vault.clock) as other, pytest.raises(VaultError, match="renamed"):
        export(other, "alice", result.recording_id, "court order 2026/11", tmp_path / "y.wav")
    assert not (tmp_path / "y.wav").exists()


def test_crypto_shredding_makes_backups_unreadable(vault, call_with_payment, tmp_path):
    _, wav = call_with_payment
    result = ingest_file(vault, wav, "call-1")
    backup = tmp_path / "backup.cgv"
    shutil.copy(result.path, backup)
    destroyed = delete(vault, "alice", result.recording_id, "caller withdrew consent by letter")
    assert destroyed.key_shredded and destroyed.ciphertext_removed
    assert not result.path.exists()
    # the backup is intact but nothing can open it any more
    shutil.copy(backup, result.path)
    with pytest.raises(VaultError, match="was deleted"):
        export(vault, "alice", result.recording_id, "restore from backup", tmp_path / "z.wav")
    with vault.session() as s:
        s.get(Recording, result.recording_id).state = "stored"
        s.commit()
    with pytest.raises(VaultError, match="crypto-shredded"):
        export(vault, "alice", result.recording_id, "restore from backup", tmp_path / "z.wav")
    detail = show(vault, "alice", result.recording_id)
    assert detail.deletion["cause"] == "manual" and detail.deletion["key_shredded"]


def test_adapter_entry_point_ingests_off_the_loop(config, call_with_payment):
    _, wav = call_with_payment
    ingestor = VaultIngestor(config)
    try:
        result = ingestor.submit("call-1", wav).result(timeout=60)
    finally:
        ingestor.close()
    assert not wav.exists()
    with Vault.open(config) as v, v.session() as s:
        row = s.get(Recording, result.recording_id)
        assert json.loads(row.dtmf_report)["leaked_digits"] == "1234"


def test_ingestor_waits_for_the_ledger_to_catch_up(config, tmp_path, small_wav):
    """The PBX's recording-stopped can reach the ingestor before the ledger commits it."""
    entries = call_entries("late", "+442079460123", T0)
    write_ledger(config, [e for e in entries if e.kind not in ("recording-stopped", "hangup")])
    wav = spool_copy(small_wav, tmp_path / "spool", "callguard-late.wav")
    ingestor = VaultIngestor(config)
    ingestor.retry_delays = (0.3, 0.6, 1.2, 2.4, 4.8)
    try:
        future = ingestor.submit("late", wav)
        time.sleep(0.2)
        write_ledger(config, [e for e in entries if e.kind in ("recording-stopped", "hangup")])
        result = future.result(timeout=60)
    finally:
        ingestor.close()
    assert result.plaintext_removed and not wav.exists()
