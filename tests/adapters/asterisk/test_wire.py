"""AMI framing: the captured Asterisk 22 streams parse exactly, however TCP splits them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callguard.adapters.asterisk.protocol import NOISE_EVENTS, default_wanted
from callguard.adapters.asterisk.wire import (
    AmiParser,
    MAX_CACHED_NAMES,
    AmiProtocolError,
    UnsafeHeaderValue,
    encode_action,
)

from ..wire_impls import using
from .streams import FIXTURE_FILES, Stream, all_streams

pytestmark = pytest.mark.usefixtures("wire_impl")  # C and pure Python (tests/adapters/conftest.py)

STREAMS = all_streams()


def _ids(streams: list[Stream]) -> list[str]:
    return [s.name for s in streams]


def test_every_fixture_is_covered():
    names = {p.name for p in FIXTURE_FILES}
    assert names >= {"asterisk22_actions.ami", "asterisk22_consent_pause.ami", "asterisk22_decline.ami",
                     "asterisk22_hangup_during_notice.ami", "asterisk22_join_notice.ami",
                     "asterisk22_consent_pause_timestamps.ami"}
    assert sum(len(s.messages) for s in STREAMS) > 700


@pytest.mark.parametrize("stream", STREAMS, ids=_ids(STREAMS))
def test_whole_stream_gives_exactly_its_messages(stream: Stream):
    parser = AmiParser(wanted=None)
    got = parser.feed(stream.data)
    assert [dict(m) for m in got] == stream.messages
    assert parser.banner == stream.banner == "Asterisk Call Manager/11.0.0"


@pytest.mark.parametrize("stream", STREAMS, ids=_ids(STREAMS))
def test_split_at_every_byte_offset(stream: Stream):
    """Split the stream at every offset; each split yields the same messages.

    The parser holds no state across a message boundary (its buffer is
    empty there; the whole-stream and multi-split tests check that), so
    splitting the full stream at offset k behaves exactly like splitting
    the message that contains k at k.  Testing message by message keeps
    this O(n) instead of O(n^2) while still covering every byte offset of
    the file, including every offset inside ``é``.
    """
    spans = stream.spans
    covered: set[int] = set()
    for i, (start, end) in enumerate(spans):
        window_start = 0 if i == 0 else start  # the first window carries the banner
        window = stream.data[window_start:end]
        expected = stream.messages[i]
        for k in range(1, len(window)):
            parser = AmiParser(None, expect_banner=i == 0)
            assert parser.feed(window[:k]) == []
            got = parser.feed(window[k:])
            assert len(got) == 1 and got[0] == expected, (stream.name, window_start + k)
            covered.add(window_start + k)
        covered.add(end)
    assert AmiParser(None).feed(stream.data[:spans[0][1]])[0] == stream.messages[0]
    gaps = {k for (_, end), (start, _) in zip(spans, spans[1:]) for k in range(end + 1, start + 1)}
    assert set(range(1, spans[-1][1] + 1)) - covered <= gaps


def test_utf8_split_inside_a_character_survives():
    data = "Event: UserEvent\r\nCallerIDName: José Cust\r\n\r\n".encode()
    cut = data.index("é".encode()) + 1  # between the two bytes of é
    parser = AmiParser(expect_banner=False)
    got = parser.feed(data[:cut]) + parser.feed(data[cut:])
    assert got[0]["CallerIDName"] == "José Cust"


def test_panoramisk_baseline_loses_the_character():
    """Why we do not use panoramisk's framing: it decodes each read alone."""
    from panoramisk.ami_protocol import AMIProtocol

    seen = []

    class Factory:
        save_stream = None

        def dispatch(self, message):
            seen.append(message)

    proto = AMIProtocol()
    proto.connection_made(None)
    proto.factory = Factory()
    proto.encoding = "utf-8"
    data = "Event: UserEvent\r\nCallerIDName: José Cust\r\n\r\n".encode()
    cut = data.index("é".encode()) + 1
    proto.data_received(data[:cut])
    proto.data_received(data[cut:])
    assert seen[0]["CallerIDName"] == "Jos Cust"


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(STREAMS), st.lists(st.integers(min_value=0, max_value=80_000), max_size=40))
def test_random_multi_splits_with_noise_filter(stream: Stream, cuts: list[int]):
    """Many splits at once, with the default filter that skips noise by name."""
    points = sorted({c % (len(stream.data) + 1) for c in cuts})
    pieces = [stream.data[a:b] for a, b in zip([0] + points, points + [len(stream.data)])]
    parser = AmiParser(default_wanted)
    got = [m for piece in pieces for m in parser.feed(piece)]
    expected = [m for m in stream.messages if m.get("Event") not in NOISE_EVENTS]
    assert [dict(m) for m in got] == expected
    assert parser.skipped == len(stream.messages) - len(expected)


