"""How FreeSWITCH 1.10 writes ESL, for the fake server (and for tests that build streams).

Modelled on the captured byte streams in tests/adapters/freeswitch/fixtures
and on FreeSWITCH's own serializer (``switch_event_serialize``): one
``Name: value`` line per header, values URL-encoded with
``switch_url_encode`` (which leaves an existing ``%XX`` untouched, so a
caller name containing ``%0A`` reaches the client as a newline after
decoding), empty values written as ``_undef_``, and an optional body as
``Content-Length: N`` + empty line + N bytes.  ``mod_event_socket`` wraps
that in a ``text/event-plain`` frame with its own ``Content-Length``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Mapping
from email.utils import formatdate

#: ``SWITCH_URL_UNSAFE`` from switch_utils.h; bytes outside printable ASCII are encoded too.
_UNSAFE = frozenset(b"\r\n #%&+:;<=>?@[\\]^`{|}\"")
_HEX = b"0123456789ABCDEF"

DISCONNECT_BODY = b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"


def url_encode(value: str | bytes) -> str:
    """``switch_url_encode``: unsafe and non-ASCII bytes as %XX; a valid %XX is kept as is."""
    raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    out = bytearray()
    i, n = 0, len(raw)
    while i < n:
        b = raw[i]
        if b == 0x25 and i + 2 < n and raw[i + 1] in _HEX and raw[i + 2] in _HEX:
            out += raw[i:i + 3]
            i += 3
            continue
        if b in _UNSAFE or b < 0x20 or b > 0x7E:
            out += b"%" + bytes((_HEX[b >> 4], _HEX[b & 15]))
        else:
            out.append(b)
        i += 1
    return out.decode("ascii")


def serialize_event(headers: Iterable[tuple[str, str]], body: bytes | str = b"") -> bytes:
    """An event as ``switch_event_serialize(..., encode=SWITCH_TRUE)`` writes it."""
    lines = []
    for name, value in headers:
        encoded = url_encode(value)
        lines.append(f"{name}: {encoded or '_undef_'}\n")
    data = "".join(lines).encode("ascii")
    payload = body.encode("utf-8") if isinstance(body, str) else body
    if payload:
        return data + f"Content-Length: {len(payload)}\n\n".encode() + payload
    return data + b"\n"


def event_frame(headers: Iterable[tuple[str, str]], body: bytes | str = b"") -> bytes:
    """A ``text/event-plain`` frame as mod_event_socket sends it."""
    serialized = serialize_event(headers, body)
    return f"Content-Length: {len(serialized)}\nContent-Type: text/event-plain\n\n".encode() + serialized


def reply_frame(text: str, extra: Mapping[str, str] | None = None) -> bytes:
    """``command/reply`` (header-only frame; Reply-Text as sent, not encoded)."""
    head = "Content-Type: command/reply\n" + f"Reply-Text: {text}\n"
    for name, value in (extra or {}).items():
        head += f"{name}: {value}\n"
    return (head + "\n").encode("utf-8", "surrogateescape")


def api_frame(body: str | bytes) -> bytes:
    payload = body.encode("utf-8", "surrogateescape") if isinstance(body, str) else body
    return f"Content-Type: api/response\nContent-Length: {len(payload)}\n\n".encode() + payload


def disconnect_frame(uuid: str = "", linger: bool = False, channel_name: str = "") -> bytes:
    """``text/disconnect-notice``: after ``exit`` (with the goodbye body) or at hangup when lingering."""
    head = "Content-Type: text/disconnect-notice\n"
    if uuid:
        head += f"Controlled-Session-UUID: {uuid}\n"
    if linger:
        head += "Content-Disposition: linger\n"
        if channel_name:
            head += f"Channel-Name: {channel_name}\n"
        head += "Linger-Time: -1\nContent-Length: 0\n\n"
        return head.encode()
    head += f"Content-Disposition: disconnect\nContent-Length: {len(DISCONNECT_BODY)}\n\n"
    return head.encode() + DISCONNECT_BODY


AUTH_REQUEST = b"Content-Type: auth/request\n\n"
RUDE_REJECTION = b"Content-Type: text/rude-rejection\nContent-Length: 24\n\nAccess Denied, go away.\n"


class EventClock:
    """The core headers every event starts with (``switch_event_prep_for_delivery``)."""

    def __init__(self, core_uuid: str, hostname: str = "fake-fs", clock=time.time):
        self.core_uuid = core_uuid
        self.hostname = hostname
        self.clock = clock
        self._seq = itertools.count(1000)

    def headers(self, name: str, subclass: str = "", calling: tuple[str, str, int] = ("switch_core_session.c",
                                                                                      "fake", 1)) -> list[tuple[str, str]]:
        now = self.clock()
        core = [
            ("Core-UUID", self.core_uuid),
            ("FreeSWITCH-Hostname", self.hostname),
            ("FreeSWITCH-Switchname", self.hostname),
            ("FreeSWITCH-IPv4", "192.0.2.2"),
            ("FreeSWITCH-IPv6", "::1"),
            ("Event-Date-Local", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))),
            ("Event-Date-GMT", formatdate(now, usegmt=True)),
            ("Event-Date-Timestamp", str(int(now * 1_000_000))),
            ("Event-Calling-File", calling[0]),
            ("Event-Calling-Function", calling[1]),
            ("Event-Calling-Line-Number", str(calling[2])),
            ("Event-Sequence", str(next(self._seq))),
        ]
        if subclass:
            # As captured: a CUSTOM event starts with its subclass and names itself after the core headers.
            return [("Event-Subclass", subclass), *core, ("Event-Name", name)]
        return [("Event-Name", name), *core]


__all__ = [
    "AUTH_REQUEST",
    "DISCONNECT_BODY",
    "EventClock",
    "RUDE_REJECTION",
    "api_frame",
    "disconnect_frame",
    "event_frame",
    "reply_frame",
    "serialize_event",
    "url_encode",
]
