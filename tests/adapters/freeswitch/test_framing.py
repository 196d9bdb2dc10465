"""ESL framing: the captured FreeSWITCH streams, split everywhere, and the awkward cases.

The expected frame lists below were read off the fixture files with grep
(Content-Type / Event-Name / Reply-Text lines), not produced by the parser.
"""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from callguard.adapters.freeswitch.wire import (
    ESLParser,
    ESLProtocolError,
    Frame,
    UnsafeCommand,
    api,
    encode_command,
    event_subscription,
    parse_event,
    sendmsg_execute,
)
from callguard.testing.esl_wire import api_frame, event_frame, url_encode

from .streams import FILES, FIXTURES, server_bytes

pytestmark = pytest.mark.usefixtures("wire_impl")  # C and pure Python (tests/adapters/conftest.py)

CALL = "337c44b3-d15a-4ddc-8a6a-6f1275f058d7"
EVENT = "text/event-plain"
REPLY = "command/reply"

EXPECTED = {
    "freeswitch1_10_consent_pause.inbound.esl": [
        ("auth/request", ""), (REPLY, "+OK accepted"), (REPLY, "+OK event listener enabled plain"),
        (EVENT, "RECORD_START"), (EVENT, "CUSTOM callguard::pause"), ("api/response", "+OK Success\n"),
        (EVENT, "CUSTOM callguard::resume"), ("api/response", "+OK Success\n"),
        (EVENT, "CHANNEL_HANGUP_COMPLETE"), (EVENT, "RECORD_STOP"), (EVENT, "CHANNEL_HANGUP_COMPLETE"),
        (EVENT, "CHANNEL_HANGUP_COMPLETE"), (EVENT, "CHANNEL_HANGUP_COMPLETE"),
    ],
    "freeswitch1_10_consent_pause.outbound.esl": [
        (REPLY, "+OK\n"), (REPLY, "+OK Events Enabled"), (REPLY, "+OK will linger"), (EVENT, "CHANNEL_PARK"),
        (REPLY, "+OK"), (EVENT, "CHANNEL_EXECUTE"), (EVENT, "DTMF"), (EVENT, "CHANNEL_EXECUTE_COMPLETE"),
        (REPLY, "+OK"), (EVENT, "CHANNEL_EXECUTE"), (EVENT, "CHANNEL_EXECUTE_COMPLETE"),
        (REPLY, "+OK"), (EVENT, "CHANNEL_EXECUTE"), (EVENT, "CHANNEL_EXECUTE_COMPLETE"),
        (REPLY, "+OK bye"), ("text/disconnect-notice", "disconnect"),
    ],
    "freeswitch1_10_decline.inbound.esl": [
        ("auth/request", ""), (REPLY, "+OK accepted"), (REPLY, "+OK event listener enabled plain"),
        (EVENT, "CUSTOM callguard::pause"), (EVENT, "CUSTOM callguard::resume"),
        (EVENT, "CHANNEL_HANGUP_COMPLETE"), (EVENT, "CHANNEL_HANGUP_COMPLETE"),
    ],
    "freeswitch1_10_decline.outbound.esl": [
        (REPLY, "+OK\n"), (REPLY, "+OK Events Enabled"), (REPLY, "+OK will linger"), (REPLY, "+OK"),
        (EVENT, "CHANNEL_EXECUTE"), (EVENT, "DTMF"), (EVENT, "CHANNEL_EXECUTE_COMPLETE"),
        (REPLY, "+OK"), (EVENT, "CHANNEL_EXECUTE"), (EVENT, "CHANNEL_EXECUTE_COMPLETE"),
        (REPLY, "+OK bye"), ("text/disconnect-notice", "disconnect"),
    ],
    "freeswitch1_10_hangup_during_notice.inbound.esl": [
        ("auth/request", ""), (REPLY, "+OK accepted"), (REPLY, "+OK event listener enabled plain"),
        (EVENT, "CHANNEL_HANGUP_COMPLETE"), (EVENT, "CHANNEL_HANGUP_COMPLETE"),
    ],
    "freeswitch1_10_hangup_during_notice.outbound.esl": [
        (REPLY, "+OK\n"), (REPLY, "+OK Events Enabled"), (REPLY, "+OK will linger"), (EVENT, "CHANNEL_PARK"),
        (REPLY, "+OK"), (EVENT, "CHANNEL_EXECUTE"), (EVENT, "CHANNEL_HANGUP"), (EVENT, "CHANNEL_EXECUTE_COMPLETE"),
        (EVENT, "CHANNEL_UNPARK"), (EVENT, "CHANNEL_EXECUTE_COMPLETE"), (EVENT, "CHANNEL_STATE"),
        (EVENT, "CHANNEL_STATE"), (EVENT, "CHANNEL_HANGUP_COMPLETE"), ("text/disconnect-notice", "linger"),
        (REPLY, "+OK"), (REPLY, "+OK bye"), ("text/disconnect-notice", "disconnect"),
    ],
}


