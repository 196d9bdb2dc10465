"""Who joined, through the fake FreeSWITCH on real sockets (issue 19 sections 1-2, issue 11 section 6).

On a real FreeSWITCH 1.10.12 an agent leg dialled with
``execute_on_answer`` is bridged BEFORE its own socket session connects
(fixture agent_leg_socket: CHANNEL_BRIDGE Event-Sequence 3892, the agent's
CHANNEL_DATA 3894), and that session's caller id is the customer's number.
The fake reproduces both; these tests play the agent's join in both orders,
with the two connections up to 1 s apart, and check the ledger, the
recording and the agent's socket session.
"""

from __future__ import annotations

import pytest

from .conftest import scenario

STEPS = [{"at": 2.5, "press": "1"}, {"at": 20, "hotkey": "pause"}, {"at": 26, "hotkey": "resume"},
         {"at": 60, "hangup": "caller"}]


def agent_released(record) -> list[tuple[float, str]]:
    return [(t, c) for t, c in record.agent.trace if c.startswith("set callguard_decision")]


@pytest.mark.parametrize("order", ["bridge-first", "socket-first"])
@pytest.mark.parametrize("skew_s", [0.0, 1.0])
@pytest.mark.parametrize("tech", ["loopback", "sofia"])
async def test_a_marked_agent_is_staff_in_either_order(rig, order, skew_s, tech) -> None:
    record = await rig.play(scenario(STEPS), join_order=order, join_skew_s=skew_s, agent_tech=tech)
    call, agent = record.call_id, record.agent
    assert agent is not None and agent.caller_number == "+14155550123"  # the b-leg shows the customer's number
    assert rig.entries(call, "violation") == []
    joined = rig.entries(call, "party-joined")
    assert len(joined) == 1, "the agent is logged once"
    # a loopback agent is a pair of legs (loopback copies execute_on_answer to the far one): one party
    halves = {agent.uuid, agent.variables.get("other_loopback_leg_uuid")}
    assert joined[0].data["staff"] is True and joined[0].data["party"]["channel"] in halves
    assert joined[0].data["party"]["role"] == "agent"
    # the agent's own socket session was told to go on at once (no 8 s without instruction)
    assert agent_released(record) == [(2.5, "set callguard_decision=not-required")]
    assert agent.link is None and not any("play_and_get_digits" in c for _, c in agent.trace)
    # nothing but the hotkey pause is missing from the recording
    assert record.recordings[0].audible_spans(60) == [(2.5, 20.0), (26.0, 60.0)]
    assert rig.entries(call, "recording-stopped")[0].data["reason"] == "hangup"


async def test_a_marked_agent_without_a_socket_session_is_staff(rig) -> None:
    """A dial string with the mark but no execute_on_answer: the listener asks FreeSWITCH for the mark."""
    record = await rig.play(scenario(STEPS[:1] + STEPS[-1:]), agent_through_socket=False, agent_tech="loopback")
    call = record.call_id
    assert rig.entries(call, "violation") == []
    assert rig.entry(call, "party-joined").data["staff"] is True
    assert rig.api(f"uuid_getvar {record.agent.uuid} callguard_staff")
    assert record.recordings[0].audible_spans(60) == [(2.5, 60.0)]


async def test_an_unmarked_leg_that_skips_the_join_path_is_still_a_violation(make_rig) -> None:
    rig = await make_rig(freeswitch={"join_grace_s": 0.3})
    record = await rig.play(scenario(STEPS[:1] + STEPS[-1:]), agent_through_socket=False, staff_mark=False,
                            agent_tech="loopback")
    call = record.call_id
    violation = rig.entry(call, "violation")
    assert violation.data["channel"] == record.agent.uuid
    joined = rig.entry(call, "party-joined")
    assert joined.data["staff"] is False and joined.data["announceable"] is False
    # silent from the moment it was seen (California caller: all-party, so stopped)
    assert rig.entry(call, "recording-stopped", reason="party-forbids-recording")
    assert sum(b - a for a, b in record.recordings[0].audible_spans(60)) == 0, (record.caller.trace, rig.fake.api_log)


async def test_an_unmarked_leg_through_the_join_path_hears_the_notice(rig) -> None:
    """Caller id never decides staff: an unmarked leg dialled as "100" is announced like anyone."""
    record = await rig.play(scenario([{"at": 2.5, "press": "1"}, {"at": 4, "press": "1", "party": "agent"},
                                      {"at": 60, "hangup": "caller"}]), staff_mark=False)
    call, agent = record.call_id, record.agent
    joined = rig.entry(call, "party-joined")
    assert joined.data["staff"] is False and joined.data["announceable"] is True
    assert any(c.startswith("play_and_get_digits") and "renotice-join" in c for _, c in agent.trace)
    assert rig.entry(call, "consent", party="joiner").data["decision"] == "granted"
    assert rig.entries(call, "violation") == []


async def test_a_staff_mark_on_the_callers_own_leg_changes_nothing(rig) -> None:
    """The recorded caller's leg is never staff, whatever variables it carries."""
    record = await rig.play(scenario([{"at": 2.5, "press": "1"}, {"at": 30, "hangup": "caller"}], agent=None),
                            caller_variables={"callguard_staff": "true"})
    offered = rig.entry(record.call_id, "call-offered").data["parties"][0]
    assert offered["role"] == "caller" and offered["jurisdiction"] == "US-CA"
