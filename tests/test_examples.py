"""The shipped examples match the README and apply no law by example."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from click.testing import CliRunner

from callguard.cli import main

ROOT = Path(__file__).parents[1]


def test_systemd_units_run_the_callguard_the_readme_installs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    venv = re.search(r"python3 -m venv (/\S+) && \1/bin/pip install \.", readme)
    assert venv, "the README's PBX-host install line names the virtualenv"
    units = sorted((ROOT / "examples" / "systemd").glob("*.service"))
    assert units
    for unit in units:
        text = unit.read_text(encoding="utf-8")
        for line in re.findall(r"^ExecStart(?:Pre)?=(\S+)", text, re.M):
            assert line == f"{venv.group(1)}/bin/callguard", (unit.name, line)
        writable = re.search(r"^ReadWritePaths=(\S+)", text, re.M).group(1)
        config = tomllib.loads((ROOT / "examples" / "callguard.toml").read_text(encoding="utf-8"))
        assert config["ledger"]["url"].startswith(f"sqlite:///{writable}/")  # writable under ProtectSystem
        assert config["vault"]["dir"].startswith(writable)


def test_the_example_config_applies_no_jurisdiction_by_example_and_has_the_prompt_dirs(tmp_path, monkeypatch):
    example = (ROOT / "examples" / "callguard.toml").read_text(encoding="utf-8")
    config = tomllib.loads(example)
    assert config["policy"]["home"] == ""
    assert {"asterisk_dir", "freeswitch_dir"} <= set(config["prompts"])
    monkeypatch.chdir(tmp_path)
    local = tmp_path / "callguard.toml"  # the example with its paths moved here, as `config check` would see it
    local.write_text(example.replace("/var/lib/callguard", str(tmp_path)))
    result = CliRunner().invoke(main, ["config", "check", str(local)], env={"CALLGUARD_CONFIG": ""})
    assert result.exit_code == 0, result.output
    assert "home (none)" in result.output


def test_docs_name_asterisk_cli_commands_that_exist():
    """`core show globals` does not exist; Asterisk's command is `dialplan show globals`."""
    docs = [ROOT / "README.md", *sorted((ROOT / "dialplan").rglob("*")), *sorted((ROOT / "examples").rglob("*"))]
    for path in (p for p in docs if p.is_file()):
        assert "core show globals" not in path.read_text(encoding="utf-8", errors="replace"), path
    assert "dialplan show globals" in (ROOT / "dialplan" / "README.md").read_text(encoding="utf-8")
