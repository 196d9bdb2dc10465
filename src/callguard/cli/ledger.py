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
from typing import TYPE_CHECKING, Any, TextIO

import click
from sqlalchemy import Engine, select
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
from callguard.ledger.verify import Anchor

if TYPE_CHECKING:
    from callguard.ledger.sealed import Revealer
    from callguard.evidence.checkpointer import Signed
    from callguard.evidence.note import Checkpoint, Verifier
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


def key_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--key", "key_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                        help="Verifier key file of the ledger signing key (default: [evidence] signing_key "
                             "with .pub, if present).")(command)


def _verifier(ctx: click.Context, key_path: Path | None, required: bool) -> "Verifier | None":
    from callguard.evidence.signing import SigningKeyError, load_verifier, public_path

    path = key_path or public_path(Path(get_config(ctx).evidence.signing_key))
    if key_path is None and not path.exists():
        if required:
            raise click.ClickException(f"no verifier key: pass --key LEDGER.pub (not found at {path})")
        return None
    try:
        return load_verifier(path)
    except SigningKeyError as exc:
        raise click.ClickException(str(exc)) from None


def _anchors(ctx: click.Context, engine: Engine, verifier: "Verifier | None",
             witness_dirs: tuple[Path, ...]) -> tuple[dict[str, list[Anchor]], list[str]]:
    """Checkpoints to hold each chain's tree to: the database's, and the witnesses' (signatures checked)."""
    from callguard.evidence.note import Checkpoint, NoteError, open_checkpoint
    from callguard.evidence.witness import read_directory
    from callguard.ledger.models import CheckpointRecord

    anchors: dict[str, list[Anchor]] = {}
    problems: list[str] = []
    prefix = get_config(ctx).evidence.origin + "/"

    def add(chain: str, note: str, label: str) -> None:
        try:
            checkpoint = open_checkpoint(note, verifier) if verifier else Checkpoint.parse(note.split("\n\n")[0] + "\n")
        except NoteError as exc:
            problems.append(f"{label}: {exc}")
            return
        anchors.setdefault(chain, []).append(Anchor(checkpoint.size, checkpoint.root_hash, label))

    with Session(engine) as session:
        for record in session.scalars(select(CheckpointRecord).order_by(CheckpointRecord.id)):
            add(record.chain_id, record.note, f"stored checkpoint #{record.id} (size {record.tree_size})")
    for directory in witness_dirs:
        for path, note in read_directory(directory):
            origin = note.split("\n", 1)[0]
            if not origin.startswith(prefix):
                problems.append(f"{path}: origin {origin!r} is not one of this ledger's ({prefix}<chain id>)")
                continue
            add(origin[len(prefix):], note, f"published checkpoint {path}")
    return anchors, problems


