"""The console API over a real HTTP port, against FakeAsterisk: auth, roles, control confirmed by the PBX."""

from __future__ import annotations

import asyncio
import json

from .conftest import ConsoleRig


async def test_nothing_answers_without_auth_except_health(console_rig: ConsoleRig):
    async with console_rig.client() as anon:
        for path in ("/api/v1/calls", "/api/v1/me", "/api/v1/recordings", "/api/v1/dsar", "/metrics",
                     "/api/v1/events", "/api/v1/ledger/verify"):
            response = await anon.get(path)
            assert response.status_code == 401, (path, response.status_code)
            assert "Bearer" in response.headers["www-authenticate"]
        assert (await anon.post("/api/v1/calls/x/pause")).status_code == 401
        assert (await anon.get("/healthz")).text == "ok\n"
        ready = await anon.get("/readyz")
        assert ready.status_code == 200 and ready.json()["ready"] is True, ready.text
        # a browser is sent to the login page instead
        page = await anon.get("/", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"].startswith("/login")
    async with console_rig.client(headers={"Authorization": "Bearer cgt_nope_nope"}) as forged:
        assert (await forged.get("/api/v1/calls")).status_code == 401


async def test_wrong_role_gets_403(console_rig: ConsoleRig):
    call = await console_rig.recorded_call()
    cases = [("ann", "GET", "/api/v1/recordings"),  # agents do not browse recordings
             ("cora", "POST", f"/api/v1/calls/{call.linkedid}/pause"),  # compliance watches, does not control
             ("nemo", "GET", "/api/v1/calls"),  # a console user without a role in [users]
             ("sup", "GET", "/api/v1/dsar")]  # supervisors do not see data-subject requests
    for user, method, path in cases:
        async with console_rig.client(user) as client:
            response = await client.request(method, path)
            assert response.status_code == 403, (user, path, response.text)
            assert "may not" in response.json()["detail"]
    assert not call.recording.muted


async def test_pause_via_api_is_confirmed_by_the_pbx_and_logged_with_the_user(console_rig: ConsoleRig):
    call = await console_rig.recorded_call()
    cid = call.linkedid
    async with console_rig.client("sup") as sup:
        listed = (await sup.get("/api/v1/calls")).json()["calls"]
        assert [c["call_id"] for c in listed] == [cid]
        paused = await sup.post(f"/api/v1/calls/{cid}/pause")
        assert paused.status_code == 200, paused.text
        body = paused.json()
        # the response comes after the PBX confirmed: the fake has muted the recording
        assert body["state"] == "muted" and body["muted"] and body["mute_reasons"] == ["pause"]
        assert call.recording.muted
        assert body["confirmed"]["recording-muted"] > 0 and body["paused_since"] is not None
        resumed = (await sup.post(f"/api/v1/calls/{cid}/resume")).json()
        assert resumed["state"] == "recording" and not call.recording.muted
    (requested,) = console_rig.entries(cid, "pause-requested")
    assert requested["source"] == "api" and requested["user"] == "sup"
    assert console_rig.entries(cid, "recording-muted")[0]["confirmed_by"] == "pbx"
    assert console_rig.entries(cid, "resume-requested")[0]["user"] == "sup"


async def test_agents_act_only_on_their_own_calls(console_rig: ConsoleRig):
    call = await console_rig.recorded_call()
    cid = call.linkedid
    async with console_rig.client("bo") as bo:
        assert (await bo.get("/api/v1/calls")).json()["calls"] == []
        refused = await bo.post(f"/api/v1/calls/{cid}/pause")
        assert refused.status_code == 403 and "not on your endpoint" in refused.json()["detail"]
        assert (await bo.post("/api/v1/calls/current/pause")).status_code == 404
    assert not call.recording.muted
    async with console_rig.client("ann") as ann:
        mine = (await ann.get("/api/v1/calls")).json()["calls"]
        assert [c["call_id"] for c in mine] == [cid]
        paused = await ann.post("/api/v1/calls/current/pause")  # "my current call"
        assert paused.status_code == 200 and paused.json()["call_id"] == cid and call.recording.muted
        assert (await ann.post("/api/v1/calls/unknown-call/pause")).status_code == 404
    assert console_rig.entries(cid, "pause-requested")[0]["user"] == "ann"


async def test_browser_session_needs_the_csrf_token(console_rig: ConsoleRig):
    call = await console_rig.recorded_call()
    client, csrf = await console_rig.login("sup")
    try:
        assert (await client.get("/api/v1/me")).json()["name"] == "sup"
        forged = await client.post(f"/api/v1/calls/{call.linkedid}/pause")
        assert forged.status_code == 403 and "CSRF" in forged.json()["detail"]
        assert not call.recording.muted
        ok = await client.post(f"/api/v1/calls/{call.linkedid}/pause", headers={"X-CSRF-Token": csrf})
        assert ok.status_code == 200 and call.recording.muted
        bad = await client.post("/login", data={"username": "sup", "password": "wrong password!", "csrf_token": csrf})
        assert bad.status_code == 401
    finally:
        await client.aclose()


async def test_live_updates_arrive_when_the_pbx_confirms(console_rig: ConsoleRig):
    call = await console_rig.recorded_call()
    cid = call.linkedid
    loop = asyncio.get_running_loop()
    async with console_rig.client("sup") as sup, sup.stream("GET", "/api/v1/events") as stream:
        assert stream.status_code == 200

        async def muted_event() -> float:
            event = None
            async for line in stream.aiter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event == "call":
                    change = json.loads(line[5:])
                    if change["kind"] == "recording-muted":
                        assert change["call"]["call_id"] == cid and change["call"]["state"] == "muted"
                        return loop.time()
            raise AssertionError("stream ended")

        waiter = asyncio.ensure_future(muted_event())
        await asyncio.sleep(0.05)
        await call.hotkey("pause")  # a hotkey on the PBX, not the API: the board must still see it
        await console_rig.wait_for(lambda: call.recording.muted, what="fake muted")
        confirmed_at = loop.time()
        arrived = await asyncio.wait_for(waiter, 10)
        # generous for a loaded CI machine; the budget is 200 ms
        assert arrived - confirmed_at < 1.0


async def test_metrics_and_openapi(console_rig: ConsoleRig):
    call = await console_rig.recorded_call()
    async with console_rig.client("sup") as sup:
        await sup.post(f"/api/v1/calls/{call.linkedid}/payment/start")
        text = (await sup.get("/metrics")).text
        assert "callguard_active_calls 1.0" in text
        assert 'callguard_payment_segments_total{source="api"} 1.0' in text
        assert 'callguard_pbx_confirmation_seconds_count{change="mute"} 1.0' in text
        assert 'callguard_pbx_connected{pbx="asterisk"} 1.0' in text
        assert "callguard_ledger_backlog_entries" in text and "callguard_vault_backlog_recordings" in text
        schema = (await sup.get("/api/v1/openapi.json")).json()
        assert "/api/v1/calls/{call_id}/pause" in schema["paths"]
        assert "/api/v1/recordings/{recording_id}/audio" in schema["paths"]
