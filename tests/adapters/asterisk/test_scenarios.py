"""Shipped scenarios over real AMI give the same evidence as the simulator.

The simulator is the reference semantics (a virtual PBX on a virtual clock);
here the same scenarios are played by FakeAsterisk to the production
listener over TCP into a real SQLite ledger, and the facts an auditor would
check (decision, recorded, rule, final state, confirmed mutes, payment
segments, joiners, violations) must agree, as must the order of the
evidence kinds recorded.
"""

from __future__ import annotations

from collections import Counter

from callguard.adapters.asterisk.demo import play_scenarios
from callguard.config import parse_config
from callguard.demo import demo_scenarios
from callguard.ledger import Ledger, timeline, verify
from callguard.simulator import simulate
from callguard.timeline import summarize
from callguard.wiring import build_policy, build_prompts, build_session_settings

#: Kinds whose count depends on timing, not on the rules (retry notices).
_TIMING = {"notice-started", "notice-ended"}


async def test_shipped_scenarios_match_the_simulator(tmp_path):
    config = parse_config({}, "<test>", environ={})
    scenarios = demo_scenarios()
    prompts = build_prompts(config)
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'l.sqlite'}", "asterisk-parity", batch_wait_ms=0.5)
    try:
        call_ids = await play_scenarios(config, scenarios, ledger, prompts=prompts, time_scale=0.05)
        assert ledger.flush(10)
        settings, policy = build_session_settings(config), build_policy(config)
        for scenario, call_id in zip(scenarios, call_ids):
            stored = timeline(ledger.engine, call_id)
            expected = simulate(scenario, settings, policy, prompts)
            got_facts, want_facts = summarize(stored), summarize(expected.entries)
            for key, value in scenario.expect.items():
                assert got_facts[key] == value, (scenario.name, key)
            for key in ("decision", "recorded", "regime", "final_state", "violations", "payment_segments",
                        "joiners", "mutes_confirmed"):
                assert got_facts[key] == want_facts[key], (scenario.name, key, got_facts[key], want_facts[key])
            # Same evidence; events milliseconds apart (an agent bridged vs. the
            # recording confirmed) may interleave differently on a real socket.
            got_kinds = Counter(e.kind for e in stored if e.kind not in _TIMING)
            want_kinds = Counter(e.kind for e in expected.entries if e.kind not in _TIMING)
            assert got_kinds == want_kinds, scenario.name
            # The PBX's own clock stamps the evidence (timestampevents): answer at 0, in real seconds.
            offered = stored[0].pbx_time
            hangup = next(e for e in stored if e.kind == "hangup")
            # (Stalls of a loaded machine can only make it later, never compress it.)
            scripted = max(s.at for s in scenario.steps)
            assert scripted - 0.5 <= hangup.pbx_time - offered <= scripted * 1.5 + 5
        assert verify(ledger.engine).ok
    finally:
        ledger.close(10)

