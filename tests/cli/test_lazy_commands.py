"""The command table stays in step with the command modules."""

from __future__ import annotations

import importlib
import subprocess
import sys

import click
from click.testing import CliRunner

from callguard.cli import COMMANDS, main


def test_every_listed_command_loads_with_the_listed_help():
    for name, (module, attribute, short_help) in COMMANDS.items():
        command = getattr(importlib.import_module(module), attribute)
        assert isinstance(command, click.Command)
        assert command.name == name
        assert command.get_short_help_str(200) == short_help, name


def test_help_lists_every_command():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


def test_help_imports_no_command_module():
    code = ("import sys; from callguard.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "loaded = [m for m in sys.modules if m.startswith(('callguard.cli.', 'callguard.vault', "
            "'callguard.adapters', 'sqlalchemy', 'numpy'))]\n"
            "print('LOADED', loaded)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert "LOADED []" in out, out
