"""``callguard config check``: validate callguard.toml before a PBX relies on it."""

from __future__ import annotations

import click

from callguard.cli.common import get_config
from callguard.config import Config
from callguard.core.prompts import UnknownPrompt
from callguard.wiring import build_prompts


@click.group("config")
def config_group() -> None:
    """Inspect and validate the configuration."""


@config_group.command("check")
@click.argument("path", required=False, type=click.Path(dir_okay=False))
@click.option("--features", "features_conf", type=click.Path(dir_okay=False, exists=True), default=None,
              help="The PBX's Asterisk features.conf: warn when callguard's hotkeys collide with its feature codes.")
@click.pass_context
def check(ctx: click.Context, path: str | None, features_conf: str | None) -> None:
    """Check PATH (default: the active config) and report every problem."""
    config = get_config(ctx, path)
    problems = _prompt_problems(config)
    if problems:
        raise click.ClickException("invalid configuration:\n  " + "\n  ".join(problems))
    policy = config.policy
    click.echo(f"{config.source}: OK")
    click.echo(f"  listener: {config.listener.pbx}, chain {config.chain_id()}")
    click.echo(f"  ledger:   {config.ledger.url}")
    click.echo(f"  policy:   unknown -> {policy.unknown_regime}, unlisted -> {policy.default_regime},"
               f" home {policy.home or '(none)'}")
    click.echo(f"  vault:    {_ingest_line(config)}")
    if features_conf:
        click.echo(f"  hotkeys:  {_hotkey_line(features_conf)}")


def _hotkey_line(features_conf: str) -> str:
    """callguard's agent hotkeys against the PBX's features.conf (a collision means one key never fires)."""
    from pathlib import Path

    from callguard.adapters.asterisk.featurecodes import collisions, read_features

    try:
        codes = read_features(Path(features_conf))
    except OSError as exc:
        return f"WARNING: cannot read {features_conf}: {exc}"
    found = collisions(codes)
    if found:
        return "WARNING: " + "\n            WARNING: ".join(found)
    ours = [f"{c.name} {c.code}" for c in codes if c.name.startswith("callguard_")] or ["shipped *6 / *7"]
    return f"{', '.join(ours)}: no collision with {features_conf}"


def _ingest_line(config: Config) -> str:
    """Whether `callguard run` will encrypt recordings as calls end ([vault] ingest_on_stop), and why not."""
    from callguard.vault.autoingest import plan

    pbx = config.freeswitch if config.listener.pbx == "freeswitch" else config.asterisk
    decided = plan(config, pbx.recording_dir)
    if decided.enabled:
        return f"ingest on stop: {decided.why}"
    return f"{'WARNING: ' if decided.warn else ''}no ingest on stop: {decided.why}"


def _prompt_problems(config: Config) -> list[str]:
    """The prompts the engine will play must exist in every configured language."""
    try:
        prompts = build_prompts(config)
    except (OSError, ValueError) as exc:
        return [f"{config.source}: [prompts]: cannot load the catalogue: {exc}"]
    problems = []
    for language in config.prompts.languages:
        for prompt_id in (config.consent.notice_prompt, "opt-out-confirm", "renotice-join"):
            try:
                prompts.resolve(prompt_id, language)
            except UnknownPrompt as exc:
                key = "[consent] notice_prompt" if prompt_id == config.consent.notice_prompt else "[prompts]"
                problems.append(f"{config.source}: {key}: {exc}")
    return list(dict.fromkeys(problems))  # an unknown id is reported once, not per language
