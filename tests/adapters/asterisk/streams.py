"""The captured Asterisk 22 fixtures as server byte streams, plus a reference reading.

Fixture files interleave what the client sent (lines starting ``>>> ``)
with what Asterisk sent; ``### new connection`` separates TCP connections.
The reference reader (:mod:`.ami_reference`) decodes a *whole* stream at
once with the simplest possible rules, so it is an independent check on
the incremental parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .ami_reference import read_stream

FIXTURES = Path(__file__).parent / "fixtures"
FIXTURE_FILES = sorted(FIXTURES.glob("*.ami"))
_CLIENT_LINE = re.compile(rb"(?m)^>>> [^\r\n]*\r\n")


@dataclass
class Stream:
    name: str
    data: bytes
    banner: str | None
    messages: list[dict[str, str]]
    spans: list[tuple[int, int]]  #: (start, end incl. blank line) of each message in ``data``


def server_streams(path: Path) -> list[Stream]:
    """One :class:`Stream` per connection in the fixture file."""
    out = []
    for index, chunk in enumerate(path.read_bytes().split(b"### new connection\r\n")):
        data = _CLIENT_LINE.sub(b"", chunk)
        out.append(_reference(f"{path.stem}#{index}", data))
    return out


def _reference(name: str, data: bytes) -> Stream:
    """Messages by the reference reader; spans by a plain search for each message's empty line."""
    reading = read_stream(data, wanted=None)
    pos = len(reading.banner) + 2 if reading.banner is not None else 0
    messages, spans = [], []
    while True:
        while data.startswith(b"\r\n", pos) and not data.startswith(b"\r\n\r\n", pos):
            pos += 2
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            break
        one = read_stream(data[pos:end + 4], expect_banner=False).messages
        if one:  # not a block a caller's CR/LF cut off an event (garbage)
            messages.append(one[0][0])
            spans.append((pos, end + 4))
        pos = end + 4
    assert messages == [headers for headers, _ in reading.messages], name
    return Stream(name, data, reading.banner, messages, spans)


def all_streams() -> list[Stream]:
    return [s for path in FIXTURE_FILES for s in server_streams(path)]
