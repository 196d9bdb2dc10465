"""Hotkeys and payment signals, through the fake FreeSWITCH on real sockets.

Issue 19 section 4: the shipped binding must act inline (the fake models
what FreeSWITCH 1.10.12 does with ``bind_meta_app ... s`` and no hold
music: the feature is held back until the leg ends).  Issue 11 sections 1
and 4: a resume or the end of a payment segment acts only when FreeSWITCH
confirms it came from a staff leg of that call; the dialplan masks a
payment segment by itself.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .conftest import scenario

DIALPLAN = Path(__file__).parents[3] / "dialplan" / "freeswitch"


def shipped_meta_flags() -> str:
    """The flags callguard_agent binds the pause hotkey with, read from the shipped callguard.xml."""
    text = (DIALPLAN / "callguard.xml").read_text()
    text = re.sub(r"<!--.*?-->", "", text, flags=re.DOTALL)
    match = re.search(r'application="bind_meta_app" data="\d (\w+ \w+) execute_extension::callguard_pause', text)
    assert match, "callguard.xml binds no pause hotkey"
    return match.group(1)


async def test_the_shipped_binding_pauses_within_100_ms_of_the_keypress(make_rig) -> None:
    rig = await make_rig(fake_options={"meta_flags": shipped_meta_flags(), "hold_music": False})
    record = await rig.play(scenario([{"at": 2.5, "press": "1"}, {"at": 20, "hotkey": "pause"},
                                      {"at": 60, "hangup": "caller"}]))
    call = record.call_id
    pressed = [t for t, c in record.agent.trace if c == "execute_extension callguard_pause"]
    assert pressed == [20.0], record.agent.trace
    muted = rig.entry(call, "recording-muted")
    assert muted.pbx_time - (rig.fake.base_epoch + 20.0) <= 0.1
    assert record.recordings[0].audible_spans(60) == [(2.5, 20.0)]


async def test_the_fake_holds_a_hold_flag_binding_back_until_the_leg_ends(make_rig) -> None:
    """What FreeSWITCH did with the old ``a s`` binding and no hold music: the pause ran at hangup."""
    rig = await make_rig(fake_options={"meta_flags": "a s", "hold_music": False})
    record = await rig.play(scenario([{"at": 2.5, "press": "1"}, {"at": 20, "hotkey": "pause"},
                                      {"at": 60, "hangup": "caller"}]))
    assert [t for t, c in record.agent.trace if c == "execute_extension callguard_pause"] == [60.0]
    assert record.recordings[0].audible_spans(60) == [(2.5, 60.0)]


async def test_a_resume_from_the_recorded_callers_own_leg_is_refused(rig) -> None:
    """E.g. loopback copied execute_on_answer to the customer's side and the customer pressed *2."""
    async def customer_resumes(record, step) -> None:
        rig.fake.fire_custom(record.caller, "callguard::resume",
                             {"callguard_action": "resume", "callguard_source": "agent-hotkey"})
    record = await rig.play(scenario([{"at": 2.5, "press": "1"}, {"at": 20, "hotkey": "pause"},
                                      {"at": 30, "api": "resume"}, {"at": 60, "hangup": "caller"}]),
                            on_api=customer_resumes)
    assert rig.listener.stats["signals_refused"] == 1
    assert rig.entries(record.call_id, "resume-requested") == []
    assert record.recordings[0].audible_spans(60) == [(2.5, 20.0)]


async def test_a_resume_event_not_written_by_the_staff_legs_feature_code_is_refused(rig) -> None:
    """An event claiming to come from the agent leg, with nothing on that leg to confirm it."""
    async def forged(record, step) -> None:
        rig.fake.fire_custom(record.agent, "callguard::resume",
                             {"callguard_action": "resume", "callguard_source": "agent-hotkey"})
    record = await rig.play(scenario([{"at": 2.5, "press": "1"}, {"at": 20, "hotkey": "pause"},
                                      {"at": 30, "api": "resume"}, {"at": 60, "hangup": "caller"}]),
                            on_api=forged)
    call, agent = record.call_id, record.agent
    assert rig.api(f"uuid_getvar {agent.uuid} callguard_hotkey")
    assert rig.listener.stats["signals_refused"] == 1
    assert rig.entries(call, "resume-requested") == []
    assert record.recordings[0].audible_spans(60) == [(2.5, 20.0)]


async def test_a_confirmed_resume_acts_once_and_cannot_be_replayed(rig) -> None:
    async def replay(record, step) -> None:
        rig.fake.fire_custom(record.agent, "callguard::resume",
                             {"callguard_action": "resume", "callguard_source": "agent-hotkey"})
    record = await rig.play(scenario([{"at": 2.5, "press": "1"}, {"at": 20, "hotkey": "pause"},
                                      {"at": 26, "hotkey": "resume"}, {"at": 30, "hotkey": "pause"},
                                      {"at": 40, "api": "resume"}, {"at": 60, "hangup": "caller"}]),
                            on_api=replay)
    call = record.call_id
    assert len(rig.entries(call, "resume-requested")) == 1
    assert rig.listener.stats["signals_refused"] == 1
    assert record.recordings[0].audible_spans(60) == [(2.5, 20.0), (26.0, 30.0)]


async def test_ivr_payment_segment_masked_by_the_dialplan_and_ended_when_confirmed(rig) -> None:
    record = await rig.play(scenario([{"at": 2.5, "press": "1"}, {"at": 40, "ivr": "payment-start"},
                                      {"at": 75, "ivr": "payment-end"}, {"at": 90, "hangup": "caller"}]))
    call = record.call_id
    assert any("mask" in c and "(from the dialplan)" in c for _, c in record.caller.trace)
    assert rig.api(f"uuid_getvar {call} callguard_payment")
    assert rig.entry(call, "payment-ended").data["source"] == "ivr"
    assert record.recordings[0].audible_spans(90) == [(2.5, 40.0), (75.0, 90.0)]


@pytest.mark.parametrize("origin", ["caller", "agent"])
async def test_a_payment_end_nobody_confirms_keeps_the_segment_silent(rig, origin) -> None:
    async def forged_end(record, step) -> None:
        leg = record.caller if origin == "caller" else record.agent
        rig.fake.fire_custom(leg, "callguard::payment_end",
                             {"callguard_action": "payment_end", "callguard_source": "ivr"})
    record = await rig.play(scenario([{"at": 2.5, "press": "1"}, {"at": 40, "ivr": "payment-start"},
                                      {"at": 50, "api": "payment-end"}, {"at": 90, "hangup": "caller"}]),
                            on_api=forged_end)
    assert rig.entries(record.call_id, "payment-ended") == []
    assert record.recordings[0].audible_spans(90) == [(2.5, 40.0)]
