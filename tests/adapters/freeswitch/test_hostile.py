"""Hostile caller data changes nothing but the ledger text.

Caller ids and names reach us URL-encoded in the channel data and in every
event.  Whatever they contain, the commands callguard sends (paths,
``play_and_get_digits`` arguments, ``uuid_record``) must be byte-for-byte
the same as for a harmless caller, and the ledger must store the text
exactly (invalid UTF-8 replaced, never an exception).
"""

from __future__ import annotations

import re

import pytest

from callguard.adapters.freeswitch.wire import UnsafeCommand
from callguard.adapters.freeswitch.translate import offer_from_channel_data, safe_uuid
from callguard.adapters.freeswitch.commands import Wire, WireError, directory_prompts
from callguard.core.commands import PlayAndCollect, PromptRef
from callguard.ledger import verify

from .conftest import SOUNDS, scenario

HOSTILE = {
    "path traversal": ("../../etc/passwd", "../../etc/passwd"),
    "freeswitch expansion": ("${system(rm -rf /)}", "${system(rm -rf /)}$${base_dir}"),
    "newlines": ("+1415555\n0123", "a\nEvent-Name: CUSTOM\nvariable_callguard_call: x"),
    "cr lf injection": ("+14155550123\r\nexit", "x\r\n\r\napi uuid_kill all\r\n"),
    "literal escapes": ("%0Aexit%0A%0A", "%0D%0Aapi%20uuid_kill%20all"),
    "10 kB": ("9" * 10_000, "N" * 10_000),
    "invalid utf-8": ("+1415\udcff\udcfe", "Jos\udcc3 \udcff"),
}
CALL_STEPS = [{"at": 2.5, "press": "1"}, {"at": 10, "hotkey": "pause"}, {"at": 12, "hotkey": "resume"},
              {"at": 20, "hangup": "caller"}]


def normalized(commands: list[str], uuids: list[str]) -> list[str]:
    out = []
    for command in commands:
        for i, uuid in enumerate(uuids):
            command = command.replace(uuid, f"<uuid{i}>")
        out.append(command)
    return out


@pytest.fixture
async def baseline(make_rig):
    rig = await make_rig()
    record = await rig.play(scenario(CALL_STEPS))
    uuids = [record.call_id, record.agent.uuid]
    return (normalized([c for _, c in record.caller.trace], uuids),
            normalized([c for _, c in rig.fake.api_log if not c.startswith("global_setvar")], uuids))


@pytest.mark.parametrize("case", list(HOSTILE), ids=list(HOSTILE))
async def test_hostile_caller_changes_nothing_but_the_ledger_text(make_rig, baseline, case) -> None:
    number, name = HOSTILE[case]
    rig = await make_rig()
    record = await rig.play(scenario(CALL_STEPS, number=number, name=name))
    uuids = [record.call_id, record.agent.uuid]
    trace = normalized([c for _, c in record.caller.trace], uuids)
    api = normalized([c for _, c in rig.fake.api_log if not c.startswith("global_setvar")], uuids)
    # an unknown or strange number counts as the strictest rule: the same flow as an all-party caller
    assert (trace, api) == baseline
    assert not any(c.startswith("uuid_kill") for _, c in rig.fake.api_log)
    assert all(len(c) < 300 for c in trace + api)
    # the ledger keeps the text (decoded, invalid bytes replaced) and the chain is intact
    party = rig.entry(record.call_id, "call-offered").data["parties"][0]
    expected_number = number.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    expected_name = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if case == "literal escapes":  # FreeSWITCH keeps an existing %XX, so it arrives decoded
        expected_number = "\nexit\n\n"
        expected_name = "\r\napi uuid_kill all"
    assert party["number"] == expected_number
    assert party["name"] == expected_name
    assert verify(rig.ledger.engine).ok
    assert record.recordings[0].path == f"/var/lib/freeswitch/recordings/callguard/callguard-{record.call_id}.wav"


def test_a_channel_uuid_that_is_not_a_uuid_is_never_used() -> None:
    for bad in ("../x", "a b", "x\ny", "${uuid}", "", "a" * 200, "-leading-dash"):
        assert safe_uuid(bad) is None
    headers = {"Unique-ID": "../../etc/passwd", "Caller-Caller-ID-Number": "+14155550123"}
    assert offer_from_channel_data(headers, 0.0) is None
    headers = {"Unique-ID": "337c44b3-d15a-4ddc-8a6a-6f1275f058d7", "variable_callguard_call": "x y"}
    assert offer_from_channel_data(headers, 0.0) is None


async def test_the_listener_releases_a_channel_with_a_strange_uuid(rig) -> None:
    ch = rig.fake.new_channel("+14155550123", "José")
    del rig.fake.channels[ch.uuid]
    ch.uuid = ch.variables["uuid"] = "../../tmp/evil uuid"
    rig.fake.channels[ch.uuid] = ch
    assert await rig.fake.run_socket(ch) == "connected"
    assert ch.trace == [] and "callguard_decision" not in ch.variables  # nothing ran: fail-closed dialplan
    assert rig.listener.calls == {}


def test_wire_refuses_anything_that_is_not_ours() -> None:
    wire = Wire("/var/lib/freeswitch/recordings/callguard", directory_prompts(SOUNDS))
    for bad_name in ("../x.wav", "a b.wav", "x\n.wav", "${x}.wav"):
        with pytest.raises(WireError):
            wire.recording_path(bad_name)
    for prompt in (PromptRef("../notice", "en"), PromptRef("notice", "en us"), PromptRef("no${x}", "en")):
        with pytest.raises(WireError):
            wire.play_and_collect(PlayAndCollect("u", prompt, 5000))
    with pytest.raises(WireError):
        wire.play_and_collect(PlayAndCollect("u", PromptRef("notice", "en"), 5000, valid_digits="1]|.*"))
    with pytest.raises(WireError):
        Wire("/var/lib/free switch", directory_prompts(SOUNDS))
    with pytest.raises(WireError):
        Wire("relative/dir", directory_prompts(SOUNDS))
    with pytest.raises(WireError):
        wire.set_decision("granted\nexit")
    with pytest.raises((WireError, UnsafeCommand)):
        wire.transfer("x XML default\napi uuid_kill all")
    weird_source = Wire("/rec", lambda ref, rate: "/sounds/a b.wav")
    with pytest.raises(WireError, match="not a plain absolute path"):
        weird_source.play_prompt(PromptRef("notice", "en"))


def test_every_command_we_build_is_one_line_plus_headers() -> None:
    wire = Wire("/var/lib/freeswitch/recordings/callguard", directory_prompts(SOUNDS))
    cmd = PlayAndCollect("337c44b3-d15a-4ddc-8a6a-6f1275f058d7", PromptRef("notice", "en"), 5000, 1, "12")
    for data in (wire.play_and_collect(cmd), wire.record_session("callguard-x.wav"),
                 wire.mask("337c44b3-d15a-4ddc-8a6a-6f1275f058d7", "callguard-x.wav"),
                 wire.set_decision("declined"), wire.heartbeat(1795373497.5), wire.exit()):
        assert data.endswith(b"\n\n") and b"\r" not in data and data.count(b"\n\n") == 1
        assert re.fullmatch(rb"[\x20-\x7e\n]+", data)
