"""The ``callguard`` command line.

Each area keeps its commands in its own module (``cli/policy.py``,
``cli/ledger.py``, ...) and this package only names them.  Commands are
imported when used, not at start-up: ``callguard policy explain`` should not
pay for loading the vault's crypto, the adapters' event loops or numpy, and
``callguard --help`` lists everything from the table below without
importing any of it.  Errors the user can fix are raised as
:class:`click.ClickException` with a message that says what was wrong and
what to do; they exit non-zero without a traceback.
"""

from __future__ import annotations

import importlib

import click

from callguard import __version__

#: command name -> (module, attribute, one-line help shown by --help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "audit": ("callguard.cli.audit", "audit",
              "Run the monthly audit over the ledger and the vault and print the checklist."),
    "call": ("callguard.cli.console", "call_group",
             "Live calls on the running listener: list, show, pause, resume (through its API)."),
    "config": ("callguard.cli.config", "config_group", "Inspect and validate the configuration."),
    "console": ("callguard.cli.console", "console_group", "Web console users and API tokens."),
    "demo": ("callguard.cli.demo", "demo_command",
             "Run demo calls (consent, decline, payment pause, late joiner, ...) and summarise the evidence."),
    "dsar": ("callguard.cli.dsar", "dsar_group",
             "Data-subject requests: open, export, erase, list (--overdue), close."),
    "evidence": ("callguard.cli.evidence", "evidence_group",
                 "Per-call evidence bundles: export one, verify one offline."),
    "hold": ("callguard.cli.retention", "hold_group",
             "Legal holds: keep recordings past their retention while a case needs them."),
    "keys": ("callguard.cli.keys", "keys_group", "Vault key pairs (X25519): generate, import, rotate, list, re-wrap."),
    "leaks": ("callguard.cli.leaks", "leaks_command",
              "One report of keypad tones left audible and card data spoken while recording (spans, never digits)."),
    "ledger": ("callguard.cli.ledger", "ledger_group", "Verify, show and export the evidence ledger."),
    "payment": ("callguard.cli.payment", "payment_group",
                "Card payments the agent never hears: start, cancel, show, watch (through the listener's API)."),
    "policy": ("callguard.cli.policy", "policy_group", "Inspect the consent policy."),
    "prompts": ("callguard.cli.prompts", "prompts_group",
                "IVR prompts: catalogue, audio for Asterisk and FreeSWITCH, checks."),
    "recordings": ("callguard.cli.recordings", "recordings_group",
                   "Find and access recordings in the vault (by role, with a reason, logged)."),
    "retention": ("callguard.cli.retention", "retention_group", "Retention per purpose: see what is due, and sweep it."),
    "run": ("callguard.cli.run", "run", "Run a listener that makes the PBX's call recording lawful."),
    "simulate": ("callguard.cli.simulate", "simulate_command",
                 "Run each SCENARIO file (TOML) and print its evidence timeline."),
    "transcripts": ("callguard.cli.transcripts", "transcripts_group",
                    "Call transcripts: show one call's, search a date range (transcript:read, logged)."),
    "vault": ("callguard.cli.vault", "vault_group", "Encrypted recording storage: ingest, verify, status."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        entry = COMMANDS.get(name)
        if entry is None:
            return None
        module, attribute, _ = entry
        return getattr(importlib.import_module(module), attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="callguard")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              envvar="CALLGUARD_CONFIG", help="callguard.toml to use (default: ./callguard.toml, /etc/callguard/).")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """Lawful call recording for Asterisk and FreeSWITCH."""
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path
