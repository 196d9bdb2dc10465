"""A peer that stops speaking AMI: the connection is dropped, logged, re-established, and calls go on."""

from __future__ import annotations

import logging

import pytest

from callguard.adapters.asterisk.wire import MAX_MESSAGE_BYTES

from .conftest import Rig

_NOISE = bytes(b for b in range(256) if b not in b"\r\n") * 64

GARBAGE = {
    # no empty line ever: the unterminated tail crosses the limit
    "unterminated": _NOISE * (MAX_MESSAGE_BYTES // len(_NOISE) + 2),
    # empty lines, but no block is an AMI message (no Event:, no Response:)
    "blocks": (b"GET / HTTP/1.1\r\nHost: pbx\r\n\r\n" + _NOISE[:200] + b"\r\n\r\n") * 5000,
    # one complete message over the limit, written in one go
    "oversized": b"Event: UserEvent\r\nUserEvent: x\r\nData: " + b"a" * MAX_MESSAGE_BYTES + b"\r\n\r\n",
}


@pytest.mark.parametrize("kind", list(GARBAGE))
async def test_garbage_drops_the_connection_with_a_clear_log_line_and_it_comes_back(rig: Rig, kind, caplog):
    await rig.start_listener()
    logins, resyncs = rig.pbx.logins, rig.listener.resyncs
    with caplog.at_level(logging.INFO, logger="callguard.asterisk"):
        rig.pbx.send_raw(GARBAGE[kind])
        await rig.wait_for(lambda: rig.pbx.logins > logins and rig.listener.resyncs > resyncs, 15,
                           "reconnect and resync")
    dropped = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(dropped) == 1 and "AMI connection to 127.0.0.1:" in dropped[0], dropped
    assert "reconnecting" in dropped[0] and "manager interface" in dropped[0]
    assert "not speaking AMI" in dropped[0]
    # The new connection works: a call is offered, recorded and paused as usual.
    call = rig.pbx.place_call("+14155550123", "José Cust")
    await call.answer_prompt("1")
    await rig.wait_kind(call.linkedid, "recording-started")
    await call.wait_agi_left()
    await call.hotkey("pause")
    await rig.wait_kind(call.linkedid, "recording-muted")
    await call.hangup()
    await rig.settle(call)
