"""Data-subject requests on a seeded ledger: find, export (bundle), erase (with reasons), overdue."""

from __future__ import annotations

import hashlib
import json

import pytest

from callguard.vault import dsar, holds
from callguard.vault.envelope import VaultError
from callguard.vault.ingest import ingest_file
from callguard.vault.service import AccessDenied

from tests.vault.conftest import T0, call_entries, spool_copy, write_ledger

SUBJECT = "+442079460123"


@pytest.fixture
def seeded(vault, config, tmp_path, small_wav):
    """Four calls of the subject (one conference with a stranger), one call of someone else."""
    entries = []
    entries += call_entries("s-qa", SUBJECT, T0)
    entries += call_entries("s-held", SUBJECT, T0 + 100)
    entries += call_entries("s-comp", SUBJECT, T0 + 200)
    entries += call_entries("s-conf", SUBJECT, T0 + 300, extra=[
        ("party-joined", 5.0, {"party": {"channel": "PJSIP/stranger", "number": "+14155550199",
                                         "name": "Stranger Person", "role": "joined", "jurisdiction": "US-CA",
                                         "regime": "all-party"}, "announceable": True})])
    entries += call_entries("other", "+33142685300", T0 + 400)
    write_ledger(config, entries)
    originals, ids = {}, {}
    for call_id, purpose in (("s-qa", "qa"), ("s-held", "dispute"), ("s-comp", "compliance"), ("s-conf", "qa"),
                             ("other", "qa")):
        wav = spool_copy(small_wav, tmp_path / "spool", f"callguard-{call_id}.wav")
        originals[call_id] = wav.read_bytes()
        ids[call_id] = ingest_file(vault, wav, call_id, purpose=purpose).recording_id
    holds.place(vault, "erin", "pending litigation, claim 2026-CV-42", call_id="s-held", case_ref="2026-CV-42")
    return ids, originals


def test_open_finds_everything_for_the_number(vault, seeded):
    ids, _ = seeded
    view = dsar.open_request(vault, "alice", "+44 20 7946 0123", kind="access", note="letter of 1 Nov, ID checked")
    assert view.number == SUBJECT
    assert sorted(view.found["calls"]) == ["s-comp", "s-conf", "s-held", "s-qa"]
    assert sorted(view.found["recordings"]) == sorted(ids[c] for c in ("s-qa", "s-held", "s-comp", "s-conf"))
    assert view.found["ledger_entries"] > 40
    assert view.found["access_log_entries"] >= 8  # ingest granted+done per recording, the hold
    assert view.due_at == pytest.approx(view.opened_at + 30 * 86400)
    with pytest.raises(VaultError, match="not a phone number"):
        dsar.open_request(vault, "alice", "call me maybe")
    with pytest.raises(AccessDenied, match="may not dsar"):
        dsar.open_request(vault, "bob", SUBJECT)


def test_export_bundle(vault, seeded, tmp_path):
    ids, originals = seeded
    view = dsar.open_request(vault, "alice", SUBJECT)
    out = tmp_path / "out"
    out.mkdir()
    bundle = dsar.export_bundle(vault, "alice", view.id, out, "answering the access request")
    assert bundle.name == f"DSAR-{view.id}" and not list(out.glob(".*part"))
    index = json.loads((bundle / "index.json").read_text())
    assert {c["call_id"] for c in index["calls"]} == {"s-qa", "s-held", "s-comp", "s-conf"}
    for item in index["recordings"]:
        data = (bundle / item["file"]).read_bytes()
        assert data == originals[item["call_id"]]
        assert hashlib.sha256(data).hexdigest() == item["sha256"]
    # the stranger in the conference call is redacted; the subject is not
    conf = (bundle / "timelines" / "s-conf.json").read_text()
    assert "+14155550199" not in conf and "Stranger Person" not in conf and "[redacted" in conf
    assert SUBJECT in conf
    history = json.loads((bundle / "access-history.json").read_text())
    assert {"action": "hold-place", "by_role": "legal"}.items() <= next(
        h for h in history if h["action"] == "hold-place").items()
    assert all("by" not in h for h in history)  # staff are named by role only
    # an access request is answered by the export
    assert dsar.show(vault, "alice", view.id).status == "closed"
    with pytest.raises(VaultError, match="already exists"):
        dsar.export_bundle(vault, "alice", view.id, out, "answering the access request")


def test_erase_deletes_what_may_go_and_says_why_the_rest_stays(vault, seeded):
    ids, _ = seeded
    view = dsar.open_request(vault, "alice", SUBJECT, kind="erasure")
    report = dsar.erase(vault, "alice", view.id, "erasure request by letter")
    deleted = {d["call_id"] for d in report["deleted"]}
    assert deleted == {"s-qa", "s-conf"}
    kept = {k["what"]: k["why"] for k in report["kept"]}
    assert "legal hold" in kept[f"recording {ids['s-held']} of call s-held"]
    assert "2026-CV-42" in kept[f"recording {ids['s-held']} of call s-held"]
    assert "legal obligation" in kept[f"recording {ids['s-comp']} of call s-comp"]
    assert any(k.startswith("ledger:") and "17(3)" in v for k, v in kept.items())
    assert any(k.startswith("access log:") for k in kept)
    # the other caller's recording is untouched
    assert vault.keystore.exists(ids["other"])
    assert not vault.keystore.exists(ids["s-qa"]) and vault.keystore.exists(ids["s-held"])
    # running it again reports what was already deleted
    again = dsar.erase(vault, "alice", view.id, "erasure request by letter")
    assert {a["recording_id"] for a in again["already_deleted"]} == {ids["s-qa"], ids["s-conf"]}
    assert again["deleted"] == []
    assert dsar.show(vault, "alice", view.id).status == "closed"


def test_overdue_requests(vault, seeded, clock):
    first = dsar.open_request(vault, "alice", SUBJECT)
    clock.advance(days=10)
    second = dsar.open_request(vault, "alice", "+33142685300", kind="erasure")
    clock.advance(days=21)  # first is 31 days old, second 21
    assert [v.id for v in dsar.list_requests(vault, "alice", overdue=True)] == [first.id]
    dsar.close(vault, "alice", first.id, "requester withdrew the request by phone")
    assert dsar.list_requests(vault, "alice", overdue=True) == []
    assert [v.id for v in dsar.list_requests(vault, "alice", open_only=True)] == [second.id]