def summary(frame: Frame) -> tuple[str, str]:
    kind = frame.content_type
    if frame.is_event:
        event = frame.event
        return kind, f"{event.name} {event.subclass}".strip()
    if kind == "api/response":
        return kind, frame.text
    if kind == "text/disconnect-notice":
        return kind, frame.headers.get("Content-Disposition") or ""
    return kind, frame.reply_text


def full_view(frames: list[Frame]) -> list[tuple[dict[str, str], bytes, dict[str, str] | None, bytes]]:
    """Everything a frame carries, decoded, for comparing two parses."""
    out = []
    for f in frames:
        ev = f.event if f.is_event else None
        out.append((f.headers.decoded(), f.body, ev.headers.decoded() if ev else None, ev.body if ev else b""))
    return out


def raw_view(frames: list[Frame]) -> list[tuple[str, bytes]]:
    """A frame's header text and body as received (decoding is a pure function of these)."""
    return [(f.headers.raw_text, f.body) for f in frames]


def parse_chunks(chunks: list[bytes]) -> list[Frame]:
    parser = ESLParser()
    frames: list[Frame] = []
    for chunk in chunks:
        frames += parser.feed(chunk)
    assert parser.close() is None
    assert parser.pending == 0
    return frames


def test_every_fixture_file_is_covered() -> None:
    assert sorted(p.name for p in FILES) == sorted(EXPECTED)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_fixture_replay_gives_exactly_its_frames(path) -> None:
    frames = parse_chunks([server_bytes(path)])
    assert [summary(f) for f in frames] == EXPECTED[path.name]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_fixture_byte_by_byte_equals_whole(path) -> None:
    """Every byte offset is a read boundary at once (a slow-loris peer)."""
    data = server_bytes(path)
    whole = full_view(parse_chunks([data]))
    assert full_view(parse_chunks([data[i:i + 1] for i in range(len(data))])) == whole


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_fixture_split_in_two_at_every_offset_of_the_first_frames(path) -> None:
    """Two reads split at each offset of the first frames (connect reply or auth, first events)."""
    data = server_bytes(path)
    # The region: whole frames covering the first 5000 bytes (parsing the rest adds nothing).
    parser = ESLParser()
    parser.feed(data[:5000])
    size = 5000
    while parser.pending and size < len(data):
        parser.feed(data[size:size + 1])
        size += 1
    region = data[:size]
    whole = raw_view(parse_chunks([region]))
    assert len(whole) >= 2
    for cut in range(len(region)):
        assert raw_view(parse_chunks([region[:cut], region[cut:]])) == whole, cut


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_fixture_random_chunkings(data) -> None:
    path = data.draw(st.sampled_from(FILES))
    stream = server_bytes(path)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=40)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
    assert raw_view(parse_chunks(chunks)) == raw_view(parse_chunks([stream]))


