"""Helpers shared by the CLI modules: config loading with friendly errors,
and the start-up and shutdown every ``callguard run <pbx>`` listener shares."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import click

from callguard.config import Config, ConfigError, load_config

if TYPE_CHECKING:
    from callguard.core.prompts import PromptResolver
    from callguard.ledger import Ledger


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


def with_overrides(config: Config, section: str, **values: Any) -> Config:
    """``config`` with the command-line options given (not None) replacing ``[section]`` keys."""
    given = {k: v for k, v in values.items() if v is not None}
    if not given:
        return config
    return dataclasses.replace(config, **{section: dataclasses.replace(getattr(config, section), **given)})


def setup_logging(level: str, log_format: str = "text") -> None:
    """Log to stderr as text for people, or as one JSON object per line (``[listener] log_format = "json"``)."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s",
                                           rename_fields={"asctime": "time", "levelname": "level", "name": "logger"}))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler])


def _start_up(config: Config, pbx: str, problems: list[str], log_level: str) -> "PromptResolver":
    """Refuse a config with ``problems``, set up logging, load the prompt catalogue."""
    from callguard.prompts.spec import CatalogError
    from callguard.wiring import build_prompts

    if problems:
        raise click.ClickException(f"cannot start the {pbx} listener:\n  " + "\n  ".join(problems))
    setup_logging(log_level, config.listener.log_format)
    try:
        return build_prompts(config)
    except CatalogError as exc:
        raise click.ClickException("cannot load the prompt catalogue:\n  " + "\n  ".join(exc.problems)) from None
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot load the prompt catalogue: {exc}") from None


def open_listener(config: Config, pbx: str, problems: list[str], log_level: str,
                  recordings: tuple[str, str] | None = None) -> tuple["PromptResolver", "Ledger"]:
    """Refuse a config with ``problems``; set up logging, load the prompts, open the ledger.

    Each failure a site can hit at start-up becomes one ClickException that
    names what is wrong, so a service manager shows the reason, not a traceback.
    ``recordings``: the PBX's recording directory and the setting naming it,
    for the vault ingest the ledger's writer process runs.
    """
    from callguard.ledger import LedgerError
    from callguard.wiring import build_ledger

    prompts = _start_up(config, pbx, problems, log_level)
    try:
        ledger = build_ledger(config, recordings=recordings)
    except LedgerError as exc:
        raise click.ClickException(f"cannot open the ledger: {exc}") from None
    return prompts, ledger


def check_listener(config: Config, pbx: str, problems: list[str], log_level: str,
                   probe: Coroutine[Any, Any, str]) -> None:
    """``run <pbx> --check``: what start-up does, for real, without starting or creating anything.

    The prompts are loaded, the ledger database is opened (never created:
    a missing SQLite file is reported with where ``run`` will create it) and
    ``probe`` connects and logs in to the PBX.  Each line printed is a fact
    checked just now; any failure exits 1 with the reason.
    """
    from callguard.adapters.asterisk.probe import ProbeFailed
    from callguard.ledger.db import LedgerError, probe_ledger

    try:
        prompts = _start_up(config, pbx, problems, log_level)
        ledger = probe_ledger(config.ledger.url)
        reached = asyncio.run(probe)
    except LedgerError as exc:
        raise click.ClickException(f"cannot open the ledger: {exc}") from None
    except ProbeFailed as exc:
        raise click.ClickException(f"cannot reach the {pbx} PBX: {exc}") from None
    finally:
        probe.close()  # never awaited when an earlier step failed
    click.echo(f"ok: prompts in {', '.join(sorted(prompts.languages()))}")
    click.echo(f"ok: {ledger}")
    click.echo(f"ok: {reached}")


def serve_until_stopped(main: Coroutine[Any, Any, None], ledger: "Ledger", fatal: tuple[type[Exception], ...],
                        log: logging.Logger) -> None:
    """Run the listener until SIGINT/SIGTERM; ``fatal`` errors end it with their message.

    The ledger is closed (and flushed) whatever happens: an entry the engine
    was told is written must reach the database before the process exits.
    """
    try:
        asyncio.run(main)
    except fatal as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        pass
    finally:
        if not ledger.close(timeout=30):
            log.error("some ledger entries could not be written (see above)")


#: what a listener command's ``--log-level`` accepts
LOG_LEVELS = click.Choice(["debug", "info", "warning", "error"], case_sensitive=False)
__all__ = ["LOG_LEVELS", "check_listener", "get_config", "open_listener", "serve_until_stopped", "setup_logging",
           "with_overrides"]
