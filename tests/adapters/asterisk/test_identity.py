"""Who joined (issue 11 §2, issue 19 §3): staff by what the PBX says about the leg, never caller ID.

Through FakeAsterisk on a real socket: a direct Dial to an agent (marked by
``[callguard-staff]``, or by ``[asterisk] staff_channels``), an agent with a
DID-style number, a blind transfer to staff and to an outside number, a
ConfBridge guest announced through ``callguard-join`` and one who walked in.
"""

from __future__ import annotations

import asyncio

from callguard.config import parse_config

from .conftest import SECRET, Rig, make_config


async def _recorded(rig: Rig, number: str = "+12125550100", **options):
    call = rig.pbx.place_call(number, "Cust", **options)
    await call.answer_prompt("1")
    await rig.wait_kind(call.linkedid, "recording-started")
    await call.wait_agi_left()
    return call


async def _joined(rig: Rig, call, count: int = 1) -> list[dict]:
    await rig.wait_for(lambda: sum(1 for cid, k, _ in rig.tee.seen if cid == call.linkedid and k == "party-joined")
                       >= count, what="party-joined")
    return [d for cid, k, d in rig.tee.seen if cid == call.linkedid and k == "party-joined"]


async def test_a_marked_agent_with_a_did_number_is_staff(rig: Rig):
    """Seen on a real site: DID-style extensions made the agent an unknown all-party joiner."""
    await rig.start_listener()
    call = await _recorded(rig, agent=("+14155550101", "Agent DID"))
    (joined,) = await _joined(rig, call)
    assert joined["staff"] is True and joined["party"]["jurisdiction"].startswith("internal")
    await asyncio.sleep(0.2)
    kinds = [k for cid, k, _ in rig.tee.seen if cid == call.linkedid]
    assert "violation" not in kinds and "recording-muted" not in kinds
    await call.hangup()
    await rig.settle(call)


async def test_an_agent_matching_staff_channels_is_staff_without_the_gosub(pbx, tmp_path):
    from callguard.ledger import Ledger

    from .conftest import Rig as _Rig

    ledger = Ledger.open(f"sqlite:///{tmp_path / 'l.sqlite'}", "asterisk@test", batch_wait_ms=0.5)
    rig = _Rig(pbx, make_config(pbx.port, asterisk={"staff_channels": "PJSIP/agent-[0-9]+"}), ledger)
    try:
        await rig.start_listener()
        call = await _recorded(rig, agent=("2001", "Agent"), agent_marked=False, agent_endpoint="PJSIP/agent-101")
        (joined,) = await _joined(rig, call)
        assert joined["staff"] is True and joined["party"]["channel"].startswith("PJSIP/agent-101-")
        await call.hangup()
        await rig.settle(call)
    finally:
        if rig.running is not None:
            await rig.running.stop()
        ledger.close(5)


async def test_an_unmarked_leg_is_not_staff_whatever_its_number(rig: Rig):
    """No [callguard-staff], no pattern: an unannounced party, though its number looks internal."""
    await rig.start_listener()
    call = await _recorded(rig, "+14155550123", agent=("2001", "Agent"), agent_marked=False)
    (joined,) = await _joined(rig, call)
    assert joined["staff"] is False
    await rig.wait_kind(call.linkedid, "violation")
    await rig.wait_kind(call.linkedid, "recording-stopped", reason="party-forbids-recording")
    await call.hangup()
    await rig.settle(call)


async def test_blind_transfer_to_staff_and_to_an_outside_number(rig: Rig):
    await rig.start_listener()
    call = await _recorded(rig)
    await rig.wait_for(lambda: call.bridge_id is not None, what="bridged")
    await rig.pbx.blind_transfer(call, "102", staff=True)
    joined = await _joined(rig, call, 2)
    assert joined[-1]["staff"] is True and joined[-1]["party"]["channel"].startswith("Local/102@staff-")
    # ... then on to an outside party in California (all-party), announced through callguard-join.
    transfer = asyncio.ensure_future(rig.pbx.blind_transfer(call, "+14155550177", staff=False, via_join=True))
    await call.answer_prompt("1", party="agent")
    await transfer
    joined = await _joined(rig, call, 3)
    assert joined[-1]["staff"] is False and joined[-1]["party"]["number"] == "+14155550177"
    assert joined[-1]["party"]["jurisdiction"] == "US-CA" and joined[-1]["announceable"] is True
    await rig.wait_kind(call.linkedid, "consent", party="joiner", decision="granted")
    await call.hangup()
    await rig.settle(call)
    assert "violation" not in rig.kinds(call.linkedid)


async def test_blind_transfer_to_an_unannounced_outside_number_is_a_violation(rig: Rig):
    await rig.start_listener()
    call = await _recorded(rig)
    await rig.wait_for(lambda: call.bridge_id is not None, what="bridged")
    await rig.pbx.blind_transfer(call, "+442079460000", staff=False)
    joined = await _joined(rig, call, 2)
    assert joined[-1]["staff"] is False and joined[-1]["party"]["jurisdiction"] == "GB"
    await rig.wait_kind(call.linkedid, "violation")
    await call.hangup()
    await rig.settle(call)


async def test_conference_guests_are_seen_announced_or_not(rig: Rig):
    """Issue 19 §3 on Asterisk: every member of a conference holding a recorded call."""
    await rig.start_listener()
    call = await _recorded(rig)  # New York, one-party: recorded on the notice alone
    await rig.pbx.enter_conference(call, "sales")
    # A guest from London (GDPR: explicit consent) comes in through callguard-join ...
    guest = asyncio.ensure_future(rig.pbx.conference_guest("sales", "+442079460001", via_join=True))
    await rig.wait_kind(call.linkedid, "party-joined")
    await rig.wait_kind(call.linkedid, "recording-muted")  # silent until they agree
    joiner = next(c for c in rig.pbx.calls if str(c.number) == "+442079460001")
    await joiner.answer_prompt("1")
    await guest
    await rig.wait_kind(call.linkedid, "consent", party="joiner", decision="granted")
    await rig.wait_kind(call.linkedid, "recording-unmuted")
    # ... a colleague marked staff dials in: no notice, no violation ...
    await rig.pbx.conference_guest("sales", "+14155550102", via_join=False, staff=True)
    joined = await _joined(rig, call, 3)
    assert joined[-1]["staff"] is True
    # ... and one from Paris walks in without it: unannounced, GDPR: the recording stops.
    await rig.pbx.conference_guest("sales", "+33142685300", via_join=False)
    await rig.wait_kind(call.linkedid, "violation")
    await rig.wait_kind(call.linkedid, "recording-stopped")
    await call.hangup()
    await rig.settle(call)
    parties = [d["party"] for d in await _joined(rig, call, 4)]
    assert [p["jurisdiction"] for p in parties][1:] == ["GB", "internal:US-NY", "FR"]
