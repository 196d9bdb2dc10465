"""Opening the ledger database: engines, SQLite settings, friendly errors.

SQLite is the single-box default and gets the settings that make a commit
mean "on disk": WAL (readers never block the writer), ``synchronous=FULL``
(a commit survives power loss, not just a process crash) and a busy timeout
(several listeners may share one file, each with its own chain).  We take
over pysqlite's transaction handling (the documented SQLAlchemy recipe) so
that a writer's transaction starts with ``BEGIN IMMEDIATE``: it takes the
write lock up front and waits for it, instead of failing half way through a
batch when another process wrote in between.

Readers (``callguard ledger verify/show/export``) must never create an empty
database by accident, so :func:`open_for_reading` refuses a missing SQLite
file and a database without the ledger tables.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from callguard.ledger.append_only import install as install_append_only
from callguard.ledger.handle import LedgerError
from callguard.ledger.models import LedgerEntryRecord
from callguard.ledger.schema import current_revision, head_revision
from callguard.ledger.schema import upgrade as migrate

DEFAULT_BUSY_TIMEOUT_MS = 5000


def describe_url(url: str | URL) -> str:
    """The URL for messages, with any password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return str(url)


def error_text(exc: BaseException) -> str:
    """The first line of the driver's message, without SQLAlchemy's SQL dump."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _parse(url: str | URL) -> URL:
    try:
        return make_url(url)
    except ArgumentError as exc:
        raise LedgerError(f"{url!r} is not a database URL ({exc}); "
                          "use e.g. sqlite:///callguard.sqlite or postgresql+psycopg://user@host/db") from None


def sqlite_path(url: URL) -> Path | None:
    """The file behind a SQLite URL; None for in-memory or non-SQLite URLs."""
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def _install_sqlite_settings(engine: Engine, *, writer: bool, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below emit BEGIN, not pysqlite.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            if writer:
                cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = FULL")
            cursor.execute("PRAGMA foreign_keys = ON")
            # Deleted content (crypto-shredded keys, erased numbers) is zeroed, not left in free pages.
            cursor.execute("PRAGMA secure_delete = ON")
        finally:
            cursor.close()

    begin = "BEGIN IMMEDIATE" if writer else "BEGIN"

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)


def make_engine(url: str | URL, *, writer: bool = False,
                busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS) -> Engine:
    """An engine with the ledger's connection settings (no connection made yet)."""
    parsed = _parse(url)
    if parsed.get_backend_name() == "sqlite" and sqlite_path(parsed) is None:
        raise LedgerError(f"{describe_url(parsed)}: an in-memory SQLite ledger is lost on exit and "
                          "cannot be shared with the writer thread; use a file, e.g. sqlite:///callguard.sqlite")
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() != "sqlite":
        # A PostgreSQL restart must not wedge the writer on dead connections.
        kwargs["pool_pre_ping"] = True
    try:
        engine = create_engine(parsed, **kwargs)
    except (NoSuchModuleError, ImportError) as exc:
        raise LedgerError(f"{describe_url(parsed)}: database driver not available ({exc}); "
                          "for PostgreSQL install callguard[postgres] and use postgresql+psycopg://") from None
    except (ArgumentError, SQLAlchemyError, TypeError, ValueError) as exc:
        raise LedgerError(f"{describe_url(parsed)}: cannot use this database URL: {error_text(exc)}") from None
    if parsed.get_backend_name() == "sqlite":
        _install_sqlite_settings(engine, writer=writer, busy_timeout_ms=busy_timeout_ms)
    return engine


def open_for_writing(url: str | URL, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS) -> Engine:
    """An engine for the writer; creates or migrates the schema (:mod:`callguard.ledger.schema`).

    The append-only triggers are (re)installed too, so a database created
    before a table was protected gets its triggers on the next open.
    """
    parsed = _parse(url)
    path = sqlite_path(parsed)
    if path is not None and not path.parent.exists():
        raise LedgerError(f"{describe_url(parsed)}: directory {str(path.parent)!r} does not exist; "
                          "create it or point [ledger] url elsewhere")
    engine = make_engine(parsed, writer=True, busy_timeout_ms=busy_timeout_ms)
    try:
        with engine.begin() as connection:
            migrate(connection)
            install_append_only(connection)
    except SQLAlchemyError as exc:
        engine.dispose()
        raise LedgerError(f"cannot open ledger {describe_url(parsed)}: {error_text(exc)}") from None
    return engine


