"""``callguard payment``: card payments the agent never hears, on the running listener (through its API).

``start`` asks the listener to take a card from the caller's keypad
(``--amount``/``--currency`` to charge; without, the card is tokenized),
``cancel`` stops it, ``show`` prints where it is or how it ended, and
``watch`` follows the masked progress live (``card: 12 of 16 digits,
Visa``) - the same view the agent's screen gets, which never holds a digit.
The API token is read from $CALLGUARD_API_TOKEN (or the variable ``[web]
token_env`` names), as for ``callguard call``.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterator

import click

from callguard.cli.common import get_config


@click.group("payment")
def payment_group() -> None:
    """Card payments the agent never hears: start, cancel, show, watch (through the listener's API)."""


@contextmanager
def _api(ctx: click.Context) -> Iterator[Any]:
    from callguard.web.client import ApiError, ConsoleClient

    try:
        with ConsoleClient.from_config(get_config(ctx).web) as api:
            yield api
    except ApiError as exc:
        raise click.ClickException(str(exc)) from None


def progress_line(progress: dict[str, Any]) -> str:
    """One masked progress view as a line: time, call, what the agent may see."""
    stamp = time.strftime("%H:%M:%S", time.localtime(progress.get("at") or time.time()))
    lines = " | ".join(progress.get("lines") or [])
    message = progress.get("message") or ""
    return f"{stamp}  call {progress['call_id']}  {progress['phase']:<10}  {lines}" + (f"  ({message})" if message
                                                                                        else "")


def result_line(result: dict[str, Any]) -> str:
    """How a payment ended: outcome, brand and last four, the gateway's token or charge id; never more."""
    parts = [f"payment {result['payment_id']}: {result['outcome']}"]
    if result.get("brand"):
        parts.append(f"{result['brand']} ending {result.get('last4') or '?'}")
    if result.get("amount"):
        parts.append(f"{result['amount']} {result.get('currency', '')}".strip())
    for key in ("token", "reference"):
        if result.get(key):
            parts.append(f"{key} {result[key]}")
    if result.get("reason"):
        parts.append(f"({result['reason']})")
    return ", ".join(parts)


def _echo_status(answer: dict[str, Any]) -> None:
    if answer.get("progress"):
        click.echo(progress_line(answer["progress"]))
    if answer.get("result"):
        click.echo(result_line(answer["result"]))


@payment_group.command("start")
@click.argument("call_id", default="current")
@click.option("--amount", default=None, help="Amount to charge, e.g. 49.90 (none: only tokenize the card).")
@click.option("--currency", default="", help="ISO 4217 code, e.g. GBP (with --amount).")
@click.option("--watch", "then_watch", is_flag=True, help="Then follow its progress until it ends.")
@click.pass_context
def start(ctx: click.Context, call_id: str, amount: str | None, currency: str, then_watch: bool) -> None:
    """Take a card from the keypad of the caller on CALL_ID (default: your current call).

    Returns once the recording is muted and the agent's leg guarded (both
    confirmed by the PBX) and the caller is being asked for the card.
    """
    if amount is not None and not currency:
        raise click.UsageError("--amount needs --currency (e.g. --currency GBP)")
    with _api(ctx) as api:
        answer = api.start_card_payment(call_id, amount, currency)
        _echo_status(answer)
        if then_watch and not answer.get("result"):
            _follow(api, answer["call_id"])


@payment_group.command("cancel")
@click.argument("call_id", default="current")
@click.pass_context
def cancel(ctx: click.Context, call_id: str) -> None:
    """Cancel the card payment running on CALL_ID (default: your current call)."""
    with _api(ctx) as api:
        _echo_status(api.cancel_card_payment(call_id))


@payment_group.command("show")
@click.argument("call_id", default="current")
@click.pass_context
def show(ctx: click.Context, call_id: str) -> None:
    """Where the latest card payment of CALL_ID is, or how it ended."""
    with _api(ctx) as api:
        _echo_status(api.card_payment(call_id))


@payment_group.command("watch")
@click.argument("call_id", required=False)
@click.pass_context
def watch(ctx: click.Context, call_id: str | None) -> None:
    """Follow card payments live: every one you may see, or CALL_ID's until it ends."""
    with _api(ctx) as api:
        _follow(api, call_id)


def _follow(api: Any, call_id: str | None) -> None:
    for progress in api.watch_card_payments(call_id):
        click.echo(progress_line(progress))
        if progress["phase"] == "ended":
            result = api.card_payment(progress["call_id"]).get("result")
            if result:
                click.echo(result_line(result))
            if call_id is not None:
                return


__all__ = ["payment_group", "progress_line", "result_line"]
