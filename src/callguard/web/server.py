"""Serving the console from inside the listener: uvicorn as one more task on the engine's loop.

:func:`serve_console` is what ``callguard run <pbx>`` (and ``callguard demo
--console``) use: given the running engine and a probe of the listener it
builds the control surface, the metrics and the ASGI app, starts uvicorn on
``[web] host:port`` and stops it with the listener.  The port is bound
before the listener reports itself ready, so a port already in use is a
start-up error with its reason, not a console that silently never answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, AsyncIterator

from callguard.config import Config
from callguard.control import CallControl
from callguard.runtime import Engine
from callguard.web.probe import ListenerProbe

if TYPE_CHECKING:
    from callguard.payments.desk import PaymentDesk

log = logging.getLogger("callguard.web")


class ConsoleError(RuntimeError):
    """The console could not start (port taken, unreadable credentials); the message says what to do."""


@dataclass
class RunningConsole:
    control: CallControl
    url: str
    server: "object"

    @property
    def port(self) -> int:
        servers = getattr(self.server, "servers", [])
        for server in servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        raise ConsoleError("the console is not listening")


@contextlib.asynccontextmanager
async def serve_console(config: Config, engine: Engine, probe: ListenerProbe, *, pbx: str = "",
                        port: int | None = None, payments: "PaymentDesk | None" = None) -> AsyncIterator[RunningConsole]:
    """Run the console for ``engine`` while the block runs (``port=0``: any free port, for tests).

    ``payments``: the listener's card payment desk, if it takes card payments.
    """
    # The web stack takes seconds to import and the app a while to build (FastAPI makes a
    # schema per route): both happen on a worker thread, so the calls this loop is handling
    # meanwhile (a notice, a pause) are not held up by the console starting.
    await asyncio.to_thread(_import_web_stack)
    import uvicorn

    from callguard.web.app import create_app
    from callguard.web.context import Console
    from callguard.web.metrics import ConsoleMetrics
    from callguard.web.users import Credentials, CredentialsError

    web = config.web
    control = CallControl(engine, payments=payments)
    credentials = Credentials(web.credentials)
    try:
        await asyncio.to_thread(credentials.users)
    except CredentialsError as exc:
        raise ConsoleError(str(exc)) from None
    console = Console(config, control, credentials, readiness=probe.readiness, pbx=pbx)
    metrics = ConsoleMetrics(engine, probe, pbx, last_sweep=lambda: _last_sweep(console))
    app = await asyncio.to_thread(create_app, console, metrics)
    wanted = web.port if port is None else port
    # Bound here, not by uvicorn: uvicorn answers a taken port with sys.exit(),
    # which would take the listener (and its calls) down with it.
    try:
        sock = _listen(web.host, wanted)
    except OSError as exc:
        raise ConsoleError(f"the console cannot listen on {web.host}:{wanted}: {exc.strerror or exc}; "
                           f"free the port or set [web] port") from None
    server = uvicorn.Server(uvicorn.Config(
        app, log_config=None, access_log=False, proxy_headers=True, forwarded_allow_ips=web.forwarded_allow_ips,
        lifespan="off", timeout_graceful_shutdown=2))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # the listener owns signals
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]), name="callguard-console")
    while not server.started:
        if task.done():
            sock.close()
            raise ConsoleError(f"the console could not start on {web.host}:{wanted}: {task.exception()}")
        await asyncio.sleep(0.01)
    running = RunningConsole(control, "", server)
    host = f"[{web.host}]" if ":" in web.host else web.host
    running.url = f"http://{host}:{running.port}"
    log.info("console and API on %s (API schema: %s/api/docs)", running.url, running.url)
    try:
        yield running
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, SystemExit):
            await asyncio.wait_for(task, 5)
        engine.observers[:] = [o for o in engine.observers if o not in (control.observe, metrics.observe)]
        await asyncio.to_thread(console.close)


def _import_web_stack() -> None:
    """Import uvicorn, FastAPI and the console's modules (on a worker thread: see serve_console)."""
    import uvicorn  # noqa: F401

    import callguard.web.app  # noqa: F401
    import callguard.web.context  # noqa: F401
    import callguard.web.metrics  # noqa: F401
    import callguard.web.users  # noqa: F401


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket whose protocol is spelt out as IPPROTO_TCP.

    asyncio turns Nagle off (TCP_NODELAY) only on sockets whose ``proto``
    says TCP; ``socket.create_server`` leaves it 0, and every response then
    waited ~40 ms for the client's delayed ACK (measured: 45 ms -> 0.3 ms
    per request).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


@contextlib.asynccontextmanager
async def listener_service(config: Config, engine: Engine, probe: ListenerProbe, pbx: str,
                           payments: "PaymentDesk | None" = None) -> AsyncIterator[RunningConsole | None]:
    """What a started listener runs beside its calls: the console when ``[web] enabled``, and
    systemd's READY/WATCHDOG/STOPPING (after the console is listening, so "ready" means all of it)."""
    from callguard.systemd import service_notifications

    async with contextlib.AsyncExitStack() as stack:
        running = (await stack.enter_async_context(serve_console(config, engine, probe, pbx=pbx,
                                                                  payments=payments))
                   if config.web.enabled else None)
        status = f"serving {pbx}" + (f"; console on {running.url}" if running else "")
        await stack.enter_async_context(service_notifications(status))
        yield running


def _last_sweep(console: "object") -> float | None:
    """When the last retention sweep finished, from the vault's table (None before the first)."""
    from sqlalchemy import func, select
    from sqlalchemy.exc import SQLAlchemyError

    from callguard.vault.models import SweepRun

    try:
        with console.vault().session() as session:  # type: ignore[attr-defined]
            return session.scalar(select(func.max(SweepRun.finished_at)))
    except (SQLAlchemyError, OSError, ValueError):
        return None


__all__ = ["ConsoleError", "RunningConsole", "listener_service", "serve_console"]
