"""``callguard console``: console users and API tokens; ``callguard call``: live calls over the API.

Users and tokens live in ``[web] credentials`` (see :mod:`callguard.web.users`);
their roles in ``[users]``.  ``callguard call`` talks to the running
listener through its API with the token in ``$CALLGUARD_API_TOKEN`` (or
``[web] token_env``), so a pause from a script is logged with that user,
like a click in the console.
"""

from __future__ import annotations

import json

import click

from callguard.cli.common import get_config


def _credentials(ctx: click.Context):  # type: ignore[no-untyped-def]
    from callguard.web.users import Credentials

    return Credentials(get_config(ctx).web.credentials)


@click.group("console")
def console_group() -> None:
    """Web console users and API tokens.

    Roles come from [users] in callguard.toml, the same table the vault uses.
    """


@console_group.group("user")
def user_group() -> None:
    """Add, list and remove console users."""


@user_group.command("add")
@click.argument("name")
@click.option("--endpoint", "endpoints", multiple=True, metavar="ENDPOINT",
              help="A PBX endpoint that is this person's phone (e.g. PJSIP/agent-101); repeat for more. "
                   "Agents act only on calls one of their endpoints is on.")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="The password (prompted when not given; at least 10 characters).")
@click.pass_context
def user_add(ctx: click.Context, name: str, endpoints: tuple[str, ...], password: str) -> None:
    """Create NAME (or set a new password and endpoints); their role is [users] NAME in callguard.toml."""
    from callguard.web.users import CredentialsError

    config = get_config(ctx)
    try:
        _credentials(ctx).set_user(name, password, list(endpoints) if endpoints else None)
    except CredentialsError as exc:
        raise click.ClickException(str(exc)) from None
    role = config.users.get(name)
    click.echo(f"console user {name} saved in {config.web.credentials}")
    if role is None:
        click.echo(f"warning: {name} has no role yet: add `{name} = \"supervisor\"` (or agent, compliance, admin) "
                   f"under [users] in {config.source}; until then they can log in but do nothing", err=True)


@user_group.command("list")
@click.pass_context
def user_list(ctx: click.Context) -> None:
    """Every console user with role, endpoints and token ids."""
    config = get_config(ctx)
    for user in _credentials(ctx).users():
        tokens = ", ".join(t.id + (f" ({t.label})" if t.label else "") for t in user.tokens) or "-"
        click.echo(f"{user.name}\trole={config.users.get(user.name, '(none)')}\t"
                   f"endpoints={','.join(user.endpoints) or '-'}\ttokens={tokens}")


@user_group.command("remove")
@click.argument("name")
@click.pass_context
def user_remove(ctx: click.Context, name: str) -> None:
    """Remove NAME: their sessions and tokens stop working at once."""
    if not _credentials(ctx).remove_user(name):
        raise click.ClickException(f"no console user {name!r}; `callguard console user list` shows them")
    click.echo(f"console user {name} removed")


@console_group.group("token")
def token_group() -> None:
    """API tokens (for CRM integrations, scripts, Prometheus)."""


@token_group.command("create")
@click.argument("name")
@click.option("--label", default="", help="What the token is for (shown by `user list`).")
@click.pass_context
def token_create(ctx: click.Context, name: str, label: str) -> None:
    """Print a new API token for NAME (shown once; only its hash is stored)."""
    from callguard.web.users import CredentialsError

    try:
        click.echo(_credentials(ctx).add_token(name, label))
    except CredentialsError as exc:
        raise click.ClickException(str(exc)) from None


@token_group.command("revoke")
@click.argument("token_id")
@click.pass_context
def token_revoke(ctx: click.Context, token_id: str) -> None:
    """Revoke a token by its id (the part after cgt_, see `user list`)."""
    owner = _credentials(ctx).revoke_token(token_id)
    if owner is None:
        raise click.ClickException(f"no token with id {token_id!r}; `callguard console user list` shows them")
    click.echo(f"token {token_id} of {owner} revoked")


# -- callguard call: live calls through the running listener's API ------------------------


@click.group("call")
def call_group() -> None:
    """Live calls on the running listener: list, show, pause, resume (through its API).

    The API token is read from $CALLGUARD_API_TOKEN (or the variable [web] token_env names).
    """


def _api(ctx: click.Context, action: str, call_id: str) -> None:
    from callguard.web.client import ApiError, ConsoleClient

    try:
        with ConsoleClient.from_config(get_config(ctx).web) as api:
            result = getattr(api, action)(call_id)
    except ApiError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(result, indent=1, default=str))


def _call_command(action: str, help_text: str) -> click.Command:
    @click.command(action.replace("_", "-"), help=help_text)
    @click.argument("call_id", default="current")
    @click.pass_context
    def command(ctx: click.Context, call_id: str) -> None:
        _api(ctx, action, call_id)

    return command


for _action, _help in (("call", "Show CALL_ID (default: your current call)."),
                       ("pause", "Pause the recording of CALL_ID (default: your current call); waits for the PBX."),
                       ("resume", "Resume the recording of CALL_ID (default: your current call).")):
    call_group.add_command(_call_command(_action, _help), "show" if _action == "call" else _action)


@call_group.command("list")
@click.pass_context
def call_list(ctx: click.Context) -> None:
    """Live calls you may see."""
    from callguard.web.client import ApiError, ConsoleClient

    try:
        with ConsoleClient.from_config(get_config(ctx).web) as api:
            calls = api.calls()
    except ApiError as exc:
        raise click.ClickException(str(exc)) from None
    for call in calls:
        click.echo(f"{call['call_id']}\t{call['state']}\t{call['regime'] or '-'}\t{call['decision'] or '-'}\t"
                   f"{','.join(call['mute_reasons']) or '-'}")
