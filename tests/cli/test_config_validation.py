"""Config mistakes that would silently change the law applied fail at `config check` AND at `run` start-up.

Each message names where the value came from (the file, or the environment
variable), the section and key, what is accepted, and a suggestion.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from callguard.cli import main

PBX_SECTIONS = '[asterisk]\nsecret = "s"\n[freeswitch]\npassword = "p"\n'


def invoke(tmp_path: Path, *args: str, env: dict[str, str] | None = None):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CALLGUARD_")}
    return CliRunner().invoke(main, list(args), env={**clean, **(env or {})}, catch_exceptions=False)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.toml"
    ledger = f'[ledger]\nurl = "sqlite:///{tmp_path / "ledger.sqlite"}"\n' if "[ledger]" not in text else ""
    path.write_text(PBX_SECTIONS + ledger + text)
    return path


CASES = {
    "regex": ('[policy]\ninternal_numbers = "[0-9"\n',
              ["[policy] internal_numbers: not a valid regular expression", "unterminated character set"]),
    "home typo": ('[policy]\nhome = "US-CAL"\n',
                  ["[policy] home: unknown jurisdiction 'US-CAL' (did you mean 'US-CA'?)",
                   "accepted: a country code (GB, DE) or US-/CA- plus a state or province"]),
    "override": ('[policy.jurisdictions]\n"XX-YY" = "all-party"\n"GB" = "one-partty"\n',
                 ["[policy] jurisdictions.XX-YY: unknown jurisdiction 'XX-YY'",
                  "[policy] jurisdictions.GB: unknown regime 'one-partty' (did you mean 'one-party'?); "
                  "accepted: one-party, gdpr, all-party, never"]),
    "driver": ('[ledger]\nurl = "mysql://cg@db.example/callguard"\n',
               ["[ledger] url: the driver for 'mysql' is not installed (No module named 'MySQLdb')",
                "or use sqlite:///PATH (built in) or postgresql+psycopg://"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("command", [["config", "check"], ["run", "asterisk", "--check"],
                                     ["run", "freeswitch", "--check"], ["run", "asterisk"]])
def test_refused_at_config_check_and_at_start_up(tmp_path, case, command):
    text, fragments = CASES[case]
    path = write(tmp_path, text)
    result = invoke(tmp_path, "--config", str(path), *command)
    assert result.exit_code == 1, result.output
    assert "invalid configuration" in result.output
    assert f"{path}: {fragments[0]}" in result.output, result.output  # file, section, key, what is wrong
    for fragment in fragments[1:]:
        assert fragment in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "ledger.sqlite").exists()  # nothing was opened


def test_a_value_from_the_environment_names_the_variable(tmp_path):
    path = write(tmp_path, '[policy]\nhome = "GB"\n')
    result = invoke(tmp_path, "--config", str(path), "config", "check", env={"CALLGUARD_POLICY__HOME": "us-cal"})
    assert result.exit_code == 1
    assert ("environment variable CALLGUARD_POLICY__HOME: [policy] home: unknown jurisdiction 'US-CAL' "
            "(did you mean 'US-CA'?)") in result.output
    assert str(path) not in result.output


def test_lower_case_codes_are_accepted_and_shown_upper_case(tmp_path):
    path = write(tmp_path, '[policy]\nhome = "us-ca"\n[policy.jurisdictions]\n"us-ny" = "all-party"\n')
    result = invoke(tmp_path, "--config", str(path), "config", "check")
    assert result.exit_code == 0, result.output
    assert "home US-CA" in result.output
