"""A Content-Length that lies: the listener is back in step at once (event frames) or within 0.5 s (others).

Issue 11 §5: on a real FreeSWITCH a lying length stalled the inbound
connection until the heartbeat noticed, and a mute arrived 2.0 s late.
"""

from __future__ import annotations

import logging
import re
import time

import pytest

from callguard.adapters.freeswitch.wire import FRAME_STALL_S, ESLParser, ESLProtocolError, StallWatch
from callguard.testing.esl_wire import api_frame, event_frame
from callguard.testing.fake_freeswitch import Faults

from .conftest import scenario

PAUSE_CALL = [{"at": 2.5, "press": "1"}, {"at": 20, "hotkey": "pause"}, {"at": 26, "hotkey": "resume"},
              {"at": 60, "hangup": "caller"}]


class Liar:
    """Gives the first frame matching ``pattern`` (after ``after`` was seen) a Content-Length off by ``by``."""

    def __init__(self, pattern: bytes, by: int, after: bytes | None = None):
        self.pattern, self.by, self.after = pattern, by, after
        self.armed = after is None
        self.lied_at: float | None = None

    def __call__(self, data: bytes) -> bytes:
        if self.after is not None and self.after in data:
            self.armed = True
            return data
        if not self.armed or self.lied_at is not None or not re.search(self.pattern, data):
            return data
        self.lied_at = time.time()
        return re.sub(rb"Content-Length: (\d+)\n", lambda m: b"Content-Length: %d\n" % (int(m.group(1)) + self.by),
                      data, count=1)


@pytest.mark.parametrize("by", [300, -40], ids=["too-long", "too-short"])
async def test_a_lying_event_frame_is_framed_by_its_event_and_the_pause_is_on_time(make_rig, by, caplog) -> None:
    liar = Liar(rb"Content-Type: text/event-plain\n\nEvent-Subclass: callguard%3A%3Apause", by)
    rig = await make_rig(faults=Faults(rewrite=liar))
    with caplog.at_level(logging.WARNING, logger="callguard.freeswitch"):
        record = await rig.play(scenario(PAUSE_CALL))
    assert liar.lied_at is not None
    # the pause took effect at once: nothing audible from 20 to 26, no reconnect needed
    assert record.recordings[0].audible_spans(60) == [(2.5, 20.0), (26.0, 60.0)]
    assert rig.listener.stats["inbound_drops"] == 0
    assert rig.entry(record.call_id, "recording-muted").data["reasons"] == ["pause"]
    assert any("framed by the event, back in step" in r.getMessage() for r in caplog.records)


async def test_a_lying_reply_drops_the_connection_within_half_a_second_and_the_mask_still_happens(make_rig,
                                                                                                  caplog) -> None:
    # the reply to the mask claims 500 bytes more than it has; the heartbeat cannot come to the rescue
    liar = Liar(rb"Content-Type: api/response\n", 500, after=b"callguard%3A%3Apause")
    rig = await make_rig(faults=Faults(rewrite=liar), freeswitch={"heartbeat_interval_s": 30})
    with caplog.at_level(logging.WARNING, logger="callguard.freeswitch"):
        record = await rig.play(scenario(PAUSE_CALL))
    dropped = [r for r in caplog.records if r.levelno >= logging.ERROR and "dropping the connection" in r.getMessage()]
    assert liar.lied_at is not None and len(dropped) == 1
    assert "a Content-Length that lies" in dropped[0].getMessage()
    elapsed = dropped[0].created - liar.lied_at
    assert elapsed < 1.0, f"took {elapsed:.2f} s to notice"  # FRAME_STALL_S (0.25) + a loaded machine's slack
    assert rig.listener.stats["inbound_drops"] == 1 and rig.listener.stats["resent"] >= 1
    assert not record.recordings[0].audible_during(20.0, 26.0)


def test_stall_watch_times_one_frame_not_the_connection() -> None:
    parser = ESLParser()
    watch = StallWatch(parser)
    assert watch.fed(0.0) is None
    frame = api_frame("+OK\n")
    parser.feed(frame[:-2])
    assert watch.fed(10.0) == 10.0 + FRAME_STALL_S
    assert watch.check(10.1) == 10.0 + FRAME_STALL_S  # not yet overdue
    parser.feed(frame[-2:] + event_frame([("Event-Name", "HEARTBEAT")])[:30])  # done; a new frame begins
    assert watch.fed(10.2) == 10.2 + FRAME_STALL_S
    with pytest.raises(ESLProtocolError, match="a Content-Length that lies"):
        watch.check(10.2 + FRAME_STALL_S)
    parser.feed(b"")
    assert StallWatch(ESLParser()).check(99.0) is None


async def test_a_lying_event_on_the_outbound_socket_still_delivers_the_keypress(make_rig) -> None:
    liar = Liar(rb"Content-Type: text/event-plain\n\nEvent-Name: CHANNEL_EXECUTE_COMPLETE\n(.|\n)*"
                rb"variable_callguard_digit: 1", 120)
    rig = await make_rig(faults=Faults(rewrite=liar))
    record = await rig.play(scenario([{"at": 2.5, "press": "1"}, {"at": 30, "hangup": "caller"}]))
    assert liar.lied_at is not None
    assert record.recordings and record.recordings[0].audible_spans(30) == [(2.5, 30.0)]
    assert rig.entry(record.call_id, "consent", decision="granted", digits="1")
    assert rig.entry(record.call_id, "recording-started")
