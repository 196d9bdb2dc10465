"""``callguard recordings``: list, show, listen, export, delete - every attempt logged."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from callguard.cli.common import get_config
from callguard.cli.text import echo
from callguard.cli.vault_common import as_option, day, open_vault, reason_option, size, when
from callguard.vault import recordings as ops
from callguard.vault.permissions import PERMISSIONS


@click.group("recordings")
def recordings_group() -> None:
    """Find and access recordings in the vault (by role, with a reason, logged)."""


@recordings_group.command("list")
@click.option("--call", "call_id", default=None, metavar="ID")
@click.option("--number", default=None, metavar="E164", help="Calls this number took part in.")
@click.option("--purpose", default=None)
@click.option("--deleted", "include_deleted", is_flag=True, help="Include deleted recordings.")
@click.option("--limit", default=200, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@reason_option(required=False)
@as_option
@click.pass_context
def list_cmd(ctx: click.Context, call_id: str | None, number: str | None, purpose: str | None,
             include_deleted: bool, limit: int, as_json: bool, reason: str, user: str | None) -> None:
    """List catalogued recordings (metadata only; needs the list permission)."""
    with open_vault(ctx) as vault:
        views = ops.list_recordings(vault, user, call_id=call_id, number=number, purpose=purpose,
                                    include_deleted=include_deleted, limit=limit, reason=reason)
    if as_json:
        click.echo(json.dumps([v.as_dict() for v in views], indent=2))
        return
    for v in views:
        leaks = "" if v.dtmf_leaks is None else f"  dtmf-leaks {v.dtmf_leaks}"
        echo(f"{v.id}  call {v.call_id}  {when(v.recorded_at)}  {v.duration_s or 0:7.1f}s  {size(v.size):>9}  "
                   f"{v.purpose:10} {v.state:7} until {day(v.expires_at)}{leaks}")
    echo(f"{len(views)} recording(s)")


@recordings_group.command("show")
@click.argument("recording")
@as_option
@click.pass_context
def show(ctx: click.Context, recording: str, user: str | None) -> None:
    """Catalogue facts, holds, deletion record and DTMF scan of one recording."""
    with open_vault(ctx) as vault:
        detail = ops.show(vault, user, recording)
    v = detail.recording
    echo(f"recording {v.id} of call {v.call_id}: {v.state}")
    if detail.quarantined:
        echo(f"  QUARANTINED: {detail.quarantined}; kept encrypted as evidence, never played or exported")
    echo(f"  recorded {when(v.recorded_at)}, ingested {when(v.ingested_at)}, {v.duration_s or 0:.1f} s, "
               f"{size(v.size)}")
    echo(f"  sha256 {v.sha256}, key {v.key_id}, ledger seq {v.ledger_seq}")
    echo(f"  purpose {v.purpose}, delete after {day(v.expires_at)}")
    for hold in detail.holds:
        echo(f"  LEGAL HOLD #{hold.id} on {hold.scope} by {hold.placed_by} {when(hold.placed_at)}: {hold.reason}")
    if detail.deletion:
        d = detail.deletion
        echo(f"  deleted {when(d['at'])} by {d['by']} ({d['cause']}): {d['reason']}; wrapped key "
                   f"{'destroyed' if d['key_shredded'] else 'was already gone'}")
    if detail.dtmf:
        if "skipped" in detail.dtmf:
            echo(f"  DTMF scan skipped: {detail.dtmf['skipped']}")
        else:
            echo(f"  DTMF: {len(detail.dtmf['tones'])} tone(s), {detail.dtmf['leaks']} leak(s) "
                       f"{detail.dtmf['leaked_digits']!r}; muted spans {detail.dtmf['muted_spans']}")


@recordings_group.command("get")
@click.argument("recording")
@reason_option()
@as_option
@click.pass_context
def get(ctx: click.Context, recording: str, reason: str, user: str | None) -> None:
    """Listen: stream the decrypted audio to stdout for a player (`| aplay`, `| ffplay -`).

    Nothing is written to disk; the whole file is authenticated before the
    first byte is played.  Refuses to write audio to a terminal.
    """
    stdout = getattr(sys.stdout, "buffer", sys.stdout)
    if sys.stdout.isatty():
        raise click.ClickException("stdout is a terminal; pipe it into a player, e.g. "
                                   f"`callguard recordings get {recording} --reason ... | ffplay -`")
    with open_vault(ctx) as vault:
        ops.listen(vault, user, recording, reason, stdout)


@recordings_group.command("export")
@click.argument("recording")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="WAV file to write.")
@reason_option()
@as_option
@click.pass_context
def export(ctx: click.Context, recording: str, out: Path, reason: str, user: str | None) -> None:
    """Decrypt RECORDING into a file (the export permission; the copy leaves the vault's control)."""
    with open_vault(ctx) as vault:
        ops.export(vault, user, recording, reason, out)
    echo(f"exported {recording} to {out} (verified; logged)")


@recordings_group.command("delete")
@click.argument("recording")
@reason_option()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@as_option
@click.pass_context
def delete(ctx: click.Context, recording: str, reason: str, yes: bool, user: str | None) -> None:
    """Crypto-shred RECORDING now: its wrapped key is destroyed, so no copy can ever be read."""
    if not yes:
        click.confirm(f"Destroy recording {recording} permanently?", abort=True)
    with open_vault(ctx) as vault:
        destroyed = ops.delete(vault, user, recording, reason)
    echo(f"recording {recording} crypto-shredded (wrapped key destroyed: {destroyed.key_shredded}, "
               f"ciphertext removed: {destroyed.ciphertext_removed}); deletion record #{destroyed.deletion_id}")


@recordings_group.command("roles")
@click.pass_context
def roles(ctx: click.Context) -> None:
    """Who may do what: the roles, their permissions and the users holding them."""
    config = get_config(ctx)
    for role, permissions in sorted(config.roles.items()):
        users = sorted(u for u, r in config.users.items() if r == role)
        echo(f"{role:16} {', '.join(permissions) or '(nothing)'}")
        echo(f"{'':16} users: {', '.join(users) or '-'}")
    click.echo("")
    for name, text in PERMISSIONS.items():
        echo(f"  {name:10} {text}")
