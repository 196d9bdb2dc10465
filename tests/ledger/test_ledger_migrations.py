"""A ledger written by the release before migrations is migrated and then verifies.

The fixture ``fixtures/pre_alembic.sqlite`` was written by main's code at
e3f46c5 (see ``fixtures/make_pre_alembic_ledger.py``); for PostgreSQL the
same rows are loaded into that release's schema (``pre_alembic_postgresql.sql``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import MetaData, create_engine, inspect, select, text

from callguard.cli import main
from callguard.core.commands import LedgerEntry
from callguard.evidence import merkle
from callguard.ledger import Ledger, export_entries
from callguard.ledger.schema import head_revision
from callguard.ledger.tree import entry_leaf, tree_head

FIXTURES = Path(__file__).parent / "fixtures"
OLD_SQLITE = FIXTURES / "pre_alembic.sqlite"
CHAINS = ("asterisk@pbx1", "freeswitch@pbx2", "vault@pbx1")


def _load_old(url: str, tmp_path: Path) -> str:
    """The pre-migration ledger in the database behind ``url``."""
    if url.startswith("sqlite"):
        target = tmp_path / "old.sqlite"
        shutil.copy(OLD_SQLITE, target)
        return f"sqlite:///{target}"
    source = create_engine(f"sqlite:///{OLD_SQLITE}")
    old = MetaData()
    old.reflect(source)
    engine = create_engine(url)
    with engine.begin() as connection:
        for statement in (FIXTURES / "pre_alembic_postgresql.sql").read_text().split(";\n"):
            if statement.strip() and not statement.strip().startswith("--"):
                connection.exec_driver_sql(statement)
            elif "CREATE" in statement:
                connection.exec_driver_sql(statement.split("\n", 1)[1])
        with source.connect() as reader:
            for table in old.sorted_tables:
                rows = [dict(r._mapping) for r in reader.execute(select(table))]
                if rows:
                    connection.execute(table.insert(), rows)
    engine.dispose()
    source.dispose()
    return url


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_old_ledger_is_migrated_and_verifies(db_url, tmp_path):
    url = _load_old(db_url, tmp_path)
    refused = run("ledger", "verify", "--db", url)
    assert refused.exit_code == 1
    assert "callguard ledger migrate" in refused.output and "before migrations" in refused.output

    migrated = run("ledger", "migrate", "--db", url)
    assert migrated.exit_code == 0, migrated.output
    assert "upgraded (was no revision" in migrated.output
    assert run("ledger", "migrate", "--db", url).output.count("current") == 1  # idempotent

    verified = run("ledger", "verify", "--db", url)
    assert verified.exit_code == 0, verified.output
    assert "all 3 chain(s) verified" in verified.output

    engine = create_engine(url)
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT version_num FROM alembic_version")) == head_revision()
        assert {"merkle_nodes", "checkpoints", "pii_keys"} <= set(inspect(connection).get_table_names())
        for chain in CHAINS:
            leaves = [entry_leaf(e.hash) for e in export_entries(connection, chain_id=chain)]
            assert leaves, chain
            assert tree_head(connection, chain) == (len(leaves), merkle.root(leaves))
    engine.dispose()

    # The listener carries on writing to its migrated chain.
    ledger = Ledger.open(url, "asterisk@pbx1")
    ledger.append(LedgerEntry("1714567999.9", "call-offered", 1_714_567_999.0, {"channel": "PJSIP/x-1"}),
                  1_714_567_999.0)
    assert ledger.close(timeout=30)
    assert run("ledger", "verify", "--db", url).exit_code == 0