@ledger_group.command("verify")
@click.option("--chain", "chain_id", default=None, help="Verify only this chain (default: every chain).")
@click.option("--witness", "witness_dirs", multiple=True, type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="A witness directory of published checkpoints to hold the ledger to (repeatable).")
@key_option
@db_option
@click.pass_context
def verify_cmd(ctx: click.Context, chain_id: str | None, witness_dirs: tuple[Path, ...], key_path: Path | None,
               db_url: str | None) -> None:
    """Check every hash chain, Merkle tree and checkpoint; exit 1 and name each problem.

    A chain rewritten wholesale (every hash recomputed) passes the chain
    checks; it fails against any checkpoint published before the rewrite:
    pass the witness directory with --witness (and --key to check that the
    checkpoints there were signed by the ledger's key).
    """
    with _reading(ctx, db_url) as engine:
        verifier = _verifier(ctx, key_path, required=False)
        anchors, anchor_problems = _anchors(ctx, engine, verifier, witness_dirs)
        report = verify(engine, chain_id, anchors)
        where = describe_url(engine.url)
    for problem in anchor_problems:
        click.echo(f"checkpoint problem: {problem}")
    if chain_id is not None and report.chains and report.chains[0].entries == 0 \
            and report.chains[0].head_seq is None:
        raise click.ClickException(f"no chain {chain_id!r} in {where}; run without --chain to list chains")
    if not report.chains:
        click.echo(f"{where}: no ledger entries yet; nothing to verify")
        return
    for chain in report.chains:
        status = "OK" if chain.ok else f"{chain.problem_count} PROBLEM(S)"
        head = f"head seq {chain.head_seq} {chain.head_hash}" if chain.head_seq is not None else "no head"
        checked = f", {chain.anchors_checked} checkpoint(s) matched" if chain.anchors_checked else ""
        click.echo(f"chain {chain.chain_id!r}: {chain.entries} entries, {head}, tree root {chain.tree_root}"
                   f"{checked}: {status}")
        for problem in chain.problems:
            click.echo(f"  {problem}")
        if chain.problem_count > len(chain.problems):
            click.echo(f"  ... and {chain.problem_count - len(chain.problems)} more")
    if not report.ok or anchor_problems:
        bad = [c for c in report.chains if not c.ok]
        total = sum(c.problem_count for c in bad) + len(anchor_problems)
        raise click.ClickException(f"ledger verification FAILED: {total} problem(s) in {len(bad)} of "
                                   f"{len(report.chains)} chain(s) of {where}")
    signatures = "" if verifier is not None else " (checkpoint signatures NOT checked: no --key)"
    click.echo(f"all {len(report.chains)} chain(s) verified{signatures}")


def sign_now(ctx: click.Context, db_url: str | None) -> "list[Signed]":
    """Sign (and publish) a checkpoint of every chain that grew; errors become ClickExceptions."""
    from callguard.evidence.signing import SigningKeyError
    from callguard.ledger.db import open_for_writing
    from callguard.wiring import build_checkpointer

    config = get_config(ctx)
    try:
        engine = open_for_writing(db_url or config.ledger.url)
    except LedgerError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        checkpointer = build_checkpointer(config, engine, required=True)
        assert checkpointer is not None
        try:
            return checkpointer.checkpoint_now()
        finally:
            checkpointer.close()
    except SigningKeyError as exc:
        raise click.ClickException(f"cannot sign a checkpoint: {exc}") from None
    finally:
        engine.dispose()


@ledger_group.command("checkpoint")
@db_option
@click.pass_context
def checkpoint_cmd(ctx: click.Context, db_url: str | None) -> None:
    """Sign and publish a checkpoint of every chain that grew, now (the listener does it on a timer)."""
    signed = sign_now(ctx, db_url)
    if not signed:
        click.echo("no chain grew since its last checkpoint; nothing signed")
    failed = False
    for item in signed:
        click.echo(f"signed {item.checkpoint.origin} size {item.checkpoint.size} "
                   f"root {item.checkpoint.root_hash.hex()}")
        for outcome in item.outcomes:
            failed |= outcome.outcome in ("failed", "refused")
            click.echo(f"  {outcome.witness}: {outcome.outcome} {outcome.detail.strip()[:200]}")
    if failed:
        raise click.ClickException("a witness did not take a checkpoint (see above)")


def _read_checkpoint(path: Path, verifier: "Verifier") -> "Checkpoint":
    from callguard.evidence.note import NoteError, open_checkpoint

    try:
        return open_checkpoint(path.read_text(encoding="utf-8"), verifier)
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read checkpoint {path}: {exc}") from None
    except NoteError as exc:
        raise click.ClickException(f"{path}: {exc}") from None


