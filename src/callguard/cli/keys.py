"""``callguard keys``: the vault's key pairs - generate, import, rotate, re-wrap.

The private key is the only thing that can decrypt recordings.  Generate it
where decrypting is allowed (not on the PBX host), protect it with a
passphrase, and copy only the public key to the PBX host
(``keys export-public`` there, ``keys import`` here).
"""

from __future__ import annotations

import os
from pathlib import Path

import click
from rich.progress import Progress

from callguard.cli.common import get_config
from callguard.cli.text import echo
from callguard.cli.vault_common import as_option, open_vault, reason_option, vault_errors, when
from callguard.vault.keys import Keyring, generate_pair, key_id, load_public, private_pem, public_pem, write_atomic
from callguard.vault.rotation import rewrap


@click.group("keys")
def keys_group() -> None:
    """Vault key pairs (X25519): generate, import, rotate, list, re-wrap."""


def _keyring(ctx: click.Context) -> Keyring:
    settings = get_config(ctx).vault
    return Keyring(Path(settings.keyring) if settings.keyring else Path(settings.dir) / "keyring")


def _log(ctx: click.Context, action: str, target: str, detail: dict) -> None:
    """Key events go into the access log when the database is reachable (keys may precede it)."""
    try:
        with open_vault(ctx) as vault:
            vault.log_system(action, target, "key management", detail)
    except click.ClickException as exc:
        echo(f"note: not logged ({exc.message})", err=True)


def _passphrase(ctx: click.Context, no_passphrase: bool, env: str | None = None) -> bytes | None:
    if no_passphrase:
        return None
    env = env or get_config(ctx).vault.passphrase_env
    if os.environ.get(env):
        return os.environ[env].encode()
    if click.get_text_stream("stdin").isatty():
        value = click.prompt("Passphrase for the new private key", hide_input=True, confirmation_prompt=True)
        if len(value) < 12:
            raise click.ClickException("use a passphrase of at least 12 characters")
        return value.encode()
    raise click.ClickException(f"no passphrase: set ${env}, run interactively, or pass --no-passphrase "
                               f"(then protect the file some other way)")


def _generate(ctx: click.Context, private_out: Path | None, no_passphrase: bool, activate: bool | None,
              comment: str) -> None:
    settings = get_config(ctx).vault
    ring = _keyring(ctx)
    with vault_errors():
        first = ring.active_id() is None
        private = generate_pair()
        kid = key_id(private.public_key())
        if private_out is None:
            if not settings.private_keys:
                raise click.ClickException("where should the private key go? pass --private-out PATH or set "
                                           "[vault] private_keys (keep it off the PBX host)")
            private_out = Path(settings.private_keys) / f"{kid}.pem"
        if private_out.exists():
            raise click.ClickException(f"{private_out} already exists; not overwriting a private key")
        pem = private_pem(private, _passphrase(ctx, no_passphrase))
        write_atomic(private_out, pem, 0o600)
        ring.add(private.public_key(), activate=first if activate is None else activate, comment=comment)
    active = ring.active_id() == kid
    echo(f"key {kid}{' (active: new recordings are encrypted for it)' if active else ''}")
    echo(f"  private key: {private_out} (mode 0600{'' if no_passphrase else ', passphrase-protected'})")
    echo(f"  public key:  {ring.dir / f'{kid}.pub.pem'}")
    click.echo("  Keep the private key where decryption is allowed and back it up safely: without it the "
               "recordings wrapped for this key cannot be read.")
    _log(ctx, "keys-generate", kid, {"activated": active, "private_out": str(private_out)})


def _generate_ledger_signing(ctx: click.Context, private_out: Path | None, no_passphrase: bool,
                             name: str | None) -> None:
    from callguard.evidence.signing import SigningKeyError, generate as generate_signing, public_path

    settings = get_config(ctx).evidence
    path = private_out or Path(settings.signing_key)
    try:
        signer = generate_signing(path, name or f"{settings.origin}/ledger", _passphrase(ctx, no_passphrase,
                                                                                          settings.passphrase_env))
    except SigningKeyError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"ledger signing key {signer.verifier.vkey}")
    click.echo(f"  private key:  {path} (mode 0600{'' if no_passphrase else ', passphrase-protected'}); the "
               "listener signs checkpoints with it: keep it on the listener host only")
    click.echo(f"  verifier key: {public_path(path)}: give this file to whoever checks checkpoints and "
               "evidence bundles (`callguard evidence verify BUNDLE --key ...`)")
    _log(ctx, "keys-generate", signer.verifier.vkey, {"kind": "ledger-signing", "private_out": str(path)})


@keys_group.command("generate")
@click.option("--kind", type=click.Choice(["vault", "ledger-signing"]), default="vault", show_default=True,
              help="vault: X25519 pair that encrypts recordings; ledger-signing: Ed25519 key that signs "
                   "ledger checkpoints.")
