"""``callguard dsar``: data-subject access and erasure requests, with their 30-day clock."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from callguard.cli.text import echo, plain_text, safe
from callguard.cli.vault_common import as_option, day, open_vault, reason_option, when
from callguard.vault import dsar as ops


@click.group("dsar")
def dsar_group() -> None:
    """Data-subject requests: open, export, erase, list (--overdue), close."""


def _state(view: ops.DsarView, now: float) -> str:
    if view.closed_at:
        return f"closed {day(view.closed_at)} ({view.close_reason})"
    if view.overdue(now):
        return f"OVERDUE by {-view.days_left(now):.0f} day(s)"
    return f"open, {view.days_left(now):.0f} day(s) left"


def _describe(view: ops.DsarView, now: float) -> str:
    return (f"{view.label}  {view.kind:8} {view.number:16} opened {day(view.opened_at)}  due {day(view.due_at)}  "
            f"{_state(view, now)}")


@dsar_group.command("open")
@click.option("--number", required=True, metavar="E164", help="The requester's phone number, e.g. +442079460123.")
@click.option("--kind", type=click.Choice(ops.KINDS), default="access", show_default=True)
@click.option("--note", default="", callback=plain_text, help="How the request arrived, identity check done, etc.")
@reason_option(required=False)
@as_option
@click.pass_context
def open_cmd(ctx: click.Context, number: str, kind: str, note: str, reason: str, user: str | None) -> None:
    """Open a request: find every call, recording, ledger and access-log entry for NUMBER."""
    with open_vault(ctx) as vault:
        view = ops.open_request(vault, user, number, kind=kind, reason=reason, note=note)
    found = view.found
    echo(f"{view.label} opened for {view.number} ({kind}); due {day(view.due_at)}")
    if not (found["calls"] or found["recordings"] or found["ledger_entries"] or found["access_log_entries"]):
        echo(f"  no data held about {view.number}: no calls, recordings, ledger or access-log entries "
             f"for that number")
        echo(f"  the request is kept on record; tell the requester nothing is held, then: "
             f"callguard dsar close {view.id} --reason 'nothing held; requester told on <date>'")
        return
    echo(f"  calls: {len(found['calls'])}, recordings: {len(found['recordings'])} "
         f"({found['stored_recordings']} stored), ledger entries: {found['ledger_entries']}, "
         f"access-log entries: {found['access_log_entries']}")
    next_step = "dsar export" if kind == "access" else "dsar erase"
    echo(f"  next: callguard {next_step} {view.id} ...")


@dsar_group.command("list")
@click.option("--overdue", is_flag=True, help="Only open requests past their due date.")
@click.option("--open", "open_only", is_flag=True, help="Only open requests.")
@as_option
@click.pass_context
def list_cmd(ctx: click.Context, overdue: bool, open_only: bool, user: str | None) -> None:
    """Requests by due date; exit 1 with --overdue when any request is overdue."""
    with open_vault(ctx) as vault:
        views = ops.list_requests(vault, user, overdue=overdue, open_only=open_only)
        now = vault.clock()
    for view in views:
        echo(_describe(view, now))
    echo(f"{len(views)} request(s)")
    if overdue and views:
        raise click.exceptions.Exit(1)


@dsar_group.command("show")
@click.argument("request_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="The request as JSON, for scripts.")
@as_option
@click.pass_context
def show(ctx: click.Context, request_id: int, as_json: bool, user: str | None) -> None:
    """One request: what was found, what was exported or erased."""
    with open_vault(ctx) as vault:
        view = ops.show(vault, user, request_id)
        now = vault.clock()
    if as_json:
        click.echo(json.dumps({**dataclasses.asdict(view), "overdue": view.overdue(now)}, indent=2))
        return
    Console(highlight=False).print(_request_table(view, now))
    if view.erase_report:
        _print_erasure(view.erase_report)


def _request_table(view: ops.DsarView, now: float) -> Table:
    """One request as a two-column table a privacy officer can read out to the requester."""
    found = view.found
    table = Table(title=f"{view.label} ({view.kind} request)", show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value")
    rows = [
        ("number", view.number),
        ("status", _state(view, now)),
        ("opened", f"{when(view.opened_at)} by {view.opened_by}"),
        ("due", day(view.due_at)),
        ("calls", ", ".join(found.get("calls", [])) or "none"),
        ("recordings", f"{len(found.get('recordings', []))} ({found.get('stored_recordings', 0)} stored)"),
        ("ledger entries", str(found.get("ledger_entries", 0))),
        ("access-log entries", str(found.get("access_log_entries", 0))),
        ("exported", f"{when(view.exported_at)} to {view.export_path}" if view.exported_at else "no"),
        ("erased", when(view.erased_at) if view.erased_at else "no"),
    ]
    for field, value in rows:
        table.add_row(field, Text(safe(value)))
    return table


def _print_erasure(report: dict) -> None:
    echo(f"  deleted: {len(report['deleted'])} recording(s)")
    for item in report["deleted"]:
        echo(f"    - {item['recording_id']} (call {item['call_id']}), deletion record #{item['deletion_id']}")
    for item in report["already_deleted"]:
        echo(f"    - {item['recording_id']} was already deleted {day(item['deleted_at'])} ({item['cause']})")
    echo(f"  kept: {len(report['kept'])} item(s)")
    for item in report["kept"]:
        echo(f"    - {item['what']}")
        echo(f"        why: {item['why']}")


@dsar_group.command("export")
@click.argument("request_id", type=int)
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write the DSAR-<id> bundle into.")
@reason_option(required=False)
@as_option
@click.pass_context
def export(ctx: click.Context, request_id: int, out: Path, reason: str, user: str | None) -> None:
    """Write the bundle for the requester: decrypted recordings, timelines, access history, index."""
    out.mkdir(parents=True, exist_ok=True)
    with open_vault(ctx) as vault:
        target = ops.export_bundle(vault, user, request_id, out, reason or f"answering DSAR-{request_id}")
    index = json.loads((target / "index.json").read_text())
    echo(f"wrote {target}: {len(index['calls'])} call(s), "
               f"{sum('file' in r for r in index['recordings'])} recording(s)")


@dsar_group.command("erase")
@click.argument("request_id", type=int)
@reason_option(required=False)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@as_option
@click.pass_context
def erase(ctx: click.Context, request_id: int, reason: str, yes: bool, user: str | None) -> None:
    """Delete the requester's recordings unless a hold or legal duty keeps them; say what was kept and why."""
    if not yes:
        click.confirm(f"Erase the recordings of DSAR-{request_id} permanently?", abort=True)
    with open_vault(ctx) as vault:
        report = ops.erase(vault, user, request_id, reason or f"erasure request DSAR-{request_id}")
    echo(f"DSAR-{request_id} erasure done")
    _print_erasure(report)


@dsar_group.command("close")
@click.argument("request_id", type=int)
@reason_option()
@as_option
@click.pass_context
def close(ctx: click.Context, request_id: int, reason: str, user: str | None) -> None:
    """Close a request by hand (withdrawn, identity not verified, ...)."""
    with open_vault(ctx) as vault:
        view = ops.close(vault, user, request_id, reason)
    echo(f"{view.label} closed: {reason}")
