"""ESL framing = the plain reference reading, on arbitrary streams cut into arbitrary reads.

The quick paths in ``adapters/freeswitch/wire.py`` (in-place header lookups,
the one-split dict, the one-call URL decode, events framed by their own
extent) must give exactly what :mod:`.esl_reference` gives reading the
stream line by line, whichever way the stream is cut, and ``get()`` must
give the same answer before and after the dict is built.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from callguard.adapters.freeswitch.wire import ESLParser, ESLProtocolError, Frame, Headers
from callguard.testing.esl_wire import url_encode

from .esl_reference import decoded, header_lines, read_stream
from .streams import FILES, server_bytes

pytestmark = pytest.mark.usefixtures("wire_impl")  # C and pure Python (tests/adapters/conftest.py)

_NAMES = ["Content-Type", "Content-Length", "Reply-Text", "Event-Name", "Event-Subclass", "Unique-ID", "Dup",
          "a:b", "no", "X Y", "", "%41", "n\x00"]
_TEXT = st.lists(st.sampled_from(list("ab: %=\n\r\x00é日") + ["%3A%20", "%0A", "%3D", "%C3%A9", "%zz", "%4",
                                                               "-ERR no: such", "+OK Job-UUID: 1"]),
                 max_size=8).map("".join)
lines = st.lists(st.one_of(st.tuples(st.sampled_from(_NAMES), _TEXT).map(lambda nv: f"{nv[0]}: {nv[1]}"), _TEXT),
                 max_size=6)


@st.composite
def frame(draw) -> bytes:
    kind = draw(st.sampled_from(["event", "event", "api/response", "command/reply", "other", "soup"]))
    extra = [line for line in draw(lines) if line]
    if kind == "soup":
        return draw(st.binary(max_size=20)) + "\n".join(extra).encode("utf-8", "surrogatepass")
    if kind == "command/reply":
        head = [f"Content-Type: {kind}", *extra]
        return ("\n".join(head) + "\n\n").encode("utf-8", "surrogatepass")
    if kind == "event":
        fields = [("Event-Name", draw(st.sampled_from(["CUSTOM", "HEARTBEAT"])))]
        fields += [(draw(st.sampled_from(["Unique-ID", "Dup", "Event-Name", "variable_x"])), draw(_TEXT))
                   for _ in range(draw(st.integers(0, 4)))]
        own = draw(st.one_of(st.just(b""), st.binary(max_size=12), st.just(b"Content-Type: api/response\n\n")))
        body = "".join(f"{n}: {url_encode(v) or '_undef_'}\n" for n, v in fields).encode()
        body += (f"Content-Length: {len(own)}\n\n".encode() + own) if own else b"\n"
        head = ["Content-Type: text/event-plain"]
    else:
        body = draw(st.binary(max_size=16))
        head = [f"Content-Type: {kind}"]
    lie = draw(st.sampled_from([0, 0, 0, 1, -1, 7, -7, 40]))
    head.insert(draw(st.integers(0, 1)), f"Content-Length: {max(0, len(body) + lie)}")
    head += extra if kind != "event" else []
    return ("\n".join(head) + "\n\n").encode("utf-8", "surrogatepass") + body


streams = st.lists(st.tuples(frame(), st.sampled_from([b"", b"", b"\n", b"\n\n"])), max_size=6).map(
    lambda fs: b"".join(f + sep for f, sep in fs))
cuts = st.lists(st.integers(min_value=0, max_value=2000), max_size=12)


def _chunks(data: bytes, points: list[int]) -> list[bytes]:
    marks = sorted({p % (len(data) + 1) for p in points})
    return [data[a:b] for a, b in zip([0, *marks], [*marks, len(data)])]


def _same_headers(headers: Headers, expected_raw: dict[str, str]) -> None:
    """Every way of reading a block agrees with the reference, before and after the dict exists."""
    probes = list(expected_raw) + ["Reply-Text", "no", "such", "a", "a:b", "Content", "X", ""]
    before = {name: headers.get(name) for name in probes}
    raw_before = {name: headers.raw(name) for name in probes}
    full = decoded(expected_raw)
    assert headers.decoded() == full
    assert dict(headers) == full and list(headers) == list(expected_raw)
    after = {name: headers.get(name) for name in probes}
    assert before == after == {name: full.get(name) for name in probes}
    assert raw_before == {name: headers.raw(name) for name in probes} == {n: expected_raw.get(n) for n in probes}


def _check(frames: list[Frame], expected) -> None:
    assert len(frames) == len(expected)
    for got, (raw, body, event) in zip(frames, expected):
        _same_headers(got.headers, raw)
        assert got.body == body
        if event is not None:
            _same_headers(got.event.headers, event[0])
            assert got.event.body == event[1]


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams, cuts)
@example(b"Content-Type: command/reply\nReply-Text: -ERR no: such\nno colon here\n\n", [])
# a frame length one short, ending exactly where the event's header block ends: the event's own
# Content-Length still counts (a quick path took the block for a whole event and lost its body)
@example(b"Content-Length: 38\nContent-Type: text/event-plain\n\nEvent-Name: CUSTOM\nContent-Length: 1\n\n\x00"
         b"Content-Length: 0\nContent-Type: api/response\n\n", [])
@example(b"Content-Length: 9\nContent-Type: text/event-plain\n\nEvent-Name: X\n\n"
         b"Content-Type: api/response\nContent-Length: 3\n\n+OK", [20, 40])
def test_any_stream_any_chunking_matches_the_reference(data: bytes, points: list[int]):
    expected = read_stream(data)
    parser = ESLParser()
    frames: list[Frame] = []
    try:
        for chunk in _chunks(data, points):
            frames += parser.feed(chunk)
    except ESLProtocolError:
        assert expected.error
        assert len(frames) <= len(expected.frames)
        _check(frames, expected.frames[:len(frames)])
        return
    assert not expected.error
    _check(frames, expected.frames)
    assert parser.resyncs == expected.resyncs


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(lines.map("\n".join), _TEXT), min_size=1, max_size=4).map("\n".join))
@example("Reply-Text: -ERR no: such\nno colon here")
@example("a:b: c\nd")
@example("a: b: c: d\ne\nf")
@example("Dup: 1\nDup: 2\nX: %41")
@example("%41: x\nB: %42")
def test_any_header_block_matches_the_reference(text: str):
    text = text.replace("\n\n", "\n")
    _same_headers(Headers(text), header_lines(text))
    data = text.encode("utf-8", "surrogatepass")
    _same_headers(Headers.from_bytes(data), header_lines(data.decode("utf-8", "replace")))


_RAW_PIECES = [b"a", b"Name", b":", b": ", b" ", b"\n", b"%", b"%C3", b"%a9", b"%E2%82", b"%AC", b"%4", b"%zz", b"%00",
               b"\xc3", b"\xa9", b"\xe2\x82", b"\xff", "é".encode(), "日".encode(), b"\x00", b"\r", b"="]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(_RAW_PIECES), max_size=30).map(b"".join))
@example(b"A: %C3\xa9%A9\nB: \xc3%A9")  # escaped and raw halves of one character: unquote keeps them apart
def test_any_header_block_as_bytes_matches_the_reference(data: bytes):
    """Raw bytes, invalid UTF-8 next to escapes: the C decode works on bytes, the reference on decoded text."""
    while b"\n\n" in data:
        data = data.replace(b"\n\n", b"\n")
    _same_headers(Headers.from_bytes(data), header_lines(data.decode("utf-8", "replace")))


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(FILES), cuts)
def test_real_captures_any_chunking_match_the_reference(path, points: list[int]):
    data = server_bytes(path)
    expected = read_stream(data)
    parser = ESLParser()
    frames = [f for chunk in _chunks(data, [p * 53 for p in points]) for f in parser.feed(chunk)]
    assert not expected.error and expected.resyncs == parser.resyncs == 0
    _check(frames, expected.frames)


# -- the ESL case of issue 18, on captures (see captures/README.md) ---------------------------------

CAPTURES = Path(__file__).parent / "captures"


def _every_split(data: bytes) -> list[Frame]:
    """The frames, checked to be the same whole, in 1-byte reads, and by the reference."""
    whole = ESLParser().feed(data)
    parser = ESLParser()
    bytewise = [f for i in range(len(data)) for f in parser.feed(data[i:i + 1])]
    expected = read_stream(data)
    _check(whole, expected.frames)
    _check(bytewise, expected.frames)
    return whole


def test_reply_text_with_a_colon_then_a_line_without_one_reads_the_same_every_way():
    weird, colon = _every_split(server_bytes(CAPTURES / "freeswitch1_10_getvar_multiline.outbound.esl"))
    assert weird.headers.get("Reply-Text") == "-ERR no: such"  # in place
    assert dict(weird.headers) == {"Content-Type": "command/reply", "Reply-Text": "-ERR no: such"}
    assert weird.headers.get("Reply-Text") == "-ERR no: such"  # and again once the dict exists
    assert weird.reply_text == "-ERR no: such" and not weird.ok()
    assert colon.headers.decoded() == {"Content-Type": "command/reply", "Reply-Text": "a:b: c"}
    assert colon.headers.get("a") is None and colon.headers.get("a:b") is None


def test_bgapi_reply_and_background_job_from_a_real_freeswitch():
    frames = _every_split(server_bytes(CAPTURES / "freeswitch1_10_bgapi_reply_text.inbound.esl"))
    replies = [f for f in frames if f.content_type == "command/reply"]
    job = next(f for f in frames if f.is_event)
    bgapi = next(f for f in replies if f.reply_text.startswith("+OK Job-UUID: "))
    uuid = bgapi.headers["Job-UUID"]
    assert bgapi.reply_text == f"+OK Job-UUID: {uuid}" and dict(bgapi.headers)["Reply-Text"] == bgapi.reply_text
    assert job.event.name == "BACKGROUND_JOB" and job.event.get("Job-UUID") == uuid
    assert job.event.text.startswith("UP 0 years") and "FreeSWITCH (Version 1.10.12" in job.event.text
    assert "Current Stack Size/Max" not in job.event.headers  # body lines are not headers
    assert job.event.headers.decoded()["Job-Command"] == "status"
