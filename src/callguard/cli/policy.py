"""``callguard policy explain``: which rule applies to a set of numbers, and why."""

from __future__ import annotations

import json

import click

from callguard.cli.common import get_config
from callguard.core.policy import Rule
from callguard.wiring import build_policy


@click.group("policy")
def policy_group() -> None:
    """Inspect the consent policy."""


@policy_group.command("explain")
@click.argument("numbers", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print the rule as JSON.")
@click.pass_context
def explain(ctx: click.Context, numbers: tuple[str, ...], as_json: bool) -> None:
    """Show each party's jurisdiction and regime and the resulting rule.

    Pass every number on the call (E.164, e.g. +14155550123); use
    'anonymous' for a withheld number.  A number that is not a valid phone
    number is explained (the engine treats that party as unknown: strictest
    rule) and then reported as an error, exit status 1: it is usually a typo.
    """
    policy = build_policy(get_config(ctx))
    rule = policy.evaluate(numbers)
    if as_json:
        click.echo(json.dumps(rule.as_dict(), indent=2, ensure_ascii=False))
    else:
        _print_rule(rule)
    malformed = [p for p in rule.parties if p.jurisdiction.malformed]
    if malformed:
        raise click.ClickException(
            "not valid phone numbers (explained above as unknown parties, strictest rule): "
            + "; ".join(p.jurisdiction.description for p in malformed)
            + ". Give numbers in E.164 form, e.g. +14155550123, or 'anonymous' for a withheld one.")


def _print_rule(rule: Rule) -> None:
    for party in rule.parties:
        click.echo(f"{party.number}")
        click.echo(f"  jurisdiction: {party.jurisdiction.code} ({party.jurisdiction.description})")
        click.echo(f"  regime:       {party.regime}")
        click.echo(f"  why:          {party.reason}")
    click.echo("")
    click.echo(f"rule: {rule.regime}")
    click.echo(f"  recording allowed:  {'yes' if rule.recording_allowed else 'no'}")
    click.echo(f"  notice required:    {'yes' if rule.notice_required else 'no'}")
    click.echo(f"  explicit consent:   {'yes' if rule.explicit_consent else 'no (notice + opt-out)'}")
    click.echo(f"  lawful basis noted: {'yes' if rule.lawful_basis_required else 'no'}")
    for reason in rule.reasons:
        click.echo(f"  - {reason}")
