"""Shared pieces of the vault commands: ``--as``, opening the vault, error wording."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import click
from sqlalchemy.exc import SQLAlchemyError

from callguard.cli.common import get_config
from callguard.cli.text import plain_text, safe
from callguard.ledger.db import LedgerError, error_text
from callguard.wav import AudioFormatError
from callguard.vault.envelope import VaultError
from callguard.vault.service import Vault


def as_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--as", "user", metavar="USER", default=None, callback=plain_text,
        help="Who is acting (default: your login). Must be in [users]; every attempt is logged.",
    )(command)


def reason_option(required: bool = True, help_text: str = "Why (goes into the access log).") -> Callable[..., Any]:
    return click.option("--reason", required=required, default=None if required else "", metavar="TEXT",
                        help=help_text, callback=plain_text)


@contextmanager
def vault_errors() -> Iterator[None]:
    """Vault, ledger and database errors become one clear line and a non-zero exit."""
    try:
        yield
    except (VaultError, LedgerError, AudioFormatError) as exc:
        raise click.ClickException(safe(str(exc))) from None
    except SQLAlchemyError as exc:
        raise click.ClickException(f"database error: {error_text(exc)}") from None
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        raise click.ClickException(f"{where}{exc.strerror or exc}") from None


@contextmanager
def open_vault(ctx: click.Context) -> Iterator[Vault]:
    config = get_config(ctx)
    with vault_errors():
        vault = Vault.open(config)
        try:
            yield vault
        finally:
            vault.close()


def when(t: float | None) -> str:
    if t is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(t)) + "Z"


def day(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d", time.gmtime(t))


def size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


__all__ = ["as_option", "day", "open_vault", "reason_option", "size", "vault_errors", "when"]
