"""Assemble and run one Asterisk listener: config -> ledger, engine, AMI link.

Used by ``callguard run asterisk``, by ``callguard demo`` (against an
embedded :class:`~callguard.testing.FakeAsterisk`) and by the end-to-end
tests, so all three run exactly the same wiring.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from callguard.adapters.asterisk.listener import AsteriskListener, default_prompt_file
from callguard.adapters.asterisk.payments import AsteriskPayments
from callguard.adapters.interpreter import freeze_startup_heap, tune_interpreter
from callguard.payments.desk import open_desk
from callguard.adapters.signals import stop_on_signals
from callguard.config import Config
from callguard.core.commands import PromptRef
from callguard.core.prompts import PromptResolver
from callguard.runtime import Engine, LedgerSink
from callguard.web.probe import ListenerProbe
from callguard.web.server import listener_service

if TYPE_CHECKING:
    from callguard.payments.desk import Connector, PaymentDesk
    from callguard.vault.autoingest import AutoIngest

log = logging.getLogger("callguard.asterisk")


def prompt_file_for(prompts: PromptResolver) -> Callable[[PromptRef], str]:
    """How ``GET DATA`` names a prompt: the catalogue's installed Asterisk path when it has one."""
    path_for = getattr(prompts, "path_for", None)
    if path_for is None:
        return default_prompt_file

    def resolve(ref: PromptRef) -> str:
        return path_for(ref, "asterisk")

    return resolve


@dataclass
class RunningListener:
    """A started listener and what it is wired to."""

    listener: AsteriskListener
    engine: Engine
    ledger: LedgerSink
    ingest: "AutoIngest | None" = None  #: encrypts recordings into the vault as calls end
    desk: "PaymentDesk | None" = None  #: card payments ([payments] url, or the demo's gateway)

    async def stop(self, release: bool = True) -> None:
        """Stop the listener, then finish the vault ingests of the calls that ended."""
        if self.desk is not None:
            await self.desk.aclose()
        await self.listener.stop(release=release)
        if self.ingest is not None:
            await self.ingest.aclose()


async def start_listener(config: Config, ledger: LedgerSink, *, prompts: PromptResolver | None = None,
                         connector: "Connector | None" = None, **listener_options: Any) -> RunningListener:
    """Build the engine and listener for ``config`` and connect (first login must succeed)."""
    from callguard.wiring import build_engine, build_ingest, build_prompts

    prompts = prompts if prompts is not None else build_prompts(config)
    listener = AsteriskListener(config.asterisk, prompt_file=prompt_file_for(prompts), **listener_options)
    ingest = build_ingest(config, ledger, config.asterisk.recording_dir, "[asterisk] recording_dir")
    engine = build_engine(config, listener, ingest or ledger, asyncio.get_running_loop(), prompts=prompts)
    listener.attach(engine)
    payments = AsteriskPayments(listener)
    desk = payments.desk = open_desk(config.payments, engine, payments, connector=connector)
    # Load the metadata while logging in, so wrong credentials still fail at
    # once (a daemon thread: nobody has to wait for it if we give up).
    loop = asyncio.get_running_loop()
    warmed: asyncio.Future[None] = loop.create_future()

    def warm() -> None:
        try:
            engine.policy.warm_up()
        finally:
            if not loop.is_closed():
                loop.call_soon_threadsafe(lambda: warmed.done() or warmed.set_result(None))

    threading.Thread(target=warm, name="callguard-warm-up", daemon=True).start()
    try:
        await listener.start()
    except BaseException:  # wrong credentials, or stopped (SIGTERM) before the PBX ever answered
        await listener.manager.aclose(logoff=False)
        if ingest is not None:
            await ingest.aclose()
        raise
    await warmed
    freeze_startup_heap()
    return RunningListener(listener, engine, ledger, ingest, desk)


async def serve(config: Config, ledger: LedgerSink, *, prompts: PromptResolver | None = None,
                stop: asyncio.Event | None = None, stats_every_s: float = 60.0) -> None:
    """Run until ``stop`` is set (or SIGINT/SIGTERM), then shut down cleanly."""
    stop = stop or asyncio.Event()
    tune_interpreter()
    with stop_on_signals(stop):
        # A PBX that cannot be reached is retried until it answers; a stop
        # (SIGTERM, Ctrl-C) must end that at once, not wait for Asterisk.
        starting = asyncio.ensure_future(start_listener(config, ledger, prompts=prompts))
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            log.info("listener stopped before Asterisk at %s:%s ever answered", config.asterisk.host,
                     config.asterisk.port)
            return
        running = starting.result()
        log.info("listening to Asterisk at %s:%s as %r", config.asterisk.host, config.asterisk.port,
                 config.asterisk.username)
        console = contextlib.AsyncExitStack()
        try:
            await console.enter_async_context(listener_service(config, running.engine, console_probe(running),
                                                                 "asterisk", payments=running.desk))
            while not stop.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), stats_every_s)
                stats = running.engine.stats
                log.info("calls: %d active, %d started, %d finished; AMI %s; outcomes %s",
                         len(running.engine.sessions), stats.calls_started, stats.calls_finished,
                         "up" if running.listener.manager.connected else
                         f"down ({running.listener.manager.last_error or 'reconnecting'})", stats.by_outcome)
        finally:
            began = time.monotonic()
            await console.aclose()
            await running.stop()
            log.info("listener stopped in %.2f s (parked calls released, supervised recordings stopped)",
                     time.monotonic() - began)


def console_probe(running: RunningListener) -> ListenerProbe:
    """What the console's /readyz and /metrics read from this listener."""
    manager = running.listener.manager
    return ListenerProbe.over(running.ledger, running.ingest, pbx_connected=lambda: manager.connected,
                              connects=lambda: manager.connects, heartbeats=lambda: running.listener.heartbeats,
                              heartbeat_interval_s=running.listener.config.heartbeat_interval_s)


__all__ = ["RunningListener", "console_probe", "prompt_file_for", "serve", "start_listener", "tune_interpreter"]
