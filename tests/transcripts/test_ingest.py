"""Transcripts as vault data, through the CLI: ingest redacts, then show, search, DSAR, delete."""

from __future__ import annotations

import json
from pathlib import Path
import shutil

import numpy as np
from sqlalchemy import select

from callguard.config import load_config
from callguard.ledger.db import open_for_reading
from callguard.ledger.queries import timeline
from callguard.transcripts.engines import read_mono
from callguard.transcripts.models import Transcript
from callguard.vault.service import Vault
from tests.transcripts.conftest import SPEECH_AT
from tests.vault.conftest import ME, T0, call_entries, recording_start, write_ledger

NUMBER = "+442079460123"


def _seed_and_spool(cli, card_call_wav: Path, call_id: str) -> Path:
    entries = call_entries(call_id, NUMBER, T0, duration=40.0)
    write_ledger(load_config(cli.tmp / "callguard.toml"), entries)
    spool = cli.tmp / "spool"
    spool.mkdir(exist_ok=True)
    return Path(shutil.copy(card_call_wav, spool / f"callguard-{call_id}.wav"))


def _entries(cli, call_id: str):
    engine = open_for_reading(load_config(cli.tmp / "callguard.toml").ledger.url)
    try:
        return timeline(engine, call_id)
    finally:
        engine.dispose()


def test_spoken_card_is_redacted_before_it_reaches_the_vault(cli, card_call_wav):
    call = "call-card-1"
    wav = _seed_and_spool(cli, card_call_wav, call)
    out = cli("vault", "ingest", str(wav), "--call", call, "--as", ME, "--json").output
    result = json.loads(out)
    spoken = result["transcription"]
    assert spoken["transcribed"] and spoken["findings"] >= 1, spoken
    [(a, b)] = spoken["redacted_spans"]
    assert SPEECH_AT < a < SPEECH_AT + 3 and b - a > 3
    assert not wav.exists() and list(wav.parent.iterdir()) == []  # plaintext and the redacted copy are gone

    # The stored recording: digital silence over the span, the line noise elsewhere untouched.
    exported = cli.tmp / "export.wav"
    cli("recordings", "export", result["recording_id"], "--out", str(exported), "--reason", "check redaction",
        "--as", "alice")
    stored, rate = read_mono(exported)
    original, _ = read_mono(card_call_wav)
    span = slice(int(a * rate), int(b * rate))
    assert len(stored) == len(original) and not stored[span].any()
    keep = np.ones(len(stored), dtype=bool)
    keep[int(a * rate) - 2:int(b * rate) + 2] = False  # the ledger's span is rounded to the millisecond
    assert np.array_equal(stored[keep], original[keep])

    # The transcript shows the redaction, to a role with transcript:read, with a reason.
    shown = cli("transcripts", "show", call, "--reason", "complaint 4411 review", "--as", "bob").output
    assert "[card number redacted]" in shown and "one one one" not in shown
    denied = cli("transcripts", "show", call, "--reason", "complaint 4411 review", "--as", "carol", code=1).output
    assert "may not transcript:read" in denied
    cli("transcripts", "show", call, "--reason", "x", "--as", "bob", code=1)  # a reason is required

    # The ledger: one entry per finding, with span and kind, never the digits.
    entries = _entries(cli, call)
    findings = [e for e in entries if e.kind == "speech-redacted"]
    assert [f.data["kind"] for f in findings][:1] == ["card-number"]
    assert findings[0].data["start_s"] >= a and findings[0].data["end_s"] <= b
    assert any(e.kind == "transcript-stored" and e.data["notices"] == ["notice"] for e in entries)
    evidence = json.dumps([e.data for e in entries])
    assert "4111" not in evidence and "one one" not in evidence

    # Search decrypts under the same controls; both reads are in the access log.
    found = cli("transcripts", "search", "my card", "--from", "2026-10-01", "--to", "2026-12-01",
                "--reason", "coaching sample", "--as", "bob").output
    assert call in found and "1 call(s)" in found, (found, shown)
    assert "0 call(s)" in cli("transcripts", "search", "my card", "--from", "2026-11-01", "--to", "2026-12-01",
                              "--reason", "coaching sample", "--as", "bob").output
    with Vault.open(load_config(cli.tmp / "callguard.toml")) as vault:
        actions = [(e.action, e.outcome, e.actor) for e in vault.access_log.events()]
    assert ("transcript-read", "done", "bob") in actions and ("transcript-read", "denied", "carol") in actions
    assert ("transcript-search", "done", "bob") in actions

    # DSAR export carries the (redacted) transcript.
    cli("dsar", "open", "--number", NUMBER, "--reason", "subject asked by letter", "--as", "alice")
    cli("dsar", "export", "1", "--out", str(cli.tmp / "dsar"), "--reason", "answering the request", "--as", "alice")
    index = json.loads((cli.tmp / "dsar" / "DSAR-1" / "index.json").read_text())
    [item] = index["transcripts"]
    exported_transcript = (cli.tmp / "dsar" / "DSAR-1" / item["file"]).read_text()
    assert "[card number redacted]" in exported_transcript

    # Deleting the recording destroys the transcript with it (key shredded first).
    cli("recordings", "delete", result["recording_id"], "--reason", "caller asked for deletion", "--yes",
        "--as", "alice")
    assert "no stored transcript" in cli("transcripts", "show", call, "--reason", "complaint 4411 review",
                                         "--as", "bob", code=1).output
    with Vault.open(load_config(cli.tmp / "callguard.toml")) as vault, vault.session() as session:
        [row] = session.scalars(select(Transcript)).all()
        assert row.state == "deleted" and not vault.keystore.exists(row.id)
        assert not vault.ciphertext_path(row.file).exists()
    assert any(e.kind == "transcript-deleted" for e in _entries(cli, call))