@click.option("--private-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the private key (default: [vault] private_keys/<kid>.pem, or "
                   "[evidence] signing_key for ledger-signing).")
@click.option("--no-passphrase", is_flag=True, help="Write the private key unencrypted.")
@click.option("--activate/--no-activate", default=None,
              help="Make it the key new recordings use (default: only if there is no active key).")
@click.option("--comment", default="", help="A note kept in the keyring (e.g. who holds the private key).")
@click.option("--name", default=None,
              help="ledger-signing only: the key name in signatures (default: <[evidence] origin>/ledger).")
@click.pass_context
def generate(ctx: click.Context, kind: str, private_out: Path | None, no_passphrase: bool, activate: bool | None,
             comment: str, name: str | None) -> None:
    """Generate a key pair: the public half goes into the keyring, the private half to a file."""
    if kind == "ledger-signing":
        _generate_ledger_signing(ctx, private_out, no_passphrase, name)
    else:
        _generate(ctx, private_out, no_passphrase, activate, comment)


@keys_group.command("rotate")
@click.option("--private-out", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--no-passphrase", is_flag=True)
@click.option("--comment", default="")
@click.pass_context
def rotate(ctx: click.Context, private_out: Path | None, no_passphrase: bool, comment: str) -> None:
    """Generate a new key and make it active; old recordings stay readable with their old key."""
    _generate(ctx, private_out, no_passphrase, True, comment)


@keys_group.command("import")
@click.argument("public_pem", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--activate", is_flag=True, help="Make it the key new recordings use.")
@click.pass_context
def import_cmd(ctx: click.Context, public_pem: Path, activate: bool) -> None:
    """Add a public key (made elsewhere) to this host's keyring - the PBX host's setup step."""
    ring = _keyring(ctx)
    with vault_errors():
        kid = ring.add(load_public(public_pem), activate=activate or ring.active_id() is None)
    echo(f"imported key {kid}{' (active)' if ring.active_id() == kid else ''}")
    _log(ctx, "keys-import", kid, {"activated": ring.active_id() == kid})


@keys_group.command("export-public")
@click.argument("kid", required=False)
@click.pass_context
def export_public(ctx: click.Context, kid: str | None) -> None:
    """Print a public key (default: the active one) to copy to a PBX host."""
    ring = _keyring(ctx)
    with vault_errors():
        kid = kid or ring.active()[0]
        click.echo(public_pem(ring.public(kid)).decode(), nl=False)


@keys_group.command("activate")
@click.argument("kid")
@click.pass_context
def activate_cmd(ctx: click.Context, kid: str) -> None:
    """Make KID (already in the keyring) the key new recordings use."""
    ring = _keyring(ctx)
    with vault_errors():
        ring.add(ring.public(kid), activate=True)
    echo(f"key {kid} is active")
    _log(ctx, "keys-activate", kid, {})


@keys_group.command("list")
@click.pass_context
def list_cmd(ctx: click.Context) -> None:
    """Keys in the keyring, which is active, and whether its private key is on this host."""
    settings = get_config(ctx).vault
    ring = _keyring(ctx)
    with vault_errors():
        keys = ring.keys()
        active = ring.active_id()
    if not keys:
        echo(f"no keys in {ring.dir}; run `callguard keys generate`")
        return
    private_dir = Path(settings.private_keys) if settings.private_keys else None
    for info in keys:
        state = "active" if info.kid == active else ("retired " + when(info.retired_at)) if info.retired_at else "-"
        here = private_dir is not None and (private_dir / f"{info.kid}.pem").exists()
        echo(f"{info.kid}  created {when(info.created_at)}  {state}"
                   f"{'  private key here' if here else ''}{'  ' + info.comment if info.comment else ''}")


@keys_group.command("rewrap")
@click.option("--from", "from_kid", required=True, metavar="KID", help="The old key to move recordings off.")
@reason_option()
@as_option
@click.pass_context
def rewrap_cmd(ctx: click.Context, from_kid: str, reason: str, user: str | None) -> None:
    """Re-wrap every recording of an old key for the active key (needs the old private key)."""
    with open_vault(ctx) as vault, Progress(transient=True) as progress:
        task = progress.add_task("re-wrapping", total=None)
        report = rewrap(vault, user, from_kid, reason,
                        progress=lambda done, total: progress.update(task, completed=done, total=total))
    for rid, error in report.failed.items():
        echo(f"FAILED {rid}: {error}", err=True)
    echo(f"{len(report.rewrapped)} recording(s) moved from key {report.from_kid} to {report.to_kid}")
    if report.failed:
        raise click.exceptions.Exit(1)
    echo(f"No stored recording needs key {from_kid} any more; its private key may be destroyed.")
