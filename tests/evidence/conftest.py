"""The evidence tests use the ledger's database fixtures (SQLite file, PostgreSQL schema)."""

from tests.ledger.conftest import db_url, pg_url, raw_engine, sqlite_url  # noqa: F401
