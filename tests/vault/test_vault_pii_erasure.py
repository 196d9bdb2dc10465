"""Erasure by crypto-shredding: the number is gone from the database file and every export, and
every chain, tree and earlier bundle still verifies."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from click.testing import CliRunner

from callguard.cli import main
from callguard.config import load_config
from callguard.vault import dsar
from callguard.vault.ingest import ingest_file
from callguard.vault.service import Vault
from tests.vault.conftest import ME, T0, call_entries, install_key, spool_copy, write_ledger

SUBJECT = "+442079460123"
OTHER = "+33142685300"


def site(tmp_path: Path) -> Path:
    toml = tmp_path / "callguard.toml"
    users = "\n".join(f'{json.dumps(user)} = "{role}"' for user, role in
                      {ME: "service", "alice": "privacy-officer", "dave": "admin"}.items())
    toml.write_text(f"""[ledger]
url = "sqlite:///{tmp_path / 'callguard.sqlite'}"

[vault]
dir = "{tmp_path / 'vault'}"
private_keys = "{tmp_path / 'private'}"
chunk_kib = 4
bind_os_user = false

[evidence]
signing_key = "{tmp_path / 'ledger-signing.pem'}"

[retention]
qa = 90
dispute = 365
compliance = 2555

[users]
{users}
""")
    return toml


def run(config: Path, *args: str) -> str:
    result = CliRunner().invoke(main, ["--config", str(config), *args])
    assert result.exit_code == 0, result.output
    return result.output


def traces(path: Path, needles: tuple[bytes, ...]) -> list[str]:
    """Files (and zip members) under ``path`` that contain any needle."""
    found = []
    for file in [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()):
        data = file.read_bytes()
        members = [(file.name, data)]
        if zipfile.is_zipfile(file):
            with zipfile.ZipFile(file) as archive:
                members += [(f"{file.name}:{n}", archive.read(n)) for n in archive.namelist()]
        found += [name for name, blob in members if any(n in blob for n in needles)]
    return found


def test_erasure_leaves_no_number_anywhere_and_everything_still_verifies(tmp_path, small_wav):
    config_path = site(tmp_path)
    config = load_config(str(config_path))
    install_key(config)
    write_ledger(config, call_entries("s-qa", SUBJECT, T0) + call_entries("other", OTHER, T0 + 400))
    with Vault.open(config) as vault:
        ingest_file(vault, spool_copy(small_wav, tmp_path / "spool", "callguard-s-qa.wav"), "s-qa", purpose="qa")
    run(config_path, "keys", "generate", "--kind", "ledger-signing", "--no-passphrase")
    pub = str(tmp_path / "ledger-signing.pub")
    run(config_path, "ledger", "checkpoint")
    exports = tmp_path / "exports"
    exports.mkdir()
    old_bundle = exports / "before-erasure.zip"
    assert "1 personal value(s) revealed" not in run(config_path, "evidence", "export", "s-qa", "-o",
                                                     str(old_bundle), "--reveal")
    assert SUBJECT in run(config_path, "ledger", "show", "s-qa")
    old_bundle.rename(tmp_path / "before-erasure.zip")  # it left the building before the request

    needles = (SUBJECT.encode(), SUBJECT[1:].encode(), SUBJECT.encode("utf-16-le"))
    with Vault.open(config) as vault:
        request = dsar.open_request(vault, "alice", SUBJECT, kind="erasure")
        # The grep can see the number: the open request names it, in the database file.
        assert any(traces(p, needles) for p in tmp_path.iterdir() if p.name.startswith("callguard.sqlite"))
        report = dsar.erase(vault, "alice", request.id, "erasure request by letter")
    assert any("crypto-shredding" in item["what"] for item in report["kept"])

    # Everything still verifies: the chains and trees, the checkpoint, the bundle made before.
    assert "all 2 chain(s) verified" in run(config_path, "ledger", "verify", "--key", pub)
    assert "VERIFIED call s-qa" in run(config_path, "evidence", "verify", str(tmp_path / "before-erasure.zip"),
                                       "--key", pub)
    # What is exported now carries no number, and still verifies.
    shown = run(config_path, "ledger", "show", "s-qa")
    assert "[erased]" in shown and SUBJECT not in shown
    (exports / "show.txt").write_text(shown)
    run(config_path, "ledger", "export", "-o", str(exports / "ledger.jsonl"))
    run(config_path, "evidence", "export", "s-qa", "-o", str(exports / "after.zip"), "--reveal")
    assert "VERIFIED call s-qa" in run(config_path, "evidence", "verify", str(exports / "after.zip"), "--key", pub)
    (exports / "calls.txt").write_text(run(config_path, "ledger", "calls"))
    run(config_path, "dsar", "export", str(request.id), "--out", str(exports / "dsar"), "--as", "alice")

    database = [p for p in tmp_path.iterdir() if p.name.startswith("callguard.sqlite")]
    assert database and traces(exports, needles) == []
    for file in database:
        assert traces(file, needles) == [], file
    # The other caller was not erased.
    assert OTHER in run(config_path, "ledger", "show", "other")


def test_retention_sweep_shreds_personal_data_past_its_evidence_retention(tmp_path, small_wav):
    config_path = site(tmp_path)
    text = config_path.read_text().replace("[evidence]\n", "[evidence]\nretention_days = { qa = 30 }\n")
    config_path.write_text(text)
    config = load_config(str(config_path))
    install_key(config)
    write_ledger(config, call_entries("s-qa", SUBJECT, T0) + call_entries("s-dispute", OTHER, T0 + 400))
    with Vault.open(config) as vault:
        ingest_file(vault, spool_copy(small_wav, tmp_path / "spool", "callguard-s-qa.wav"), "s-qa", purpose="qa")
        ingest_file(vault, spool_copy(small_wav, tmp_path / "spool", "callguard-s-dispute.wav"), "s-dispute",
                    purpose="dispute")
    from callguard.vault.retention import sweep

    with Vault.open(config, clock=lambda: T0 + 31 * 86400) as vault:
        report = sweep(vault, "dave", apply=True)
    assert report.evidence_due == ["s-qa"] and report.evidence_keys_shredded >= 1
    assert report.deleted == []  # the recording's own retention (90 days) has not ended
    assert "[erased]" in run(config_path, "ledger", "show", "s-qa")
    assert OTHER in run(config_path, "ledger", "show", "s-dispute")  # dispute evidence: 365 days
    assert "all 2 chain(s) verified" in run(config_path, "ledger", "verify")
    database = [p for p in tmp_path.iterdir() if p.name.startswith("callguard.sqlite")]
    for file in database:
        assert traces(file, (SUBJECT.encode(),)) == []
