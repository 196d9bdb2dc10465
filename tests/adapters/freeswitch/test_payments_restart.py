"""A FreeSWITCH listener process killed mid-capture: the next process ends the payment as interrupted.

``callguard run freeswitch`` as real processes (the first killed with
SIGKILL), FakeFreeSWITCH over TCP on a paced virtual clock, the HTTPS test
gateway, the SQLite ledger on disk.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from callguard.ledger import open_for_reading
from callguard.ledger.queries import timeline
from callguard.testing.fake_freeswitch import CallRecord, FakeFreeSWITCH
from callguard.testing.payment_gateway import PaymentGateway
from callguard.web.users import Credentials

from tests.adapters.asterisk.test_payments_restart import console_up

from .conftest import PASSWORD, scenario
from .test_cli import free_port


@pytest.fixture(scope="module")
def gateway():
    with PaymentGateway() as gw:
        yield gw


async def _until(predicate, timeout: float = 60.0) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.02)
    await asyncio.wait_for(poll(), timeout)


async def test_a_listener_killed_mid_capture_leaves_it_to_the_next_process(tmp_path: Path,
                                                                           gateway: PaymentGateway) -> None:
    web_port, listen_port = free_port(), free_port()
    credentials = Credentials(tmp_path / "users.json")
    credentials.set_user("sup", "pw-for-tests", [])
    token = credentials.add_token("sup", "restart")
    db = tmp_path / "ledger.sqlite"
    procs: list[asyncio.subprocess.Process] = []
    seen: dict[str, Any] = {}
    async with FakeFreeSWITCH(password=PASSWORD, time_scale=0.02) as fake:
        config = tmp_path / "callguard.toml"
        config.write_text(f"""
[listener]
chain_id = "freeswitch@restart-test"
[ledger]
url = "sqlite:///{db}"
[freeswitch]
port = {fake.port}
listen_port = {listen_port}
heartbeat_interval_s = 0.2
reconnect_min_s = 0.05
[vault]
ingest_on_stop = false
[web]
enabled = true
port = {web_port}
credentials = "{tmp_path / 'users.json'}"
[users]
sup = "supervisor"
[payments]
url = "{gateway.url}"
ca_file = "{gateway.write_ca(tmp_path / 'ca.pem')}"
""")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLGUARD_", "NOTIFY_", "WATCHDOG_"))}
        env.update({"CALLGUARD_PAYMENTS__API_KEY": gateway.api_key, "CALLGUARD_FREESWITCH__PASSWORD": PASSWORD})

        async def listener() -> asyncio.subprocess.Process:
            logins = sum(1 for c in fake.clients if c.authed)
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "callguard", "--config", str(config), "run", "freeswitch", env=env,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            procs.append(proc)
            await _until(lambda: sum(1 for c in fake.clients if c.authed) > logins, 90)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{web_port}") as probe:
                await console_up(probe)  # it holds the loop while it starts
            return proc

        async def payment(record: CallRecord, step: Any) -> None:
            agent = record.agent
            assert agent is not None
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{web_port}", timeout=30,
                                         headers={"Authorization": f"Bearer {token}"}) as api:
                await console_up(api)
                await _until(lambda: agent.keypad.peer is record.caller)
                await asyncio.sleep(0.5)  # the agent's identification round trip
                started = await api.post(f"/api/v1/calls/{record.call_id}/card-payment", json={})
                assert started.status_code == 201, started.text
                seen["payment_id"] = started.json()["payment_id"]
            assert agent.keypad.dtmf_blocked and agent.keypad.write_mute
            fake.press(record.caller, "4111")
            procs[0].kill()
            await procs[0].wait()
            await listener()
            await _until(lambda: not agent.keypad.dtmf_blocked and not agent.keypad.write_mute)
            await _until(lambda: any(p.endswith("/pay-failed.wav") for p in record.caller.keypad.prompts))
            assert record.recordings[0].masked  # nobody unmasks a call this process does not control
            seen["done"] = True

        await listener()
        try:
            fake.socket_address = ("127.0.0.1", listen_port)
            record = await asyncio.wait_for(fake.play(
                scenario([{"at": 2.5, "press": "1"}, {"at": 15, "api": "payment-start"},
                          {"at": 60, "hangup": "caller"}]), on_api=payment), 180)
        finally:
            for proc in procs:
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
                    await asyncio.wait_for(proc.wait(), 30)
    assert seen.get("done")
    entries = timeline(open_for_reading(f"sqlite:///{db}"), record.call_id)
    [ended] = [e.data for e in entries if e.kind == "payment-ended"]
    assert ended["payment_id"] == seen["payment_id"]
    assert (ended["outcome"], ended["operation"], ended["after_restart"]) == ("interrupted", "tokenize", True)
