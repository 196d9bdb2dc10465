"""The captured Asterisk 22 fixtures as server byte streams, plus a reference reading.

Fixture files interleave what the client sent (lines starting ``>>> ``)
with what Asterisk sent; ``### new connection`` separates TCP connections.
The reference reader decodes a *whole* stream at once with the simplest
possible rules, so it is an independent check on the incremental parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

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
    pos = 0
    banner = None
    if data.startswith(b"Asterisk Call Manager/"):
        eol = data.index(b"\r\n")
        banner = data[:eol].decode("utf-8")
        pos = eol + 2
    messages, spans = [], []
    while True:
        while data.startswith(b"\r\n", pos) and not data.startswith(b"\r\n\r\n", pos):
            pos += 2
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            break
        block = data[pos:end].decode("utf-8")
        if block:
            messages.append(dict(line.split(": ", 1) for line in block.split("\r\n")))
            spans.append((pos, end + 4))
        pos = end + 4
    return Stream(name, data, banner, messages, spans)


def all_streams() -> list[Stream]:
    return [s for path in FIXTURE_FILES for s in server_streams(path)]
