"""systemd ``Type=notify``: READY, STATUS, STOPPING and the WATCHDOG keep-alive.

The protocol is one datagram of ``KEY=value`` lines to the Unix socket named
by ``$NOTIFY_SOCKET`` (``@`` meaning Linux's abstract namespace); see
sd_notify(3).  It is implemented here in a few lines because the Python
bindings either need libsystemd headers to build (systemd-python) or have
been unmaintained since 2017 (sdnotify), and the protocol itself has been
stable since systemd 1.  Outside systemd (no ``$NOTIFY_SOCKET``) every call
is a no-op, so the listener runs the same under a terminal or a container.

The watchdog pings from the event loop itself: if the loop that carries
every call's pause stalls, the pings stop and systemd restarts the
listener (``WatchdogSec=`` in the unit), whose dialplan fails closed
meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from typing import AsyncIterator

log = logging.getLogger("callguard.systemd")


def notify(*lines: str, environ: dict[str, str] | None = None) -> bool:
    """Send ``lines`` (``"READY=1"``, ``"STATUS=..."``) to systemd; False when not under it."""
    address = (environ if environ is not None else os.environ).get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        # Never block: this runs on the loop that carries the calls, and a
        # receiver that stops reading would otherwise stall every pause.
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK) as sock:
            sock.sendto("\n".join(lines).encode(), address)
    except BlockingIOError:
        log.debug("systemd notification %s dropped: its socket is full", lines[0] if lines else "")
        return False
    except OSError as exc:
        log.warning("systemd notification %s not sent: %s", lines[0] if lines else "", exc)
        return False
    return True


def watchdog_interval(environ: dict[str, str] | None = None) -> float | None:
    """Half of ``$WATCHDOG_USEC`` in seconds (sd_watchdog_enabled), or None when no watchdog is set for us."""
    env = environ if environ is not None else os.environ
    usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) <= 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000


@contextlib.asynccontextmanager
async def service_notifications(status: str) -> AsyncIterator[None]:
    """READY=1 now, WATCHDOG=1 from the loop while the block runs, STOPPING=1 at its end."""
    notify("READY=1", f"STATUS={status}")
    interval = watchdog_interval()
    pinger = None
    if interval is not None:
        async def ping() -> None:
            while True:
                notify("WATCHDOG=1")
                await asyncio.sleep(interval)
        pinger = asyncio.get_running_loop().create_task(ping(), name="callguard-watchdog")
    try:
        yield
    finally:
        notify("STOPPING=1", "STATUS=stopping: releasing calls and flushing the ledger")
        if pinger is not None:
            pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pinger


__all__ = ["notify", "service_notifications", "watchdog_interval"]