def test_connect_reply_headers_are_url_decoded_as_utf8() -> None:
    frames = parse_chunks([server_bytes(FIXTURES / "freeswitch1_10_consent_pause.outbound.esl")])
    connect = frames[0].headers
    assert connect["Caller-Caller-ID-Name"] == "José Cust"
    assert connect["Caller-Caller-ID-Number"] == "+14155550123"
    assert connect["Reply-Text"] == "+OK\n"
    assert connect["variable_callguard_call"] == CALL
    assert connect.raw("Caller-Caller-ID-Name") == "Jos%C3%A9%20Cust"
    assert connect["Socket-Mode"] == "async" and connect["Control"] == "full"


def test_invalid_utf8_in_an_encoded_value_is_replaced_not_fatal() -> None:
    # switch_url_encode keeps an existing %XX, so these escapes reach the wire as they are.
    frame = event_frame([("Event-Name", "CUSTOM"), ("Caller-Caller-ID-Name", "bad %FF%FE name")])
    assert b"bad%20%FF%FE%20name" in frame
    event = parse_chunks([frame])[0].event
    assert event.get("Caller-Caller-ID-Name") == "bad \ufffd\ufffd name"


def test_raw_invalid_utf8_bytes_in_a_body_are_replaced() -> None:
    frame = parse_chunks([api_frame(b"+OK caf\xc3 \xff\n")])[0]
    assert frame.text == "+OK caf\ufffd \ufffd\n"
    assert frame.body == b"+OK caf\xc3 \xff\n"


def test_utf8_split_inside_a_character_across_reads() -> None:
    body = "+OK José 日本\n".encode()
    data = api_frame(body)
    inside = data.index("é".encode()) + 1  # between the two bytes of é
    for cut in (inside, data.index("日".encode()) + 1, data.index("日".encode()) + 2):
        assert parse_chunks([data[:cut], data[cut:]])[0].text == "+OK José 日本\n"


def test_encoded_newline_in_a_caller_name_cannot_forge_a_header() -> None:
    """FreeSWITCH encodes the newline; decoding must happen per value, after the split."""
    hostile = "x\nEvent-Name: CUSTOM\nvariable_callguard_call: victim"
    frame = event_frame([("Event-Name", "CHANNEL_HANGUP_COMPLETE"), ("Unique-ID", CALL),
                         ("Caller-Caller-ID-Name", hostile)])
    event = parse_chunks([frame])[0].event
    assert event.name == "CHANNEL_HANGUP_COMPLETE"
    assert event.get("variable_callguard_call") is None
    assert event.get("Caller-Caller-ID-Name") == hostile


def test_greenswitch_parser_is_fooled_by_the_same_event() -> None:
    """Why we do not use greenswitch's ESLEvent: it URL-decodes before splitting lines."""
    from greenswitch.esl import ESLEvent as GreenswitchEvent

    hostile = "x\nEvent-Name: CUSTOM"
    body = event_frame([("Event-Name", "CHANNEL_HANGUP_COMPLETE"), ("Caller-Caller-ID-Name", hostile)])
    text = body.split(b"\n\n", 1)[1].decode()
    assert GreenswitchEvent(text).headers["Event-Name"] == "CUSTOM"  # forged


def test_literal_percent_escape_in_a_name_is_decoded_once_per_value() -> None:
    """switch_url_encode keeps an existing %XX, so '%0A' typed by a caller arrives as a newline."""
    assert url_encode("a%0Ab") == "a%0Ab"
    frame = event_frame([("Event-Name", "CUSTOM"), ("Caller-Caller-ID-Name", "a%0AEvent-Name: X")])
    event = parse_chunks([frame])[0].event
    assert event.name == "CUSTOM"
    assert event.get("Caller-Caller-ID-Name") == "a\nEvent-Name: X"


