"""``callguard config check``: validate callguard.toml before a PBX relies on it."""

from __future__ import annotations

import click

from callguard.cli.common import get_config


@click.group("config")
def config_group() -> None:
    """Inspect and validate the configuration."""


@config_group.command("check")
@click.argument("path", required=False, type=click.Path(dir_okay=False))
@click.pass_context
def check(ctx: click.Context, path: str | None) -> None:
    """Check PATH (default: the active config) and report every problem."""
    config = get_config(ctx, path)
    policy = config.policy
    click.echo(f"{config.source}: OK")
    click.echo(f"  listener: {config.listener.pbx}, chain {config.chain_id()}")
    click.echo(f"  ledger:   {config.ledger.url}")
    click.echo(f"  policy:   unknown -> {policy.unknown_regime}, unlisted -> {policy.default_regime},"
               f" home {policy.home or '(none)'}")


def register(main: click.Group) -> None:
    main.add_command(config_group)
