"""``callguard ledger``: verify the hash chains, show a call's timeline, export.

Every command only reads: a missing SQLite file or a database without the
ledger tables is an error, never a reason to create one.  The database is
``--db URL`` or ``[ledger] url`` from the config.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import click
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from callguard.cli.common import get_config
from callguard.ledger import (
    LedgerError,
    StoredEntry,
    calls_by_number,
    export_entries,
    get_call,
    open_for_reading,
    recent_calls,
    timeline,
    verify,
)
from callguard.ledger.db import describe_url, error_text
from callguard.ledger.models import Call
from callguard.timeline import describe

EXPORT_FORMATS = ("jsonl",)

def db_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--db", "db_url", metavar="URL", default=None,
                        help="Ledger database URL (default: [ledger] url from the config).")(command)


@contextmanager
def _reading(ctx: click.Context, db_url: str | None) -> Iterator[Engine]:
    """An engine on an existing ledger; database errors become clear messages."""
    url = db_url or get_config(ctx).ledger.url
    try:
        engine = open_for_reading(url)
    except LedgerError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        yield engine
    except SQLAlchemyError as exc:
        raise click.ClickException(f"reading ledger {describe_url(url)} failed: {error_text(exc)}") from None
    finally:
        engine.dispose()


def _clean(value: object) -> str:
    """Caller-controlled text made safe for a terminal (no control characters)."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def fmt_time(epoch: float | None) -> str:
    """UTC with milliseconds: evidence must not depend on the reader's timezone."""
    if epoch is None:
        return "-"
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def facts(kind: str, data: Any) -> str:
    """The key facts of one entry on one line (the wording ``simulate`` uses too)."""
    if not isinstance(data, Mapping):
        return _clean(f"data: {data}")
    try:
        return _clean(describe(kind, data))
    except Exception:  # noqa: BLE001 - damaged data must still be shown, `verify` names it
        return _clean(f"{kind}: {json.dumps(data, ensure_ascii=False, default=str)}")


def _answered_at(call: Call | None, entries: list[StoredEntry]) -> float | None:
    if call is not None and call.answered_at is not None:
        return call.answered_at
    for entry in entries:
        if isinstance(entry.data, Mapping):
            offset = entry.data.get("offset_s")
            if isinstance(offset, (int, float)) and not isinstance(offset, bool):
                return entry.pbx_time - offset
    return None


@click.group("ledger")
def ledger_group() -> None:
    """Verify, show and export the evidence ledger."""


@ledger_group.command("verify")
@click.option("--chain", "chain_id", default=None, help="Verify only this chain (default: every chain).")
@db_option
@click.pass_context
def verify_cmd(ctx: click.Context, chain_id: str | None, db_url: str | None) -> None:
    """Check every hash chain; exit 1 and name each bad entry if tampered.

    Keep the printed head hashes somewhere else (a ticket, a notebook): a
    later run that shows a different hash for the same seq proves a
    rewrite that the chain alone cannot reveal.
    """
    with _reading(ctx, db_url) as engine:
        report = verify(engine, chain_id)
        where = describe_url(engine.url)
    if chain_id is not None and report.chains and report.chains[0].entries == 0 \
            and report.chains[0].head_seq is None:
        raise click.ClickException(f"no chain {chain_id!r} in {where}; run without --chain to list chains")
    if not report.chains:
        click.echo(f"{where}: no ledger entries yet; nothing to verify")
        return
    for chain in report.chains:
        status = "OK" if chain.ok else f"{chain.problem_count} PROBLEM(S)"
        head = f"head seq {chain.head_seq} {chain.head_hash}" if chain.head_seq is not None else "no head"
        click.echo(f"chain {chain.chain_id!r}: {chain.entries} entries, {head}: {status}")
        for problem in chain.problems:
            click.echo(f"  {problem}")
        if chain.problem_count > len(chain.problems):
            click.echo(f"  ... and {chain.problem_count - len(chain.problems)} more")
    if not report.ok:
        bad = [c for c in report.chains if not c.ok]
        total = sum(c.problem_count for c in bad)
        raise click.ClickException(f"ledger verification FAILED: {total} problem(s) in {len(bad)} of "
                                   f"{len(report.chains)} chain(s) of {where}")
    click.echo(f"all {len(report.chains)} chain(s) verified")


@ledger_group.command("migrate")
@db_option
@click.pass_context
def migrate_cmd(ctx: click.Context, db_url: str | None) -> None:
    """Bring the ledger database to this release's schema (idempotent; back it up first).

    Entries are never rewritten: the migration adds tables and columns and
    builds each chain's Merkle tree from the entries as they are.
    """
    from callguard.ledger.db import migrate_database

    url = db_url or get_config(ctx).ledger.url
    try:
        before, done = migrate_database(url)
    except LedgerError as exc:
        raise click.ClickException(str(exc)) from None
    was = f"revision {before}" if before else "no revision (made before migrations)"
    click.echo(f"{describe_url(url)}: {done} (was {was}); run `callguard ledger verify` to check it")


