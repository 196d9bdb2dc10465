"""The monthly audit flags each violation seeded into a test ledger - and nothing else."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from callguard.vault import dsar
from callguard.vault.audit import CHECKS, check_call, month_bounds, render_text, run_audit
from callguard.vault.envelope import VaultError
from callguard.vault.ingest import ingest_file
from callguard.vault.recordings import export
from callguard.vault.report_html import render_html
from callguard.vault.retention import sweep
from callguard.vault.service import AccessDenied, Vault

from tests.vault.conftest import T0, call_entries, spool_copy, with_vault, write_ledger
from tests.vault.vault_audio import digit_sequence, noise_wav, overlay

DAY = 86400
HOSTILE = '<img src=x onerror=alert(1)>'
PAY = {"source": "ivr"}


def _seed_calls() -> list:
    """One call per per-call rule, each breaking exactly that rule, plus a clean one."""
    def without(kinds, entries):
        return [e for e in entries if e.kind not in kinds]

    t = T0
    calls = []
    calls += call_entries("clean", "+442079460001", t, payment=(3.0, 6.0))
    calls += without({"notice-started", "notice-ended"}, call_entries("no-notice", "+442079460002", t + 100))
    calls += call_entries("late-notice", "+442079460003", t + 200, notice_offset=3.5)
    calls += call_entries("long-notice", "+442079460004", t + 300, notice_offset=1.0, notice_len=10.0)
    calls += call_entries("no-consent", "+442079460005", t + 400, consent=None)
    calls += call_entries("after-decline", "+442079460006", t + 500, consent="declined")
    calls += call_entries("dropped", "+442079460007", t + 600, consent="declined", record=False, continued=False)
    calls += call_entries("not-allowed", "+442079460008", t + 700, recording_allowed=False)
    calls += call_entries("unconfirmed", "+442079460009", t + 800, payment=(3.0, 6.0), mute_confirmed=False)
    calls += call_entries("slow", "+442079460010", t + 900, payment=(3.0, 6.0), mute_latency=0.9)
    calls += call_entries("left-open", "+442079460011", t + 1000, extra=[
        ("payment-started", 3.0, PAY),
        ("recording-muted", 3.05, {**PAY, "confirmed_by": "pbx", "latency_s": 0.05})])
    calls += call_entries(HOSTILE, "+442079460012", t + 1100, record=False, extra=[
        ("violation", 2.0, {"what": "unannounced-party", "detail": "a party reached the bridge without the notice"})])
    return calls


EXPECTED_CALL_FINDINGS = {
    "notice-missing": {"no-notice"},
    "notice-late": {"late-notice"},
    "notice-long": {"long-notice"},
    "consent-missing": {"no-consent"},
    "recorded-after-decline": {"after-decline"},
    "opt-out-dropped": {"dropped"},
    "recording-not-allowed": {"not-allowed"},
    "pause-unconfirmed": {"unconfirmed"},
    "pause-slow": {"slow"},
    "pause-left-open": {"left-open"},
    "engine-violation": {HOSTILE},
}


@pytest.fixture(scope="module")
def leaky_audio(tmp_path_factory):
    work = tmp_path_factory.mktemp("leak")
    seq = digit_sequence(work, "4111111111111111", 8000, tone_s=0.07, gap_s=0.06)
    return overlay(noise_wav(work / "n.wav", 8, 8000, 0.03), [(2.0, seq)], work / "callguard-leaky.wav")


@pytest.fixture
def seeded(config, tmp_path, small_wav, leaky_audio, clock):
    """The ledger above plus vault-side violations, audited as of late November."""
    cfg = with_vault(config, export_alert_per_day=2)
    write_ledger(cfg, _seed_calls())
    write_ledger(cfg, call_entries("leaky", "+442079460013", T0 + 1200) +
                 call_entries("unscanned", "+442079460014", T0 + 1300) +
                 call_entries("old", "+442079460015", T0 + 1400))
    clock.now = T0 + 2 * DAY
    with Vault.open(cfg, clock=clock) as vault:
        leaky = ingest_file(vault, spool_copy(leaky_audio, tmp_path / "spool", "callguard-leaky.wav"), "leaky")
        # recorded long ago (a migrated archive): expired on 2026-09-27, never swept
        old = ingest_file(vault, spool_copy(small_wav, tmp_path / "spool", "callguard-old.wav"), "old",
                          recorded_at=T0 - 120 * DAY)
        # alice exports three times in one day (alert above 2); bob tries and is refused
        for n in range(3):
            export(vault, "alice", leaky.recording_id, "legal review of the payment call", tmp_path / f"e{n}.wav")
        with pytest.raises(AccessDenied):
            export(vault, "bob", leaky.recording_id, "I'd like a copy of it", tmp_path / "bob.wav")
        dsar.open_request(vault, "alice", "+442079460013", note="letter")
    with Vault.open(with_vault(cfg, scan_dtmf=False), clock=clock) as vault:
        ingest_file(vault, spool_copy(small_wav, tmp_path / "spool", "callguard-unscanned.wav"), "unscanned")
    clock.now = T0 + 35 * DAY  # 2026-11-30: the DSAR is overdue
    return cfg, leaky.recording_id, old.recording_id


def _subjects(report) -> dict[str, set[str]]:
    return {check: {f.subject for f in findings} for check, findings in report.by_check().items()}


def test_each_seeded_violation_is_flagged_and_nothing_else(seeded, clock):
    cfg, leaky_id, old_id = seeded
    with Vault.open(cfg, clock=clock) as vault:
        report = run_audit(vault, "alice", "2026-10")
    found = _subjects(report)
    for check, calls in EXPECTED_CALL_FINDINGS.items():
        assert found[check] == calls, check
    assert found["dtmf-leak"] == {"leaky"}
    leak = report.by_check()["dtmf-leak"][0]
    assert "4111111111111111" in leak.detail and leaky_id in leak.detail
    assert found["dtmf-not-scanned"] == {"unscanned"}
    assert found["retention-overdue"] == {"old"} and old_id in report.by_check()["retention-overdue"][0].detail
    assert found["sweep-missed"] == {"retention"}
    assert found["exports-unusual"] == {"alice"}
    assert found["access-denied"] == {"bob"}
    assert found["dsar-overdue"] == {"DSAR-1"}
    assert found["access-log-broken"] == set() and found["ledger-broken"] == set()
    assert set(found) == set(CHECKS)
    assert report.stats["calls"] == 15 and report.stats["recorded_calls"] == 13
    assert report.stats["notice_offset_p50"] == pytest.approx(0.8)
    text_report = render_text(report)
    assert "[FAIL] Nothing recorded after a decline (recorded-after-decline): 1" in text_report
    assert "[PASS] Ledger hash chains intact (ledger-broken)" in text_report


def test_broken_chains_are_flagged(seeded, clock):
    cfg, _, _ = seeded
    with Vault.open(cfg, clock=clock) as vault:
        with vault.engine.begin() as conn:
            for name, in conn.execute(text("SELECT name FROM sqlite_master WHERE type='trigger'")).all():
                conn.execute(text(f'DROP TRIGGER "{name}"'))
            conn.execute(text("UPDATE vault_access_log SET reason = 'nothing to see' WHERE seq = 3"))
            conn.execute(text("UPDATE ledger_entries SET data = replace(data, 'declined', 'granted') "
                              "WHERE call_id = 'after-decline' AND kind = 'consent'"))
        report = run_audit(vault, "alice", "2026-10")
    found = _subjects(report)
    assert found["access-log-broken"] == {"access log"}
    assert len(found["ledger-broken"]) == 1
    assert "after-decline" in report.by_check()["ledger-broken"][0].detail


def _first_recording(vault, config, clock, small_wav, tmp_path, at: float) -> None:
    write_ledger(config, call_entries("first", "+442079460001", at - 60, duration=30))
    clock.now = at
    ingest_file(vault, spool_copy(small_wav, tmp_path / "spool", "callguard-first.wav"), "first")


def test_no_sweep_is_due_before_the_vault_holds_anything(config, clock, small_wav, tmp_path):
    start, _ = month_bounds("2026-10")
    with Vault.open(config, clock=clock, create=True) as vault:
        clock.now = start + 30.9 * DAY  # a fresh install: nothing stored, nothing to sweep
        assert run_audit(vault, "alice", "2026-10", verify_chains=False).by_check()["sweep-missed"] == []
        _first_recording(vault, config, clock, small_wav, tmp_path, start + 25 * DAY)
        clock.now = start + 26.2 * DAY  # within 1.5 intervals of the first ingest
        assert run_audit(vault, "alice", "2026-10", verify_chains=False).by_check()["sweep-missed"] == []
        clock.now = start + 30.9 * DAY  # due since day 25 and never run
        gaps = run_audit(vault, "alice", "2026-10", verify_chains=False).by_check()["sweep-missed"]
    assert len(gaps) == 1 and "between 2026-10-26 and 2026-10-31" in gaps[0].detail


def test_sweep_schedule_gaps(config, clock, small_wav, tmp_path):
    start, _ = month_bounds("2026-10")
    with Vault.open(config, clock=clock, create=True) as vault:
        _first_recording(vault, config, clock, small_wav, tmp_path, start + 60)
        for day in (0.5, 1.4, 2.3, 20.0):
            clock.now = start + day * DAY
            sweep(vault, None, apply=True)
        clock.now = start + 30.9 * DAY
        report = run_audit(vault, "alice", "2026-10", verify_chains=False)
    gaps = report.by_check()["sweep-missed"]
    assert len(gaps) == 2
    assert "2026-10-03" in gaps[0].detail and "2026-10-21" in gaps[0].detail
    assert "2026-10-31" in gaps[1].detail


def test_html_report_is_self_contained_and_escaped(seeded, clock):
    cfg, _, _ = seeded
    with Vault.open(cfg, clock=clock) as vault:
        page = render_html(run_audit(vault, "alice", "2026-10"))
    assert page.count("<svg") >= 6
    assert HOSTILE not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<script" not in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "Nothing recorded after a decline" in page


def test_audit_rules_unit(clock):
    from callguard.ledger.queries import StoredEntry
    from callguard.vault.audit import Limits

    limits = Limits(2.0, 10.0, 0.5, 24.0, 10)

    def stored(entries):
        return [StoredEntry("c", i, e.call_id, e.kind, round(e.at * 1e6), round(e.at * 1e6), dict(e.data), "", "")
                for i, e in enumerate(entries)]

    # one-party opt-out while recording: stopping within 2 s is fine, later is a violation
    base = call_entries("x", "+1", T0, regime="one-party", explicit=False, consent="implied")
    from callguard.core.commands import LedgerEntry
    start = next(e.at for e in base if e.kind == "recording-started")
    quick = base[:-2] + [LedgerEntry("x", "consent", start + 5, {"decision": "declined"}),
                         LedgerEntry("x", "recording-stopped", start + 5.5, {"reason": "declined"}),
                         LedgerEntry("x", "continued", start + 5.6, {"outcome": "declined"}),
                         LedgerEntry("x", "hangup", start + 20, {})]
    assert check_call("x", stored(quick), limits)[0] == []
    slow = [e if e.kind != "recording-stopped" else LedgerEntry("x", e.kind, start + 9, e.data) for e in quick]
    findings, _ = check_call("x", stored(sorted(slow, key=lambda e: e.at)), limits)
    assert [f.check for f in findings] == ["recorded-after-decline"] and "4.0 s" in findings[0].detail
    with pytest.raises(VaultError, match="month must look like"):
        month_bounds("November")


def test_the_notice_ends_when_its_audio_does_not_when_the_digit_wait_does():
    from callguard.ledger.queries import StoredEntry
    from callguard.vault.audit import Limits

    limits = Limits(2.0, 10.0, 0.5, 24.0, 10)

    def notice_findings(duration_s: float, gathered_s: float) -> list[str]:
        entries = [("notice-started", 0.3, {"offset_s": 0.3, "duration_s": duration_s, "prompt_id": "notice"}),
                   ("notice-ended", gathered_s, {"offset_s": gathered_s, "digits": ""})]
        stored = [StoredEntry("c", i, "x", kind, round((T0 + at) * 1e6), 0, data, "", "")
                  for i, (kind, at, data) in enumerate(entries)]
        return [f.detail for f in check_call("x", stored, limits)[0] if f.check == "notice-long"]

    assert notice_findings(7.5, 12.8) == []  # 7.5 s of notice, then 5 s waiting for a key
    assert notice_findings(11.0, 16.3) == ["notice ended 11.3 s after answer (limit 10.0 s)"]
    assert notice_findings(11.0, 4.0) == []  # a key at 4 s cut the notice short
