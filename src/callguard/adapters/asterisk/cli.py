"""``callguard run asterisk``: the listener as a long-running service.

Reads ``[asterisk]`` (and the rest of callguard.toml), opens the ledger,
loads the prompt catalogue, connects to AMI and serves until SIGINT or
SIGTERM, then releases parked channels, stops unsupervised recordings and
flushes the ledger.  Everything a site can get wrong at start-up (no
secret, a missing CA file, the wrong password, an unreachable database)
is reported in one sentence with what to do, and exits non-zero.
"""

from __future__ import annotations

import logging
import os

import click

from callguard.cli.common import (LOG_LEVELS, check_listener, get_config, open_listener, serve_until_stopped,
                                  with_overrides)
from callguard.config import Config

log = logging.getLogger("callguard.asterisk")


def check_asterisk_config(config: Config) -> list[str]:
    """Problems that would stop the listener from working, worded for the admin."""
    a = config.asterisk
    problems = []
    if not a.secret:
        problems.append("[asterisk] secret is empty: set it in callguard.toml or, better, in the environment as "
                        "CALLGUARD_ASTERISK__SECRET (the secret of the [callguard] user in manager.conf)")
    if a.tls and a.ca_file and not os.path.isfile(a.ca_file):
        problems.append(f"[asterisk] ca_file {a.ca_file!r} does not exist; point it at the CA that signed "
                        f"Asterisk's AMI certificate (manager.conf tlscertfile)")
    if not a.recording_dir or not a.recording_dir.startswith("/"):
        problems.append(f"[asterisk] recording_dir {a.recording_dir!r} must be an absolute path on the PBX host "
                        f"(e.g. /var/spool/asterisk/monitor/callguard)")
    if a.heartbeat_interval_s <= 0 or a.heartbeat_interval_s > 3:
        problems.append(f"[asterisk] heartbeat_interval_s = {a.heartbeat_interval_s:g}: use 0 < interval <= 3 so "
                        f"the dialplan's staleness limit (CALLGUARD_STALE_AFTER, 6 s) sees at least two beats")
    if a.agi_guard_s <= a.heartbeat_interval_s:
        problems.append(f"[asterisk] agi_guard_s = {a.agi_guard_s:g} must be longer than heartbeat_interval_s = "
                        f"{a.heartbeat_interval_s:g}: the listener pushes the guard back once per heartbeat, so "
                        f"a shorter guard would send live calls to the fallback (e.g. agi_guard_s = 3)")
    return problems


def _dtmf_class(config: Config, manager_conf: str | None, problems: list[str]) -> str:
    """Check manager.conf for the dtmf read class: a problem when payments are on, else a line to print."""
    from callguard.adapters.asterisk.amiuser import DEFAULT_MANAGER_CONF, dtmf_class_problem

    path = manager_conf or DEFAULT_MANAGER_CONF
    payments = bool(config.payments.url)
    try:
        problem = dtmf_class_problem(path, config.asterisk.username)
    except OSError as exc:
        if manager_conf is not None:
            problems.append(f"cannot read --manager-conf {path}: {exc.strerror or exc}")
            return ""
        return (f"note: could not read {path} ({exc.strerror or exc}) to check that the AMI user "
                f"{config.asterisk.username!r} has the dtmf read class card payments need; pass --manager-conf "
                f"PATH, or check its read = line yourself") if payments else ""
    if problem is None:
        return f"ok: {path}: the AMI user {config.asterisk.username!r} reads dtmf (card payments)"
    if payments:
        problems.append(problem)
        return ""
    return f"warning: {problem} (needed once [payments] url is set)"


@click.command("asterisk")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="callguard.toml to use (default: the global --config, ./callguard.toml, /etc/callguard/).")
@click.option("--host", default=None, help="Override [asterisk] host.")
@click.option("--port", type=int, default=None, help="Override [asterisk] port.")
@click.option("--log-level", type=LOG_LEVELS, default="info", show_default=True)
@click.option("--check", is_flag=True,
              help="Check the configuration and prompts, open the ledger, log in to AMI, then exit.")
@click.option("--manager-conf", type=click.Path(dir_okay=False), default=None,
              help="With --check: the manager.conf to read the AMI user's read classes from "
                   "(default /etc/asterisk/manager.conf when readable).")
@click.pass_context
def asterisk(ctx: click.Context, config_path: str | None, host: str | None, port: int | None, log_level: str,
             check: bool, manager_conf: str | None) -> None:
    """Listen to Asterisk over AMI and handle every call sent to AGI(agi:async).

    Include dialplan/asterisk/*.conf on the PBX first (see dialplan/README.md).
    """
    from callguard.adapters.asterisk.manager import AuthenticationFailed
    from callguard.adapters.asterisk.runner import serve
    from callguard.web.server import ConsoleError

    config = with_overrides(get_config(ctx, config_path), "asterisk", host=host, port=port)
    if check:
        from callguard.adapters.asterisk.probe import probe_ami

        problems = check_asterisk_config(config)
        warning = _dtmf_class(config, manager_conf, problems)
        check_listener(config, "Asterisk", problems, log_level, probe_ami(config.asterisk))
        if warning:
            click.echo(warning)
        return
    prompts, ledger = open_listener(config, "Asterisk", check_asterisk_config(config), log_level,
                                    (config.asterisk.recording_dir, "[asterisk] recording_dir"))
    serve_until_stopped(serve(config, ledger, prompts=prompts), ledger, (AuthenticationFailed, ConsoleError), log)


__all__ = ["asterisk", "check_asterisk_config"]
