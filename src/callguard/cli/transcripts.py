"""``callguard transcripts``: read and search call transcripts (``transcript:read``, with a reason, logged)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import click

from callguard.cli.vault_common import as_option, open_vault, reason_option, when
from callguard.transcripts import store


@click.group("transcripts")
def transcripts_group() -> None:
    """Call transcripts: show one call's, search a date range (transcript:read, logged)."""


def _words_text(words: list[list[object]], width: int = 100) -> list[str]:
    """Lines of about ``width`` characters, each starting with the time of its first word."""
    lines: list[str] = []
    current: list[str] = []
    start = 0.0
    for text, t0, _ in words:
        if not current:
            start = float(t0)  # type: ignore[arg-type]
        current.append(str(text))
        if sum(len(w) + 1 for w in current) >= width:
            lines.append(f"  [{start:7.2f}s] {' '.join(current)}")
            current = []
    if current:
        lines.append(f"  [{start:7.2f}s] {' '.join(current)}")
    return lines


@transcripts_group.command("show")
@click.argument("call_id")
@click.option("--json", "as_json", is_flag=True, help="The transcript JSON (words with start and end seconds).")
@reason_option()
@as_option
@click.pass_context
def show_cmd(ctx: click.Context, call_id: str, as_json: bool, reason: str, user: str | None) -> None:
    """Show the transcript(s) of CALL_ID (card numbers and configured patterns appear redacted)."""
    with open_vault(ctx) as vault:
        transcripts = store.show(vault, user, call_id, reason)
    if as_json:
        click.echo(json.dumps(transcripts, indent=1))
        return
    for t in transcripts:
        click.echo(f"transcript {t['transcript_id']} of recording {t['recording_id']} ({t['engine']}, "
                   f"{t['seconds']:.1f} s of audio)")
        for line in _words_text(t["words"]):
            click.echo(line)


def _epoch(value: datetime) -> float:
    return value.replace(tzinfo=value.tzinfo or timezone.utc).timestamp()


@transcripts_group.command("search")
@click.argument("text")
@click.option("--from", "start", required=True, type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M"]),
              help="First day (UTC) of calls to search.")
@click.option("--to", "end", required=True, type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M"]),
              help="Day (UTC) after the last one to search (exclusive).")
@click.option("--limit", default=100, show_default=True)
@reason_option()
@as_option
@click.pass_context
def search_cmd(ctx: click.Context, text: str, start: datetime, end: datetime, limit: int, reason: str,
               user: str | None) -> None:
    """Calls between --from and --to whose transcript contains TEXT (words, case-insensitive).

    There is no index: each transcript in the range is decrypted in memory
    and searched, so crypto-shredding a transcript's key leaves nothing to
    find (see the README).  Narrow the range to keep it quick.
    """
    t0, t1 = _epoch(start), _epoch(end)
    if t1 <= t0:
        raise click.UsageError("--to must be after --from")
    with open_vault(ctx) as vault:
        hits = store.search(vault, user, text, start=t0, end=t1, reason=reason, limit=limit)
    for hit in hits:
        click.echo(f"{hit.call_id}  at {hit.at_s:7.2f}s  ...{hit.snippet}...")
    click.echo(f"{len(hits)} call(s) between {when(t0)} and {when(t1)} mention {text!r}")


__all__ = ["transcripts_group"]
