"""BridgeEnter of a channel with another Linkedid: found through the bridge the call is in.

Who the leg is (staff or not) is read back from Asterisk (``Getvar``), here
from a stub that answers like Asterisk would.

The listener keeps a BridgeUniqueid -> call index (a scan of every live
call per BridgeEnter was a large part of the loop's time under a flood of
other calls' bridge traffic).  These tests pin the behaviour the index must
keep: a channel entering our call's bridge joins it, whatever its Linkedid;
once our channel left (or hung up), that bridge is no longer ours.
"""

from __future__ import annotations

import asyncio

from callguard.adapters.asterisk.listener import AsteriskListener, _Call
from callguard.adapters.asterisk.trust import ChannelFacts
from callguard.adapters.asterisk.wire import AmiMessage, parse_block
from callguard.core import events as ev
from callguard.testing.ami_wire import message

from .conftest import make_config

CALLER = "PJSIP/caller-00000001"
BRIDGE = "5f1a7c1e-0000-4000-8000-000000000001"


class Recorder:
    """Stands in for the engine: keeps what the listener feeds."""

    def __init__(self) -> None:
        self.fed: list[tuple[str, ev.Event]] = []

    def feed(self, call_id: str, event: ev.Event) -> None:
        self.fed.append((call_id, event))

    def session(self, call_id: str) -> None:
        return None


def event(name: str, channel: str, linkedid: str, bridge: str = BRIDGE, **extra: str) -> AmiMessage:
    headers = [("Event", name), ("Channel", channel), ("Uniqueid", f"{linkedid}9"), ("Linkedid", linkedid),
               ("BridgeUniqueid", bridge), ("CallerIDNum", extra.get("number", "<unknown>")),
               ("CallerIDName", "<unknown>")]
    msg = parse_block(message(headers)[:-4])
    msg.received_at = 1700000000.0
    return msg


class StubProber:
    """Answers Getvar read-backs like Asterisk: channels exist until they hung up, none is marked staff."""

    def __init__(self) -> None:
        self.gone: set[str] = set()

    async def facts(self, channel: str, variables) -> ChannelFacts | None:
        return None if channel in self.gone else ChannelFacts(channel, {v: "" for v in variables})

    async def exists(self, channel: str) -> bool:
        return channel not in self.gone


async def settle(listener: AsteriskListener) -> None:
    while listener._checks:
        await asyncio.gather(*list(listener._checks))


async def controlled_call() -> tuple[AsteriskListener, Recorder, _Call]:
    listener = AsteriskListener(make_config(5038).asterisk)
    listener.prober = StubProber()  # type: ignore[assignment]
    engine = Recorder()
    listener.engine = engine  # type: ignore[assignment]
    call = _Call("1700000000.1", "1700000000.1", CALLER)
    listener.calls[call.call_id] = call
    listener._by_linkedid[call.linkedid] = call
    listener._channel(call, CALLER, "caller")
    listener._on_bridge_enter(event("BridgeEnter", CALLER, call.linkedid))
    await settle(listener)
    return listener, engine, call


def joined(engine: Recorder) -> list[str]:
    return [e.party.channel for _, e in engine.fed if isinstance(e, ev.PartyJoined)]


async def test_a_channel_of_another_linkedid_entering_our_bridge_joins_the_call():
    listener, engine, call = await controlled_call()
    assert call.bridge == BRIDGE
    listener._on_bridge_enter(event("BridgeEnter", "PJSIP/agent-00000002", "1700000555.7", number="2001"))
    await settle(listener)
    assert joined(engine) == ["PJSIP/agent-00000002"]
    assert listener.calls[call.call_id].channels["PJSIP/agent-00000002"].role == "agent"


async def test_another_bridge_is_not_ours():
    listener, engine, _ = await controlled_call()
    listener._on_bridge_enter(event("BridgeEnter", "PJSIP/other-00000003", "1700000555.8",
                                    bridge="5f1a7c1e-0000-4000-8000-000000000002"))
    assert joined(engine) == []


async def test_after_our_channel_left_the_bridge_it_is_not_ours():
    listener, engine, call = await controlled_call()
    listener._on_bridge_leave(event("BridgeLeave", CALLER, call.linkedid))
    assert call.bridge is None
    listener._on_bridge_enter(event("BridgeEnter", "PJSIP/late-00000004", "1700000555.9"))
    await settle(listener)
    assert joined(engine) == []


async def test_a_call_that_ended_frees_its_bridge():
    listener, engine, call = await controlled_call()
    listener.prober.gone.add(CALLER)  # type: ignore[attr-defined]
    listener._on_hangup(event("Hangup", CALLER, call.linkedid))
    # A Hangup is believed once Asterisk no longer knows the channel (here: no AMI link at all).
    await settle(listener)
    listener._on_bridge_enter(event("BridgeEnter", "PJSIP/late-00000005", "1700000555.10"))
    await settle(listener)
    assert joined(engine) == []
    assert listener._by_bridge == {}


async def test_moving_to_another_bridge_follows_the_call():
    listener, engine, call = await controlled_call()
    other = "5f1a7c1e-0000-4000-8000-000000000009"
    listener._on_bridge_leave(event("BridgeLeave", CALLER, call.linkedid))
    listener._on_bridge_enter(event("BridgeEnter", CALLER, call.linkedid, bridge=other))
    await settle(listener)
    listener._on_bridge_enter(event("BridgeEnter", "PJSIP/old-00000006", "1700000555.11"))
    listener._on_bridge_enter(event("BridgeEnter", "PJSIP/new-00000007", "1700000555.12", bridge=other))
    await settle(listener)
    assert joined(engine) == ["PJSIP/new-00000007"]
