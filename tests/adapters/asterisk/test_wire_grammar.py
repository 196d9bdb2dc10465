"""AMI framing = the plain reference reading, on arbitrary streams cut into arbitrary reads.

The quick paths in ``adapters/asterisk/wire.py`` (one decode and one split
per batch of messages, the one-line-per-header fast path, skipping events
by name) must give exactly what :mod:`.ami_reference` gives by reading the
stream line by line.  Streams are built from the pieces that make AMI hard
(``": "`` inside values and names, ``:`` in channel names, bare CR and LF,
UTF-8 split anywhere, invalid UTF-8, ``Response: Follows`` output, stray
empty lines, blocks a caller's CR/LF cut off an event), then fed in
arbitrary chunks.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from callguard.adapters.asterisk.protocol import NOISE_EVENTS
from callguard.adapters.asterisk.wire import AmiParser, parse_message

from .ami_reference import read_stream
from .streams import all_streams

pytestmark = pytest.mark.usefixtures("wire_impl")  # C and pure Python (tests/adapters/conftest.py)

_PIECES = [
    b"Event: ", b"Response: ", b"Success", b"Follows", b"Response: Follows\r\n", b"Privilege: Command\r\n",
    b"ActionID: 7\r\n", b"\r\nActionID: 8", b"--END COMMAND--", b"--END COMMAND--\r\n\r\n", b"\r\n", b"\r\n\r\n",
    b": ", b":", b" ", b"\r", b"\n", b"Name", b"VarSet", b"UserEvent", b"Newexten", b"Hangup",
    b"System uptime: 46 minutes, 30 seconds\n", b"ChanVariable(IAX2/10.0.0.1:4569-1234): ", b"My Key: ",
    "José".encode(), b"\xc3", b"\xa9", b"\xe2\x82", b"\xff", b"\x01", b"Asterisk Call Manager/11.0.0\r\n",
]
streams = st.lists(st.one_of(st.sampled_from(_PIECES), st.binary(max_size=6)), max_size=50).map(b"".join)
cuts = st.lists(st.integers(min_value=0, max_value=400), max_size=12)
#: event filters to run with: all events, the production noise filter, and one keyed on odd names
FILTERS = [None, lambda name: name not in NOISE_EVENTS, lambda name: name in ("Hangup", "UserEvent", "My Key")]


def _chunks(data: bytes, points: list[int]) -> list[bytes]:
    marks = sorted({p % (len(data) + 1) for p in points})
    return [data[a:b] for a, b in zip([0, *marks], [*marks, len(data)])]


def _parse(chunks: list[bytes], name_filter, expect_banner: bool = True) -> tuple[AmiParser, list]:
    wanted = None if name_filter is None else (lambda raw: name_filter(raw.decode("utf-8")))
    parser = AmiParser(wanted, expect_banner=expect_banner)
    got = [(dict(m), m.body) for chunk in chunks for m in parser.feed(chunk)]
    return parser, got


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams, cuts, st.sampled_from(range(len(FILTERS))), st.booleans())
@example(b"Asterisk Call Manager/11.0.0\r\nResponse: Follows\r\nPrivilege: Command\r\nActionID: 1\r\n"
         b"System uptime: 46 minutes, 30 seconds\nLast reload: 46 minutes, 30 seconds\n--END COMMAND--\r\n\r\n",
         [], 0, True)
@example(b"Event: OriginateResponse\r\nChanVariable(IAX2/10.0.0.1:4569-1234): A=1\r\n"
         b"ChanVariable(IAX2/10.0.0.1:4569-1234): B=2\r\n\r\n", [], 0, False)
@example(b"Event: UserEvent\r\nMy Key: v\r\nDup: 1\r\nDup: 2\r\n\r\n", [3], 2, False)
@example(b"Event: UserEvent\r\nDup: 1\r\nDup: 1\r\nE:\r\nE:\r\n\r\n", [], 0, False)  # equal short values repeat
@example(b"Event: Hangup\r\n\r\n\r\n\r\n\r\nEvent: Hangup\r\n\r\n", [13, 15, 17], 1, False)
@example(b"X: 1\r\nEvent:\r\n\r\nEvent:: x\r\n\r\nbody\r\nResponse:\r\n\r\nResponse:\r\nA: b\r\n\r\n", [9], 0, False)
def test_any_stream_any_chunking_matches_the_reference(data: bytes, points: list[int], which: int,
                                                        banner: bool):
    name_filter = FILTERS[which]
    parser, got = _parse(_chunks(data, points), name_filter, banner)
    expected = read_stream(data, name_filter, expect_banner=banner)
    assert got == expected.messages
    assert (parser.banner, parser.skipped, parser.garbage) == (expected.banner, expected.skipped, expected.garbage)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(st.sampled_from([p for p in _PIECES if b"\r\n" not in p]), st.text(max_size=6)),
                min_size=1, max_size=12),
       st.lists(st.sampled_from(["\r\n", ": ", ":", " "]), max_size=12))
def test_one_message_matches_the_reference(parts: list, seps: list[str]):
    """parse_message alone, on one message made of arbitrary lines (never an empty one)."""
    text = "".join(p.decode("utf-8", "replace") if isinstance(p, bytes) else p for pair in zip(parts, seps + [""] * len(parts))
                   for p in pair)
    text = text.replace("\r\n\r\n", "\r\n").strip("\r\n") or "X"
    if "\r\n\r\n" in text or text.startswith("\r\n"):
        return
    msg = parse_message(text)
    expected = read_stream(text.encode("utf-8") + b"\r\n\r\n", expect_banner=False)
    if expected.garbage:
        assert "Event" not in msg and "Response" not in msg
    else:
        assert [(dict(msg), msg.body)] == expected.messages


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(all_streams()), cuts, st.sampled_from(range(len(FILTERS))))
def test_real_captures_any_chunking_match_the_reference(stream, points: list[int], which: int):
    """Every captured Asterisk 22 stream (CR/LF-injected caller ids included)."""
    name_filter = FILTERS[which]
    scaled = [p * 97 for p in points]
    parser, got = _parse(_chunks(stream.data, scaled), name_filter)
    expected = read_stream(stream.data, name_filter)
    assert got == expected.messages
    assert (parser.skipped, parser.garbage) == (expected.skipped, expected.garbage)


# -- the four cases of issue 18, on captures (see captures/README.md) ---------------------------

CAPTURES = Path(__file__).parent / "captures"


def _capture(name: str) -> bytes:
    return b"".join(line for line in (CAPTURES / name).read_bytes().splitlines(keepends=True)
                    if not line.startswith(b">>> "))


def _every_split(data: bytes) -> list:
    """The messages, checked to be the same for the whole stream and for 1-byte reads."""
    whole = AmiParser().feed(data)
    parser = AmiParser()
    bytewise = [m for i in range(len(data)) for m in parser.feed(data[i:i + 1])]
    assert [(dict(m), m.body) for m in bytewise] == [(dict(m), m.body) for m in whole]
    assert [(dict(m), m.body) for m in whole] == read_stream(data).messages
    return whole


def test_command_output_with_colons_is_the_body_of_a_follows_response():
    login, uptime, version, concise, settings_, goodbye = _every_split(_capture("asterisk13_command_follows.ami"))
    assert dict(uptime) == {"Response": "Follows", "Privilege": "Command", "ActionID": "cmd-1"}
    assert uptime.body == "System uptime: 46 minutes, 30 seconds\nLast reload: 46 minutes, 30 seconds\n"
    assert version.body.startswith("Asterisk 13.38.3 built by root @ build on a x86_64") and "--END" not in version.body
    assert dict(concise) == {"Response": "Follows", "Privilege": "Command"} and concise.body == ""
    assert settings_.body.startswith("\nPBX Core settings\n") and "  Version:                     13.38.3\n" in settings_.body
    assert uptime.ok and goodbye["Response"] == "Goodbye"


def test_repeated_chanvariable_keeps_the_colon_in_the_channel_name():
    _, first, second = _every_split(_capture("asterisk11_chanvariable_iax2.ami"))
    key = "ChanVariable(IAX2/10.0.0.1:4569-1234)"
    assert first[key] == "CALLGUARD_CALL=1466097310.42"  # once: the quick path
    assert second[key] == "CALLGUARD_CALL=1466097310.42\nCALLGUARD_ROLE=agent"  # repeated: the full path
    assert not any(name.startswith("ChanVariable(IAX2/10.0.0.1") and name != key for name in second)
    assert first.body == second.body == ""


def test_header_name_with_a_space_is_a_header_whether_or_not_another_header_repeats():
    messages = _every_split(_capture("asterisk22_userevent_header_names.ami"))
    repeated = next(m for m in messages if m.get("ActionID") == "ue-1" and m.is_event)
    single = next(m for m in messages if m.get("ActionID") == "ue-2" and m.is_event)
    assert repeated["My Key"] == "spaced name" and repeated["Dup"] == "1\n2" and repeated.body == ""
    assert single["Sys Info"] == "uptime: 46 minutes, 30 seconds" and single.body == ""
    assert single["Target"] == "IAX2/10.0.0.1:4569-1234"


@pytest.mark.parametrize("text", [
    "a: b\r\nc: d: e", "a: b: c\r\nd", "a\r\nb: c: d", "a: b: c\r\nd\r\ne: f", "a: b\r\n\x01c: d", "a: \x01b\r\nc: d",
    "a\x01: b\r\nc: d", "Event: X\r\n: y", "Event: X\r\nEvent: Y", "x: 1\r\ny: 2\r\nz", "Event: Event: 0\x01Event: ",
])
def test_quick_path_declines_every_misaligned_message(text: str):
    """The one-split quick path must never pair names and values across lines."""
    expected = read_stream(text.encode("utf-8") + b"\r\n\r\n", expect_banner=False)
    msg = parse_message(text)
    if expected.garbage:
        assert "Event" not in msg and "Response" not in msg
    else:
        assert [(dict(msg), msg.body)] == expected.messages
