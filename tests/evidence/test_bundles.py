"""Per-call evidence bundles: exported by the CLI, verified offline by the CLI and by the standalone script."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from callguard.config import load_config
from callguard.wiring import build_ledger
from tests.evidence.support import cli, make_signing_key, write_config
from tests.ledger.support import sample_call

SCRIPT = Path(__file__).parents[2] / "docs" / "verify_bundle.py"


@pytest.fixture
def exported(tmp_path, db_url):
    config = write_config(tmp_path, db_url)
    pub = make_signing_key(config)
    ledger = build_ledger(load_config(str(config)), "asterisk@pbx1", checkpoints=False)
    for i, call_id in enumerate(["call-A", "call-B", "call-C"]):
        for entry in sample_call(call_id, 1_714_567_890.0 + 1000 * i):
            ledger.append(entry, entry.at)
    assert ledger.close(30)
    target = tmp_path / "bundle.zip"
    result = cli(config, "evidence", "export", "call-B", "-o", str(target))
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "14 entries of call call-B" in result.output
    return config, pub, target


def script(bundle: Path, pub: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(bundle), str(pub)], capture_output=True, text=True,
                          timeout=60)


def rewrite_member(source: Path, target: Path, name: str, change) -> Path:
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for item in old.infolist():
            data = old.read(item)
            new.writestr(item, change(data.decode()).encode() if item.filename == name else data)
    return target


def test_bundle_verifies_offline_with_the_cli_and_the_standalone_script(exported):
    config, pub, bundle = exported
    result = cli(config, "evidence", "verify", str(bundle), "--key", str(pub))
    assert result.exit_code == 0, result.output
    assert "VERIFIED call call-B: 14 entries proven in the signed log(s) asterisk@pbx1 (tree size 42)" in result.output
    standalone = script(bundle, pub)
    assert standalone.returncode == 0, standalone.stderr
    assert "VERIFIED: 14 entries of call call-B" in standalone.stdout
    with zipfile.ZipFile(bundle) as archive:
        assert {"README.txt", "manifest.json", "entries.jsonl"} <= set(archive.namelist())
        manifest = json.loads(archive.read("manifest.json"))
    assert manifest["prompts"][0]["sha256"] == "ab" * 32
    assert len(SCRIPT.read_text().splitlines()) <= 70


@pytest.mark.parametrize("name,change,reason", [
    ("entries.jsonl", lambda t: t.replace('"decision": "granted"', '"decision": "declined"', 1),
     "content does not match its hash"),
    ("entries.jsonl", lambda t: re.sub(r'"inclusion_proof": \["(.)',
                                       lambda m: '"inclusion_proof": ["' + ("B" if m.group(1) == "A" else "A"), t,
                                       count=1),
     "not proven to be in the signed log"),
    ("checkpoints/asterisk@pbx1.checkpoint", lambda t: t.replace("\n42\n", "\n43\n"), "altered after signing"),
])
def test_tampered_bundles_fail_with_a_clear_reason(exported, tmp_path, name, change, reason):
    config, pub, bundle = exported
    tampered = rewrite_member(bundle, tmp_path / "tampered.zip", name, change)
    result = cli(config, "evidence", "verify", str(tampered), "--key", str(pub))
    assert result.exit_code == 1
    assert "NOT VERIFIED" in result.output and reason in result.output, result.output
    standalone = script(tampered, pub)
    assert standalone.returncode == 1 and "NOT VERIFIED" in standalone.stderr


def test_a_bundle_checked_with_another_key_fails(exported, tmp_path):
    config, _, bundle = exported
    other = write_config(tmp_path / "elsewhere" if (tmp_path / "elsewhere").mkdir() is None else tmp_path,
                         "sqlite:///unused.sqlite")
    other_pub = make_signing_key(other)
    result = cli(config, "evidence", "verify", str(bundle), "--key", str(other_pub))
    assert result.exit_code == 1 and "no signature from the trusted key" in result.output
    assert script(bundle, other_pub).returncode == 1


def test_export_of_an_unknown_call_says_what_to_do(exported, tmp_path):
    config, _, _ = exported
    result = cli(config, "evidence", "export", "no-such-call", "-o", str(tmp_path / "x.zip"))
    assert result.exit_code == 1 and "ledger calls" in result.output
