"""Retention across purposes and legal holds, on a fake clock that moves by months."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from callguard.ledger.queries import timeline
from callguard.vault import holds
from callguard.vault.envelope import VaultError
from callguard.vault.ingest import ingest_file
from callguard.vault.models import DeletionRecord, Recording, SweepRun
from callguard.vault.recordings import delete
from callguard.vault.retention import sweep
from callguard.vault.service import AccessDenied

from tests.vault.conftest import T0, call_entries, recording_start, spool_copy, write_ledger

DAY = 86400


@pytest.fixture
def catalogue(vault, config, tmp_path, small_wav):
    """Four recordings: qa x2, dispute, compliance, all recorded at the same PBX time."""
    ids = {}
    calls = (("qa-1", "qa"), ("qa-2", "qa"), ("disp-1", "dispute"), ("comp-1", "compliance"))
    write_ledger(config, [e for call_id, _ in calls for e in call_entries(call_id, "+442079460999", T0)])
    entries = call_entries("comp-1", "+442079460999", T0)
    for call_id, purpose in calls:
        wav = spool_copy(small_wav, tmp_path / "spool", f"callguard-{call_id}.wav")
        ids[call_id] = ingest_file(vault, wav, call_id, purpose=purpose).recording_id
    return ids, recording_start(entries)


def _states(vault) -> dict[str, str]:
    with vault.session() as s:
        return {r.call_id: r.state for r in s.scalars(select(Recording))}


def test_sweep_follows_purposes_and_holds(vault, catalogue, clock):
    ids, started = catalogue
    # day 89: nothing is due
    clock.now = started + 89 * DAY
    report = sweep(vault, None, apply=True)
    assert report.due == [] and report.deleted == []
    # legal places a hold on qa-2's call before its retention ends
    hold = holds.place(vault, "erin", "complaint 2026/118 to the ombudsman", call_id="qa-2", case_ref="OMB-118")
    # day 91: a dry run reports the qa recording, keeps the held one, deletes nothing
    clock.now = started + 91 * DAY
    dry = sweep(vault, None, apply=False)
    assert [e.recording_id for e in dry.due] == [ids["qa-1"]]
    assert [e.recording_id for e in dry.held] == [ids["qa-2"]]
    assert _states(vault) == {"qa-1": "stored", "qa-2": "stored", "disp-1": "stored", "comp-1": "stored"}
    applied = sweep(vault, None, apply=True)
    assert applied.deleted == [ids["qa-1"]]
    assert _states(vault)["qa-1"] == "deleted" and _states(vault)["qa-2"] == "stored"
    assert not vault.keystore.exists(ids["qa-1"])
    # day 366: dispute expires; the hold still protects qa-2
    clock.now = started + 366 * DAY
    report = sweep(vault, None, apply=True)
    assert report.deleted == [ids["disp-1"]] and [e.recording_id for e in report.held] == [ids["qa-2"]]
    # the hold is released: the next sweep takes qa-2; compliance stays for 7 years
    holds.release(vault, "erin", hold.id, "ombudsman case closed in our favour")
    clock.advance(days=1)
    report = sweep(vault, None, apply=True)
    assert report.deleted == [ids["qa-2"]]
    assert _states(vault) == {"qa-1": "deleted", "qa-2": "deleted", "disp-1": "deleted", "comp-1": "stored"}
    clock.now = started + 2556 * DAY
    assert sweep(vault, None, apply=True).deleted == [ids["comp-1"]]
    # every deletion left a record and a ledger entry on the call's timeline
    with vault.session() as s:
        records = {r.recording_id: r for r in s.scalars(select(DeletionRecord))}
        runs = s.scalars(select(SweepRun).order_by(SweepRun.id)).all()
        kinds = [e.kind for e in timeline(s, "qa-2")]
    assert set(records) == set(ids.values())
    assert {r.cause for r in records.values()} == {"retention-expired"}
    assert records[ids["disp-1"]].purpose == "dispute" and records[ids["disp-1"]].key_shredded
    assert "legal-hold-placed" in kinds and "legal-hold-released" in kinds
    assert kinds.index("legal-hold-released") < kinds.index("recording-deleted")
    assert [r.applied for r in runs] == [True, False, True, True, True, True]
    assert [r.deleted for r in runs] == [0, 0, 1, 1, 1, 1]


def test_hold_on_one_recording_and_manual_delete_refused(vault, catalogue, clock):
    ids, started = catalogue
    hold = holds.place(vault, "alice", "subject access dispute pending", recording_id=ids["qa-1"])
    with pytest.raises(VaultError, match=r"under legal hold #\d+ \(subject access dispute pending\)"):
        delete(vault, "alice", ids["qa-1"], "caller asked us to delete it")
    clock.now = started + 100 * DAY
    report = sweep(vault, None, apply=True)
    assert report.deleted == [ids["qa-2"]] and [e.recording_id for e in report.held] == [ids["qa-1"]]
    holds.release(vault, "alice", hold.id, "dispute settled last week")
    with pytest.raises(VaultError, match="already released"):
        holds.release(vault, "alice", hold.id, "dispute settled last week")
    assert delete(vault, "alice", ids["qa-1"], "caller asked us to delete it").key_shredded


def test_holds_and_sweeps_need_their_permissions(vault, catalogue):
    ids, _ = catalogue
    with pytest.raises(AccessDenied, match="may not hold"):
        holds.place(vault, "bob", "I want to keep this one", call_id="qa-1")
    with pytest.raises(AccessDenied, match="may not retention"):
        sweep(vault, "bob", apply=True)
    with pytest.raises(VaultError, match="not in the ledger"):
        holds.place(vault, "erin", "litigation hold for case 7", call_id="nope")
    with pytest.raises(VaultError, match="exactly one"):
        holds.place(vault, "erin", "litigation hold for case 7")
    denied = [e for e in vault.access_log.events() if e.outcome == "denied"]
    assert [(e.actor, e.action) for e in denied] == [("bob", "hold-place"), ("bob", "retention-sweep")]
