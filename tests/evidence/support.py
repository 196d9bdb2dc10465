"""Helpers for the evidence tests: a site's config with a signing key, and a whole-chain rewrite."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from sqlalchemy import Engine, create_engine, select, text

from callguard.cli import main
from callguard.ledger.chain import GENESIS_HASH, encode_data, entry_hash
from callguard.ledger.models import LedgerEntryRecord
from callguard.ledger.tree import catch_up
from tests.ledger.support import drop_append_only

ORIGIN = "callguard.test"


def write_config(directory: Path, db_url: str, **evidence: Any) -> Path:
    """A callguard.toml for a site under ``directory`` (ledger, vault, signing key, witness dir)."""
    settings = {"signing_key": str(directory / "keys" / "ledger-signing.pem"), "origin": ORIGIN,
                "witness_dir": str(directory / "witness"), "checkpoint_interval_s": 60.0, **evidence}
    lines = ["[ledger]", f"url = {json.dumps(db_url)}", "", "[vault]", f"dir = {json.dumps(str(directory / 'vault'))}",
             "", "[evidence]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    path = directory / "callguard.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def cli(config: Path, *args: str):
    return CliRunner().invoke(main, ["--config", str(config), *args])


def make_signing_key(config: Path) -> Path:
    result = cli(config, "keys", "generate", "--kind", "ledger-signing", "--no-passphrase")
    assert result.exit_code == 0, result.output
    return config.parent / "keys" / "ledger-signing.pub"


def rewrite_chain(url: str, chain_id: str, change: Callable[[str, dict], dict]) -> None:
    """Rewrite every entry of a chain as an insider with DDL rights would, recomputing every hash.

    Entries, chain head, Merkle nodes and tree head all end up consistent
    with each other, and the chain's stored checkpoints are deleted: only a
    checkpoint published elsewhere can reveal it.
    """
    engine: Engine = create_engine(url)
    for table in ("ledger_entries", "merkle_nodes", "checkpoints"):
        drop_append_only(engine, table)
    e = LedgerEntryRecord.__table__
    with engine.begin() as connection:
        rows = connection.execute(select(e).where(e.c.chain_id == chain_id).order_by(e.c.seq)).all()
        connection.execute(text("DELETE FROM ledger_entries WHERE chain_id = :c"), {"c": chain_id})
        connection.execute(text("DELETE FROM merkle_nodes WHERE chain_id = :c"), {"c": chain_id})
        connection.execute(text("DELETE FROM checkpoint_publications WHERE checkpoint_id IN "
                                "(SELECT id FROM checkpoints WHERE chain_id = :c)"), {"c": chain_id})
        connection.execute(text("DELETE FROM checkpoints WHERE chain_id = :c"), {"c": chain_id})
        prev = GENESIS_HASH
        for row in rows:
            data = json.loads(encode_data(change(row.kind, json.loads(row.data))))
            fields = {"chain_id": chain_id, "seq": row.seq, "call_id": row.call_id, "kind": row.kind,
                      "pbx_time_us": row.pbx_time_us, "received_at_us": row.received_at_us, "prev_hash": prev}
            digest = entry_hash(data=data, **fields)
            connection.execute(e.insert().values(**fields, data=encode_data(data), hash=digest))
            prev = digest
        connection.execute(text("UPDATE chain_heads SET last_hash = :h, tree_size = NULL, tree_root = NULL "
                                "WHERE chain_id = :c"), {"h": prev, "c": chain_id})
        catch_up(connection, chain_id)
    engine.dispose()


def flip_consent(kind: str, data: dict) -> dict:
    """The rewrite a dispute would tempt: the caller's consent decision changed."""
    if kind == "consent" and data.get("decision") in ("granted", "declined"):
        return {**data, "decision": "declined" if data["decision"] == "granted" else "granted"}
    return data
