"""Append-only tables: the database itself refuses UPDATE and DELETE on evidence.

Defence in depth.  The hash chains (``callguard ledger verify``, the vault's
access-log check) already make an edit *detectable* afterwards; these
triggers make a careless ``UPDATE`` or ``DELETE`` by an admin, a script or
a bug *impossible* in the first place.  Getting past them takes dropping
the trigger, which needs schema (DDL) rights and is a deliberate act; the
chains still expose whatever is changed after that.

:func:`append_only` marks a table: its triggers are created with the table
(any ``create_all``), and :func:`install` adds any that are missing to a
database created before the table was protected (``open_for_writing`` calls
it on every open; every statement is idempotent and cheap when the
triggers exist, and safe when two processes open the database at once).

SQLite gets one ``BEFORE UPDATE`` and one ``BEFORE DELETE`` trigger.
PostgreSQL gets a row trigger for both plus a statement trigger for
``TRUNCATE`` (which skips row triggers), all calling one shared function
that takes the reason as the trigger's argument.  Both raise an integrity
error (SQLite ``RAISE(ABORT)``, PostgreSQL SQLSTATE ``restrict_violation``)
worded ``"<VERB> on <table> refused: <reason>"``.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import DDL, Connection, Table, event
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger("callguard.ledger")

#: The PostgreSQL trigger function (one per schema, shared by every protected table).
PG_FUNCTION = "callguard_refuse_change"

#: Protected tables: name -> the reason given when a change is refused.
_PROTECTED: dict[str, str] = {}


def _literal(text: str) -> str:
    """``text`` as an SQL string literal (inside DDL, which %-formats its statement)."""
    return "'" + text.replace("'", "''").replace("%", "%%") + "'"


def _sqlite(table: str, reason: str) -> list[str]:
    return [f"CREATE TRIGGER IF NOT EXISTS {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, {_literal(f'{verb} on {table} refused: {reason}')}); END"
            for verb in ("UPDATE", "DELETE")]


def _pg_function() -> str:
    # Created only when missing (no catalog write, no lock on a normal open); a
    # concurrent opener that wins the race makes ours a harmless duplicate.
    return (
        "DO $cg$ BEGIN "
        f"IF to_regprocedure('{PG_FUNCTION}()') IS NULL THEN "
        f"CREATE FUNCTION {PG_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $fn$ BEGIN "
        "RAISE EXCEPTION USING ERRCODE = 'restrict_violation', MESSAGE = "
        "TG_OP || ' on ' || TG_TABLE_NAME || ' refused: ' || coalesce(TG_ARGV[0], 'the table is append-only'); "
        "END $fn$; "
        "END IF; "
        "EXCEPTION WHEN duplicate_function OR unique_violation THEN NULL; "
        "END $cg$"
    )


def _pg_trigger(table: str, name: str, when: str, reason: str) -> str:
    return (
        "DO $cg$ BEGIN "
        f"IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = '{table}'::regclass AND tgname = '{name}') THEN "
        f"CREATE TRIGGER {name} {when} EXECUTE FUNCTION {PG_FUNCTION}({_literal(reason)}); "
        "END IF; "
        "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; "
        "END $cg$"
    )


def _postgresql(table: str, reason: str) -> list[str]:
    return [
        _pg_function(),
        _pg_trigger(table, f"{table}_append_only", f"BEFORE UPDATE OR DELETE ON {table} FOR EACH ROW", reason),
        # TRUNCATE skips row triggers: it needs a statement trigger of its own.
        _pg_trigger(table, f"{table}_no_truncate", f"BEFORE TRUNCATE ON {table} FOR EACH STATEMENT", reason),
    ]


_DIALECTS = {"sqlite": _sqlite, "postgresql": _postgresql}


def _protect(connection: Connection, table: str, reason: str) -> None:
    build = _DIALECTS.get(connection.dialect.name)
    if build is None:
        log.warning("%s: no append-only triggers for %s databases; the hash chain still detects edits",
                    table, connection.dialect.name)
        return
    for statement in build(table, reason):
        connection.execute(DDL(statement))


def append_only(table: Table, reason: str) -> None:
    """Make ``table`` refuse UPDATE and DELETE, saying ``reason`` (why it is evidence).

    ``reason`` completes "<VERB> on <table> refused: ..."; say what the rows
    are and what to do instead.
    """
    _PROTECTED[table.name] = reason

    def _after_create(target: Table, connection: Connection, **_: Any) -> None:
        _protect(connection, target.name, reason)

    event.listen(table, "after_create", _after_create)


def install(connection: Connection) -> None:
    """Add missing triggers to every protected table of an existing schema (call after ``create_all``).

    An account without the right to create triggers (a least-privilege
    PostgreSQL role on a database created by an older release) gets a
    warning naming the table, not a failed start: the listener must keep
    writing evidence, and the chain still detects edits.
    """
    for table, reason in _PROTECTED.items():
        savepoint = connection.begin_nested()
        try:
            _protect(connection, table, reason)
        except SQLAlchemyError as exc:
            savepoint.rollback()
            log.warning("%s is not protected against UPDATE/DELETE: creating its append-only trigger "
                        "failed (%s); have the schema owner open the database once with callguard",
                        table, str(getattr(exc, "orig", exc)).strip().splitlines()[0])
        else:
            savepoint.commit()


__all__ = ["PG_FUNCTION", "append_only", "install"]
