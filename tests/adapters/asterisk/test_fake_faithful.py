"""FakeAsterisk answers like the captured Asterisk 22: same headers, same order, same words.

A raw client replays the fixtures' own actions against the fake and every
answer is compared with what the real Asterisk sent: header names in
order, and every value that is not an id, a time or a channel name.
"""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from callguard.adapters.asterisk.agi import parse_env
from callguard.adapters.asterisk.wire import AmiMessage, AmiParser, encode_action
from callguard.testing.fake_asterisk import HEARTBEAT_STALE_S, FakeAsterisk

from .conftest import SECRET
from .streams import FIXTURES, server_streams

#: Values that differ between runs by nature.
VOLATILE = {"ActionID", "Challenge", "MixMonitorID", "Timestamp", "Uptime", "LastReload", "Channel",
            "Uniqueid", "Linkedid", "CallerIDNum", "CallerIDName", "ConnectedLineNum", "ConnectedLineName",
            "Value", "Exten", "Env", "CommandId", "BridgeUniqueid", "Duration", "Priority", "Context",
            "DestChannel", "ListItems", "BridgeNumChannels", "Command"}


def fixture_messages(name: str) -> list[dict[str, str]]:
    return [m for s in server_streams(FIXTURES / name) for m in s.messages]


def first(messages, **match) -> dict[str, str]:
    for m in messages:
        if all(m.get(k) == v for k, v in match.items()):
            return m
    raise AssertionError(f"no message {match}")


def same_shape(real: dict[str, str], fake: dict[str, str]) -> None:
    assert list(fake) == list(real), f"headers differ:\n real {list(real)}\n fake {list(fake)}"
    for key, value in real.items():
        if key not in VOLATILE:
            assert fake[key] == value, f"{key}: real {value!r}, fake {fake[key]!r}"


class RawClient:
    """Speaks AMI by hand, as the fixture's capture client did."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.parser = AmiParser(None)
        self.inbox: list[AmiMessage] = []

    @classmethod
    async def connect(cls, pbx: FakeAsterisk) -> "RawClient":
        return cls(*await asyncio.open_connection("127.0.0.1", pbx.port))

    async def send(self, **headers: str) -> None:
        self.writer.write(encode_action(headers))
        await self.writer.drain()

    async def wait(self, timeout: float = 3.0, **match: str) -> AmiMessage:
        async def find() -> AmiMessage:
            while True:
                for i, m in enumerate(self.inbox):
                    if all(m.get(k) == v for k, v in match.items()):
                        return self.inbox.pop(i)
                data = await self.reader.read(65536)
                if not data:
                    raise ConnectionError("closed")
                self.inbox.extend(self.parser.feed(data))
        return await asyncio.wait_for(find(), timeout)

    async def closed(self) -> bool:
        try:
            return await asyncio.wait_for(self.reader.read(1), 2) == b""
        except asyncio.TimeoutError:
            return False

    async def heartbeat(self, pbx: FakeAsterisk) -> None:
        """What the listener does: keep the dialplan's heartbeat fresh (so calls reach AGI)."""
        await self.send(Action="Setvar", ActionID="hb", Variable="CALLGUARD_HEARTBEAT", Value=str(int(pbx.now())))
        await self.wait(ActionID="hb")

    async def login(self) -> None:
        await self.send(Action="Challenge", ActionID="ch-1", AuthType="MD5")
        challenge = await self.wait(ActionID="ch-1")
        key = hashlib.md5((challenge["Challenge"] + SECRET).encode()).hexdigest()
        await self.send(Action="Login", ActionID="login-md5", AuthType="MD5", Username="callguard", Key=key)
        await self.wait(ActionID="login-md5")


ACTIONS = fixture_messages("asterisk22_actions.ami")
CONSENT = fixture_messages("asterisk22_consent_pause.ami")
DECLINE = fixture_messages("asterisk22_decline.ami")
JOIN = fixture_messages("asterisk22_join_notice.ami")


