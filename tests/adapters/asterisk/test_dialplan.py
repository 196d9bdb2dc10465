"""The shipped Asterisk snippets agree with the listener and hold together.

No Asterisk here, so this checks what a typo would break: contexts that are
referenced exist, the UserEvents carry actions and sources the listener
understands, the variables the listener reads are the ones the dialplan
sets, parentheses balance, and the AMI user is loopback-only and cannot
read the "dialplan" event class.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from callguard.adapters.asterisk import listener, trust
from callguard.adapters.asterisk.payments import CARD_ACTIONS
from callguard.core.events import Source

DIALPLAN = Path(__file__).parents[3] / "dialplan" / "asterisk"


def sections(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.split(";", 1)[0].strip() if not raw.strip().startswith(";") else ""
        if not line:
            continue
        m = re.fullmatch(r"\[([^\]]+)\]", line)
        if m:
            current = out.setdefault(m.group(1), [])
        else:
            assert current is not None, f"{path.name}: {raw!r} outside a section"
            current.append(line)
    return out


#: both shipped extension files (the payments one holds callguard-card, which features_callguard.conf uses)
EXT = {**sections(DIALPLAN / "extensions_callguard.conf"), **sections(DIALPLAN / "extensions_callguard_payments.conf")}
FEATURES = sections(DIALPLAN / "features_callguard.conf")
MANAGER = sections(DIALPLAN / "manager_callguard.conf")


def test_every_referenced_context_exists():
    refs = set()
    for lines in list(EXT.values()) + list(FEATURES.values()):
        for line in lines:
            refs |= set(re.findall(r"Gosub\(([a-z-]+),", line))
            refs |= set(re.findall(r"U\(([a-z-]+)\^", line))
    assert refs and refs <= set(EXT), refs - set(EXT)
    assert listener.JOIN_CONTEXT in EXT


def test_parentheses_and_expressions_balance():
    for name, lines in EXT.items():
        for line in lines:
            assert line.count("(") == line.count(")"), (name, line)
            assert line.count("${") <= line.count("}"), (name, line)
            assert line.count("[") == line.count("]"), (name, line)


def test_user_events_match_what_the_listener_understands():
    events = [re.search(r"UserEvent\((\w+),Action: ([a-z-]+),Source: ([a-z-]+)\)", line)
              for lines in EXT.values() for line in lines if "UserEvent(" in line]
    assert events and all(events)
    understood = {*listener._SIGNALS, *CARD_ACTIONS}  # card actions: adapters/asterisk/payments.py
    for m in events:
        assert m.group(1).lower() == listener.USER_EVENT
        assert m.group(2) in understood
        assert Source.parse(m.group(3)).value == m.group(3)
    assert {m.group(2) for m in events} == understood


def test_state_variables_are_the_ones_resync_reads():
    text = (DIALPLAN / "extensions_callguard.conf").read_text()
    assert "CALLGUARD_HEARTBEAT" in text
    for variable in (listener.PAYMENT_VARIABLE, listener.PAUSE_VARIABLE, listener.CONSENT_VARIABLE):
        assert re.search(rf"Set\((MASTER_CHANNEL\()?{variable}\)?=", text), variable
    assert "AGI(agi:async)" in "".join(EXT["callguard-inbound"])
    assert "AGI(agi:async)" in "".join(EXT["callguard-join"])


def test_the_heartbeat_is_checked_before_every_agi():
    for context in ("callguard-inbound", "callguard-join"):
        lines = EXT[context]
        first_agi = next(i for i, line in enumerate(lines) if "AGI(agi:async" in line)
        checks = [i for i, line in enumerate(lines) if "CALLGUARD_HEARTBEAT" in line]
        assert checks and max(checks) < first_agi, context


def test_hotkeys_only_on_staff_legs():
    """Issue 19 §5: features on the customer's channel listen to the customer's keypad."""
    text = (DIALPLAN / "extensions_callguard.conf").read_text()
    assert "__DYNAMIC_FEATURES" not in "".join(EXT["callguard-inbound"])
    assert not re.search(r"^\s*[^;]*Set\(__DYNAMIC_FEATURES", text, re.M)
    staff = "".join(EXT["callguard-staff"])
    assert f"Set({trust.STAFF_VARIABLE}=1)" in staff
    assert "Set(DYNAMIC_FEATURES=" in staff and "callguard_pause#callguard_resume" in staff
    assert "Set(CALLGUARD_ROLE=caller)" in "".join(EXT["callguard-inbound"])  # plain: not inherited
    mapping = dict(line.split("=>") for line in FEATURES["applicationmap"])
    assert mapping["callguard_pause "].strip().startswith("*6,self,Gosub(callguard-feature,pause,1)")
    assert mapping["callguard_resume "].strip().startswith("*7,self,Gosub(callguard-feature,resume,1)")
    for exten in ("pause", "resume"):
        lines = [line for line in EXT["callguard-feature"] if line.startswith(f"exten => {exten},1,")
                 or line.startswith("same")]
        first = next(line for line in EXT["callguard-feature"] if line.startswith(f"exten => {exten},1,"))
        assert 'CALLGUARD_ROLE}" = "caller"' in first
        assert any(f"Set({trust.HOTKEY_VARIABLE}={exten}:${{CALLGUARD_SEQ}})" in line for line in lines)


def test_signals_leave_what_the_listener_reads_back():
    lines = EXT["callguard-signal"]
    for action in listener._SIGNALS:
        assert any(f"Set({trust.SIGNAL_VARIABLE}={action}:${{CALLGUARD_SEQ}})" in line for line in lines), action


def test_payment_start_waits_for_the_mute_or_stops_the_recording_itself():
    """Issue 11 §4: the PBX keeps payment audio off the recording when the listener cannot."""
    body = "".join(EXT["callguard-signal"])
    start = body[body.index("exten => payment-start,1"):body.index("exten => payment-end,1")]
    assert '"${CALLGUARD_MUTED}" = "1"' in start and "Wait(0.05)" in start
    assert "StopMixMonitor(${CALLGUARD_MIXMON_ID})" in start
    assert start.index("UserEvent(CallGuard,Action: payment-start") < start.index("StopMixMonitor")
    assert "callguard-fallback/${UNIQUEID}" in start
    assert listener.MUTED_VARIABLE == "CALLGUARD_MUTED"


@pytest.mark.parametrize("context", ["callguard-inbound", "callguard-join"])
def test_every_agi_wait_has_a_guard_and_a_t_extension(context: str):
    """Issue 11 §4: a call never waits in AGI(agi:async) for a listener that is gone."""
    lines = EXT[context]
    agi = next(i for i, line in enumerate(lines) if "AGI(agi:async" in line)
    guard = next(i for i, line in enumerate(lines) if "Set(TIMEOUT(absolute)=${CALLGUARD_PICKUP_S})" in line)
    assert guard < agi
    assert "Set(TIMEOUT(absolute)=0)" in lines[agi + 1]
    assert any(line.startswith("exten => T,1,") for line in lines)
    t_lines = lines[next(i for i, line in enumerate(lines) if line.startswith("exten => T,1,")):]
    assert any("Set(TIMEOUT(absolute)=0)" in line for line in t_lines[:3])


def test_the_fallback_tells_the_caller_and_leaves_a_line_for_the_ledger():
    body = "".join(EXT["callguard-fallback"])
    assert "Set(CALLGUARD_CONSENT=not-recorded)" in body and "Playback(callguard/fallback-notice)" in body
    assert "StopMixMonitor(${CALLGUARD_MIXMON_ID})" in body
    assert "Set(DB(callguard-fallback/${UNIQUEID})=${EPOCH}:${CHANNEL(linkedid)}:${CALLGUARD_FALLBACK})" in body


@pytest.mark.parametrize("key,value", [("deny", "0.0.0.0/0.0.0.0"), ("permit", "127.0.0.1/255.255.255.255")])
def test_ami_user_is_loopback_only(key: str, value: str):
    settings = [line.split("=", 1) for line in MANAGER["callguard"]]
    assert [k.strip() for k, _ in settings].index("deny") < [k.strip() for k, _ in settings].index("permit")
    assert (key, value) in [(k.strip(), v.strip()) for k, v in settings]


def test_ami_user_has_least_privilege():
    settings = {k.strip(): v.strip() for k, v in (line.split("=", 1) for line in MANAGER["callguard"])
                if k.strip() in ("read", "write")}
    # dtmf: the caller's card digits; originate: the payment prompt player (extensions_callguard_payments.conf)
    assert set(settings["read"].split(",")) == {"call", "agi", "user", "system", "dtmf"}
    assert set(settings["write"].split(",")) == {"call", "agi", "system", "originate"}
    filters = [line for line in MANAGER["callguard"] if line.startswith("eventfilter")]
    assert "eventfilter = !Event: VarSet" in filters and "eventfilter = !Event: Newexten" in filters
    # Never filter out what the listener needs.
    needed = {"AsyncAGIStart", "AsyncAGIExec", "AsyncAGIEnd", "AGIExecStart", "MixMonitorStart", "MixMonitorStop",
              "MixMonitorMute", "UserEvent", "BridgeEnter", "BridgeLeave", "Hangup", "DTMFEnd"}
    assert not any(name in line for line in filters for name in needed)


def test_payment_dialplan_guards_the_agent_with_rx_only_and_keeps_the_local_channel():
    text = (DIALPLAN / "extensions_callguard_payments.conf").read_text()
    contexts = sections(DIALPLAN / "extensions_callguard_payments.conf")
    assert set(contexts) >= {"callguard-agent", "callguard-payment"}
    assert "FRAME_DROP(TX)" not in "\n".join(contexts["callguard-agent"] + contexts["callguard-payment"])
    assert "Local/${AGENT}@callguard-agent/n" in text  # /n: the Local half callguard guards must stay
    joined = "\n".join(contexts["callguard-payment"])
    assert "BridgeAdd(${CALLGUARD_PAY_TARGET})" in joined and "AGI(agi:async)" in joined
    from callguard.adapters.asterisk.payments import PAYMENT_CONTEXT

    assert PAYMENT_CONTEXT == "callguard-payment"
