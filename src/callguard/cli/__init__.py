"""The ``callguard`` command line.

Each area keeps its commands in its own module (``cli/policy.py``,
``cli/ledger.py``, ...) and this package only assembles them, so adding a
command never means editing a long file.  Errors the user can fix are
raised as :class:`click.ClickException` with a message that says what was
wrong and what to do; they exit non-zero without a traceback.
"""

from __future__ import annotations

import importlib

import click

from callguard import __version__

#: Modules under callguard.cli that define ``register(group)``.
COMMAND_MODULES = (
    "config",
    "demo",
    "ledger",
    "policy",
    "prompts",
    "run",
    "simulate",
    "vault",
    "keys",
    "recordings",
    "retention",
    "dsar",
    "audit",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="callguard")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              envvar="CALLGUARD_CONFIG", help="callguard.toml to use (default: ./callguard.toml, /etc/callguard/).")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """Lawful call recording for Asterisk and FreeSWITCH."""
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path


for _name in COMMAND_MODULES:
    importlib.import_module(f"callguard.cli.{_name}").register(main)
