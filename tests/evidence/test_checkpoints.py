"""Signed checkpoints from the running listener's ledger, witnesses, and a rewritten history caught."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from callguard.config import load_config
from callguard.evidence.note import open_checkpoint
from callguard.evidence.signing import load_verifier
from callguard.evidence.witness import read_directory
from callguard.testing.witness import FakeWitness, self_signed
from callguard.wiring import build_ledger
from tests.evidence.support import ORIGIN, cli, flip_consent, make_signing_key, rewrite_chain, write_config
from tests.ledger.support import sample_call

CHAIN = "asterisk@pbx1"


def wait_for(condition, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _append_calls(ledger, names: list[str]) -> None:
    for i, call_id in enumerate(names):
        for entry in sample_call(call_id, 1_714_567_890.0 + 1000 * i):
            ledger.append(entry, entry.at)


@pytest.fixture
def site(tmp_path, db_url):
    config = write_config(tmp_path, db_url, checkpoint_interval_s=1.0)
    pub = make_signing_key(config)
    return config, pub, tmp_path / "witness"


def test_listener_signs_on_its_interval_and_at_shutdown_and_witness_copies_verify(site):
    config, pub, witness = site
    ledger = build_ledger(load_config(str(config)), CHAIN)  # what `callguard run` opens
    _append_calls(ledger, ["call-A"])
    assert ledger.flush(30)
    first = wait_for(lambda: read_directory(witness), what="a checkpoint from the interval timer")
    _append_calls(ledger, ["call-B"])
    assert ledger.close(30)
    verifier = load_verifier(pub)
    published = [open_checkpoint(note, verifier) for _, note in read_directory(witness)]
    total = ledger.committed_seq
    assert published[-1].origin == f"{ORIGIN}/{CHAIN}" and published[-1].size == total
    assert published[-1].root_hash == ledger.tree_head[1]
    assert first[0][1].startswith(f"{ORIGIN}/{CHAIN}\n")

    result = cli(config, "ledger", "verify", "--witness", str(witness), "--key", str(pub))
    assert result.exit_code == 0, result.output
    assert "checkpoint(s) matched" in result.output and "all 1 chain(s) verified" in result.output
    old = sorted(witness.rglob("*.checkpoint"))[0]
    result = cli(config, "ledger", "consistency", str(old), "--key", str(pub))
    assert result.exit_code == 0 and "consistent:" in result.output, result.output


def test_full_chain_rewrite_passes_the_chain_but_not_the_published_checkpoint(site, db_url):
    config, pub, witness = site
    ledger = build_ledger(load_config(str(config)), CHAIN)
    _append_calls(ledger, ["call-A", "call-B"])
    assert ledger.close(30)
    assert read_directory(witness)

    rewrite_chain(db_url, CHAIN, flip_consent)

    alone = cli(config, "ledger", "verify")
    assert alone.exit_code == 0, alone.output  # every hash recomputed: the chain alone cannot tell
    caught = cli(config, "ledger", "verify", "--witness", str(witness), "--key", str(pub))
    assert caught.exit_code == 1
    assert "does not match published checkpoint" in caught.output and "rewritten" in caught.output
    published = sorted(witness.rglob("*.checkpoint"))[-1]
    inconsistent = cli(config, "ledger", "consistency", str(published), "--key", str(pub))
    assert inconsistent.exit_code == 1
    assert "INCONSISTENT" in inconsistent.output and "rewritten" in inconsistent.output


def test_https_witness_cosigns_growth_and_refuses_a_rewrite(tmp_path, db_url):
    ca, cert, key = self_signed(tmp_path)
    config = write_config(tmp_path, db_url)
    pub = make_signing_key(config)
    with FakeWitness({f"{ORIGIN}/{CHAIN}": load_verifier(pub)}, cert, key) as witness:
        config = write_config(tmp_path, db_url, witness_urls=[witness.url], witness_ca_file=str(ca))
        ledger = build_ledger(load_config(str(config)), CHAIN, checkpoints=False)
        _append_calls(ledger, ["call-A"])
        assert ledger.close(30)
        first = cli(config, "ledger", "checkpoint")
        assert first.exit_code == 0, first.output
        assert f"{witness.url}: cosigned \u2014 witness.test/w1 " in first.output

        ledger = build_ledger(load_config(str(config)), CHAIN, checkpoints=False)
        _append_calls(ledger, ["call-B"])
        assert ledger.close(30)
        grown = cli(config, "ledger", "checkpoint")  # a new process: learns the witness's size from a 409
        assert grown.exit_code == 0, grown.output
        assert witness.latest[f"{ORIGIN}/{CHAIN}"].size == 28
        assert [status for status, _ in witness.requests] == [200, 409, 200]

        rewrite_chain(db_url, CHAIN, flip_consent)
        ledger = build_ledger(load_config(str(config)), CHAIN, checkpoints=False)
        _append_calls(ledger, ["call-C"])
        assert ledger.close(30)
        refused = cli(config, "ledger", "checkpoint")
        assert refused.exit_code == 1
        assert "HTTP 422" in refused.output and "rewritten" in refused.output
        assert witness.latest[f"{ORIGIN}/{CHAIN}"].size == 28  # the witness kept the honest history


def test_untrusted_or_missing_key_is_a_clear_error(tmp_path, db_url):
    config = write_config(tmp_path, db_url)
    result = cli(config, "ledger", "checkpoint")
    assert result.exit_code == 1 and "keys generate --kind ledger-signing" in result.output
    pub = make_signing_key(config)
    again = cli(config, "keys", "generate", "--kind", "ledger-signing", "--no-passphrase")
    assert again.exit_code == 1 and "already exists" in again.output
    assert Path(pub).read_text().startswith(f"{ORIGIN}/ledger+")
