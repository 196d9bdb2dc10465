"""The demo's follow-up command works as printed, and each run has its own ledger."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(sys.executable).with_name("callguard")  # the console script pip installed next to this python


def demo(cwd: Path) -> str:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CALLGUARD_")},
           "PATH": "/usr/bin:/bin", "COLUMNS": "40"}  # callguard not on PATH; a narrow terminal
    out = subprocess.run([str(SCRIPT), "demo", "--backend", "simulator"], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=300, check=True).stdout
    return out.splitlines()[-1]


def test_the_printed_command_runs_as_printed_and_each_run_has_its_own_ledger(tmp_path):
    first, second = demo(tmp_path), demo(tmp_path)
    prefix = "see one call's evidence: "
    assert first.startswith(prefix) and second.startswith(prefix)  # one line, however narrow the terminal
    command = shlex.split(first[len(prefix):])
    assert command[0] == str(SCRIPT) and command[1:3] == ["ledger", "show"]
    assert command[command.index("--db") + 1] != shlex.split(second[len(prefix):])[-1]  # a new ledger per run
    shown = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                           env={"PATH": "/usr/bin:/bin"})
    assert shown.returncode == 0, shown.stderr
    assert f"call {command[3]}" in shown.stdout and "(chain demo-simulator@" in shown.stdout
