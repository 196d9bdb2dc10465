"""Free text on the way in and out of the CLI: one line, no terminal control.

Reasons, notes, case references, user names and caller-controlled data end
up in logs that people read line by line.  A newline in ``--reason`` would
forge a whole extra line in ``vault log``; an escape sequence could rewrite
the terminal.  So options that take free text refuse control characters
(:func:`plain_text`), and everything printed goes through :func:`safe`,
which shows any control character that got in another way (an older row,
the API, a user name given to ``--as``) as its escape, e.g. ``\\n``.
"""

from __future__ import annotations

from typing import Any

import click


def safe(value: object) -> str:
    """``value`` as text with every non-printable character shown as its Python escape."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def plain_text(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Click callback: refuse a free-text option containing control characters (newlines, escapes)."""
    if isinstance(value, str) and not value.isprintable():
        bad = next(ch for ch in value if not ch.isprintable())
        raise click.BadParameter(f"must be one line of plain text; it contains {safe(bad)!s} "
                                 f"(control characters would forge or hide lines in the logs)")
    return value


__all__ = ["plain_text", "safe"]


def echo(message: object = "", *, err: bool = False) -> None:
    """``click.echo`` of one line whose fields may hold free text: control characters are shown escaped."""
    click.echo(safe(message), err=err)


__all__ += ["echo"]
