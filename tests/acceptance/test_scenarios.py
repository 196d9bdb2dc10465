"""End-to-end scenarios, PBX-neutral: each runs against every target (conftest.py).

The scenarios are the project's own Scenario format; what is checked is what
an auditor would check: the ledger timeline (decisions, confirmations, who
was on the call) and what the recording holds (seconds audible, measured
from the recording itself on a real PBX).
"""

from __future__ import annotations

from typing import Any

import pytest

from callguard.testing.scenario import Scenario

from .pbx import Played, Target

CA = "+14155550123"  # California: all-party


def scenario(steps: list[dict[str, Any]], number: str = CA, agent: bool = True, name: str = "Cust") -> Scenario:
    data: dict[str, Any] = {"name": "acceptance", "caller": {"number": number, "name": name}, "step": steps,
                            "pbx": {"prompt_duration_s": 1.0}}
    if agent:
        data["agent"] = {"number": "1000", "name": "Agent"}
    return Scenario.from_dict(data)


async def play(target: Target, scenario_: Scenario) -> Played:
    why = target.supports(scenario_)
    if why:
        pytest.skip(f"{target.name}: {why}")
    return await target.play(scenario_)


async def test_consent_records_and_the_staff_agent_joins_cleanly(target) -> None:
    played = await play(target, scenario([{"at": 1.5, "press": "1"}, {"at": 8, "hangup": "caller"}]))
    consent = played.entry("consent")
    assert consent.data["decision"] == "granted"
    assert played.entry("recording-started").data["confirmed_by"] == "pbx"
    joined = played.entries("party-joined")
    assert len(joined) == 1 and joined[0].data["staff"] is True
    assert played.entries("violation") == []
    assert played.recorded and played.audible_within(3.0, 7.0) >= 4.0 - 2 * target.slack_s


async def test_decline_goes_on_unrecorded(target) -> None:
    played = await play(target, scenario([{"at": 1.5, "press": "2"}, {"at": 6, "hangup": "caller"}]))
    assert played.entry("consent").data["decision"] == "declined"
    assert played.entry("continued").data["recorded"] is False
    assert not played.recorded


async def test_no_input_where_consent_is_required_goes_on_unrecorded(target) -> None:
    played = await play(target, scenario([{"at": 20, "hangup": "caller"}], agent=False))
    final = [e for e in played.entries("consent") if e.data.get("final")]
    assert final and final[-1].data["decision"] == "no-input"
    assert not played.recorded


async def test_hangup_during_the_notice(target) -> None:
    played = await play(target, scenario([{"at": 0.5, "hangup": "caller"}], agent=False))
    assert played.entry("consent").data["decision"] == "hangup"
    assert played.kinds()[-1] == "hangup" and not played.recorded


async def test_hotkey_pause_and_resume(target) -> None:
    played = await play(target, scenario([{"at": 1.5, "press": "1"}, {"at": 5, "hotkey": "pause"},
                                          {"at": 8, "hotkey": "resume"}, {"at": 12, "hangup": "caller"}]))
    assert played.entry("pause-requested").data["source"] == "agent-hotkey"
    assert played.entry("recording-muted").data["confirmed_by"] == "pbx"
    assert played.entry("resume-requested").data["source"] == "agent-hotkey"
    slack = target.slack_s
    assert played.audible_within(5 + slack, 8 - slack) == 0
    assert played.audible_within(8 + slack, 11) > 0


async def test_payment_segment_is_never_recorded(target) -> None:
    played = await play(target, scenario([{"at": 1.5, "press": "1"}, {"at": 5, "ivr": "payment-start"},
                                          {"at": 9, "ivr": "payment-end"}, {"at": 12, "hangup": "caller"}]))
    assert played.entry("payment-started").data["source"] == "ivr"
    assert played.entry("payment-ended").data["source"] == "ivr"
    slack = target.slack_s
    assert played.audible_within(5 + slack, 9 - slack) == 0
    assert played.audible_within(9 + slack, 11) > 0


async def test_a_hostile_caller_number_changes_nothing_but_the_ledger_text(target) -> None:
    """The literal text of a forged frame as caller id (fixture hostile_callerid, case b)."""
    number = "+14155550161%0AEvent-Name%3A%20CUSTOM%0AEvent-Subclass%3A%20callguard%3A%3Aresume"
    played = await play(target, scenario([{"at": 1.5, "press": "1"}, {"at": 5, "hotkey": "pause"},
                                          {"at": 9, "hangup": "caller"}], number=number))
    offered = played.entry("call-offered").data["parties"][0]
    assert offered["number"].startswith("+14155550161") and offered["jurisdiction"] == "unknown"
    assert played.entries("resume-requested") == []
    assert played.audible_within(5 + target.slack_s, 8.5) == 0
