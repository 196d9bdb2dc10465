"""Schema migrations: every writer open brings the database to the current schema.

Three cases, decided under a lock (SQLite's ``BEGIN IMMEDIATE``, a
PostgreSQL advisory lock) so two processes opening at once cannot race:

* an empty database: ``create_all`` and stamp the newest revision (the
  Alembic cookbook's "building an up-to-date database from scratch");
* ledger tables but no ``alembic_version``: a database made before Alembic;
  stamp the baseline ``0001`` and upgrade from there;
* otherwise: ``alembic upgrade head``.

Then ``create_all`` adds any table that is on ``Base`` but in no migration
yet (purely additive; changes to existing tables need a migration in
``ledger/migrations/versions``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text

from callguard.ledger.models import Base, LedgerEntryRecord

MIGRATIONS = Path(__file__).parent / "migrations"
BASELINE = "0001"
#: Any constant: the key of the PostgreSQL advisory lock held while migrating.
PG_LOCK = 0x63_67_6C_67  # "cglg"


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(connection: Connection) -> str:
    """Bring the schema to head inside the caller's transaction; returns what was done."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCK})
    config = alembic_config(connection)
    inspector = inspect(connection)
    has_ledger = inspector.has_table(LedgerEntryRecord.__tablename__)
    has_version = inspector.has_table("alembic_version")
    if not has_ledger and not has_version:
        Base.metadata.create_all(connection)
        command.stamp(config, "head")
        return "created"
    done = "current"
    if not has_version:
        command.stamp(config, BASELINE)
    if current_revision(connection) != head_revision():
        command.upgrade(config, "head")
        done = "upgraded"
    Base.metadata.create_all(connection)
    return done


def main(argv: list[str] | None = None) -> None:
    """Developers only: ``python -m callguard.ledger.schema revision -m MESSAGE --db URL``."""
    import argparse

    from callguard.ledger.db import make_engine

    parser = argparse.ArgumentParser(prog="python -m callguard.ledger.schema")
    parser.add_argument("action", choices=["revision", "current", "upgrade"])
    parser.add_argument("-m", "--message", default="")
    parser.add_argument("--db", required=True)
    args = parser.parse_args(argv)
    engine = make_engine(args.db, writer=True)
    with engine.begin() as connection:
        if args.action == "upgrade":
            print(upgrade(connection))
        elif args.action == "current":
            print(current_revision(connection))
        else:
            command.revision(alembic_config(connection), message=args.message, autogenerate=True)
    engine.dispose()


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
