"""The server side of AMI text, for :class:`~callguard.testing.FakeAsterisk`.

Deliberately independent of the client parser in
``callguard.adapters.asterisk.wire``: the fake formats and reads the wire
the way Asterisk does, so a bug in our client cannot be mirrored (and
hidden) by the fake.

* :func:`uri_encode` is Asterisk's ``ast_uri_encode`` with ``ast_uri_http``
  flags (``Env`` of ``AsyncAGIStart``, ``Result`` of ``AsyncAGIExec``):
  alphanumerics and ``-_.!~*'()`` stay, everything else is ``%XX`` of its
  UTF-8 bytes (``José`` -> ``Jos%C3%A9``, ``\\n`` -> ``%0A``).
* :func:`c_escape` is ``ast_escape_c``: how Asterisk writes values that may
  contain control characters into a header (``\\r`` -> ``\\\\r``).
* :func:`message` builds one AMI message; values may be ``bytes`` so a
  test can put invalid UTF-8 on the wire exactly.
* :class:`ActionReader` splits what a client sends into actions.
* Splitters cut a write into pieces, to deliver a message across reads.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()")
_C_ESCAPES = {7: b"\\a", 8: b"\\b", 12: b"\\f", 10: b"\\n", 13: b"\\r", 9: b"\\t", 11: b"\\v",
              92: b"\\\\", 39: b"\\'", 34: b'\\"', 63: b"\\?"}

Value = str | bytes | int | float


def _bytes(value: Value) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, float):
        return f"{value:.6f}".encode()
    return str(value).encode("utf-8", "surrogateescape")


def uri_encode(value: Value) -> str:
    """``ast_uri_encode(..., ast_uri_http)``."""
    return "".join(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in _bytes(value))


def c_escape(value: Value) -> bytes:
    """``ast_escape_c``: control characters and quotes as C escapes."""
    raw = _bytes(value)
    if not any(b in _C_ESCAPES for b in raw):
        return raw
    return b"".join(_C_ESCAPES.get(b, bytes((b,))) for b in raw)


def message(headers: Iterable[tuple[str, Value]]) -> bytes:
    """``Key: value\\r\\n`` lines plus the blank line that ends a message."""
    return b"".join(k.encode() + b": " + _bytes(v) + b"\r\n" for k, v in headers) + b"\r\n"


class ActionReader:
    """Incremental reader of client actions (header dicts)."""

    def __init__(self, limit: int = 1 << 20):
        self._buf = b""
        self._limit = limit

    def feed(self, data: bytes) -> list[dict[str, str]]:
        self._buf += data
        out = []
        while True:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                break
            block, self._buf = self._buf[:end], self._buf[end + 4:]
            action: dict[str, str] = {}
            for line in block.decode("utf-8", "replace").split("\r\n"):
                key, sep, value = line.partition(":")
                if sep and key.strip():
                    # astman_get_header is case-insensitive; keep the first.
                    action.setdefault(key.strip().lower(), value.strip())
            if action:
                out.append(action)
        if len(self._buf) > self._limit:
            raise ValueError("client sent an oversized action")
        return out


Splitter = Callable[[bytes], Sequence[bytes]]


def split_every(n: int) -> Splitter:
    """Cut every write into ``n``-byte pieces (``1``: one byte per write)."""
    return lambda data: [data[i:i + n] for i in range(0, len(data), n)] or [data]


def split_inside_utf8() -> Splitter:
    """Cut every write inside each multi-byte UTF-8 character."""
    def split(data: bytes) -> list[bytes]:
        cuts = [i + 1 for i, b in enumerate(data) if b >= 0xC0 and i + 1 < len(data)]
        points = [0] + cuts + [len(data)]
        return [data[a:b] for a, b in zip(points, points[1:]) if b > a]
    return split


def split_at(offsets: Sequence[int]) -> Splitter:
    """Cut every write at these byte offsets (those beyond its end are ignored)."""
    def split(data: bytes) -> list[bytes]:
        points = [0] + sorted({o for o in offsets if 0 < o < len(data)}) + [len(data)]
        return [data[a:b] for a, b in zip(points, points[1:])]
    return split


__all__ = ["ActionReader", "Splitter", "c_escape", "message", "split_at", "split_every",
           "split_inside_utf8", "uri_encode"]