@ledger_group.command("show")
@click.argument("call_id")
@db_option
@click.pass_context
def show_cmd(ctx: click.Context, call_id: str, db_url: str | None) -> None:
    """Print the evidence timeline of CALL_ID."""
    with _reading(ctx, db_url) as engine:
        entries = timeline(engine, call_id)
        with Session(engine) as session:
            call = get_call(session, call_id)
            if not entries:
                raise click.ClickException(
                    f"no ledger entries for call {_clean(call_id)!r} in {describe_url(engine.url)}; "
                    "`callguard ledger calls` lists recent calls")
            answered = _answered_at(call, entries)
            _print_call_header(call_id, call, entries, answered)
    click.echo("")
    click.echo(f"  {'time (UTC)':<24}  {'from answer':>11}  {'seq':>5}  {'kind':<19}  facts")
    for entry in entries:
        offset = "" if answered is None else f"{entry.pbx_time - answered:+.3f}s"
        click.echo(f"  {fmt_time(entry.pbx_time):<24}  {offset:>11}  {entry.seq:>5}  {entry.kind:<19}  "
                   f"{facts(entry.kind, entry.data)}")


def _print_call_header(call_id: str, call: Call | None, entries: list[StoredEntry],
                       answered: float | None) -> None:
    chains = sorted({e.chain_id for e in entries})
    click.echo(f"call {_clean(call_id)}  (chain {', '.join(map(_clean, chains))}, {len(entries)} entries)")
    click.echo(f"  first seen   {fmt_time(entries[0].pbx_time)}")
    click.echo(f"  answered     {fmt_time(answered)}")
    if call is None:
        return
    click.echo(f"  ended        {fmt_time(call.ended_at)}"
               + (f"  ({_clean(call.hangup_cause)}, state {_clean(call.final_state)})" if call.ended_at else ""))
    allowed = {True: "recording allowed", False: "recording NOT allowed", None: ""}[call.recording_allowed]
    click.echo(f"  rule         {call.regime or '-'}  {allowed}".rstrip())
    click.echo(f"  recording    {_clean(call.recording_file) if call.recording_file else '-'}")
    for party in call.parties:
        click.echo(f"  party        {_clean(party.role or '?'):<8} {_clean(party.number or 'withheld'):<16} "
                   f"{_clean(party.name or ''):<16} {party.jurisdiction or '?':<8} {party.regime or '?':<10} "
                   f"joined {fmt_time(party.joined_at)}")


@ledger_group.command("export")
@click.option("--format", "fmt", default="jsonl", show_default=True,
              type=click.Choice(EXPORT_FORMATS), help="Output format (one JSON object per entry).")
@click.option("--call", "call_id", default=None, help="Only this call's entries.")
@click.option("--chain", "chain_id", default=None, help="Only this chain's entries.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write to FILE (atomically) instead of stdout.")
@db_option
@click.pass_context
def export_cmd(ctx: click.Context, fmt: str, call_id: str | None, chain_id: str | None,
               output: str | None, db_url: str | None) -> None:
    """Export entries with their hashes (re-checkable offline, see ledger/chain.py)."""
    with _reading(ctx, db_url) as engine:
        entries = export_entries(engine, call_id=call_id, chain_id=chain_id)
        first = next(entries, None)
        if first is None and (call_id or chain_id):
            what = f"call {_clean(call_id)!r}" if call_id else f"chain {_clean(chain_id)!r}"
            raise click.ClickException(f"no ledger entries for {what} in {describe_url(engine.url)}")
        records = [] if first is None else _chain_first(first, entries)
        if output is None:
            count = _echo_jsonl(records)
        else:
            count = _write_atomically(Path(output), records)
    if output is not None:
        click.echo(f"exported {count} entries to {output}", err=True)


def _chain_first(first: StoredEntry, rest: Iterator[StoredEntry]) -> Iterator[StoredEntry]:
    yield first
    yield from rest


def _echo_jsonl(entries: Iterator[StoredEntry] | list[StoredEntry]) -> int:
    count = 0
    for entry in entries:
        click.echo(json.dumps(entry.as_export(), ensure_ascii=False))
        count += 1
    return count


def _write_jsonl(entries: Iterator[StoredEntry] | list[StoredEntry], stream: TextIO) -> int:
    count = 0
    for entry in entries:
        stream.write(json.dumps(entry.as_export(), ensure_ascii=False) + "\n")
        count += 1
    return count


def _write_atomically(path: Path, entries: Iterator[StoredEntry] | list[StoredEntry]) -> int:
    """All or nothing: a failed export never leaves a half-written file behind."""
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise click.ClickException(f"cannot write {path}: directory {str(directory)!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            count = _write_jsonl(entries, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


@ledger_group.command("calls")
@click.option("--number", default=None, help="Only calls in which this number took part.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1), help="How many calls.")
@db_option
@click.pass_context
def calls_cmd(ctx: click.Context, number: str | None, limit: int, db_url: str | None) -> None:
    """List recent calls (latest first), or the calls of one number."""
    with _reading(ctx, db_url) as engine, Session(engine) as session:
        calls = calls_by_number(session, number)[:limit] if number else recent_calls(session, limit)
        if not calls:
            click.echo("no calls" + (f" with number {_clean(number)!r}" if number else "") + " in the ledger")
            return
        click.echo(f"{'first seen (UTC)':<24}  {'call id':<28}  {'rule':<10}  {'final state':<14}  parties")
        for call in calls:
            numbers = ", ".join(_clean(p.number or "withheld") for p in call.parties)
            click.echo(f"{fmt_time(call.first_seen):<24}  {_clean(call.call_id):<28}  {call.regime or '-':<10}  "
                       f"{_clean(call.final_state or 'in progress'):<14}  {numbers}")