async def test_banner_and_failed_login(pbx: FakeAsterisk):
    client = await RawClient.connect(pbx)
    await client.send(Action="Login", ActionID="bad-1", Username="callguard", Secret="wrong")
    same_shape(first(ACTIONS, ActionID="bad-1"), await client.wait(ActionID="bad-1"))
    assert client.parser.banner == "Asterisk Call Manager/11.0.0"
    assert await client.closed()  # Asterisk hangs up on a failed login


async def test_session_actions_answer_like_asterisk(pbx: FakeAsterisk):
    client = await RawClient.connect(pbx)
    await client.send(Action="Challenge", ActionID="ch-1", AuthType="MD5")
    challenge = await client.wait(ActionID="ch-1")
    same_shape(first(ACTIONS, ActionID="ch-1"), challenge)
    assert challenge["Challenge"].isdigit()
    key = hashlib.md5((challenge["Challenge"] + SECRET).encode()).hexdigest()
    await client.send(Action="Login", ActionID="login-md5", AuthType="MD5", Username="callguard", Key=key)
    same_shape(first(ACTIONS, ActionID="login-md5"), await client.wait(ActionID="login-md5"))
    same_shape(first(ACTIONS, Event="FullyBooted"), await client.wait(Event="FullyBooted"))
    for action, extra in (("Ping", {}), ("Setvar", {"Variable": "CALLGUARD_HEARTBEAT", "Value": "1795373188"}),
                          ("Getvar", {"Variable": "CALLGUARD_HEARTBEAT"}), ("NoSuchAction", {})):
        action_id = {"Ping": "ping-1", "Setvar": "hb-1", "Getvar": "hb-2", "NoSuchAction": "bad-2"}[action]
        await client.send(Action=action, ActionID=action_id, **extra)
        same_shape(first(ACTIONS, ActionID=action_id, Response=first(ACTIONS, ActionID=action_id)["Response"]),
                   await client.wait(ActionID=action_id))
    same_shape(first(ACTIONS, Event="VarSet", Variable="CALLGUARD_HEARTBEAT"),
               await client.wait(Event="VarSet", Variable="CALLGUARD_HEARTBEAT"))
    await client.send(Action="Logoff", ActionID="bye")
    same_shape(first(ACTIONS, ActionID="bye"), await client.wait(ActionID="bye"))


