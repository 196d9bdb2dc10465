"""``callguard audit --month 2026-11``: the monthly compliance checklist, text and HTML."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import click

from callguard.cli.vault_common import as_option, open_vault, vault_errors
from callguard.vault.audit import render_text, run_audit
from callguard.vault.keys import write_atomic
from callguard.vault.report_html import render_html


def _last_month() -> str:
    now = datetime.now(timezone.utc)
    year, month = (now.year, now.month - 1) if now.month > 1 else (now.year - 1, 12)
    return f"{year:04d}-{month:02d}"


@click.command("audit")
@click.option("--month", default=None, metavar="YYYY-MM", help="Month to audit (default: last month).")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write a self-contained HTML report with charts.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write every finding as JSON.")
@click.option("--strict", is_flag=True, help="Exit 1 when there is any violation (for cron/CI).")
@click.option("--no-chain-check", is_flag=True, help="Skip walking the ledger and access-log hash chains.")
@as_option
@click.pass_context
def audit(ctx: click.Context, month: str | None, html_path: Path | None, json_path: Path | None, strict: bool,
          no_chain_check: bool, user: str | None) -> None:
    """Run the monthly audit over the ledger and the vault and print the checklist.

    Checks: notice before recording and within the limit, explicit consent
    where required, nothing recorded after a decline, opt-out continued the
    call, pauses confirmed and closed, DTMF leaks, retention sweeps on
    schedule and nothing kept too long, unusual exports and denied access,
    hash chains intact, data-subject requests on time.
    """
    month = month or _last_month()
    with open_vault(ctx) as vault:
        report = run_audit(vault, user, month, verify_chains=not no_chain_check)
    click.echo(render_text(report), nl=False)
    with vault_errors():
        if html_path is not None:
            write_atomic(html_path, render_html(report).encode("utf-8"), 0o640)
            click.echo(f"HTML report: {html_path}")
        if json_path is not None:
            write_atomic(json_path, json.dumps(report.as_dict(), indent=2).encode(), 0o640)
            click.echo(f"JSON report: {json_path}")
    if strict and report.violations:
        raise click.exceptions.Exit(1)


__all__ = ["audit"]
