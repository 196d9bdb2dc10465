"""The console over the FreeSWITCH listener: an API pause is masked by the fake FreeSWITCH, with the user logged."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from callguard.adapters.freeswitch.commands import directory_prompts
from callguard.adapters.freeswitch.listener import FreeSwitchListener, _probe
from callguard.core.prompts import StaticPrompts
from callguard.ledger import Ledger
from callguard.ledger.queries import timeline
from callguard.testing.fake_freeswitch import FakeFreeSWITCH
from callguard.web.server import serve_console
from callguard.web.users import Credentials
from tests.adapters.freeswitch.conftest import PASSWORD, SOUNDS, make_config, scenario


async def test_api_pause_on_freeswitch_is_masked_and_logged(tmp_path: Path):
    fake = FakeFreeSWITCH(password=PASSWORD)
    await fake.start()
    config = make_config(fake.port, ledger={"url": f"sqlite:///{tmp_path / 'ledger.sqlite'}"},
                         web={"enabled": True, "credentials": str(tmp_path / "users.json")},
                         users={"sup": "supervisor"})
    credentials = Credentials(config.web.credentials)
    credentials.set_user("sup", "correct horse battery")
    token = credentials.add_token("sup")
    ledger = Ledger.open(config.ledger.url, "freeswitch@web-test", batch_wait_ms=0.5)
    listener = FreeSwitchListener(config, ledger, prompts=StaticPrompts(("en",)),
                                  prompt_path=directory_prompts(SOUNDS))
    call_id = ""
    try:
        await listener.start()
        fake.watch(listener.busy)
        fake.socket_address = ("127.0.0.1", listener.outbound_port or 0)
        await asyncio.wait_for(listener.connected.wait(), 10)
        assert listener.engine is not None
        async with serve_console(config, listener.engine, _probe(listener), pbx="freeswitch", port=0) as console:
            play = asyncio.ensure_future(fake.play(scenario([{"at": 2.5, "press": "1"}, {"at": 30, "hangup": "caller"}])))
            engine = listener.engine

            async def recording() -> str:
                while True:
                    for call_id, session in list(engine.sessions.items()):
                        if session.state.value == "recording":
                            return call_id
                    await asyncio.sleep(0.01)

            call_id = await asyncio.wait_for(recording(), 20)
            async with httpx.AsyncClient(base_url=console.url, headers={"Authorization": f"Bearer {token}"},
                                         timeout=15) as api:
                paused = await api.post(f"/api/v1/calls/{call_id}/pause")
                assert paused.status_code == 200 and paused.json()["state"] == "muted", paused.text
                assert any(c.startswith("uuid_record") and " mask " in c for _, c in fake.api_log)
            play.cancel()
    finally:
        await asyncio.wait_for(listener.stop(), 30)
        await asyncio.wait_for(fake.stop(), 30)
        assert ledger.flush(10)
        entries = timeline(ledger.engine, call_id)
        ledger.close(5)
    requested = [e.data for e in entries if e.kind == "pause-requested"]
    assert requested and requested[0]["source"] == "api" and requested[0]["user"] == "sup"
    assert any(e.kind == "recording-muted" and e.data["confirmed_by"] == "pbx" for e in entries)
