"""Several PBXs, one PostgreSQL ledger: each listener its own chain, every reader sees them all.

Two real processes run the demo at the same time, one against the embedded
fake Asterisk and one against the embedded fake FreeSWITCH, both writing to
one PostgreSQL database (the demos place the same callers on both PBXs).
Then the compliance officer's commands, as they would type them, must see
both PBXs: ``ledger verify`` walks both chains, ``ledger calls --number``
finds the caller's call on each PBX, and a data-subject request finds both.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from callguard.cli import main
from callguard.vault.service import os_user
from tests.ledger.conftest import pg_base_url, pg_schema

pytestmark = pytest.mark.postgres

CALLER = "+13125550100"  # the demo's declining caller, on both PBXs


@pytest.fixture
def pg_url():
    with pg_schema(pg_base_url()) as url:
        yield url


def cli(*args: str, env: dict[str, str] | None = None):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CALLGUARD_")}
    return CliRunner().invoke(main, list(args), env={**clean, **(env or {})}, catch_exceptions=False)


def test_asterisk_and_freeswitch_share_one_postgresql_ledger(pg_url, tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLGUARD_")}
    demos = {backend: subprocess.Popen([sys.executable, "-m", "callguard", "demo", "--backend", backend,
                                        "--db", pg_url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       text=True, env=env, cwd=tmp_path)
             for backend in ("asterisk", "freeswitch")}
    for backend, proc in demos.items():
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{backend} demo failed:\n{out}"

    verified = cli("ledger", "verify", "--db", pg_url)
    assert verified.exit_code == 0, verified.output
    assert "chain 'demo-asterisk@" in verified.output and "chain 'demo-freeswitch@" in verified.output
    assert "all 2 chain(s) verified" in verified.output

    calls = cli("ledger", "calls", "--db", pg_url, "--number", CALLER)
    assert calls.exit_code == 0, calls.output
    rows = [line for line in calls.output.splitlines() if CALLER in line]
    assert len(rows) == 2, calls.output  # one call on each PBX

    config = tmp_path / "callguard.toml"
    config.write_text(f'[ledger]\nurl = "{pg_url}"\n[users]\n"{os_user()}" = "privacy-officer"\n'
                      f'[vault]\ndir = "{tmp_path / "vault"}"\n')
    opened = cli("--config", str(config), "dsar", "open", "--number", CALLER,
                 "--note", "caller asked by phone, identity checked")
    assert opened.exit_code == 0, opened.output
    assert "calls: 2," in opened.output, opened.output
