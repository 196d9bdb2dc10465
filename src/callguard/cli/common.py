"""Helpers shared by the CLI modules: config loading with friendly errors."""

from __future__ import annotations

import click

from callguard.config import Config, ConfigError, load_config


def get_config(ctx: click.Context, path: str | None = None) -> Config:
    """Load the config named by ``--config`` (command or group level).

    A config problem becomes a :class:`click.ClickException` listing every
    problem, so the user fixes them all in one go.
    """
    root = ctx.find_root().obj or {}
    try:
        return load_config(path or root.get("config_path"))
    except ConfigError as exc:
        raise click.ClickException("invalid configuration:\n  " + "\n  ".join(exc.problems)) from None
