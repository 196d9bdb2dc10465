"""``callguard leaks``: card data captured in recordings, by keypad (DTMF scan) and by voice (transcripts)."""

from __future__ import annotations

import json

import click

from callguard.cli.audit import _last_month
from callguard.cli.vault_common import as_option, open_vault, vault_errors, when
from callguard.transcripts.leaks_report import leaks
from callguard.vault.audit import month_bounds


@click.command("leaks")
@click.option("--month", default=None, metavar="YYYY-MM", help="Recordings made in this month (default: last month).")
@click.option("--json", "as_json", is_flag=True)
@as_option
@click.pass_context
def leaks_command(ctx: click.Context, month: str | None, as_json: bool, user: str | None) -> None:
    """One report of keypad tones left audible and card data spoken while recording (spans, never digits)."""
    label = month or _last_month()
    with vault_errors():
        start, end = month_bounds(label)
    with open_vault(ctx) as vault:
        found = leaks(vault, user, start, end)
    if as_json:
        click.echo(json.dumps([leak.as_dict() for leak in found], indent=2))
        return
    for leak in found:
        span = f"{leak.start_s:.2f}-{leak.end_s:.2f} s" if leak.start_s is not None and leak.end_s is not None else "-"
        click.echo(f"{when(leak.recorded_at)}  {leak.call_id}  {leak.source:6} {leak.kind:18} {span:>16}  "
                   f"{'redacted in the stored audio' if leak.redacted else 'AUDIBLE in the stored audio'}")
    keypad = sum(leak.source == "keypad" for leak in found)
    click.echo(f"{label}: {len(found)} leak(s): {keypad} by keypad, {len(found) - keypad} spoken")


__all__ = ["leaks_command"]
