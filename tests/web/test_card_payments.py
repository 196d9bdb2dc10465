"""Card payments through the API and ``callguard payment``: FakeAsterisk over TCP, the real listener and console,
a real HTTPS test gateway, real SQLite.  What the API shows is the masked progress only."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import AsyncIterator

import httpx
import pytest

from callguard.adapters.asterisk.runner import console_probe, start_listener
from callguard.core.prompts import StaticPrompts
from callguard.ledger import Ledger
from callguard.payments.connector import ConnectorSettings, HttpsConnector
from callguard.testing.fake_asterisk import FakeAsterisk
from callguard.testing.payment_gateway import PaymentGateway
from callguard.web.server import serve_console
from callguard.web.users import Credentials

from .conftest import AGENT_ENDPOINT, PASSWORD, PROMPT_S, SECRET, ConsoleRig, make_config, write_users
from tests.adapters.asterisk.test_payments_restart import console_up

from .test_service import _until, free_port

TEST_CARD = "4111111111111111"


@pytest.fixture(scope="module")
def gateway():
    with PaymentGateway() as gw:
        yield gw


@pytest.fixture
async def pay_console(tmp_path: Path, gateway: PaymentGateway) -> AsyncIterator[ConsoleRig]:
    async with FakeAsterisk(secret=SECRET, default_prompt_s=PROMPT_S) as pbx:
        config = make_config(tmp_path, pbx.port, payments={"url": gateway.url, "inter_digit_timeout_s": 1.0})
        tokens = write_users(config)
        ledger = Ledger.open(config.ledger.url, "asterisk@web-test", batch_wait_ms=0.5)
        prompts = StaticPrompts(("en", "es", "fr"), durations={"notice": PROMPT_S})
        connector = HttpsConnector(ConnectorSettings(gateway.url, gateway.api_key, connect_timeout_s=20.0),
                                   verify=gateway.client_context())
        running = await start_listener(config, ledger, prompts=prompts, connector=connector)
        try:
            await pbx.wait_for_client()
            async with serve_console(config, running.engine, console_probe(running), pbx="asterisk", port=0,
                                     payments=running.desk) as console:
                rig = ConsoleRig(pbx, config, ledger, running, console, tokens)
                await rig.wait_for(pbx.heartbeat_fresh, what="heartbeat")
                yield rig
        finally:
            await running.stop()
            ledger.close(5)


async def keyed(call, digits: str) -> None:
    for digit in digits:
        await call.press(digit)


async def sse_events(client: httpx.AsyncClient, path: str, out: list[dict], until_phase: str = "ended") -> None:
    async with client.stream("GET", path, timeout=httpx.Timeout(15.0, read=30.0)) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                out.append(json.loads(line[5:]))
                if out[-1].get("phase") == until_phase:
                    return


async def test_an_agent_takes_a_card_through_the_api_and_watches_masked_progress(pay_console: ConsoleRig,
                                                                                 gateway: PaymentGateway):
    rig = pay_console
    call = await rig.recorded_call()
    cid = call.linkedid
    async with rig.client("bo") as bo:  # another agent's call: not theirs to charge
        refused = await bo.post(f"/api/v1/calls/{cid}/card-payment", json={"amount": "10", "currency": "GBP"})
        assert refused.status_code == 403
    async with rig.client("ann") as ann:
        bad = await ann.post("/api/v1/calls/current/card-payment", json={"amount": "ten", "currency": "GBP"})
        assert bad.status_code == 409 and "write it like 49.90" in bad.json()["detail"]
        seen: list[dict] = []
        watching = asyncio.ensure_future(sse_events(ann, f"/api/v1/card-payments/events?call={cid}", seen))
        started = await ann.post("/api/v1/calls/current/card-payment", json={"amount": "49.90", "currency": "GBP"})
        assert started.status_code == 201, started.text
        body = started.json()
        # answered once the PBX confirmed the mute and the guard: the caller is being asked
        assert body["call_id"] == cid and body["progress"]["phase"] == "collecting" and call.recording.muted
        again = await ann.post(f"/api/v1/calls/{cid}/card-payment", json={})
        assert again.status_code == 409 and "already taking payment" in again.json()["detail"]
        await keyed(call, TEST_CARD + "#1230123")
        await asyncio.wait_for(watching, 30)
        done = (await ann.get(f"/api/v1/calls/{cid}/card-payment")).json()
    assert done["result"]["outcome"] == "approved" and done["result"]["last4"] == "1111"
    assert done["result"]["token"].startswith("tok_")
    lines = [line for view in seen for line in view["lines"]]
    assert "card: 12 of 16 digits, Visa" in lines and "CVV: 2 of 3 digits" in lines
    assert seen[-1]["phase"] == "ended"
    stream = json.dumps(seen) + json.dumps(done)
    assert not any(TEST_CARD[i:i + 8] in stream for i in range(9))  # never a run of the card's digits
    [started_entry] = [e for e in rig.entries(cid, "payment-started")]
    assert started_entry["source"] == "api" and started_entry["user"] == "ann" and started_entry["amount"] == "49.90"
    assert [h for h in call.agent_heard if h[1] in "41"] == []


async def test_cancel_through_the_api(pay_console: ConsoleRig):
    rig = pay_console
    call = await rig.recorded_call()
    async with rig.client("sup") as sup:
        assert (await sup.post(f"/api/v1/calls/{call.linkedid}/card-payment/cancel")).status_code == 409
        assert (await sup.post(f"/api/v1/calls/{call.linkedid}/card-payment", json={})).status_code == 201
        await keyed(call, "4111")
        cancelled = await sup.post(f"/api/v1/calls/{call.linkedid}/card-payment/cancel")
        assert cancelled.status_code == 200
        await rig.wait_for(lambda: not call.recording.muted, what="unmuted")
        shown = (await sup.get(f"/api/v1/calls/{call.linkedid}/card-payment")).json()
    assert shown["result"]["outcome"] == "cancelled" and shown["result"]["operation"] == "tokenize"


async def test_the_cli_starts_and_watches_a_payment_on_a_listener_process(tmp_path: Path, gateway: PaymentGateway):
    """`callguard run asterisk` as a process; `callguard payment start|watch` as other processes."""
    web_port = free_port()
    credentials = Credentials(tmp_path / "users.json")
    credentials.set_user("ann", PASSWORD, [AGENT_ENDPOINT])
    token = credentials.add_token("ann", "cli")
    ca = gateway.write_ca(tmp_path / "gateway-ca.pem")
    async with FakeAsterisk(secret=SECRET, default_prompt_s=PROMPT_S) as pbx:
        config = tmp_path / "callguard.toml"
        config.write_text(f"""
