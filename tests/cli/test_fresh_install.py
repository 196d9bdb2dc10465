"""A fresh install with the shipped defaults audits clean: every FAIL the audit prints must be real."""

from __future__ import annotations

import os
import time

from click.testing import CliRunner

from callguard.cli import main
from callguard.vault.service import os_user


def test_demo_calls_on_a_fresh_install_audit_clean(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "callguard.toml").write_text(f'[users]\n"{os_user()}" = "admin"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLGUARD_")}
    runner = CliRunner()
    demo = runner.invoke(main, ["demo", "--db", "sqlite:///callguard.sqlite"], env=env)
    assert demo.exit_code == 0, demo.output
    month = time.strftime("%Y-%m", time.gmtime())
    audit = runner.invoke(main, ["audit", "--month", month, "--strict"], env=env)
    # Clean but for the demo's deliberate missed pause (the agent named), and its transcript: the demo's
    # vault declared transcription, this site's callguard.toml does not, so the audit flags it by call.
    assert "RESULT: 2 violation(s), 0 warning(s)" in audit.output, audit.output
    assert "(missed-pause): 1" in audit.output and "(transcript-not-covered): 1" in audit.output
    assert "agent 101: 1 call(s)" in audit.output
    assert audit.exit_code == 1
    # six scenario calls and the card payment call (which audits clean: no tone in its payment span)
    assert "calls: 7" in audit.output and "notice start after answer" in audit.output
