"""``callguard evidence``: per-call evidence bundles that hold up without the operator's database.

``export`` writes a zip with the call's entries, their Merkle inclusion
proofs and the signed checkpoint(s) they lead to (docs/evidence-bundle.md);
``verify`` checks one offline with only the ledger's verifier key.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from callguard.cli.common import get_config
from callguard.cli.ledger import _reading, db_option, sign_now
from callguard.evidence import bundle
from callguard.evidence.export import ExportError, NotCheckpointed, collect


@click.group("evidence")
def evidence_group() -> None:
    """Per-call evidence bundles: export one, verify one offline."""


def _recordings(ctx: click.Context, contents: bundle.Contents, user: str | None, reason: str) -> None:
    from callguard.cli.vault_common import open_vault
    from callguard.vault.recordings import export as export_recording

    wanted = [e["data"]["recording_id"] for e in contents.entries
              if e["kind"] == "recording-stored" and isinstance(e["data"], dict) and e["data"].get("recording_id")]
    if not wanted:
        raise click.ClickException(f"call {contents.call_id!r} has no stored recording in the vault")
    with open_vault(ctx) as vault, tempfile.TemporaryDirectory() as tmp:
        for rid in wanted:
            out = Path(tmp) / f"{rid}.wav"
            export_recording(vault, user, rid, reason or f"evidence bundle of call {contents.call_id}", out)
            contents.recordings[rid] = out.read_bytes()


@evidence_group.command("export")
@click.argument("call_id")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The bundle to write (a .zip).")
@click.option("--reveal", is_flag=True,
              help="Include the personal data sealed in the entries (numbers, names) with their salts, so the "
                   "reader sees and can check them. Without it the bundle proves the events, not who.")
@click.option("--with-recording", is_flag=True,
              help="Include the decrypted recording (needs the vault private key and the export permission; "
                   "logged in the access log).")
@click.option("--as", "user", default=None, help="Act as this user (for --with-recording).")
@click.option("--reason", default="", help="Why the recording leaves the vault (logged).")
@db_option
@click.pass_context
def export_cmd(ctx: click.Context, call_id: str, output: Path, reveal: bool, with_recording: bool,
               user: str | None, reason: str, db_url: str | None) -> None:
    """Write CALL_ID's evidence bundle: entries, inclusion proofs, signed checkpoint(s), README."""
    if not output.parent.is_dir():
        raise click.ClickException(f"cannot write {output}: directory {str(output.parent)!r} does not exist")
    for attempt in range(2):
        try:
            with _reading(ctx, db_url) as engine, engine.connect() as connection:
                contents = collect(connection, call_id, reveal=reveal)
            break
        except NotCheckpointed:
            if attempt:
                raise
            sign_now(ctx, db_url)
        except ExportError as exc:
            raise click.ClickException(str(exc)) from None
    if with_recording:
        _recordings(ctx, contents, user, reason)
    bundle.write(output, contents)
    chains = ", ".join(f"{c} (checkpoint)" for c in sorted(contents.checkpoints))
    click.echo(f"wrote {output}: {len(contents.entries)} entries of call {call_id} from {chains}"
               + (f", {len(contents.openings)} personal value(s) revealed" if reveal else "")
               + (f", {len(contents.recordings)} recording(s)" if contents.recordings else ""))


@evidence_group.command("verify")
@click.argument("bundle_path", metavar="BUNDLE", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="The ledger's verifier key (.pub), obtained from a source you trust.")
def verify_cmd(bundle_path: Path, key_path: Path) -> None:
    """Check BUNDLE offline: every entry's hash, its inclusion proof, the checkpoint signature."""
    from callguard.evidence.signing import SigningKeyError, load_verifier

    try:
        verifier = load_verifier(key_path)
        report = bundle.verify(bundle_path, verifier)
    except (SigningKeyError, bundle.BundleError) as exc:
        raise click.ClickException(f"{bundle_path}: {exc}") from None
    for problem in report.problems:
        click.echo(f"  FAIL {problem}")
    if not report.ok:
        raise click.ClickException(f"{bundle_path}: NOT VERIFIED ({len(report.problems)} problem(s) above)")
    chains = ", ".join(f"{c} (tree size {n})" for c, n in sorted(report.chains.items()))
    click.echo(f"{bundle_path}: VERIFIED call {report.call_id}: {report.entries} entries proven in the signed "
               f"log(s) {chains}; {report.opened} personal value(s) checked; "
               f"{report.recordings_checked} recording(s) match the ledger")
