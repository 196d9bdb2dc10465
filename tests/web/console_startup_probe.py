"""Start a listener, then its console, in a fresh interpreter; report what ran on the loop's thread.

Printed as JSON: the threads that imported fastapi, uvicorn and the console's app module, and the longest
gap the event loop went without running a 10 ms ticker while the console started.
Usage: python console_startup_probe.py TMPDIR
"""

from __future__ import annotations

import asyncio
import importlib.abc
import json
import sys
import threading
import time
from pathlib import Path

seen: dict[str, str] = {}


class Spy(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):  # type: ignore[no-untyped-def]
        if name in ("fastapi", "uvicorn", "callguard.web.app") and name not in seen:
            seen[name] = threading.current_thread().name
        return None


sys.meta_path.insert(0, Spy())

from callguard.adapters.asterisk.runner import console_probe, start_listener  # noqa: E402
from callguard.core.prompts import StaticPrompts  # noqa: E402
from callguard.ledger import Ledger  # noqa: E402
from callguard.testing.fake_asterisk import FakeAsterisk  # noqa: E402
from tests.web.conftest import SECRET, make_config, write_users  # noqa: E402


async def main(tmp: Path) -> None:
    import callguard.web.server as server

    async with FakeAsterisk(secret=SECRET, default_prompt_s=0.04) as pbx:
        config = make_config(tmp, pbx.port)
        write_users(config)
        ledger = Ledger.open(config.ledger.url, "asterisk@startup", batch_wait_ms=0.5)
        running = await start_listener(config, ledger, prompts=StaticPrompts(("en",), durations={"notice": 0.04}))
        assert "fastapi" not in sys.modules, "the listener alone must not load the web stack"
        gaps: list[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:
            last = time.monotonic()
            while not stop.is_set():
                await asyncio.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        tick = asyncio.create_task(ticker())
        try:
            async with server.serve_console(config, running.engine, console_probe(running), pbx="asterisk", port=0):
                pass
        finally:
            stop.set()
            await tick
            await running.stop()
            ledger.close(5)
        print(json.dumps({"threads": seen, "loop": threading.main_thread().name, "max_gap_s": max(gaps)}))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