async def test_a_parked_call_and_its_recording_answer_like_asterisk(pbx: FakeAsterisk):
    client = await RawClient.connect(pbx)
    await client.login()
    await client.heartbeat(pbx)
    call = pbx.place_call("+442079460000", "Probe", agent=("100", "Probe"))
    start = await client.wait(Event="AsyncAGIStart")
    real_start = first(ACTIONS, Event="AsyncAGIStart")
    same_shape(real_start, start)
    assert list(parse_env(start["Env"])) == list(parse_env(real_start["Env"]))
    assert parse_env(start["Env"])["agi_calleridname"] == "Probe"
    channel = start["Channel"]

    await client.send(Action="CoreShowChannels", ActionID="csc-1")
    same_shape(first(ACTIONS, ActionID="csc-1", Response="Success"), await client.wait(ActionID="csc-1",
                                                                                        Response="Success"))
    parked = await client.wait(Event="CoreShowChannel", Channel=channel)
    same_shape(first(ACTIONS, Event="CoreShowChannel", Application="AGI"), parked)
    same_shape(first(ACTIONS, Event="CoreShowChannelsComplete"), await client.wait(Event="CoreShowChannelsComplete"))

    await client.send(Action="MixMonitor", ActionID="mm-1", Channel=channel, File="/tmp/probe.wav",
                      Options="i(CALLGUARD_MIXMON_ID)")
    answer = await client.wait(ActionID="mm-1")
    same_shape(first(ACTIONS, ActionID="mm-1"), answer)
    assert answer["MixMonitorID"].startswith("0x7f")
    same_shape(first(ACTIONS, Event="MixMonitorStart"), await client.wait(Event="MixMonitorStart"))
    for action_id in ("smm-1", "smm-2"):  # the second stop fails, as on Asterisk
        await client.send(Action="StopMixMonitor", ActionID=action_id, Channel=channel)
        same_shape(first(ACTIONS, ActionID=action_id), await client.wait(ActionID=action_id))
    same_shape(first(ACTIONS, Event="MixMonitorStop"), await client.wait(Event="MixMonitorStop"))
    await client.send(Action="MixMonitorMute", ActionID="mute-nochan", Channel="Local/none-00000000;2",
                      Direction="both", State="1")
    same_shape(first(ACTIONS, ActionID="mute-nochan"), await client.wait(ActionID="mute-nochan"))

    await client.send(Action="AGI", ActionID="agi-1", Channel=channel, Command="ASYNCAGI BREAK", CommandID="cmd-1")
    same_shape(first(ACTIONS, ActionID="agi-1"), await client.wait(ActionID="agi-1"))
    same_shape(first(ACTIONS, Event="AGIExecStart"), await client.wait(Event="AGIExecStart"))
    exec_ = await client.wait(Event="AsyncAGIExec")
    same_shape(first(ACTIONS, Event="AsyncAGIExec"), exec_)
    assert exec_["CommandId"] == "cmd-1" and exec_["Result"] == "200%20result%3D0%0A"
    same_shape(first(ACTIONS, Event="AsyncAGIEnd"), await client.wait(Event="AsyncAGIEnd"))
    same_shape(first(ACTIONS, Event="BridgeCreate"), await client.wait(Event="BridgeCreate"))
    same_shape(first(ACTIONS, Event="BridgeEnter"), await client.wait(Event="BridgeEnter"))

    await client.send(Action="Hangup", ActionID="hup-1", Channel=channel, Cause="16")
    same_shape(first(ACTIONS, ActionID="hup-1"), await client.wait(ActionID="hup-1"))
    same_shape(first(ACTIONS, Event="Hangup"), await client.wait(Event="Hangup"))
    await call.wait_ended()


async def test_consent_pause_flow_answers_like_asterisk(pbx: FakeAsterisk):
    client = await RawClient.connect(pbx)
    await client.login()
    await client.heartbeat(pbx)
    call = pbx.place_call("+14155550123", "José Cust", agent=("100", "José Cust"))
    channel = (await client.wait(Event="AsyncAGIStart"))["Channel"]
    await client.send(Action="AGI", ActionID="agi-2", Channel=channel, Command="GET DATA if-correct-press 5000 1",
                      CommandID="cmd-2")
    await call.answer_prompt("1")
    got = await client.wait(Event="AsyncAGIExec")
    same_shape(first(CONSENT, Event="AsyncAGIExec", CommandId="cmd-2"), got)
    assert got["Result"] == first(CONSENT, Event="AsyncAGIExec", CommandId="cmd-2")["Result"] == "200%20result%3D1%0A"
    await client.send(Action="MixMonitor", ActionID="mm-1", Channel=channel, File="/tmp/x.wav",
                      Options="i(CALLGUARD_MIXMON_ID)")
    await client.send(Action="AGI", ActionID="agi-4", Channel=channel, Command="ASYNCAGI BREAK", CommandID="cmd-4")
    await client.wait(Event="AsyncAGIEnd")
    await client.wait(Event="BridgeEnter", Channel=channel)
    await call.hotkey("pause")
    same_shape(first(CONSENT, Event="UserEvent", Action="pause"), await client.wait(Event="UserEvent"))
    await client.send(Action="MixMonitorMute", ActionID="mute-1", Channel=channel, Direction="both", State="1")
    same_shape(first(CONSENT, ActionID="mute-1"), await client.wait(ActionID="mute-1"))
    same_shape(first(CONSENT, Event="MixMonitorMute", State="1"), await client.wait(Event="MixMonitorMute"))
    await call.hangup()
    same_shape(first(CONSENT, Event="Hangup"), await client.wait(Event="Hangup"))


