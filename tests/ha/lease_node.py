"""One election member in its own process, for the kill -9 and partition tests.

Prints one JSON line per role change and, while it may act, one ``act``
line every 20 ms with ``time.monotonic()`` (one clock for every process on
the machine), so the test can check that two nodes never acted at once.
Usage: python lease_node.py URL SCOPE NODE_ID
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time

from callguard.ha.election import Activated
from callguard.ha.lease import PgLease
from callguard.ha.node import HaNode
from callguard.ha.settings import HaConfig


def emit(**fields: object) -> None:
    print(json.dumps({"t": time.monotonic(), **fields}), flush=True)


async def main(url: str, scope: str, node_id: str) -> None:
    settings = HaConfig(enabled=True, lease_ttl_s=1.5, renew_interval_s=0.25, poll_interval_s=0.25,
                        safety_margin_s=0.3)
    lease = PgLease(url, scope, node_id, ttl_s=settings.lease_ttl_s, statement_timeout_s=0.5)

    def on_change(change: object) -> None:
        kind = "activated" if isinstance(change, Activated) else "deactivated"
        emit(event=kind, epoch=change.epoch, detail=str(change))  # type: ignore[attr-defined]

    node = HaNode(settings, lease, on_change)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await node.start()
    emit(event="started")
    while not stop.is_set():
        if node.may_act():
            emit(event="act")
        try:
            await asyncio.wait_for(stop.wait(), 0.02)
        except TimeoutError:
            pass
    await node.stop()
    emit(event="stopped")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