def test_event_with_its_own_body() -> None:
    """BACKGROUND_JOB: an event-plain body that carries Content-Length and a body of its own."""
    result = "+OK 7f4db78a-17d7-11dd-b7a0-db4edd065621\nline two: José\n"
    frame = event_frame([("Event-Name", "BACKGROUND_JOB"), ("Job-UUID", "7f4db78a"), ("Job-Command", "originate")],
                        body=result)
    stream = frame + event_frame([("Event-Name", "HEARTBEAT")])
    for cut in range(len(stream)):
        frames = parse_chunks([stream[:cut], stream[cut:]])
        assert [f.event.name for f in frames] == ["BACKGROUND_JOB", "HEARTBEAT"]
        assert frames[0].event.text == result
        assert frames[0].event.get("Job-Command") == "originate"
        # the inner body's "line two: José" is not a header
        assert "line two" not in frames[0].event.headers


def test_parse_event_rejects_a_bad_inner_length() -> None:
    with pytest.raises(ESLProtocolError):
        parse_event(b"Event-Name: X\nContent-Length: nope\n\nbody")


def test_disconnect_notices_linger_and_goodbye() -> None:
    frames = parse_chunks([server_bytes(FIXTURES / "freeswitch1_10_hangup_during_notice.outbound.esl")])
    notices = [f for f in frames if f.content_type == "text/disconnect-notice"]
    assert [n.headers["Content-Disposition"] for n in notices] == ["linger", "disconnect"]
    assert notices[0].body == b"" and notices[0].headers["Linger-Time"] == "-1"
    assert notices[1].text.startswith("Disconnected, goodbye.")
    assert notices[1].headers["Controlled-Session-UUID"] == "a5a38e37-a84e-473c-81c7-0d20af69d5c7"


def frame_ends(data: bytes) -> list[int]:
    """Where each frame ends: a deliberately naive reference deframer."""
    ends, pos = [], 0
    while True:
        while data[pos:pos + 1] == b"\n":
            pos += 1
        head_end = data.find(b"\n\n", pos)
        if head_end < 0:
            return ends
        match = re.search(rb"(?m)^Content-Length: (\d+)$", data[pos:head_end])
        pos = head_end + 2 + (int(match.group(1)) if match else 0)
        ends.append(pos)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_server_closing_mid_event_reports_the_cut(path) -> None:
    data = server_bytes(path)
    ends = frame_ends(data)
    whole = raw_view(parse_chunks([data]))
    assert len(ends) == len(whole) and ends[-1] == len(data)
    rng = random.Random(path.name)
    for cut in sorted(rng.sample(range(1, len(data)), 60)) + ends[:-1]:
        parser = ESLParser()
        frames = parser.feed(data[:cut])
        complete = sum(1 for end in ends if end <= cut)
        assert raw_view(frames) == whole[:complete]
        truncated = parser.close()
        at_boundary = data[max([0, *[e for e in ends if e <= cut]]):cut].strip(b"\n") == b""
        if at_boundary:
            assert truncated is None, cut
        else:
            assert truncated is not None and truncated.received > 0, cut
            assert "connection closed" in str(truncated)


def test_truncated_body_says_how_much_was_missing() -> None:
    frame = event_frame([("Event-Name", "RECORD_START"), ("Unique-ID", CALL)])
    parser = ESLParser()
    assert parser.feed(frame[:-10]) == []
    cut = parser.close()
    assert cut is not None and cut.content_type == "text/event-plain"
    assert cut.expected == len(frame) and cut.received == len(frame) - 10
    assert parser.close() is None  # reset


def test_truncated_header_block() -> None:
    parser = ESLParser()
    parser.feed(b"Content-Type: api/response\nContent-Len")
    cut = parser.close()
    assert cut is not None and cut.expected is None and cut.content_type == "api/response"


@pytest.mark.parametrize("bad", [b"Content-Length: -5\n\n", b"Content-Length: 12x\n\n",
                                 b"Content-Length: 99999999999\n\n"])
def test_bad_content_length_is_a_protocol_error(bad) -> None:
    with pytest.raises(ESLProtocolError):
        ESLParser().feed(b"Content-Type: api/response\n" + bad)