def test_no_transcription_where_the_notice_does_not_declare_it(cli, card_call_wav):
    cli.reconfigure({"purposes": ["qa"], "notice_prompts": ["notice-transcribed"]})
    call = "call-card-2"
    wav = _seed_and_spool(cli, card_call_wav, call)
    out = cli("vault", "ingest", str(wav), "--call", call, "--as", ME).output
    assert "not transcribed: notice notice does not tell callers about transcription" in out
    assert not any(e.kind.startswith("transcript") or e.kind == "speech-redacted" for e in _entries(cli, call))
    with Vault.open(load_config(cli.tmp / "callguard.toml")) as vault, vault.session() as session:
        assert session.scalars(select(Transcript)).all() == []


AGENT = ("party-joined", 0.5, {"staff": True, "announceable": False,
                               "party": {"channel": "PJSIP/agent-101-0001", "number": "101", "role": "agent"}})


def test_audit_names_the_agent_who_missed_the_pause_and_transcripts_no_notice_covered(cli, card_call_wav):
    call = "call-card-3"
    entries = call_entries(call, NUMBER, T0, duration=40.0, extra=[AGENT])
    write_ledger(load_config(cli.tmp / "callguard.toml"), entries)
    (cli.tmp / "spool").mkdir(exist_ok=True)
    wav = Path(shutil.copy(card_call_wav, cli.tmp / "spool" / f"callguard-{call}.wav"))
    cli("vault", "ingest", str(wav), "--call", call, "--as", ME)

    report = cli("audit", "--month", "2026-10", "--no-chain-check", "--as", "alice").output
    assert "[FAIL] No card data spoken while the recording ran (missed pauses) (missed-pause): 1" in report
    assert f"{call}" in report and "agent 101" in report
    assert "Missed pauses (card data spoken while recording), per agent and week:" in report
    assert f"2026-W44  agent 101: 1 call(s): {call}" in report
    assert "[PASS] Transcripts only where the notice and purpose declare transcription" in report

    # The site changes its notice wording: the stored transcript is no longer covered, and the audit says so.
    cli.reconfigure({"purposes": ["qa"], "notice_prompts": ["notice-transcribed"]})
    report = cli("audit", "--month", "2026-10", "--no-chain-check", "--as", "alice", "--strict", code=1).output
    assert "[FAIL] Transcripts only where the notice and purpose declare transcription (transcript-not-covered): 1" \
        in report
    assert f"- {call}" in report and "notice notice does not tell callers about transcription" in report
    leaks_out = cli("leaks", "--month", "2026-10", "--as", "alice").output
    assert f"{call}  speech card-number" in leaks_out and "redacted in the stored audio" in leaks_out
    assert "2026-10: 1 leak(s): 0 by keypad, 1 spoken" in leaks_out or "leak(s): 0 by keypad" in leaks_out