def open_for_reading(url: str | URL, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS) -> Engine:
    """An engine on an existing ledger; never creates a file or a table."""
    parsed = _parse(url)
    path = sqlite_path(parsed)
    if path is not None and not path.is_file():
        raise LedgerError(f"ledger database {str(path)!r} does not exist "
                          f"(URL {describe_url(parsed)}); check [ledger] url or pass --db URL")
    engine = make_engine(parsed, writer=False, busy_timeout_ms=busy_timeout_ms)
    try:
        with engine.connect() as connection:
            present = inspect(connection).has_table(LedgerEntryRecord.__tablename__)
    except SQLAlchemyError as exc:
        engine.dispose()
        raise LedgerError(f"cannot open ledger {describe_url(parsed)}: {error_text(exc)}") from None
    if not present:
        engine.dispose()
        raise LedgerError(f"{describe_url(parsed)} is not a callguard ledger "
                          f"(no {LedgerEntryRecord.__tablename__} table); check [ledger] url or --db")
    try:
        with engine.connect() as connection:
            revision = current_revision(connection)
    except SQLAlchemyError as exc:
        engine.dispose()
        raise LedgerError(f"cannot open ledger {describe_url(parsed)}: {error_text(exc)}") from None
    if revision != head_revision():
        engine.dispose()
        found = f"schema revision {revision}" if revision else "a schema from before migrations (callguard < 0.2)"
        raise LedgerError(f"{describe_url(parsed)} has {found}; this callguard needs revision {head_revision()}. "
                          "Run `callguard ledger migrate` once (back the database up first), or start the "
                          "listener, which migrates on start")
    return engine


def probe_ledger(url: str | URL) -> str:
    """Open the ledger database as the listener will, without creating or changing anything.

    For ``run <pbx> --check``: a missing SQLite file is fine if its directory
    is writable (the listener creates it); an empty database or an older
    schema is fine too (the listener creates or migrates the tables).  What
    would stop the listener (unreachable server, wrong credentials, a
    directory that does not exist) raises :class:`LedgerError`.
    """
    parsed = _parse(url)
    path = sqlite_path(parsed)
    if path is not None and not path.is_file():
        directory = path.absolute().parent
        if not directory.is_dir():
            raise LedgerError(f"the directory of ledger database {str(path.absolute())!r} does not exist; "
                              f"create it or fix [ledger] url")
        if not os.access(directory, os.W_OK | os.X_OK):
            raise LedgerError(f"cannot create ledger database {str(path.absolute())!r}: {directory} is not "
                              f"writable by this user")
        return f"ledger {path.absolute()} does not exist yet; the listener will create it"
    engine = make_engine(parsed, writer=False)
    try:
        with engine.connect() as connection:
            present = inspect(connection).has_table(LedgerEntryRecord.__tablename__)
            revision = current_revision(connection) if present else None
    except SQLAlchemyError as exc:
        raise LedgerError(f"cannot open ledger {describe_url(parsed)}: {error_text(exc)}") from None
    finally:
        engine.dispose()
    if not present:
        return f"ledger {describe_url(parsed)} reachable, empty; the listener will create its tables"
    if revision != head_revision():
        return f"ledger {describe_url(parsed)} opened; the listener will migrate it to revision {head_revision()}"
    return f"ledger {describe_url(parsed)} opened (schema revision {revision})"


def migrate_database(url: str | URL, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS) -> tuple[str | None, str]:
    """Migrate an existing ledger to the current schema: (revision before, what was done)."""
    parsed = _parse(url)
    path = sqlite_path(parsed)
    if path is not None and not path.is_file():
        raise LedgerError(f"ledger database {str(path)!r} does not exist (URL {describe_url(parsed)})")
    engine = make_engine(parsed, writer=True, busy_timeout_ms=busy_timeout_ms)
    try:
        with engine.begin() as connection:
            before = current_revision(connection)
            done = migrate(connection)
            install_append_only(connection)
        return before, done
    except SQLAlchemyError as exc:
        raise LedgerError(f"migrating {describe_url(parsed)} failed (nothing was changed): {error_text(exc)}") from None
    finally:
        engine.dispose()


__all__ = [
    "LedgerError",
    "describe_url",
    "error_text",
    "make_engine",
    "migrate_database",
    "open_for_reading",
    "open_for_writing",
    "sqlite_path",
]
