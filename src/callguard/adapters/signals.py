"""How a listener service learns it should stop (shared by every ``callguard run <pbx>``)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator

#: what systemd (stop) and a terminal (Ctrl-C) send
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """While inside, SIGINT and SIGTERM set ``stop`` instead of killing the process.

    A stop is then a clean shutdown: parked calls go back to the dialplan,
    unsupervised recordings end, the ledger is flushed.  Where the loop
    cannot take signal handlers (not the main thread, no Unix signals) the
    default behaviour stays.  The handlers are removed on the way out, also
    when start-up fails.
    """
    loop = asyncio.get_running_loop()
    installed = []
    for signum in STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
            installed.append(signum)
    try:
        yield
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


__all__ = ["STOP_SIGNALS", "stop_on_signals"]
