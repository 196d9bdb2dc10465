"""The console in a real headless Chromium: log in, watch a call arrive, pause it, timeline, listen."""

from __future__ import annotations

from pathlib import Path

import pytest

from .browser import Browser, need_browser, open_browser
from .conftest import PASSWORD, ConsoleRig, access_log, stored_recording


@pytest.fixture
async def browser():
    need_browser()
    b = await __import__("asyncio").to_thread(open_browser)
    try:
        yield b
    finally:
        await b.call(b.driver.quit)


async def login(browser: Browser, rig: ConsoleRig, user: str) -> None:
    await browser.get(rig.url + "/")
    await browser.until("return document.querySelector('#username')", what="login form")
    await browser.js("document.querySelector('#username').value = arguments[0];"
                     "document.querySelector('#password').value = arguments[1];"
                     "document.querySelector('form.login').submit()", user, PASSWORD)
    await browser.until("return document.body.dataset.page === 'board'", what="the live board")


async def test_live_board_pause_timer_and_timeline(console_rig: ConsoleRig, browser: Browser):
    await login(browser, console_rig, "sup")
    await browser.until("return document.querySelector('#live-status').textContent === 'live.'", what="SSE open")
    await browser.js("window.__notReloaded = true")
    call = await console_rig.recorded_call()
    row = f'#board tr[data-call="{call.linkedid}"]'
    # the call appears without a reload, recording
    await browser.until(f"return document.querySelector('{row} .badge')?.textContent === 'recording'",
                        what="the call on the board")
    await browser.js(f"document.querySelector('{row} button.pause').click()")
    await browser.until(f"return document.querySelector('{row} .badge').textContent === 'muted'", what="muted")
    assert call.recording.muted  # confirmed by the fake PBX, not just drawn
    first = await browser.until(f"return document.querySelector('{row} td.timer').textContent", what="timer")
    await browser.until(f"return document.querySelector('{row} td.timer').textContent !== arguments[0]", first,
                        what="the pause timer ticking")
    assert await browser.js("return window.__notReloaded === true")
    assert await browser.js(f"return !document.querySelector('{row} button.resume').hidden")
    # the timeline page draws the muted span on the time axis
    await browser.js(f"document.querySelector('{row} a.call-link').click()")
    await browser.until("return document.body.dataset.page === 'call'", what="call page")
    assert await browser.js("return document.querySelectorAll('#timeline rect.span-muted').length") == 1
    assert await browser.js("return document.querySelectorAll('#timeline rect.span-recording').length") == 1
    ticks = await browser.js("return [...document.querySelectorAll('#timeline text.tick')].map(t => t.textContent)")
    assert ticks[0] == "0 s" and len(ticks) >= 2


async def test_play_a_recording_after_giving_a_reason(console_rig: ConsoleRig, browser: Browser, tmp_path: Path):
    call_id, recording_id = await stored_recording(console_rig, tmp_path)
    await login(browser, console_rig, "sup")
    await browser.get(f"{console_rig.url}/recordings/{recording_id}")
    await browser.until("return document.querySelector('#listen-form')", what="player form")
    # the browser refuses an empty reason (required); nothing is fetched
    await browser.js("document.querySelector('#listen-form button').click()")
    assert await browser.js("return document.querySelector('#player').hidden")
    await browser.js("document.querySelector('#reason').value = 'QA review of call handling';"
                     "document.querySelector('#listen-form button').click()")
    duration = await browser.until("const p = document.querySelector('#player');"
                                   "return p.readyState >= 1 && p.duration > 0 && p.duration",
                                   what="the audio to load")
    assert 1.9 < duration < 2.1
    listens = [e for e in access_log(console_rig) if e["action"] == "listen" and e["outcome"] == "done"]
    assert [(e["actor"], e["target"], e["reason"]) for e in listens] == [
        ("sup", recording_id, "QA review of call handling")]
