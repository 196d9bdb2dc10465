"""policy / config / simulate / demo through click's runner and a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from callguard.cli import main

ROOT = Path(__file__).parents[2]
SCENARIOS = ROOT / "examples" / "scenarios"


@pytest.fixture
def runner(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CALLGUARD_CONFIG", raising=False)
    return CliRunner()


def test_policy_explain_names_each_party_and_the_rule(runner):
    result = runner.invoke(main, ["policy", "explain", "+14155550123", "+442079460000"])
    assert result.exit_code == 0, result.output
    assert "jurisdiction: US-CA (San Francisco, CA)" in result.output
    assert "jurisdiction: GB (United Kingdom)" in result.output
    assert "rule: all-party" in result.output
    assert "strictest rule wins across all parties: all-party" in result.output


def test_policy_explain_json_and_hostile_input(runner):
    result = runner.invoke(main, ["policy", "explain", "--json", "anonymous", "${SHELL(rm -rf /)}"])
    assert result.exit_code == 1  # the second one is not a phone number
    rule = json.loads(result.stdout)
    assert rule["regime"] == "all-party"
    assert [p["jurisdiction"] for p in rule["parties"]] == ["unknown", "unknown"]
    assert "not a phone number: ${SHELL(rm -rf /)}" in result.stderr and "withheld or unavailable" not in result.stderr


def test_policy_explain_withheld_is_no_error_but_a_typo_is(runner):
    withheld = runner.invoke(main, ["policy", "explain", "anonymous", "+14155550123"])
    assert withheld.exit_code == 0, withheld.output
    assert "number withheld or unavailable" in withheld.output and "rule: all-party" in withheld.output
    typo = runner.invoke(main, ["policy", "explain", "+1415555", "+442079460000"])
    assert typo.exit_code == 1
    assert "jurisdiction: unknown (invalid number +1415555)" in typo.stdout  # still explained
    assert "invalid number +1415555" in typo.stderr and "E.164" in typo.stderr


def test_policy_explain_uses_site_overrides(runner, tmp_path):
    (tmp_path / "callguard.toml").write_text('[policy.jurisdictions]\n"US-NY" = "all-party"\n')
    result = runner.invoke(main, ["policy", "explain", "+12125550123"])
    assert "regime:       all-party" in result.output


def test_config_check_reports_every_problem(runner, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[asterisk]\nprot = 1\n[consent]\ntimeout_ms = 10\n')
    result = runner.invoke(main, ["config", "check", str(bad)])
    assert result.exit_code == 1
    assert "[asterisk] prot: unknown key (did you mean 'port'?)" in result.output
    assert "[consent] timeout_ms: 10 ms is too short" in result.output


def test_config_check_accepts_the_example(runner):
    result = runner.invoke(main, ["config", "check", str(ROOT / "examples" / "callguard.toml")])
    assert result.exit_code == 0, result.output
    assert ": OK" in result.output


def test_simulate_prints_the_timeline_and_meets_expectations(runner):
    result = runner.invoke(main, ["simulate", str(SCENARIOS / "late_joiner.toml")])
    assert result.exit_code == 0, result.output
    assert "party joined (announced): +13055550100" in result.output
    assert "rule all-party (was one-party)" in result.output
    assert "expectations: OK" in result.output


def test_simulate_fails_when_expectations_do_not_hold(runner, tmp_path):
    scenario = tmp_path / "wrong.toml"
    scenario.write_text('[caller]\nnumber = "+13125550100"\n[[step]]\nat = 2\npress = "2"\n'
                        '[expect]\nrecorded = true\n')
    result = runner.invoke(main, ["simulate", str(scenario)])
    assert result.exit_code == 1
    assert "expected recorded = True, got False" in result.output


def test_simulate_rejects_a_bad_scenario_precisely(runner, tmp_path):
    scenario = tmp_path / "bad.toml"
    scenario.write_text('[caller]\nnumber = "+1"\n[[step]]\nat = 2\nhotkey = "mute"\n[[step]]\nat = -1\npress="1"\n')
    result = runner.invoke(main, ["simulate", str(scenario)])
    assert result.exit_code == 1
    assert "step 1 (at 2): hotkey = 'mute'; use one of pause, resume" in result.output
    assert "step 2: at: expected seconds after answer" in result.output
    assert "Traceback" not in result.output


def test_simulate_json_lines(runner):
    result = runner.invoke(main, ["simulate", "--json", str(SCENARIOS / "decline.toml")])
    kinds = [json.loads(line)["kind"] for line in result.output.splitlines()]
    assert kinds[:2] == ["call-offered", "rule-applied"] and kinds[-1] == "hangup"
    assert "recording-started" not in kinds


def test_demo_writes_and_verifies_a_real_ledger(runner, tmp_path):
    url = f"sqlite:///{tmp_path / 'demo.sqlite'}"
    result = runner.invoke(main, ["demo", "--db", url])
    assert result.exit_code == 0, result.output
    assert "hash chains verified" in result.output
    for key in ("consent_payment", "decline", "late_joiner"):
        assert key in result.output
    # The missed-pause call: its recording redacted by the transcription stage, the agent named by the audit.
    out = " ".join(result.output.split())
    assert "digital silence over" in out and "[card number redacted]" in out
    assert "ledger: speech-redacted card-number" in out and "audit, missed pauses:" in out and "agent 101" in out
    show = runner.invoke(main, ["ledger", "verify", "--db", url])
    assert show.exit_code == 0, show.output


def test_real_process_simulate_and_bad_config(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "callguard", "simulate", str(SCENARIOS / "decline.toml")],
                        capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "consent: declined" in ok.stdout
    (tmp_path / "callguard.toml").write_text("[ledger\n")
    bad = subprocess.run([sys.executable, "-m", "callguard", "policy", "explain", "+14155550123"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert bad.returncode == 1
    assert "not valid TOML" in bad.stderr and "Traceback" not in bad.stderr


def test_config_check_rejects_an_unknown_prompt_id(runner, tmp_path):
    bad = tmp_path / "prompt.toml"
    bad.write_text('[consent]\nnotice_prompt = "notise"\n')
    result = runner.invoke(main, ["config", "check", str(bad)])
    assert result.exit_code == 1
    assert "[consent] notice_prompt: unknown prompt 'notise' (did you mean 'notice'?)" in result.output
    assert result.output.count("unknown prompt") == 1
