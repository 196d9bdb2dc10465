"""``callguard run asterisk`` as a real process with the console on: systemd READY/WATCHDOG, /readyz,
JSON logs, and ``callguard call pause`` from another process through the API."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path

from callguard.testing.fake_asterisk import FakeAsterisk
from callguard.web.users import Credentials

from .conftest import AGENT_ENDPOINT, PASSWORD, PROMPT_S, SECRET


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(tmp: Path, pbx_port: int, web_port: int) -> Path:
    path = tmp / "callguard.toml"
    path.write_text(f"""
[listener]
chain_id = "web-service-test"
log_format = "json"
[asterisk]
port = {pbx_port}
secret = "{SECRET}"
heartbeat_interval_s = 0.2
reconnect_min_s = 0.05
reconnect_max_s = 0.2
[ledger]
url = "sqlite:///{tmp / 'ledger.sqlite'}"
[vault]
ingest_on_stop = false
[web]
enabled = true
port = {web_port}
credentials = "{tmp / 'users.json'}"
[users]
ann = "agent"
""")
    return path


async def _until(predicate, timeout: float = 60) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.02)
    await asyncio.wait_for(poll(), timeout)


async def test_listener_process_serves_the_console_and_tells_systemd(tmp_path: Path):
    web_port = free_port()
    credentials = Credentials(tmp_path / "users.json")
    credentials.set_user("ann", PASSWORD, [AGENT_ENDPOINT])
    token = credentials.add_token("ann", "cli")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.setblocking(False)
    messages: list[str] = []
    async with FakeAsterisk(secret=SECRET, default_prompt_s=PROMPT_S) as pbx:
        config = write_config(tmp_path, pbx.port, web_port)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLGUARD_", "NOTIFY_", "WATCHDOG_"))}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "callguard", "--config", str(config), "run", "asterisk",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**env, "NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "400000"})
        assert proc.stderr is not None
        logged = asyncio.ensure_future(proc.stderr.read())  # drained all along: a full pipe would block it

        def received() -> list[str]:
            return messages

        def read_notifications() -> None:  # as systemd does, at once
            while True:
                try:
                    messages.extend(notify.recv(4096).decode().split("\n"))
                except BlockingIOError:
                    return

        asyncio.get_running_loop().add_reader(notify.fileno(), read_notifications)

        try:
            await _until(lambda: "READY=1" in received(), 90)
            status = next(m for m in messages if m.startswith("STATUS="))
            assert f"console on http://127.0.0.1:{web_port}" in status
            await _until(lambda: received().count("WATCHDOG=1") >= 2, 30)  # every 0.2 s
            call = pbx.place_call("+14155550123", "Service Caller")
            await call.answer_prompt("1", timeout=60)
            await _until(lambda: call.recording is not None and call.bridge_id is not None)
            await asyncio.sleep(0.3)  # the agent leg's BridgeEnter reaches the listener
            cli = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "callguard", "--config", str(config), "call", "pause",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env={**env, "CALLGUARD_API_TOKEN": token})
            out, err = await asyncio.wait_for(cli.communicate(), 60)
            assert cli.returncode == 0, err.decode()
            answer = json.loads(out)
            assert answer["call_id"] == call.linkedid and answer["state"] == "muted"
            assert call.recording.muted
            denied = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "callguard", "--config", str(config), "call", "resume",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env={**env, "CALLGUARD_API_TOKEN": "cgt_0000_forged"})
            _, err = await asyncio.wait_for(denied.communicate(), 60)
            assert denied.returncode == 1 and b"401" in err and call.recording.muted
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)
            stderr = await logged
            read_notifications()
            asyncio.get_running_loop().remove_reader(notify.fileno())
            notify.close()
    assert proc.returncode == 0, stderr.decode()
    assert "STOPPING=1" in messages
    lines = [json.loads(line) for line in stderr.decode().splitlines() if line.startswith("{")]
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert any("console and API on" in line["message"] for line in lines)