def test_noise_is_skipped_without_parsing():
    stream = next(s for s in STREAMS if s.name.startswith("asterisk22_consent_pause#"))
    parser = AmiParser(default_wanted)
    kept = parser.feed(stream.data)
    names = {m.get("Event") for m in kept}
    assert "VarSet" not in names and "Newexten" not in names
    assert {"AsyncAGIStart", "AsyncAGIExec", "MixMonitorMute", "UserEvent", "BridgeEnter", "Hangup"} <= names
    assert parser.skipped > len(kept) * 0.8  # the captured mix is mostly noise


def test_invalid_utf8_is_replaced_not_fatal():
    parser = AmiParser(expect_banner=False)
    (msg,) = parser.feed(b"Event: UserEvent\r\nCallerIDName: \xff\xfeX\xc3\r\nLinkedid: 1.2\r\n\r\n")
    assert msg["CallerIDName"] == "\ufffd\ufffdX\ufffd"
    assert msg["Linkedid"] == "1.2"


def test_odd_lines_and_repeated_headers():
    parser = AmiParser(expect_banner=False)
    (msg,) = parser.feed(b"Response: Success\r\nOutput: a\r\nOutput: b\r\nEmpty:\r\nfree text\r\n\r\n")
    assert msg["Output"] == "a\nb" and msg["Empty"] == "" and msg.body == "free text"


def test_timestamp_header_is_the_event_time():
    parser = AmiParser(expect_banner=False)
    (msg,) = parser.feed(b"Event: Hangup\r\nPrivilege: call,all\r\nTimestamp: 1795373614.940849\r\n\r\n")
    msg.received_at = 5.0
    assert msg.at == pytest.approx(1795373614.940849)
    (plain,) = parser.feed(b"Event: Hangup\r\n\r\n")
    plain.received_at = 5.0
    assert plain.at == 5.0


def test_oversized_message_is_a_protocol_error():
    parser = AmiParser(expect_banner=False, max_message=1000)
    with pytest.raises(AmiProtocolError):
        parser.feed(b"Event: X\r\nData: " + b"a" * 2000)


def test_banner_split_byte_by_byte():
    parser = AmiParser()
    data = b"Asterisk Call Manager/11.0.0\r\nResponse: Success\r\nActionID: 1\r\n\r\n"
    got = [m for i in range(len(data)) for m in parser.feed(data[i:i + 1])]
    assert parser.banner == "Asterisk Call Manager/11.0.0"
    assert [dict(m) for m in got] == [{"Response": "Success", "ActionID": "1"}]


def test_encode_action_puts_action_first_and_refuses_crlf():
    data = encode_action({"ActionID": "x", "Action": "Setvar", "Variable": "A", "Value": "José"})
    assert data == "Action: Setvar\r\nActionID: x\r\nVariable: A\r\nValue: José\r\n\r\n".encode()
    for bad in ("a\r\nAction: Hangup", "a\nb", "a\rb", "a\x00b"):
        with pytest.raises(UnsafeHeaderValue):
            encode_action({"Action": "Setvar", "Value": bad})
    with pytest.raises(UnsafeHeaderValue):
        encode_action({"Action": "Setvar", "Bad Name": "x"})
    assert encode_action([("Action", "X"), ("Variable", ["a=1", "b=2"])]).count(b"Variable:") == 2


