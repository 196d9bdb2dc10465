"""``callguard vault``: ingest recordings, verify the vault, rescan for DTMF leaks."""

from __future__ import annotations

import json
from pathlib import Path

import click
from sqlalchemy import func, select

from callguard.cli.text import echo
from callguard.cli.vault_common import as_option, day, open_vault, reason_option, size, vault_errors, when
from callguard.vault.accesslog import verify_log
from callguard.vault.ingest import ingest_file
from callguard.vault.models import Recording
from callguard.vault.recordings import rescan_dtmf, verify


@click.group("vault")
def vault_group() -> None:
    """Encrypted recording storage: ingest, verify, status."""


@vault_group.command("ingest")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--call", "call_id", required=True, metavar="ID", help="The call's id in the ledger.")
@click.option("--purpose", default=None, metavar="NAME", help="Retention purpose (default: [vault] default_purpose).")
@click.option("--keep-plaintext", is_flag=True, help="Do not remove FILE after it is stored and verified.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@as_option
@click.pass_context
def ingest(ctx: click.Context, file: Path, call_id: str, purpose: str | None, keep_plaintext: bool,
           as_json: bool, user: str | None) -> None:
    """Encrypt FILE into the vault for call ID, verify it, then remove FILE."""
    with open_vault(ctx) as vault:
        result = ingest_file(vault, file, call_id, purpose=purpose, user=user, keep_plaintext=keep_plaintext)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
        return
    if result.quarantined:
        echo(f"QUARANTINED {file.name} as recording {result.recording_id} (call {call_id}): "
                   f"{result.quarantined}. It is kept encrypted as evidence, never played or exported, "
                   f"and the audit reports it", err=True)
    else:
        echo(f"stored {file.name} as recording {result.recording_id} (call {call_id})")
    echo(f"  {size(result.size)}, {result.duration_s or 0:.1f} s, sha256 {result.sha256}")
    echo(f"  key {result.key_id}, purpose {result.purpose}, delete after {day(result.expires_at)}")
    echo(f"  ledger entry seq {result.ledger_seq}; plaintext "
               f"{'removed' if result.plaintext_removed else 'kept (--keep-plaintext)'}")
    spoken = result.transcription or {}
    if spoken.get("transcribed"):
        click.echo(f"  transcribed ({spoken['engine']}): {spoken['findings']} finding(s) redacted"
                   + (f" over {len(spoken['redacted_spans'])} span(s)" if spoken["redacted_spans"] else ""))
    elif spoken:
        click.echo(f"  not transcribed: {spoken.get('why') or spoken.get('error')}")
    dtmf = result.dtmf or {}
    if "skipped" in dtmf:
        echo(f"  DTMF scan skipped: {dtmf['skipped']}")
    elif dtmf.get("leaks"):
        echo(f"  WARNING: {dtmf['leaks']} keypad tone(s) audible outside muted spans: "
                   f"{dtmf['leaked_digits'] or '(inside a muted span: mute failed)'}", err=True)


@vault_group.command("verify")
@click.argument("recordings", nargs=-1, metavar="[RECORDING]...")
@click.option("--deep", is_flag=True, help="Also decrypt and check every chunk (needs the private keys).")
@as_option
@click.pass_context
def verify_cmd(ctx: click.Context, recordings: tuple[str, ...], deep: bool, user: str | None) -> None:
    """Check stored recordings and the access log; exit 1 on any problem.

    Without --deep no key is needed: sizes, chunk structure, tag chain,
    ciphertext SHA-256 and key store presence are compared with the catalogue.
    """
    with open_vault(ctx) as vault:
        result = verify(vault, user, list(recordings) or None, deep=deep)
        log = verify_log(vault.engine)
    for rid, problem in result.problems.items():
        echo(f"PROBLEM {rid}: {problem}")
    for orphan in result.orphans:
        echo(f"ORPHAN {orphan}: not in the catalogue (an interrupted ingest?)")
    for problem in log.problems:
        echo(f"PROBLEM {problem}")
    echo(f"{result.checked} recording(s) checked{f', {result.deep} decrypted' if deep else ''}; "
               f"access log: {log.entries} entries, {'chain intact' if log.ok else 'CHAIN BROKEN'}")
    if result.problems or result.orphans or not log.ok:
        raise click.exceptions.Exit(1)


@vault_group.command("status")
@as_option
@click.pass_context
def status(ctx: click.Context, user: str | None) -> None:
    """What the vault holds: recordings by state and purpose, keys, next deletions."""
    with open_vault(ctx) as vault:
        vault.authorize(user, "status", "*", "", permission="list")
        with vault.session() as session:
            rows = session.execute(select(Recording.state, Recording.purpose, func.count(), func.sum(Recording.size),
                                          func.min(Recording.expires_at))
                                   .group_by(Recording.state, Recording.purpose)).all()
            keys = dict(session.execute(select(Recording.key_id, func.count()).where(Recording.state == "stored")
                                        .group_by(Recording.key_id)).all())
        active = vault.keyring.active_id()
        ring = vault.keyring.keys()
    echo(f"vault {vault.dir}  (key store {vault.keystore.dir})")
    for state, purpose, count, total, first in sorted(rows):
        extra = f", next deletion {day(first)}" if state == "stored" else ""
        echo(f"  {state:8} {purpose:12} {count:8d} recording(s), {size(total or 0)}{extra}")
    if not rows:
        click.echo("  (no recordings)")
    for info in ring:
        mark = "active " if info.kid == active else "retired" if info.retired_at else "       "
        echo(f"  key {info.kid} {mark} created {when(info.created_at)}, {keys.get(info.kid, 0)} stored"
                   f"{', private key here' if vault.private_keys.available(info.kid) else ''}")


@vault_group.command("scan")
@click.argument("recording")
@reason_option(required=False)
@as_option
@click.pass_context
def scan(ctx: click.Context, recording: str, reason: str, user: str | None) -> None:
    """Scan a stored RECORDING for keypad tones (DTMF) outside muted spans (needs its private key)."""
    with open_vault(ctx) as vault, vault_errors():
        report = rescan_dtmf(vault, user, recording, reason or "DTMF leak scan")
    if "skipped" in report:
        raise click.ClickException(f"cannot scan {recording}: {report['skipped']}")
    for tone in report["tones"]:
        echo(f"  {tone['start']:8.2f}-{tone['end']:.2f}s  digit {tone['digit']}  {tone['where']}"
                   f"{'  (payment segment)' if tone['in_payment_segment'] else ''}")
    echo(f"{len(report['tones'])} tone(s), {report['leaks']} leak(s)"
               f"{', MUTE FAILED ' + str(report['mute_failures']) + ' time(s)' if report['mute_failures'] else ''}")
    if report["leaks"]:
        raise click.exceptions.Exit(1)


@vault_group.command("log")
@click.option("--since", default=None, metavar="YYYY-MM-DD", help="From this day (UTC).")
@click.option("--until", default=None, metavar="YYYY-MM-DD", help="Before this day (UTC).")
@click.option("--actor", default=None, metavar="USER", help="Only this user's attempts.")
@click.option("--target", default=None, metavar="ID", help="Only attempts on this recording, call or request.")
@click.option("--denied", is_flag=True, help="Only refused attempts.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, with hashes.")
@as_option
@click.pass_context
def log_cmd(ctx: click.Context, since: str | None, until: str | None, actor: str | None, target: str | None,
            denied: bool, as_json: bool, user: str | None) -> None:
    """The access log: who tried to do what to which recording, when, why, and the outcome.

    Reading the log is itself logged (it names people and recordings).
    """
    from datetime import datetime, timezone

    def parse(day_text: str | None) -> float | None:
        if day_text is None:
            return None
        try:
            return datetime.strptime(day_text, "%Y-%m-%d").replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            raise click.BadParameter(f"{day_text!r} is not a date like 2026-11-01") from None

    start, end = parse(since), parse(until)
    with open_vault(ctx) as vault:
        vault.authorize(user, "access-log", target or actor or "*", "", permission="audit")
        events = list(vault.access_log.events(since=start, until=end, actor=actor,
                                              targets=[target] if target else None))
    shown = 0
    for event in events:
        if denied and event.outcome != "denied":
            continue
        shown += 1
        if as_json:
            click.echo(json.dumps(event.as_dict(), sort_keys=True))
            continue
        extra = event.detail.get("refusal") or event.detail.get("error") or ""
        echo(f"#{event.seq:<6} {when(event.at)}  {event.outcome:7} {event.action:16} {event.target[:34]:34} "
                   f"by {event.actor} ({event.role or 'no role'}, os:{event.os_user})"
                   f"{'  why: ' + event.reason if event.reason else ''}{'  -- ' + extra if extra else ''}")
    if not as_json:
        echo(f"{shown} entr{'y' if shown == 1 else 'ies'}")
