"""``callguard run freeswitch``: the FreeSWITCH listener as a long-running service.

Reads ``[freeswitch]`` (and the rest of callguard.toml), opens the ledger,
loads the prompt catalogue, listens for the dialplan's ``socket``
connections, logs in to the event socket and serves until SIGINT/SIGTERM;
then parked channels go back to their dialplan (fail-closed path) and the
ledger is flushed.  What a site can get wrong at start-up (the default
password, a recording directory FreeSWITCH would split on spaces, a decline
destination that is not a transfer target, the port already taken, a
password or ACL that FreeSWITCH refuses, an unreachable database) is
reported in one sentence with what to do, and exits non-zero.
"""

from __future__ import annotations

import logging

import click

from callguard.cli.common import (LOG_LEVELS, check_listener, get_config, open_listener, serve_until_stopped,
                                  with_overrides)
from callguard.config import Config

log = logging.getLogger("callguard.freeswitch")


def check_freeswitch_config(config: Config) -> list[str]:
    """Problems that would stop the listener from working, worded for the admin."""
    from callguard.adapters.freeswitch.commands import WireError, check_destination, check_directory

    fs = config.freeswitch
    problems = []
    if not fs.password:
        problems.append("[freeswitch] password is empty: set it to event_socket.conf.xml's password, preferably "
                        "through the environment as CALLGUARD_FREESWITCH__PASSWORD")
    elif fs.password == "ClueCon" and fs.host not in ("127.0.0.1", "::1", "localhost"):
        problems.append(f"[freeswitch] password is FreeSWITCH's default 'ClueCon' for a remote host {fs.host}: "
                        f"change it in event_socket.conf.xml and here")
    for check in (lambda: check_directory(fs.recording_dir, "[freeswitch] recording_dir"),
                  lambda: config.consent.decline_destination and check_destination(config.consent.decline_destination)):
        try:
            check()
        except WireError as exc:
            problems.append(str(exc))
    if not 0 < fs.heartbeat_interval_s <= 3:
        problems.append(f"[freeswitch] heartbeat_interval_s = {fs.heartbeat_interval_s:g}: use 0 < interval <= 3 so "
                        f"callguard.xml's staleness limit (callguard_stale_after, 6 s) sees at least two beats")
    if not 0 <= fs.listen_port <= 65535 or not 0 < fs.port <= 65535:
        problems.append("[freeswitch] port and listen_port must be TCP ports (1-65535)")
    if fs.max_calls < 1:
        problems.append("[freeswitch] max_calls must be at least 1")
    return problems


@click.command("freeswitch")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="callguard.toml to use (default: the global --config, ./callguard.toml, /etc/callguard/).")
@click.option("--host", default=None, help="Override [freeswitch] host (the event socket).")
@click.option("--port", type=int, default=None, help="Override [freeswitch] port (the event socket).")
@click.option("--listen-port", type=int, default=None, help="Override [freeswitch] listen_port (the dialplan's socket).")
@click.option("--log-level", type=LOG_LEVELS, default="info", show_default=True)
@click.option("--check", is_flag=True,
              help="Check the configuration and prompts, open the ledger, log in to the event socket, then exit.")
@click.pass_context
def freeswitch(ctx: click.Context, config_path: str | None, host: str | None, port: int | None,
               listen_port: int | None, log_level: str, check: bool) -> None:
    """Serve FreeSWITCH's `socket` application and watch its event socket.

    Include dialplan/freeswitch/*.xml on the PBX first (see dialplan/README.md).
    """
    from callguard.adapters.freeswitch.inbound import InboundRefused
    from callguard.adapters.freeswitch.listener import serve

    config = with_overrides(get_config(ctx, config_path), "freeswitch", host=host, port=port,
                            listen_port=listen_port)
    if check:
        from callguard.adapters.freeswitch.probe import probe_esl

        check_listener(config, "FreeSWITCH", check_freeswitch_config(config), log_level, probe_esl(config.freeswitch))
        click.echo(f"    the dialplan's socket will be served on {config.freeswitch.listen_host}:"
                   f"{config.freeswitch.listen_port}")
        return
    prompts, ledger = open_listener(config, "FreeSWITCH", check_freeswitch_config(config), log_level,
                                    (config.freeswitch.recording_dir, "[freeswitch] recording_dir"))
    # RuntimeError: e.g. the outbound port is taken
    serve_until_stopped(serve(config, ledger, prompts=prompts), ledger, (InboundRefused, RuntimeError), log)


__all__ = ["check_freeswitch_config", "freeswitch"]