@ledger_group.command("consistency")
@click.argument("old", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.argument("new", type=click.Path(dir_okay=False, exists=True, path_type=Path), required=False)
@key_option
@db_option
@click.pass_context
def consistency_cmd(ctx: click.Context, old: Path, new: Path | None, key_path: Path | None,
                    db_url: str | None) -> None:
    """Prove that checkpoint OLD is a prefix of NEW (default: the ledger as it is now).

    Both signatures are checked with the verifier key, the consistency proof
    comes from the database, and the proof is checked against both roots:
    exit 1 if the ledger's history was rewritten between them.
    """
    from callguard.evidence import merkle
    from callguard.ledger.tree import TreeError, consistency, root_at

    verifier = _verifier(ctx, key_path, required=True)
    assert verifier is not None
    old_cp = _read_checkpoint(old, verifier)
    prefix = get_config(ctx).evidence.origin + "/"
    chain = old_cp.origin[len(prefix):] if old_cp.origin.startswith(prefix) else old_cp.origin.rsplit("/", 1)[-1]
    with _reading(ctx, db_url) as engine, engine.connect() as connection:
        if new is not None:
            new_cp = _read_checkpoint(new, verifier)
            if new_cp.origin != old_cp.origin:
                raise click.ClickException(f"the checkpoints are of different logs: {old_cp.origin!r} and "
                                           f"{new_cp.origin!r}")
            new_size, new_root, label = new_cp.size, new_cp.root_hash, str(new)
        else:
            from callguard.ledger.tree import tree_head

            head = tree_head(connection, chain)
            if head is None:
                raise click.ClickException(f"chain {chain!r} has no Merkle tree in {describe_url(engine.url)}")
            new_size, new_root, label = head[0], head[1], "the ledger now"
        try:
            if old_cp.size > new_size:
                raise merkle.ProofError(f"{old} covers {old_cp.size} entries, {label} only {new_size}: "
                                        "entries were removed")
            proof = consistency(connection, chain, old_cp.size, new_size)
            merkle.verify_consistency(old_cp.size, new_size, old_cp.root_hash, new_root, proof)
        except (merkle.ProofError, TreeError) as exc:
            now = ""
            if old_cp.size <= new_size:
                try:
                    now = f" (the database now gives root {root_at(connection, chain, old_cp.size).hex()} at " \
                          f"size {old_cp.size}, the checkpoint says {old_cp.root_hash.hex()})"
                except (TreeError, merkle.ProofError):
                    pass
            raise click.ClickException(f"INCONSISTENT: {exc}{now}") from None
    click.echo(f"consistent: {old_cp.origin} at size {old_cp.size} (root {old_cp.root_hash.hex()}) is a prefix of "
               f"{label} at size {new_size} (root {new_root.hex()}); proof of {len(proof)} hash(es) verified")


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
    from callguard.ledger.sealed import Revealer

    with _reading(ctx, db_url) as engine:
        entries = timeline(engine, call_id)
        with Session(engine) as session:
            call = get_call(session, call_id)
            if not entries:
                raise click.ClickException(
                    f"no ledger entries for call {_clean(call_id)!r} in {describe_url(engine.url)}; "
                    "`callguard ledger calls` lists recent calls")
            revealer = Revealer(session.connection())  # timeline() opened the entries; this is for the index
            answered = _answered_at(call, entries)
            _print_call_header(call_id, call, entries, answered, revealer)
    click.echo("")
    click.echo(f"  {'time (UTC)':<24}  {'from answer':>11}  {'seq':>5}  {'kind':<19}  facts")
    for entry in entries:
        offset = "" if answered is None else f"{entry.pbx_time - answered:+.3f}s"
        click.echo(f"  {fmt_time(entry.pbx_time):<24}  {offset:>11}  {entry.seq:>5}  {entry.kind:<19}  "
                   f"{facts(entry.kind, entry.data)}")


def _print_call_header(call_id: str, call: Call | None, entries: list[StoredEntry],
                       answered: float | None, revealer: "Revealer") -> None:
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
        number, name = revealer.data([party.number, party.name])
        click.echo(f"  party        {_clean(party.role or '?'):<8} {_clean(number or 'withheld'):<16} "
                   f"{_clean(name or ''):<16} {party.jurisdiction or '?':<8} {party.regime or '?':<10} "
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
        from callguard.ledger.sealed import Revealer

        revealer = Revealer(session.connection())
        for call in calls:
            numbers = ", ".join(_clean(n or "withheld") for n in revealer.data([p.number for p in call.parties]))
            click.echo(f"{fmt_time(call.first_seen):<24}  {_clean(call.call_id):<28}  {call.regime or '-':<10}  "
                       f"{_clean(call.final_state or 'in progress'):<14}  {numbers}")
