"""Evidence over the API: listening needs a reason, is streamed decrypted and logged; timelines, verify, holds."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .conftest import ConsoleRig, access_log, stored_recording, tone_wav


async def test_listen_requires_a_reason_streams_the_audio_and_is_logged(console_rig: ConsoleRig, tmp_path: Path):
    call_id, recording_id = await stored_recording(console_rig, tmp_path)
    expected = hashlib.sha256(tone_wav(tmp_path / "same.wav").read_bytes()).hexdigest()
    async with console_rig.client("sup") as sup:
        listed = (await sup.get("/api/v1/recordings", params={"call_id": call_id})).json()["recordings"]
        assert [r["id"] for r in listed] == [recording_id]
        missing = await sup.get(f"/api/v1/recordings/{recording_id}/audio")
        assert missing.status_code == 400 and "reason" in missing.json()["detail"]
        short = await sup.get(f"/api/v1/recordings/{recording_id}/audio", params={"reason": "why"})
        assert short.status_code == 400
        played = await sup.get(f"/api/v1/recordings/{recording_id}/audio",
                               params={"reason": "complaint #4411 review"})
        assert played.status_code == 200 and played.headers["content-type"] == "audio/wav"
        assert hashlib.sha256(played.content).hexdigest() == expected
    async with console_rig.client("ann") as ann:  # agents may not listen
        assert (await ann.get(f"/api/v1/recordings/{recording_id}/audio",
                              params={"reason": "curious about it"})).status_code == 403
    listens = [e for e in access_log(console_rig) if e["action"] == "listen"]
    assert [(e["actor"], e["outcome"], e["reason"]) for e in listens] == [
        ("sup", "granted", "complaint #4411 review"), ("sup", "done", "complaint #4411 review")]
    assert json.loads(listens[0]["detail"])["authenticated_by"] == "web"


async def test_timeline_verify_holds_and_dsar(console_rig: ConsoleRig, tmp_path: Path):
    call_id, recording_id = await stored_recording(console_rig, tmp_path)
    async with console_rig.client("cora") as cora:
        entries = (await cora.get(f"/api/v1/ledger/calls/{call_id}")).json()["entries"]
        kinds = [e["kind"] for e in entries]
        assert kinds[0] == "call-offered" and "recording-started" in kinds and "recording-stored" in kinds
        verified = (await cora.get("/api/v1/ledger/verify")).json()
        assert verified["ok"] and verified["chains"]
        hold = await cora.post("/api/v1/holds", json={"call_id": call_id, "reason": "litigation 2026-17 hold",
                                                      "case_ref": "2026-17"})
        assert hold.status_code == 201, hold.text
        assert [h["call_id"] for h in (await cora.get("/api/v1/holds")).json()["holds"]] == [call_id]
        opened = await cora.post("/api/v1/dsar", json={"number": "+442079460123", "reason": "letter of 3 Dec 2026"})
        assert opened.status_code == 201, opened.text
        request_id = opened.json()["id"]
        assert opened.json()["found"]["calls"] == [call_id]
        bundle = await cora.post(f"/api/v1/dsar/{request_id}/export", json={"reason": "answering the request"})
        assert bundle.status_code == 200 and bundle.content[:2] == b"PK"
        erased = (await cora.post(f"/api/v1/dsar/{request_id}/erase", json={"reason": "subject asked erasure"})).json()
        # the legal hold keeps the recording: erase says so instead of deleting it
        assert recording_id in json.dumps(erased)
        assert (await cora.get(f"/api/v1/ledger/calls/no-such-call")).status_code == 404


async def test_dsar_queue_page_opens_and_exports_a_request(console_rig: ConsoleRig, tmp_path: Path):
    import re

    call_id, _ = await stored_recording(console_rig, tmp_path)
    client, csrf = await console_rig.login("cora")
    try:
        forged = await client.post("/dsar", data={"number": "+442079460123", "kind": "access",
                                                  "reason": "letter of 3 Dec 2026"})
        assert forged.status_code == 403  # no CSRF token
        opened = await client.post("/dsar", data={"number": "+442079460123", "kind": "access",
                                                  "reason": "letter of 3 Dec 2026", "csrf_token": csrf})
        assert opened.status_code == 303
        page = await client.get("/dsar", headers={"Accept": "text/html"})
        assert "DSAR-" in page.text and "1 calls" in page.text
        request_id = re.search(r'action="/dsar/(\d+)/answer"', page.text).group(1)
        bundle = await client.post(f"/dsar/{request_id}/answer", data={"action": "export", "csrf_token": csrf,
                                                                     "reason": "answering the request"})
        assert bundle.status_code == 200 and bundle.content[:2] == b"PK"
        short = await client.post(f"/dsar/{request_id}/answer", data={"action": "export", "csrf_token": csrf,
                                                                    "reason": "why"}, headers={"Accept": "text/html"})
        assert short.status_code == 400 and "reason" in short.text  # a readable error page
    finally:
        await client.aclose()
    exports = [e for e in access_log(console_rig) if e["action"] == "dsar-export" and e["outcome"] == "granted"]
    assert [(e["actor"], e["reason"]) for e in exports] == [("cora", "answering the request")]
