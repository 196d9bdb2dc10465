"""Take the console screenshots in this directory (run from the repository root).

    .venv/bin/python docs/console/screenshots.py

Everything is real: FakeAsterisk over TCP, the listener, a SQLite ledger, a
recording ingested into the vault, headless Chromium (Debian's chromium +
chromium-driver) driven by selenium, as in tests/web.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from callguard.adapters.asterisk.runner import console_probe, start_listener  # noqa: E402
from callguard.core.prompts import StaticPrompts  # noqa: E402
from callguard.ledger import Ledger  # noqa: E402
from callguard.testing.fake_asterisk import FakeAsterisk  # noqa: E402
from callguard.web.server import serve_console  # noqa: E402
from tests.web.browser import open_browser  # noqa: E402
from tests.web.conftest import PROMPT_S, SECRET, ConsoleRig, make_config, stored_recording, write_users  # noqa: E402
from tests.web.test_browser import login  # noqa: E402

OUT = Path(__file__).resolve().parent


async def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="callguard-shots-"))
    async with FakeAsterisk(secret=SECRET, default_prompt_s=PROMPT_S) as pbx:
        config = make_config(tmp, pbx.port)
        config = dataclasses.replace(config, roles={**config.roles, "screens": [
            "list", "listen", "live", "control", "evidence", "dsar", "audit", "hold"]},
            users={**config.users, "sup": "screens"})
        tokens = write_users(config)
        ledger = Ledger.open(config.ledger.url, "asterisk@screens", batch_wait_ms=0.5)
        running = await start_listener(config, ledger, prompts=StaticPrompts(("en",), durations={"notice": PROMPT_S}))
        async with serve_console(config, running.engine, console_probe(running), pbx="asterisk", port=0) as console:
            rig = ConsoleRig(pbx, config, ledger, running, console, tokens)
            await rig.wait_for(pbx.heartbeat_fresh)
            call_id, recording_id = await stored_recording(rig, tmp)
            async with rig.client("sup") as sup:
                await sup.post("/api/v1/dsar", json={"number": "+442079460123", "reason": "letter of 3 Dec 2026"})
                await sup.post("/api/v1/dsar", json={"number": "+14155550199", "kind": "erasure",
                                                     "reason": "email of 4 Dec 2026"})
            live = await rig.recorded_call("+14155550123")
            await rig.recorded_call("+33142685300")
            b = await asyncio.to_thread(open_browser, 1280, 720)
            try:
                await b.get(f"{rig.url}/login")
                await b.screenshot(OUT / "login.png")
                await login(b, rig, "sup")
                async with rig.client("sup") as sup:
                    await sup.post(f"/api/v1/calls/{live.linkedid}/pause")
                await asyncio.sleep(3.2)
                await b.screenshot(OUT / "live-board.png")
                await b.get(f"{rig.url}/calls/{live.linkedid}")
                await asyncio.sleep(1)
                await b.screenshot(OUT / "call-timeline.png")
                await b.get(f"{rig.url}/calls/{call_id}")
                await b.screenshot(OUT / "call-timeline-ended.png")
                await b.get(f"{rig.url}/recordings/{recording_id}")
                await b.js("document.querySelector('#reason').value = 'QA review of call handling';"
                           "document.querySelector('#listen-form button').click()")
                await b.until("return document.querySelector('#player').duration > 0")
                await b.screenshot(OUT / "recording-player.png")
                await b.get(f"{rig.url}/dsar")
                await b.screenshot(OUT / "dsar-queue.png")
                await b.call(b.driver.set_window_size, 1280, 1300)
                await b.get(f"{rig.url}/audit")
                await b.screenshot(OUT / "audit-report.png")
            finally:
                await b.call(b.driver.quit)
        await running.stop()
        ledger.close(5)


if __name__ == "__main__":
    asyncio.run(main())