def test_stray_newlines_between_frames_are_skipped() -> None:
    frames = parse_chunks([b"\n\nContent-Type: auth/request\n\n\n\nContent-Type: command/reply\nReply-Text: +OK\n\n"])
    assert [f.content_type for f in frames] == ["auth/request", "command/reply"]


def test_zero_length_body_frame() -> None:
    frames = parse_chunks([b"Content-Type: api/response\nContent-Length: 0\n\nContent-Type: auth/request\n\n"])
    assert [(f.content_type, f.body) for f in frames] == [("api/response", b""), ("auth/request", b"")]


def test_headers_mapping_matches_in_place_lookups() -> None:
    frames = parse_chunks([server_bytes(FIXTURES / "freeswitch1_10_consent_pause.inbound.esl")])
    for frame in frames:
        if not frame.is_event:
            continue
        event = parse_event(frame.body)
        fast = {name: event.headers.get(name) for name in ("Event-Name", "Unique-ID", "Hangup-Cause",
                                                           "variable_callguard_call", "Record-File-Path")}
        full = event.headers.decoded()
        assert fast == {name: full.get(name) for name in fast}


# -- commands we send ------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\r\nexit", "a\x00b"])
def test_line_breaks_and_nul_are_refused_everywhere(bad) -> None:
    with pytest.raises(UnsafeCommand):
        api(f"uuid_record {bad} mask /x")
    with pytest.raises(UnsafeCommand):
        sendmsg_execute("playback", bad)
    with pytest.raises(UnsafeCommand):
        encode_command("sendmsg", {"execute-app-name": bad})
    with pytest.raises(UnsafeCommand):
        encode_command("sendmsg", {bad: "x"})


def test_sendmsg_matches_the_captured_form() -> None:
    arg = "1 1 1 5000 # /usr/share/asterisk/sounds/en/conf-now-recording.wav silence_stream://250 callguard_digit \\d"
    assert sendmsg_execute("play_and_get_digits", arg) == (
        "sendmsg\ncall-command: execute\nexecute-app-name: play_and_get_digits\n"
        f"execute-app-arg: {arg}\nevent-lock: true\n\n").encode()


def test_event_subscription_puts_custom_last() -> None:
    data = event_subscription(["CUSTOM", "RECORD_START", "CHANNEL_HANGUP_COMPLETE"],
                              ["callguard::pause", "callguard::resume"])
    assert data == b"event plain RECORD_START CHANNEL_HANGUP_COMPLETE CUSTOM callguard::pause callguard::resume\n\n"
    with pytest.raises(UnsafeCommand):
        event_subscription(["A B"])


@example("%\na")  # a soft line break to quoted-printable, a literal to unquote (once missed)
@example("%\r\na")
@example("%\ra")
@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(list("%=aZ09fF\x00é日\n\r\t :") + ["%41", "%C3%A9", "%0A", "%e6%97", "%zz", "%4",
                                                                 "%FF", "%00"]),
                max_size=30).map("".join))
def test_fast_decoding_equals_urllib_unquote(text) -> None:
    from urllib.parse import unquote

    from callguard.adapters.freeswitch.wire import decode_value

    assert decode_value(text) == unquote(text, errors="replace")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,12}", fullmatch=True),
                          st.text(max_size=20)), max_size=12))
def test_decoded_headers_equal_per_value_decoding(pairs) -> None:
    """The one-shot decode of a whole event equals decoding value by value (as FreeSWITCH encodes them)."""
    from urllib.parse import unquote

    frame = event_frame([("Event-Name", "X"), *pairs])
    event = parse_chunks([frame])[0].event
    expected: dict[str, str] = {}
    for name, value in [("Event-Name", "X"), *pairs]:
        expected.setdefault(name, unquote(url_encode(value), errors="replace") if url_encode(value) else "_undef_")
    assert event.headers.decoded() == expected