async def test_mute_without_a_recording_and_gather_results(pbx: FakeAsterisk):
    client = await RawClient.connect(pbx)
    await client.login()
    await client.heartbeat(pbx)
    call = pbx.place_call("+14155550123", "José Cust")
    channel = (await client.wait(Event="AsyncAGIStart"))["Channel"]
    await client.send(Action="MixMonitorMute", ActionID="mute-1", Channel=channel, Direction="both", State="1")
    same_shape(first(DECLINE, ActionID="mute-1"), await client.wait(ActionID="mute-1"))
    await client.send(Action="AGI", ActionID="g", Channel=channel, Command="GET DATA x 5000 1", CommandID="c2")
    await call.answer_prompt("2")
    assert (await client.wait(Event="AsyncAGIExec"))["Result"] == "200%20result%3D2%0A"  # as in the decline capture
    await client.send(Action="AGI", ActionID="t", Channel=channel, Command="GET DATA x 10 1", CommandID="c3")
    assert (await client.wait(Event="AsyncAGIExec"))["Result"] == "200%20result%3D%20(timeout)%0A"
    pbx.prompt_durations["long"] = 3.0
    await client.send(Action="AGI", ActionID="h", Channel=channel, Command='STREAM FILE long ""', CommandID="c4")
    await asyncio.sleep(0.05)
    await call.hangup()
    assert (await client.wait(Event="AsyncAGIExec"))["Result"].startswith("200%20result%3D-1%20endpos%3D")
    await client.send(Action="AGI", ActionID="dead", Channel=channel, Command="GET DATA x 5000 1", CommandID="c5")
    got = await client.wait(ActionID="dead")
    assert got["Message"] == f"Channel {channel} does not exist."  # the hangup-during-notice capture's words


async def test_join_through_u_gosub_parks_the_joiner_in_callguard_join(pbx: FakeAsterisk):
    client = await RawClient.connect(pbx)
    await client.login()
    await client.heartbeat(pbx)
    call = pbx.place_call("+13125550100", "C", agent=("100", "C"), agent_via_join=True)
    caller = (await client.wait(Event="AsyncAGIStart"))["Channel"]
    await client.send(Action="AGI", ActionID="b1", Channel=caller, Command="ASYNCAGI BREAK", CommandID="c1")
    joiner = await client.wait(Event="AsyncAGIStart")
    same_shape(first(JOIN, Event="AsyncAGIStart", Context="callguard-join"), joiner)
    assert joiner["Context"] == "callguard-join" and joiner["Linkedid"] == call.linkedid
    await client.send(Action="AGI", ActionID="b2", Channel=joiner["Channel"], Command="ASYNCAGI BREAK",
                      CommandID="c2")
    enter = await client.wait(Event="BridgeEnter", Channel=joiner["Channel"])
    same_shape(first(JOIN, Event="BridgeEnter"), enter)
    await call.hangup()


def test_the_fake_and_the_shipped_dialplan_agree_on_staleness():
    from pathlib import Path
    import re

    text = (Path(__file__).parents[3] / "dialplan" / "asterisk" / "extensions_callguard.conf").read_text()
    match = re.search(r"CALLGUARD_STALE_AFTER=(\d+)", text)
    assert match and int(match.group(1)) == HEARTBEAT_STALE_S


@pytest.mark.parametrize("timestamps", [False, True])
async def test_timestamp_headers_sit_after_privilege(pbx: FakeAsterisk, timestamps: bool):
    pbx.timestamps = timestamps
    client = await RawClient.connect(pbx)
    await client.login()
    await client.send(Action="Setvar", ActionID="v", Variable="X", Value="1")
    event = await client.wait(Event="VarSet")
    keys = list(event)
    assert ("Timestamp" in keys) is timestamps
    if timestamps:
        real = first(fixture_messages("asterisk22_consent_pause_timestamps.ami"), Event="AsyncAGIStart")
        assert list(real)[:3] == ["Event", "Privilege", "Timestamp"] == keys[:3]
