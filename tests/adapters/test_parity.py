"""The same scenarios through both adapters give the same evidence.

Each scenario is played three ways: by the simulator (the reference
semantics), by FakeAsterisk to the Asterisk listener over AMI, and by
FakeFreeSWITCH to the FreeSWITCH listener over ESL (both into real SQLite
ledgers).  The timelines must agree entry by entry: the same kinds in the
same order, with the same decisions, sources, reasons, outcomes, rules and
parties.  What is PBX-specific is left out: channel names and UUIDs, file
names, and times (offsets, latencies).

The FreeSWITCH fake runs on a virtual clock, so its timeline is compared
with the simulator's exactly.  FakeAsterisk runs on the (scaled) wall
clock: confirmations that arrive within the same scripted moment (an agent
being bridged while the recording start is confirmed) may interleave
differently, so Asterisk timelines are compared moment by moment - the
entries between two scripted steps as a set, the moments in order.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Iterable

import pytest

from callguard.config import parse_config
from callguard.demo import demo_scenarios
from callguard.ledger import Ledger, timeline, verify
from callguard.simulator import simulate
from callguard.testing.scenario import Scenario
from callguard.wiring import build_policy, build_prompts, build_session_settings

#: Data keys that carry the decision, not the PBX's names or the clock.
KEYS = ("decision", "digits", "final", "attempt", "explicit_required", "lawful_basis", "source", "state",
        "reasons", "reason", "outcome", "destination", "recorded", "regime", "recording_allowed",
        "notice_required", "explicit_consent", "announceable", "staff", "what", "cause", "muted_at_end",
        "confirmed_by", "prompt_id", "language", "changed_from", "still_muted_for", "party")
PARTY_KEYS = ("number", "name", "role", "jurisdiction", "regime")
#: Entries a scripted step causes directly: they mark the moments of a timeline.  (Staff
#: being bridged in is the dialplan going on after the decision, not a step.)
STEP_KINDS = {"notice-ended", "pause-requested", "resume-requested", "payment-started", "payment-ended",
              "party-joined", "party-left", "hangup"}

EXTRA = [
    {"name": "hangup during the notice", "caller": {"number": "+14155550123", "name": "José Cust"},
     "step": [{"at": 1.0, "hangup": "caller"}]},
    {"name": "mute never confirmed", "caller": {"number": "+14155550123"}, "agent": {"number": "100"},
     "pbx": {"confirm_mute": False},
     "step": [{"at": 2, "press": "1"}, {"at": 20, "hotkey": "pause"}, {"at": 40, "hangup": "caller"}]},
    {"name": "unannounced party in a one-party call", "caller": {"number": "+12125550123"},
     "step": [{"at": 2, "press": "1"}, {"at": 20, "join": "+12125550199", "announceable": False},
              {"at": 40, "leave": "+12125550199"}, {"at": 60, "hangup": "caller"}]},
    {"name": "pause through the API", "caller": {"number": "+442079460000"},
     "step": [{"at": 2, "press": "1"}, {"at": 15, "api": "pause"}, {"at": 25, "api": "resume"},
              {"at": 35, "hangup": "caller"}]},
]


def scenarios() -> list[Scenario]:
    return demo_scenarios() + [Scenario.from_dict(s) for s in EXTRA]


def normalize(entries: Iterable[Any], roles: bool = True) -> list[tuple[str, dict[str, Any]]]:
    """(kind, decision-relevant data) with channel ids replaced by their order of appearance.

    A joining party's name is what the PBX shows for that leg (FreeSWITCH: the
    callee id of the b-leg, Asterisk: the channel's CallerIDName), not a
    decision, so it is left out.  ``roles=False`` also leaves out the role of
    a party that reached the bridge unannounced: the simulator's script knows
    "the agent the call was routed to", a PBX only knows what the dial string
    marked (FreeSWITCH: ``callguard_staff``; the Asterisk adapter still names
    the first unannounced bridge member the agent).
    """
    entries = list(entries)
    channels: dict[str, str] = {}
    for e in entries:
        for key in ("channel", "trigger"):
            value = e.data.get(key)
            if isinstance(value, str) and value:
                channels.setdefault(value, f"<leg{len(channels)}>")
        for party in e.data.get("parties", []) + ([e.data["party"]] if isinstance(e.data.get("party"), dict) else []):
            channels.setdefault(party.get("channel", ""), f"<leg{len(channels)}>")
    pattern = re.compile("|".join(re.escape(c) for c in sorted(channels, key=len, reverse=True) if c) or "(?!)")

    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return pattern.sub(lambda m: channels[m.group(0)], value)
        if isinstance(value, list):
            return [clean(v) for v in value]
        if isinstance(value, dict):
            party = {k: clean(v) for k, v in value.items() if k in PARTY_KEYS}
            if party.get("name") == "":
                party["name"] = None  # "no name": the simulator passes "", the PBXs send nothing
            return party
        return value

    out = []
    for e in entries:
        data = {k: clean(e.data[k]) for k in KEYS if k in e.data}
        if e.kind == "call-offered":
            data["parties"] = [clean(p) for p in e.data["parties"]]
        if e.kind == "party-joined" and isinstance(data.get("party"), dict):
            data["party"].pop("name", None)
            if not roles and not e.data.get("announceable"):
                data["party"].pop("role", None)
        out.append((e.kind, data))
    return out


def moments(timeline_: list[tuple[str, dict[str, Any]]]) -> list[list[str]]:
    """Split at the entries scripted steps cause; each moment as a sorted list."""
    out: list[list[str]] = [[]]
    for kind, data in timeline_:
        if kind in STEP_KINDS and not data.get("staff"):
            out.append([])
        out[-1].append(repr((kind, sorted(data.items()))))
    return [sorted(m) for m in out]


@pytest.fixture(scope="module")
def played(tmp_path_factory) -> dict[str, Any]:
    """Every scenario through the simulator, the Asterisk and the FreeSWITCH adapter (once per run)."""
    import asyncio

    from callguard.adapters.freeswitch.demo import play_scenarios as play_freeswitch

    tmp = tmp_path_factory.mktemp("parity")
    config = parse_config({"recording": {"confirm_timeout_ms": 1000}, "policy": {"home": "US-NY"}}, "<test>",
                          environ={})
    prompts = build_prompts(config)
    all_scenarios = scenarios()
    settings, policy = build_session_settings(config), build_policy(config)
    sims = [simulate(s, settings, policy, prompts).entries for s in all_scenarios]
    result: dict[str, Any] = {"scenarios": all_scenarios, "simulator": [normalize(e, roles=False) for e in sims]}
    def in_groups(play: Any, ledger: Ledger, **options: Any) -> list[str]:
        """Scenarios with the same [pbx] knobs play concurrently (one fake PBX per group)."""
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, s in enumerate(all_scenarios):
            groups.setdefault((s.confirm_delay_s, s.confirm_mute, s.prompt_duration_s), []).append(i)
        ids: list[str] = [""] * len(all_scenarios)
        for members in groups.values():
            got = asyncio.run(play(config, [all_scenarios[i] for i in members], ledger, prompts=prompts, **options))
            for i, call_id in zip(members, got):
                ids[i] = call_id
        return ids

    freeswitch = Ledger.open(f"sqlite:///{tmp / 'freeswitch.sqlite'}", "freeswitch-parity", batch_wait_ms=0.5)
    try:
        ids = in_groups(play_freeswitch, freeswitch)
        assert freeswitch.flush(10) and verify(freeswitch.engine).ok
        stored = [timeline(freeswitch.engine, i) for i in ids]
        result["freeswitch"] = [normalize(t, roles=False) for t in stored]
        result["freeswitch-vs-simulator"] = [normalize(t, roles=False) for t in stored]
    finally:
        freeswitch.close(10)
    try:
        from callguard.adapters.asterisk.demo import play_scenarios as play_asterisk
    except ImportError:  # pragma: no cover - the Asterisk adapter is part of the same package
        result["asterisk"] = None
        return result
    asterisk = Ledger.open(f"sqlite:///{tmp / 'asterisk.sqlite'}", "asterisk-parity", batch_wait_ms=0.5)
    try:
        # FakeAsterisk runs on the scaled wall clock: give a loaded machine room
        # (6 scenario seconds between a pause and its resume = 1.2 s here).
        ids = in_groups(play_asterisk, asterisk, time_scale=0.2)
        assert asterisk.flush(10) and verify(asterisk.engine).ok
        result["asterisk"] = [normalize(timeline(asterisk.engine, i), roles=False) for i in ids]
    finally:
        asterisk.close(10)
    return result


@pytest.mark.parametrize("index", range(len(scenarios())), ids=[s.name for s in scenarios()])
def test_freeswitch_matches_the_simulator_entry_by_entry(played, index) -> None:
    assert played["freeswitch-vs-simulator"][index] == played["simulator"][index]


@pytest.mark.parametrize("index", range(len(scenarios())), ids=[s.name for s in scenarios()])
def test_asterisk_and_freeswitch_give_the_same_timeline(played, index) -> None:
    asterisk, freeswitch = played["asterisk"][index], played["freeswitch"][index]
    # the same entries with the same decisions, sources and reasons...
    assert Counter(repr((k, sorted(d.items()))) for k, d in asterisk) == \
        Counter(repr((k, sorted(d.items()))) for k, d in freeswitch)
    # ...in the same order, moment by moment
    assert moments(asterisk) == moments(freeswitch)
