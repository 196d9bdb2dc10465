"""``callguard demo --console``: a real process serving the console over a live demo call, paused over HTTP."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys

import httpx

from .test_service import free_port


async def test_demo_console_serves_a_live_call_that_can_be_paused(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLGUARD_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "callguard", "demo", "--console", "--port", str(port), "--no-browser",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=tmp_path)
    assert proc.stdout is not None and proc.stderr is not None
    logged = asyncio.ensure_future(proc.stderr.read())
    try:
        banner = ""
        while "password" not in banner:
            banner += (await asyncio.wait_for(proc.stdout.readline(), 90)).decode()
        password = re.search(r"password (\S+)", banner).group(1)
        assert f"http://127.0.0.1:{port}/" in banner
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as browser:
            form = await browser.get("/login")
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
            login = await browser.post("/login", data={"username": "demo", "password": password, "csrf_token": csrf})
            assert login.status_code == 303
            board = await browser.get("/")
            csrf = re.search(r'<meta name="csrf-token" content="([^"]+)"', board.text).group(1)
            recording = []
            for _ in range(600):  # the demo caller hears the real notice, then agrees
                calls = (await browser.get("/api/v1/calls")).json()["calls"]
                recording = [c for c in calls if c["state"] == "recording"]
                if recording:
                    break
                await asyncio.sleep(0.1)
            assert recording, calls
            paused = await browser.post(f"/api/v1/calls/{recording[0]['call_id']}/pause",
                                        headers={"X-CSRF-Token": csrf})
            assert paused.status_code == 200 and paused.json()["state"] == "muted", paused.text
    finally:
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.wait(), 60)
        stderr = (await logged).decode()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
