"""A listener process killed mid-capture: the next process ends the payment as interrupted.

Real processes (``callguard run asterisk``, killed with SIGKILL, then started
again), FakeAsterisk over TCP, the HTTPS test gateway, the SQLite ledger on
disk.  The card lived only in the killed process; the new one finds the
unfinished payment in the ledger, releases the agent's leg, tells the caller
and writes ``payment-ended``; the recording stays muted.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx
import pytest

from callguard.ledger import open_for_reading
from callguard.ledger.queries import timeline
from callguard.testing.fake_asterisk import FakeAsterisk
from callguard.testing.payment_gateway import PaymentGateway
from callguard.web.users import Credentials
from tests.web.test_service import _until, free_port

SECRET = "s3cret-restart"
AGENT = "Local/agent@agent-sim"


@pytest.fixture(scope="module")
def gateway():
    with PaymentGateway() as gw:
        yield gw


async def console_up(api: httpx.AsyncClient, timeout: float = 90.0) -> None:
    """The console starts after the PBX login (and its migrations): wait until it answers."""
    async def poll() -> None:
        while True:
            try:
                if (await api.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    await asyncio.wait_for(poll(), timeout)


def write_config(tmp: Path, pbx_port: int, web_port: int, gateway: PaymentGateway) -> Path:
    path = tmp / "callguard.toml"
    path.write_text(f"""
[listener]
chain_id = "asterisk@restart-test"
[asterisk]
port = {pbx_port}
secret = "{SECRET}"
heartbeat_interval_s = 0.2
reconnect_min_s = 0.05
[ledger]
url = "sqlite:///{tmp / 'ledger.sqlite'}"
[vault]
ingest_on_stop = false
[web]
enabled = true
port = {web_port}
credentials = "{tmp / 'users.json'}"
[users]
sup = "supervisor"
[payments]
url = "{gateway.url}"
ca_file = "{gateway.write_ca(tmp / 'ca.pem')}"
""")
    return path


async def test_a_listener_killed_mid_capture_leaves_it_to_the_next_process(tmp_path: Path,
                                                                           gateway: PaymentGateway) -> None:
    web_port = free_port()
    credentials = Credentials(tmp_path / "users.json")
    credentials.set_user("sup", "pw-for-tests", [])
    token = credentials.add_token("sup", "restart")
    async with FakeAsterisk(secret=SECRET, default_prompt_s=0.05) as pbx:
        config = write_config(tmp_path, pbx.port, web_port, gateway)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLGUARD_", "NOTIFY_", "WATCHDOG_"))}
        env["CALLGUARD_PAYMENTS__API_KEY"] = gateway.api_key

        async def listener() -> asyncio.subprocess.Process:
            return await asyncio.create_subprocess_exec(
                sys.executable, "-m", "callguard", "--config", str(config), "run", "asterisk", env=env,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)

        first = await listener()
        second = None
        try:
            await pbx.wait_for_client(timeout=90)
            await _until(pbx.heartbeat_fresh, 60)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{web_port}") as probe:
                await console_up(probe)  # it holds the loop while it starts: calls wait for it
            call = pbx.place_call("+14155550123", "Card Caller")
            await call.answer_prompt("1", timeout=60)
            await _until(lambda: call.recording is not None and call.agent_far is not None
                         and call.channel.bridge is not None)
            await asyncio.sleep(0.3)  # the agent leg's BridgeEnter reaches the listener
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{web_port}", timeout=30,
                                         headers={"Authorization": f"Bearer {token}"}) as api:
                await console_up(api)
                started = await api.post(f"/api/v1/calls/{call.linkedid}/card-payment",
                                         json={"amount": "20.00", "currency": "GBP"})
                assert started.status_code == 201, started.text
                assert started.json()["progress"]["phase"] == "collecting"
            half = call.agent_far
            assert "in" in half.muted_audio and half.variables["FRAME_DROP(RX)"] == "DTMF_BEGIN,DTMF_END"
            for digit in "41111111":
                await call.press(digit)
            first.kill()  # SIGKILL: no goodbye, the card goes with the process
            await first.wait()
            logins = pbx.logins
            second = await listener()
            await _until(lambda: pbx.logins > logins, 90)
            # The new process releases the agent's leg and tells the caller
            await _until(lambda: "in" not in half.muted_audio and half.variables.get("FRAME_DROP(RX)") == "", 60)
            await _until(lambda: any(f.endswith("pay-failed") for f in call.caller_heard), 60)
            assert call.recording.muted  # nobody unmutes a call this process does not control
            await call.hangup()
        finally:
            for proc in (first, second):
                if proc is not None and proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
                    await asyncio.wait_for(proc.wait(), 30)
    entries = timeline(open_for_reading(f"sqlite:///{tmp_path / 'ledger.sqlite'}"), call.linkedid)
    [ended] = [e.data for e in entries if e.kind == "payment-ended"]
    assert ended["outcome"] == "interrupted" and ended["after_restart"] and ended["call_present"]
    assert "never sent" in ended["reason"] and ended["payment_id"] == started.json()["payment_id"]
    assert not [c for c in gateway.charges if c.reference == ended["payment_id"]]
