"""``callguard simulate``: run scripted calls through the real engine, no PBX needed.

For IVR designers and compliance officers: write a scenario (who calls from
where, what they press, when the agent pauses, who joins) and read the
evidence timeline the policy would produce.  ``[expect]`` in the scenario
turns it into a check that exits 1 when the outcome differs.
"""

from __future__ import annotations

import json

import click

from callguard.cli.common import get_config
from callguard.core.prompts import UnknownPrompt
from callguard.simulator import simulate
from callguard.testing.scenario import Scenario, ScenarioError
from callguard.timeline import render
from callguard.wiring import build_policy, build_prompts, build_session_settings


@click.command("simulate")
@click.argument("scenarios", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the ledger entries as JSON lines.")
@click.option("--trace", is_flag=True, help="Also show what the simulated PBX and caller did.")
@click.pass_context
def simulate_command(ctx: click.Context, scenarios: tuple[str, ...], as_json: bool, trace: bool) -> None:
    """Run each SCENARIO file (TOML) and print its evidence timeline.

    Exits 1 if a scenario's [expect] table does not match the outcome.
    """
    config = get_config(ctx)
    try:
        loaded = [Scenario.from_toml(path) for path in scenarios]
    except ScenarioError as exc:
        raise click.ClickException(f"invalid scenario:\n  {str(exc).replace(chr(10), chr(10) + '  ')}") from None
    try:
        prompts = build_prompts(config)
    except (UnknownPrompt, OSError, ValueError) as exc:
        raise click.ClickException(f"cannot load the prompt catalogue: {exc}") from None
    settings, policy = build_session_settings(config), build_policy(config)
    failures = 0
    for path, scenario in zip(scenarios, loaded):
        result = simulate(scenario, settings, policy, prompts)
        if as_json:
            for entry in result.entries:
                click.echo(json.dumps({"call_id": entry.call_id, "kind": entry.kind, "at": entry.at,
                                       "data": entry.data}, ensure_ascii=False, default=str))
            continue
        click.echo(f"== {scenario.name} ({path}) call {result.call_id}")
        for line in render(result.entries):
            click.echo("  " + line)
        if trace:
            click.echo("  -- simulated PBX and caller:")
            for when, text in result.trace:
                click.echo(f"  +{when:8.3f}s  {text}")
        facts = result.facts
        click.echo(f"  result: decision={facts['decision']} recorded={'yes' if facts['recorded'] else 'no'} "
                   f"final_state={facts['final_state']} violations={facts['violations']} regime={facts['regime']}")
        problems = result.failed_expectations()
        if scenario.expect:
            click.echo("  expectations: " + ("OK" if not problems else "FAILED"))
        for problem in problems:
            click.echo(f"    - {problem}")
        failures += bool(problems)
        click.echo("")
    if failures:
        raise click.ClickException(f"{failures} of {len(loaded)} scenario(s) did not meet their [expect]")
