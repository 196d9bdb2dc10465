"""ESL read the plainest possible way: the oracle for the quick paths in ``adapters/freeswitch/wire.py``.

Same grammar as that module's docstring, which follows FreeSWITCH:
``mod_event_socket.c`` (frames: header lines, an empty line, ``Content-Length``
bytes of body; every frame has a ``Content-Type``), ``switch_event.c``
``switch_event_serialize`` (an event: ``"%s: %s\\n"`` per URL-encoded header,
an empty line, and its own ``Content-Length`` as the last header when it has
a body) and libesl's ``esl_recv_event`` (a header's name ends at the first
colon, values are URL-decoded, the first of a repeated name is the one
``esl_event_get_header`` returns).  Here the whole stream is read at once,
line by line, with no search tricks and no fast path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote


def header_lines(text: str) -> dict[str, str]:
    """The raw (still encoded) headers of one block; the first occurrence of a name wins."""
    out: dict[str, str] = {}
    for line in text.split("\n"):
        if ":" not in line:
            continue
        name, value = line.split(":", 1)
        if name == "" or name in out:
            continue
        if value.startswith(" "):
            value = value[1:]
        out[name] = value
    return out


def decoded(headers: dict[str, str]) -> dict[str, str]:
    return {name: unquote(value, errors="replace") for name, value in headers.items()}


def _is_length(value: str) -> bool:
    digits = value.strip()
    return digits != "" and all("0" <= c <= "9" for c in digits) and int(digits) <= 64 * 1024 * 1024


@dataclass
class Reading:
    #: (raw headers, body, event) of every complete frame; event = (raw headers, own body) for event-plain
    frames: list[tuple[dict[str, str], bytes, tuple[dict[str, str], bytes] | None]] = field(default_factory=list)
    resyncs: int = 0
    error: bool = False


def read_stream(data: bytes) -> Reading:
    out = Reading()
    pos = 0
    while True:
        while data[pos:pos + 1] == b"\n":
            pos += 1
        end = data.find(b"\n\n", pos)
        if end < 0:
            return out
        headers = header_lines(data[pos:end].decode("utf-8", "replace"))
        pos = end + 2
        if "Content-Type" not in headers:
            out.error = True
            return out
        if "Content-Length" not in headers:
            out.frames.append((headers, b"", None))
            continue
        if not _is_length(headers["Content-Length"]):
            out.error = True
            return out
        claimed = int(headers["Content-Length"])
        if headers["Content-Type"] != "text/event-plain":
            if len(data) - pos < claimed:
                return out
            out.frames.append((headers, data[pos:pos + claimed], None))
            pos += claimed
            continue
        # An event frame is as long as the event it carries.
        event_end = data.find(b"\n\n", pos)
        starts = (b"Event-Name: ", b"Event-Subclass: ")
        if event_end < 0:
            prefix = data[pos:pos + 16]
            if len(data) - pos >= claimed and not any(p.startswith(prefix) or prefix.startswith(p) for p in starts):
                out.error = True  # it cannot become an event, and the frame said it was over
            return out
        block = data[pos:event_end]
        last_line = block.split(b"\n")[-1]
        own = 0
        if last_line.startswith(b"Content-Length:"):
            value = last_line[len(b"Content-Length:"):].decode("utf-8", "replace")
            if not _is_length(value):
                out.error = True
                return out
            own = int(value)
        length = len(block) + 2 + own
        if len(data) - pos < length:
            return out
        if length != claimed:
            if not block.startswith(starts):
                out.error = True
                return out
            out.resyncs += 1
        body = data[pos:pos + length]
        event = (header_lines(block.decode("utf-8", "replace")), body[len(block) + 2:])
        out.frames.append((headers, body, event))
        pos += length
