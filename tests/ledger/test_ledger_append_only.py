"""The database itself refuses UPDATE and DELETE on ledger entries: defence in depth before verify.

``verify`` detects an edit afterwards (test_ledger_verify.py, where the
tamperer drops the triggers first); these tests show that a careless
admin's or a bug's plain UPDATE/DELETE never gets that far, while the
writer (which only inserts entries and moves the head and call index)
carries on.
"""

from __future__ import annotations

import logging
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from callguard.ledger import Ledger, verify
from tests.ledger.support import T0, drop_append_only, execute, sample_call, scalar

CHAIN = "asterisk@pbx1"
N = len(sample_call())
REFUSED = "on ledger_entries refused: ledger entries are append-only evidence"


def write_call(ledger: Ledger, call_id: str, t0: float = T0) -> None:
    for entry in sample_call(call_id, t0):
        ledger.append(entry, entry.at + 0.001)
    assert ledger.flush(10)


@contextmanager
def opened(url: str, chain_id: str = CHAIN) -> Iterator[Ledger]:
    """A ledger on one explicit backend (the tests below are not run on both)."""
    ledger = Ledger.open(url, chain_id, batch_wait_ms=1.0)
    try:
        yield ledger
    finally:
        assert ledger.close(timeout=10)


def stored(engine) -> list[tuple]:
    with engine.connect() as connection:
        return [tuple(r) for r in connection.execute(text("SELECT * FROM ledger_entries ORDER BY chain_id, seq"))]


def triggers(engine) -> set[str]:
    sql = ("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'ledger_entries'"
           if engine.dialect.name == "sqlite" else
           "SELECT tgname FROM pg_trigger WHERE tgrelid = 'ledger_entries'::regclass AND NOT tgisinternal")
    with engine.connect() as connection:
        return set(connection.execute(text(sql)).scalars())


def test_plain_update_and_delete_are_refused_and_the_writer_carries_on(open_ledger, raw_engine):
    ledger = open_ledger(CHAIN)
    write_call(ledger, "call-A")
    before = stored(raw_engine)
    attempts = [("UPDATE", "UPDATE ledger_entries SET data = '{\"decision\":\"declined\"}' WHERE seq = 5"),
                ("UPDATE", "UPDATE ledger_entries SET seq = seq + 100"),
                ("DELETE", "DELETE FROM ledger_entries WHERE seq = 6"),
                ("DELETE", "DELETE FROM ledger_entries")]
    if raw_engine.dialect.name == "postgresql":
        attempts.append(("TRUNCATE", "TRUNCATE ledger_entries"))  # skips row triggers: has its own
    for verb, sql in attempts:
        with pytest.raises(IntegrityError, match=f"{verb} {REFUSED}.*new entry"):
            execute(raw_engine, sql)
    assert stored(raw_engine) == before
    # Only the entries are append-only: the writer still moves the chain head and the call index.
    write_call(ledger, "call-B", T0 + 600)
    report = verify(raw_engine)
    assert report.ok and report.chains[0].entries == report.chains[0].head_seq == 2 * N
    assert scalar(raw_engine, "SELECT count(*) FROM calls") == 2


def test_an_admin_at_the_sqlite_prompt_is_refused(sqlite_url):
    """Not through SQLAlchemy at all: the refusal lives in the database file."""
    with opened(sqlite_url) as ledger:
        write_call(ledger, "call-A")
    connection = sqlite3.connect(make_url(sqlite_url).database)
    try:
        with pytest.raises(sqlite3.IntegrityError, match=f"UPDATE {REFUSED}"):
            connection.execute("UPDATE ledger_entries SET kind = 'consent' WHERE seq = 1")
        with pytest.raises(sqlite3.IntegrityError, match=f"DELETE {REFUSED}"):
            connection.execute("DELETE FROM ledger_entries WHERE seq = 1")
        connection.rollback()
        assert connection.execute("SELECT count(*) FROM ledger_entries").fetchone() == (N,)
    finally:
        connection.close()


def test_a_database_without_the_triggers_gets_them_on_open(open_ledger, raw_engine):
    """A ledger created by an older release (no triggers) is protected from its next open on."""
    first = open_ledger(CHAIN)
    write_call(first, "call-A")
    protected = triggers(raw_engine)
    assert protected == ({"ledger_entries_no_update", "ledger_entries_no_delete"}
                         if raw_engine.dialect.name == "sqlite"
                         else {"ledger_entries_append_only", "ledger_entries_no_truncate"})
    drop_append_only(raw_engine)
    assert triggers(raw_engine) == set()
    assert first.close(timeout=10)
    reopened = open_ledger(CHAIN)
    open_ledger("freeswitch@pbx2")  # opening again changes nothing
    assert triggers(raw_engine) == protected
    with pytest.raises(IntegrityError, match=f"DELETE {REFUSED}"):
        execute(raw_engine, "DELETE FROM ledger_entries WHERE seq = 3")
    write_call(reopened, "call-B", T0 + 600)
    assert verify(raw_engine).ok


@pytest.mark.postgres
def test_a_role_without_ddl_rights_starts_with_a_warning(pg_url, caplog):
    """Least privilege on an old database: the listener keeps writing evidence, the log says what is missing."""
    admin = create_engine(pg_url)
    role, password = f"cg_dml_{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
    try:
        with admin.begin() as connection:
            schema = connection.execute(text("SELECT current_schema()")).scalar()
            connection.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'"))
    except Exception as exc:  # noqa: BLE001 - any refusal means this server cannot run the test
        admin.dispose()
        pytest.skip(f"cannot create a PostgreSQL role here: {exc}")
    try:
        with opened(pg_url) as ledger:
            write_call(ledger, "call-A")
        drop_append_only(admin)  # as if the database predates the triggers
        with admin.begin() as connection:
            connection.execute(text(f'GRANT USAGE ON SCHEMA "{schema}" TO {role}'))
            connection.execute(text(f'GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA "{schema}" TO {role}'))
            connection.execute(text(f'GRANT USAGE ON ALL SEQUENCES IN SCHEMA "{schema}" TO {role}'))
        limited = make_url(pg_url).set(username=role, password=password).render_as_string(hide_password=False)
        with caplog.at_level(logging.WARNING, logger="callguard.ledger"), opened(limited, "fs@pbx2") as ledger:
            assert any("ledger_entries is not protected against UPDATE/DELETE" in r.getMessage()
                       and "schema owner" in r.getMessage() for r in caplog.records), caplog.text
            write_call(ledger, "call-B", T0 + 600)
        assert verify(admin).ok and triggers(admin) == set()
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP OWNED BY {role}"))
            connection.execute(text(f"DROP ROLE {role}"))
        admin.dispose()