# -- bounds: a broken or hostile peer costs O(bytes) and bounded memory -----------------------


def test_oversized_complete_message_in_one_read_is_a_protocol_error():
    """The limit holds for every message, not only for an unterminated tail."""
    parser = AmiParser(expect_banner=False, max_message=1000)
    assert parser.feed(b"Event: Hangup\r\n\r\n" + b"Event: X\r\nData: " + b"a" * 900 + b"\r\n\r\n")
    with pytest.raises(AmiProtocolError, match="1016 bytes"):
        parser.feed(b"Event: Hangup\r\n\r\nEvent: X\r\nData: " + b"a" * 1000 + b"\r\n\r\nEvent: Hangup\r\n\r\n")


def test_a_batch_over_the_limit_that_ends_in_an_odd_empty_line_is_checked_and_taken():
    """The size check walked the batch until a search past its last message failed, then started over: a hang.

    Found by the C-versus-Python hostile-input test: a read that completes
    more than ``max_message`` bytes of messages and ends with an extra empty
    line (its last two end-of-message marks overlap).
    """
    parser = AmiParser(expect_banner=False, max_message=1000)
    assert parser.feed(b"Event: X\r\nData: " + b"a" * 900) == []
    got = parser.feed(b"\r\n\r\nEvent: Hangup\r\n\r\n\r\n")
    assert [m["Event"] for m in got] == ["X", "Hangup"] and parser.pending_bytes == 0


def test_a_run_of_blocks_that_are_not_messages_is_a_protocol_error():
    parser = AmiParser(expect_banner=False, max_message=1000)
    # A caller's CR/LF cuts events: the cut-off pieces are dropped, the real events kept.
    for _ in range(20):
        got = parser.feed(b"Event: Newstate\r\nCallerIDNum: 1\r\n\r\nx: y\r\nUniqueid: 2\r\n\r\n")
        assert [m["Event"] for m in got] == ["Newstate"]
    assert parser.garbage == 20
    with pytest.raises(AmiProtocolError, match="neither Event: nor Response:"):
        parser.feed(b"\x00\x01garbage: \xff\r\n\r\n" * 100)


def test_event_name_cache_is_bounded():
    asked: list[bytes] = []

    def wanted(name: bytes) -> bool:
        asked.append(name)
        return name.endswith(b"7")

    parser = AmiParser(wanted, expect_banner=False)
    names = [f"Name{i}".encode() for i in range(MAX_CACHED_NAMES + 500)]
    got = parser.feed(b"".join(b"Event: " + n + b"\r\nX: 1\r\n\r\n" for n in names * 2))
    assert len(parser._decisions) == MAX_CACHED_NAMES
    assert [m["Event"].encode() for m in got] == [n for n in names * 2 if n.endswith(b"7")]
    # cached names are asked once, the rest every time
    assert len(asked) == MAX_CACHED_NAMES + 2 * 500


def test_small_reads_of_a_long_message_do_not_copy_the_buffer_each_time():
    """1 MiB in 100-byte reads: the buffer grows in place (bench/ami_ingest.py --garbage times it)."""
    with using("python"):  # the C framer's buffer is not visible from Python; it works the same way
        parser = AmiParser(expect_banner=False)
    body = b"Event: X\r\nData: " + b"a" * (1 << 20) + b"\r\n\r\n"
    framer = parser._framer
    buffer = framer._buf
    for i in range(0, len(body) - 200, 100):
        assert parser.feed(body[i:i + 100]) == []
    assert framer._buf is buffer and framer._scan >= len(buffer) - 3
