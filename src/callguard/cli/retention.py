"""``callguard retention`` and ``callguard hold``: deleting on schedule, and the exceptions."""

from __future__ import annotations

import json

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from callguard.cli.text import echo, plain_text
from callguard.cli.vault_common import as_option, day, open_vault, reason_option, when
from callguard.vault import holds as hold_ops
from callguard.vault.retention import stored_by_purpose, sweep


@click.group("retention")
def retention_group() -> None:
    """Retention per purpose: see what is due, and sweep it."""


@retention_group.command("sweep")
@click.option("--apply", is_flag=True, help="Delete what is due (default: dry run, report only).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--show", "show_items", is_flag=True, help="List every recording due and held.")
@as_option
@click.pass_context
def sweep_cmd(ctx: click.Context, apply: bool, as_json: bool, show_items: bool, user: str | None) -> None:
    """Find recordings past their retention (and not on legal hold); with --apply, crypto-shred them.

    Every run - dry or applied - is recorded; the monthly audit checks that
    applied sweeps ran on schedule ([vault] sweep_interval_h).
    """
    with open_vault(ctx) as vault:
        columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeRemainingColumn())
        with Progress(*columns, transient=True, disable=not apply) as progress:
            task = progress.add_task("deleting expired recordings", total=None)
            report = sweep(vault, user, apply=apply,
                           progress=lambda done, total: progress.update(task, completed=done, total=total))
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        mode = "APPLIED" if apply else "DRY RUN (nothing deleted; --apply to delete)"
        echo(f"retention sweep #{report.sweep_id} at {when(report.now)}: {mode}")
        echo(f"  due for deletion: {len(report.due)}"
                   + (f"  ({', '.join(f'{p}: {n}' for p, n in sorted(report.by_purpose().items()))})"
                      if report.due else ""))
        echo(f"  past retention but on legal hold (kept): {len(report.held)}")
        echo(f"  calls whose numbers and names in the ledger are past evidence retention: {len(report.evidence_due)}"
             + (f" ({report.evidence_keys_shredded} key(s) crypto-shredded)" if apply else ""))
        if apply:
            echo(f"  deleted: {len(report.deleted)}, failed: {len(report.failed)}")
        if show_items:
            for item in report.due:
                state = "deleted" if item.recording_id in report.deleted else "FAILED" if item.recording_id in report.failed else "due"
                echo(f"    {state:7} {item.recording_id} call {item.call_id} {item.purpose} expired {day(item.expires_at)}")
            for item in report.held:
                echo(f"    held    {item.recording_id} call {item.call_id} {item.purpose} expired {day(item.expires_at)}")
    for rid, error in report.failed.items():
        echo(f"FAILED {rid}: {error}", err=True)
    if report.failed:
        raise click.exceptions.Exit(1)


@retention_group.command("status")
@as_option
@click.pass_context
def status(ctx: click.Context, user: str | None) -> None:
    """Retention periods and how many recordings each purpose holds."""
    with open_vault(ctx) as vault:
        vault.authorize(user, "retention-status", "*", "", permission="list")
        with vault.session() as session:
            counts = stored_by_purpose(session)
        periods = vault.config.retention
        duty = set(vault.settings.legal_duty_purposes)
    for purpose, days in sorted(periods.items()):
        note = "  (legal obligation: kept through erasure requests)" if purpose in duty else ""
        echo(f"{purpose:12} {days:6d} days  {counts.get(purpose, 0):8d} stored{note}")
    for purpose in sorted(set(counts) - set(periods)):
        echo(f"{purpose:12}      ?  {counts[purpose]:8d} stored  (purpose no longer in [retention])")


@click.group("hold")
def hold_group() -> None:
    """Legal holds: keep recordings past their retention while a case needs them."""


@hold_group.command("place")
@click.option("--call", "call_id", default=None, metavar="ID", help="Hold every recording of this call.")
@click.option("--recording", "recording_id", default=None, metavar="ID", help="Hold one recording.")
@click.option("--case", "case_ref", default=None, metavar="REF", callback=plain_text, help="Case or matter reference.")
@reason_option()
@as_option
@click.pass_context
def place(ctx: click.Context, call_id: str | None, recording_id: str | None, case_ref: str | None, reason: str,
          user: str | None) -> None:
    """Place a legal hold: the recordings will not be deleted until it is released."""
    with open_vault(ctx) as vault:
        hold = hold_ops.place(vault, user, reason, call_id=call_id, recording_id=recording_id, case_ref=case_ref)
    echo(f"legal hold #{hold.id} placed on {hold.scope}{f' (case {case_ref})' if case_ref else ''}")


@hold_group.command("release")
@click.argument("hold_id", type=int)
@reason_option()
@as_option
@click.pass_context
def release(ctx: click.Context, hold_id: int, reason: str, user: str | None) -> None:
    """Release hold HOLD_ID; its recordings fall back under their retention period."""
    with open_vault(ctx) as vault:
        hold = hold_ops.release(vault, user, hold_id, reason)
    echo(f"legal hold #{hold.id} on {hold.scope} released; expired recordings go at the next sweep")


@hold_group.command("list")
@click.option("--all", "include_released", is_flag=True, help="Include released holds.")
@as_option
@click.pass_context
def list_cmd(ctx: click.Context, include_released: bool, user: str | None) -> None:
    """Active legal holds (with --all, released ones too)."""
    with open_vault(ctx) as vault:
        holds = hold_ops.list_holds(vault, user, include_released=include_released)
    for h in holds:
        state = f"released {when(h.released_at)} by {h.released_by}: {h.release_reason}" if h.released_at else "ACTIVE"
        echo(f"#{h.id}  {h.scope}  placed {when(h.placed_at)} by {h.placed_by}"
                   f"{f'  case {h.case_ref}' if h.case_ref else ''}  {state}")
        echo(f"     reason: {h.reason}")
    echo(f"{len(holds)} hold(s)")