[asterisk]
port = {pbx.port}
secret = "{SECRET}"
heartbeat_interval_s = 0.2
reconnect_min_s = 0.05
[ledger]
url = "sqlite:///{tmp_path / 'ledger.sqlite'}"
[vault]
ingest_on_stop = false
[web]
enabled = true
port = {web_port}
credentials = "{tmp_path / 'users.json'}"
[users]
ann = "agent"
[payments]
url = "{gateway.url}"
ca_file = "{ca}"
inter_digit_timeout_s = 2.0
""")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLGUARD_", "NOTIFY_", "WATCHDOG_"))}
        cli_env = {**env, "CALLGUARD_API_TOKEN": token}

        async def callguard(*args: str) -> asyncio.subprocess.Process:
            return await asyncio.create_subprocess_exec(
                sys.executable, "-m", "callguard", "--config", str(config), *args, env=cli_env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)

        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "callguard", "--config", str(config), "run", "asterisk",
            env={**env, "CALLGUARD_PAYMENTS__API_KEY": gateway.api_key},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        assert proc.stderr is not None
        logged = asyncio.ensure_future(proc.stderr.read())
        try:
            await pbx.wait_for_client(timeout=90)
            await _until(pbx.heartbeat_fresh, 60)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{web_port}") as probe:
                # the console starts after the AMI login and holds the loop meanwhile: a call arriving
                # then can outlive the dialplan's pickup guard and go on unrecorded
                await console_up(probe)
            call = pbx.place_call("+14155550123", "Card Caller")
            await call.answer_prompt("1", timeout=60)
            await _until(lambda: call.recording is not None and call.agent is not None
                         and call.channel.bridge is not None)
            await asyncio.sleep(0.3)  # the agent leg's BridgeEnter reaches the listener
            start = await callguard("payment", "start", "--amount", "49.90", "--currency", "GBP")
            out, err = await asyncio.wait_for(start.communicate(), 60)
            assert start.returncode == 0, err.decode()
            assert f"call {call.linkedid}  collecting" in out.decode() and "card: waiting" in out.decode()
            watch = await callguard("payment", "watch", call.linkedid)
            assert watch.stdout is not None
            first = await asyncio.wait_for(watch.stdout.readline(), 60)
            assert b"card: waiting" in first  # the current view first
            await keyed(call, TEST_CARD + "#1230123")
            out, err = await asyncio.wait_for(watch.communicate(), 60)
            assert watch.returncode == 0, err.decode()
            text = first.decode() + out.decode()
            assert "card: 12 of 16 digits, Visa" in text and "card: ok, Visa | expiry: ok | CVV: ok" in text
            assert "approved, visa ending 1111, 49.90 GBP, token tok_" in text
            assert not any(TEST_CARD[i:i + 8] in text for i in range(9))
            assert not call.recording.muted or await _until(lambda: not call.recording.muted) is None
            await call.hangup()
        except BaseException:
            proc.send_signal(signal.SIGTERM)
            print((await logged).decode()[-6000:])  # the listener's side of the story
            raise
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)
            stderr = (await logged).decode()
    assert proc.returncode == 0, stderr
    assert not any(TEST_CARD[i:i + 8] in stderr for i in range(9))
