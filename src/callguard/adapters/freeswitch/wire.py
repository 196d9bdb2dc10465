"""FreeSWITCH event socket (ESL) framing, sans-IO: bytes in, frames out.

Why our own parser instead of greenswitch's ``ESLProtocol``/``ESLEvent``
(greenswitch 0.0.19, read and tested in tests/adapters/freeswitch):

* **Header injection.** ``ESLEvent.parse_data`` URL-decodes the whole block
  *before* splitting it into lines, so a caller name that FreeSWITCH sent
  as ``x%0AEvent-Name%3A%20CUSTOM`` becomes a second ``Event-Name`` line
  and overrides the real one.  We split first and decode each value alone.
* **Bytes, not lines.** greenswitch decodes every ``readline()`` and every
  body strictly as UTF-8; one invalid byte in an ``api/response`` body
  raises inside its reader greenlet and the connection silently dies, and
  a server closing mid-body spins its ``_read_socket`` loop forever.  We
  work on bytes, decode values with ``errors="replace"`` and report a
  truncated frame at EOF as :class:`TruncatedFrame`.
* **Speed.** We keep an event's header block as one string and look up the
  handful of headers callguard needs in place; when every header is
  wanted, one pass of the optional C extension (``_cwire.esl_headers``,
  see :mod:`callguard.adapters.speedups`) splits and URL-decodes the whole
  block, or, in pure Python, one ``bytes.translate``, one ``a2b_qp`` and one
  split do (see :meth:`Headers.decoded`).  ``bench/esl_ingest.py``
  measures both against greenswitch on the same stream.

The grammar, as FreeSWITCH writes it (``mod_event_socket.c``, LF line ends):

* A frame is a block of header lines ended by an empty line, then exactly
  ``Content-Length`` bytes of body when that header is present; empty lines
  between frames are skipped.  Every frame FreeSWITCH sends names its
  ``Content-Type``; a block without one means the stream is out of step
  (a wrong length before it): :class:`ESLProtocolError`.
* A header line is ``name:value``: the name is what precedes the *first*
  ``:`` and must not be empty, the value is the rest without the one space
  FreeSWITCH writes after the colon (``"%s: %s\n"``); a line without a
  colon is no header.  When a name repeats, the first occurrence wins
  (libesl's ``esl_event_get_header`` returns the first).  Values are
  URL-decoded when read (libesl's ``esl_recv_event`` decodes every value,
  outer headers included), exactly like ``urllib.parse.unquote``.
* A ``text/event-plain`` body is one serialized event
  (``switch_event_serialize`` in ``switch_event.c``): URL-encoded header
  lines, an empty line, and, when the event has a body of its own
  (``BACKGROUND_JOB``, ``MESSAGE``, CUSTOM events with a body), a last
  header ``Content-Length: N`` and N bytes after the empty line.  Since the
  encoder leaves no raw LF in a value, the event delimits itself: when the
  frame's ``Content-Length`` disagrees with the event it carries (a length
  that lies), the event's own extent wins, the stream is back in step at
  once and :attr:`ESLParser.resyncs` counts it.  An event that does not
  start like one (``Event-Name``/``Event-Subclass``) is not trusted for
  that: :class:`ESLProtocolError`.
* Values are URL-encoded by FreeSWITCH (``switch_url_encode``, which leaves
  an existing ``%XX`` alone), so a decoded value may contain any character,
  including newlines: never splice one into a command.

Any other lying length can only be noticed by time: a frame that is still
incomplete :data:`FRAME_STALL_S` after it began (FreeSWITCH writes a frame
in two ``send()`` calls back to back).  :class:`StallWatch` says when; the
connection code closes and reconnects.

``tests/adapters/freeswitch/esl_reference.py`` implements this grammar line
by line; property tests hold the quick paths here to it.

Commands we send are built by :func:`encode_command` and friends, which
refuse CR, LF and NUL anywhere (:class:`UnsafeCommand`): a single LF would
end the command early and let the rest be read as another one.
"""

from __future__ import annotations

import binascii
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

from callguard.adapters import speedups

log = logging.getLogger("callguard.freeswitch.wire")

#: Bodies larger than this are a protocol error (FreeSWITCH's own event
#: bodies are a few KiB; ``show calls`` on a busy box a few MiB).
MAX_BODY = 64 * 1024 * 1024
#: A header block this long without its empty line is not ESL.
MAX_HEADER_BLOCK = 4 * 1024 * 1024
#: A frame still incomplete this long after its first byte came is stuck
#: behind a wrong length (or a stuck peer): reconnect (issue: within 0.5 s).
FRAME_STALL_S = 0.25

_TEXT_EVENT_PLAIN = "text/event-plain"
_HEADER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
#: The header block mod_event_socket writes before every plain event (``listener_run``).
_EVENT_FRAME_HEAD = re.compile(rb"Content-Length: ([0-9]{1,9})\nContent-Type: text/event-plain")
#: The end of a header block.  (``bytes.find`` with a two-byte needle crawls through text with an LF
#: every few dozen bytes; the regex engine's literal scan is several times faster there.)
_BLANK_LINE = re.compile(rb"\n\n")
#: What ``switch_event_serialize`` writes first: ``Event-Name`` (or, for CUSTOM, ``Event-Subclass``).
_EVENT_START = (b"Event-Name: ", b"Event-Subclass: ")
#: Every byte except those that decide whether a header block has the simple layout (:func:`_layout`).
_LAYOUT_NOISE = bytes(b for b in range(256) if b not in b": \n%=\r\x00")
_LAYOUTS: dict[int, bytes] = {}
#: For a block with the simple layout: colon and LF become NUL (spaces are deleted), so the block
#: is one NUL-separated run of names and values; ``%`` becomes quoted-printable's ``=`` (see
#: :func:`_unquote_joined`) so binascii can URL-decode it all at once.
_FLAT_RAW = bytes.maketrans(b":\n", b"\x00\x00")
_FLAT_DECODE = bytes.maketrans(b":\n%", b"\x00\x00=")


class ESLProtocolError(ValueError):
    """The peer sent something that is not ESL (bad length, runaway header block)."""


class UnsafeCommand(ValueError):
    """A command part contained CR, LF or NUL (or a malformed header name)."""


def _unquote_joined(joined: str) -> str | None:
    """URL-decode ``joined`` in C, or None where that would differ from ``unquote``.

    ``%XX`` is exactly quoted-printable's ``=XX``, which :func:`binascii.a2b_qp`
    decodes in C.  The two differ on a literal ``=``, on ``%%`` (``==``
    is one ``=`` to quoted-printable), on a ``%`` before a line end or at
    the very end (a soft line break), and on a ``%`` that starts no escape
    (quoted-printable keeps it as ``=``): in those cases the answer is None.
    Without the first three, every ``=`` left in the output comes from a
    ``%3D`` or from such a ``%``, so counting them tells.  Raw text
    decodes to complete UTF-8 sequences, so decoding the bytes in one piece
    cannot join an escaped byte with a raw character differently.
    """
    if ("=" in joined or "%%" in joined or "\n" in joined or "\r" in joined or joined[-1] == "%"
            or joined[-2:-1] == "%"):
        return None
    decoded = binascii.a2b_qp(joined.replace("%", "=").encode("utf-8", "surrogatepass"))
    if decoded.count(b"=") != joined.count("%3D") + joined.count("%3d"):
        return None
    return decoded.decode("utf-8", "replace")


def decode_value(raw: str) -> str:
    """URL-decode one header value (UTF-8, invalid sequences replaced).

    Same result as ``urllib.parse.unquote(raw, errors="replace")``, several
    times faster on FreeSWITCH's heavily escaped values (see
    :func:`_unquote_joined`).
    """
    if "%" not in raw:
        return raw
    decoded = _unquote_joined(raw)
    return unquote(raw, errors="replace") if decoded is None else decoded


def _layout(data: bytes) -> tuple[int, int]:
    """``(lines, percents)`` when every line of ``data`` is exactly ``name: value``, else ``(0, 0)``.

    "Exactly": ASCII, one colon per line, a space after it and nowhere
    else, no ``%`` in a name, no ``=``, CR or NUL anywhere.  FreeSWITCH's
    events always are (their values are URL-encoded: no raw colon, space,
    LF, ``=`` or NUL is left in them), and for those blocks the quick paths
    of :class:`Headers` may treat every colon, space and LF as a separator,
    with one C call per step.
    """
    if not data.isascii():
        return 0, 0
    return _skeleton_layout(data.translate(None, _LAYOUT_NOISE))


def _skeleton_layout(kept: bytes) -> tuple[int, int]:
    """:func:`_layout` from the block's skeleton (the block without the bytes in ``_LAYOUT_NOISE``).

    The skeleton is ``": \n: \n...: "`` exactly when every line is one
    ``name: value``; a ``%`` right before a colon there is a ``%`` in a name.
    """
    percents = kept.count(b"%")
    if percents:
        if b"%:" in kept:
            return 0, 0
        kept = kept.replace(b"%", b"")
    lines = kept.count(b"\n") + 1
    pattern = _LAYOUTS.get(lines)
    if pattern is None:
        pattern = b": \n" * (lines - 1) + b": "
        if lines < 4096:
            _LAYOUTS[lines] = pattern
    return (lines, percents) if kept == pattern else (0, 0)


def _split_line(line: str) -> tuple[str, str] | None:
    """One header line by the grammar (the plain path); None for a line that is no header."""
    name, sep, value = line.partition(":")
    if not sep or not name:
        return None
    return name, value[1:] if value.startswith(" ") else value


class Headers(Mapping[str, str]):
    """One ``Name: value`` block, values URL-decoded on access.

    The block is kept as the text FreeSWITCH sent; :meth:`get` finds a
    header in place, so reading five headers of a 90-header event costs
    five string searches and no dict.  Iterating builds the full dict once
    and caches it; both ways give the same answer for every block (the
    grammar in the module docstring; first occurrence wins).
    """

    __slots__ = ("_text", "_data", "_dict", "_layout")

    def __init__(self, text: str | None, data: bytes | None = None, layout: tuple[int, int] | None = None):
        #: the block as text; None until first needed when built from bytes (the C decode never needs it)
        self._text = text
        self._data = data  #: the bytes ``text`` was decoded from, when known
        self._dict: dict[str, str] | None = None
        self._layout = layout  #: :func:`_layout` of the block, when the framer already knows it

    @classmethod
    def from_bytes(cls, block: bytes, layout: tuple[int, int] | None = None) -> "Headers":
        return cls(None, block, layout)

    @property
    def raw_text(self) -> str:
        """The block as received (UTF-8 decoded, values still URL-encoded)."""
        text = self._text
        if text is None:
            text = self._text = self._data.decode("utf-8", "replace")  # type: ignore[union-attr]
        return text

    def raw(self, name: str) -> str | None:
        """The header's value exactly as sent (still URL-encoded)."""
        if self._dict is not None:
            return self._dict.get(name)
        if not name or ":" in name or "\n" in name:
            return None  # no line can name it: the name ends at the first colon
        text = self._text
        if text is None:
            text = self.raw_text
        key = name + ":"
        if text.startswith(key):
            start = len(key)
        else:
            at = text.find("\n" + key)
            if at < 0:
                return None
            start = at + len(key) + 1
        end = text.find("\n", start)
        value = text[start:] if end < 0 else text[start:end]
        return value[1:] if value.startswith(" ") else value

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        value = self.raw(name)
        return default if value is None else decode_value(value)

    def __getitem__(self, name: str) -> str:
        value = self.raw(name)
        if value is None:
            raise KeyError(name)
        return decode_value(value)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.raw(name) is not None

    def _bytes(self) -> bytes:
        data = self._data
        return self._text.encode("utf-8", "surrogatepass") if data is None else data  # type: ignore[union-attr]

    def _full(self) -> dict[str, str]:
        """Every header, values still encoded (first occurrence wins)."""
        if self._dict is None:
            cwire = speedups.cwire
            if cwire is not None and self._data is not None:
                self._dict = cwire.esl_headers(self._data, False)
                return self._dict
            out: dict[str, str] | None = None
            data = self._bytes()
            if self._layout is None:
                self._layout = _layout(data)
            lines = self._layout[0]
            if lines:
                out = _pairs(data.translate(_FLAT_RAW, b" ").decode("ascii").split("\x00"), lines)
            if out is None:
                out = {}
                for line in self.raw_text.split("\n"):
                    pair = _split_line(line)
                    if pair is not None and pair[0] not in out:
                        out[pair[0]] = pair[1]
            self._dict = out
        return self._dict

    def __iter__(self) -> Iterator[str]:
        return iter(self._full())

    def __len__(self) -> int:
        return len(self._full())

    def decoded(self) -> dict[str, str]:
        """Every header, URL-decoded (what greenswitch's ``headers`` holds, minus its bugs).

        The quick path, for a block :func:`_layout` vouches for: one
        ``bytes.translate`` turns the block into a NUL-separated run of
        names and values in quoted-printable form, :func:`binascii.a2b_qp`
        decodes it all, one split cuts it.  It equals decoding value by
        value when every ``%`` starts a valid escape, which is when each
        ``%`` shortened the text by exactly two bytes (with no ``=``, CR or
        ``%%``-made ``==`` possible, any other ``%`` shortens it by at most
        one); NUL is not a hex digit, so no escape spans two fields, and a
        decoded ``%00`` shows up as a wrong field count.  With the C
        extension one C pass does it all (``_cwire.esl_headers``).
        """
        cwire = speedups.cwire
        if cwire is not None and self._data is not None:
            return cwire.esl_headers(self._data, True)
        data = self._bytes()
        if self._layout is None:
            self._layout = _layout(data)
        lines, percents = self._layout
        if lines:
            flat = data.translate(_FLAT_DECODE, b" ")
            if percents:
                size = len(flat)
                flat = binascii.a2b_qp(flat)
                if len(flat) != size - 2 * percents:
                    lines = 0  # some % started no escape: value by value
            if lines:
                parts = flat.decode("utf-8", "replace").split("\x00")
                if len(parts) == 2 * lines:
                    out = _pairs(parts, lines)
                    if out is not None:
                        return out
        return {name: decode_value(value) for name, value in self._full().items()}

    def __repr__(self) -> str:
        return f"Headers({self.decoded()!r})"


def _find_blank(data: bytes | bytearray, start: int) -> int:
    """Where the first empty line (``\\n\\n``) at or after ``start`` begins, or -1."""
    cwire = speedups.cwire
    if cwire is not None:
        return cwire.find_blank(data, start, len(data))
    found = _BLANK_LINE.search(data, start)
    return -1 if found is None else found.start()


def _pairs(parts: list[str], lines: int) -> dict[str, str] | None:
    """``name0, value0, name1, ...`` as a dict, the first occurrence winning; None if a name is empty."""
    pairs = iter(parts)
    out = dict(zip(pairs, pairs))
    if len(out) != lines:  # a repeated name: dict kept the first's place but the last value
        out.update(zip(parts[-2::-2], parts[::-2]))
    return None if "" in out else out


@dataclass(slots=True)
class ESLEvent:
    """A FreeSWITCH event: headers plus an optional body of its own."""

    headers: Headers
    body: bytes = b""

    @property
    def name(self) -> str:
        return self.headers.get("Event-Name") or ""

    @property
    def subclass(self) -> str:
        return self.headers.get("Event-Subclass") or ""

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)

    @property
    def timestamp(self) -> float | None:
        """``Event-Date-Timestamp`` (microseconds since the epoch) in seconds."""
        raw = self.headers.raw("Event-Date-Timestamp")
        if raw and raw.isascii() and raw.isdigit():
            return int(raw) / 1_000_000
        return None

    @property
    def text(self) -> str:
        """The body as text (UTF-8, invalid sequences replaced)."""
        return self.body.decode("utf-8", "replace")


def _length(value: str, what: str) -> int:
    """A Content-Length value: ASCII digits (spaces around allowed), at most :data:`MAX_BODY`."""
    digits = value.strip()
    if not (digits.isascii() and digits.isdigit()) or int(digits) > MAX_BODY:
        raise ESLProtocolError(f"{what} Content-Length is not a length: {value[:40]!r}")
    return int(digits)


def _inner_length(block: bytes) -> int:
    """The serialized event's own body length: its last header, when that is Content-Length."""
    last = block.rfind(b"\n") + 1
    if not block.startswith(b"Content-Length:", last):
        return 0
    return _length(block[last + 15:].decode("utf-8", "replace"), "event body")


def parse_event(body: bytes) -> ESLEvent:
    """Parse a ``text/event-plain`` body (which may carry a body of its own)."""
    end = body.find(b"\n\n")
    if end < 0:
        return ESLEvent(Headers.from_bytes(body.rstrip(b"\n")))
    block = body[:end]
    return ESLEvent(Headers.from_bytes(block), body[end + 2:end + 2 + _inner_length(block)])


@dataclass(slots=True)
class Frame:
    """One top-level ESL message.

    ``headers`` are the frame's own headers (``Content-Type``,
    ``Reply-Text``...; for the outbound ``connect`` reply every channel
    variable).  ``body`` is the raw body bytes.  ``event`` parses a
    ``text/event-plain`` body on first access.
    """

    headers: Headers
    body: bytes = b""
    _event: ESLEvent | None = field(default=None, repr=False)
    #: the reply text, filled in for greenswitch's ``send()`` callers
    data: str = field(default="", repr=False)
    #: where the event's header block ends in ``body`` (found while framing), or -1
    _split: int = field(default=-1, repr=False)
    #: :func:`_layout` of that block, when framing learnt it on the way
    _layout: tuple[int, int] | None = field(default=None, repr=False)

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type") or ""

    @property
    def reply_text(self) -> str:
        return self.headers.get("Reply-Text") or ""

    @property
    def is_event(self) -> bool:
        return self.content_type == _TEXT_EVENT_PLAIN

    @property
    def event(self) -> ESLEvent:
        if self._event is None:
            split = self._split
            if split >= 0:  # the framer found the event (so this is an event frame)
                body = self.body
                self._event = ESLEvent(Headers.from_bytes(body[:split], self._layout), body[split + 2:])
            elif self.is_event:
                self._event = parse_event(self.body)
            else:
                raise ValueError(f"a {self.content_type or 'header-only'} frame is not an event")
        return self._event

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def ok(self) -> bool:
        """A command/reply or api/response that FreeSWITCH reports as success."""
        text = self.text if self.content_type == "api/response" else self.reply_text
        return text.startswith("+OK")


@dataclass(frozen=True, slots=True)
class TruncatedFrame:
    """What was left when the peer closed in the middle of a frame."""

    received: int  #: bytes of the partial frame we had
    expected: int | None  #: its Content-Length + header size, when known
    content_type: str

    def __str__(self) -> str:
        what = self.content_type or "frame"
        if self.expected is None:
            return f"connection closed inside the headers of a {what} ({self.received} bytes received)"
        return f"connection closed inside a {what}: {self.received} of {self.expected} bytes received"


def _could_start_an_event(prefix: bytes) -> bool:
    """``prefix`` is, or may still become, the start of a serialized event."""
    return any(prefix[:len(start)] == start[:len(prefix)] for start in _EVENT_START)


class ESLParser:
    """Incremental ESL deframer.

    ``feed(data)`` returns the frames completed by ``data``; split points
    may fall anywhere, including inside a UTF-8 sequence (values are only
    decoded once a whole header block is in).  ``close()`` reports a
    partial frame the peer left behind.  ``frames_begun`` and
    :attr:`in_frame` let :class:`StallWatch` notice a frame that never ends.
    """

    __slots__ = ("_buf", "_scan", "_headers", "_need", "_block_len", "_event_plain", "_event_need", "_event_split",
                 "frames_begun", "resyncs")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._scan = 0  #: where to resume looking for the end of a header block
        self._headers: Headers | None = None  #: header block of a frame waiting for its body
        self._need = 0  #: the body length that frame announced
        self._block_len = 0
        self._event_plain = False  #: that frame carries an event (framed by the event itself)
        self._event_need = -1  #: the event's own length, once its header block is in
        self._event_split = 0  #: the length of that header block
        self.frames_begun = 0
        #: event frames whose Content-Length disagreed with the event they carried
        self.resyncs = 0

    def feed(self, data: bytes) -> list[Frame]:
        buf = self._buf
        buf += data
        frames: list[Frame] = []
        pos = 0
        size = len(buf)
        while True:
            if self._headers is not None:
                frame = self._take_event(buf, pos, size) if self._event_plain else self._take_body(buf, pos, size)
                if frame is None:
                    break
                frames.append(frame)
                pos += len(frame.body)
                self._scan = pos
                continue
            # Frames may be separated by stray LFs (after an api/response body).
            while pos < size and buf[pos] == 10:
                pos += 1
            if pos >= size:
                self._scan = pos
                break
            if self._scan <= pos:
                self.frames_begun += 1
            end = buf.find(b"\n\n", max(pos, self._scan - 1))
            if end < 0:
                if size - pos > MAX_HEADER_BLOCK:
                    raise ESLProtocolError(f"no end of header block after {size - pos} bytes")
                self._scan = size
                break
            block = bytes(buf[pos:end])
            headers = Headers.from_bytes(block)
            self._block_len = end + 2 - pos
            pos = end + 2
            self._scan = pos
            usual = _EVENT_FRAME_HEAD.fullmatch(block)
            if usual is not None:  # what mod_event_socket writes before every event: no lookups needed
                self._headers = headers
                need = int(usual.group(1))  # 1-9 ASCII digits
                if need > MAX_BODY:
                    _length(usual.group(1).decode("ascii"), "frame")  # raises, with the message
                self._need = need
                self._event_plain = True
                continue
            kind = headers.raw("Content-Type")
            if kind is None:
                raise ESLProtocolError("a frame without Content-Type: the stream is out of step (a wrong "
                                       f"Content-Length before it?): {headers.raw_text[:80]!r}")
            length = headers.raw("Content-Length")
            if length is None:
                frames.append(Frame(headers))
                continue
            self._headers = headers
            self._need = _length(length, "frame")
            self._event_plain = kind == _TEXT_EVENT_PLAIN
        if pos:
            del buf[:pos]
            self._scan = max(0, self._scan - pos)
        return frames

    def _take_body(self, buf: bytearray, pos: int, size: int) -> Frame | None:
        if size - pos < self._need:
            return None
        frame = Frame(self._headers, bytes(buf[pos:pos + self._need]))  # type: ignore[arg-type]
        self._headers = None
        return frame

    def _take_event(self, buf: bytearray, pos: int, size: int) -> Frame | None:
        """An event frame, as long as the event it carries (see the module docstring)."""
        claimed = self._need
        if self._event_need < 0:
            if size - pos >= claimed:
                frame = self._whole_event(bytes(buf[pos:pos + claimed]))
                if frame is not None:
                    return frame
            end = _find_blank(buf, max(pos, self._scan - 1))
            if end < 0:
                if size - pos > MAX_HEADER_BLOCK:
                    raise ESLProtocolError(f"no end of an event's header block after {size - pos} bytes")
                if size - pos >= claimed and not _could_start_an_event(bytes(buf[pos:pos + 16])):
                    self._check_start(b"")
                self._scan = size
                return None
            last = buf.rfind(b"\n", pos, end) + 1 or pos
            self._event_split = end - pos
            self._event_need = end + 2 - pos + _inner_length(bytes(buf[last:end]))
        need = self._event_need
        if size - pos < need:
            return None
        if need != claimed:
            self._check_start(bytes(buf[pos:pos + 16]))
            self.resyncs += 1
            log.warning("FreeSWITCH sent an event frame with Content-Length %d around an event of %d bytes; "
                        "framed by the event, back in step", claimed, need)
        frame = Frame(self._headers, bytes(buf[pos:pos + need]), _split=self._event_split)  # type: ignore[arg-type]
        self._headers = None
        self._event_need = -1
        return frame

    def _whole_event(self, body: bytes) -> Frame | None:
        """The usual case in one pass: ``body`` is one event, no body of its own, as long as claimed.

        Its skeleton (see :func:`_skeleton_layout`) has no two line ends in a
        row before its own end exactly when no line before the end is empty,
        i.e. the event's header block ends where the frame ends; the same
        skeleton tells :meth:`Headers.decoded` the block's layout.  An event
        whose last header is ``Content-Length`` has a body of its own after
        the block (``switch_event_serialize``): not this case, even when the
        frame's length (a lie) ends at the block.
        """
        if not body.endswith(b"\n\n") or body.startswith(b"Content-Length:", body.rfind(b"\n", 0, -2) + 1):
            return None
        cwire = speedups.cwire
        if cwire is not None:  # the C decode needs no layout, only where the block ends
            if cwire.find_blank(body, 0, len(body)) != len(body) - 2:
                return None
            frame = Frame(self._headers, body, _split=len(body) - 2)  # type: ignore[arg-type]
            self._headers = None
            return frame
        kept = body.translate(None, _LAYOUT_NOISE)
        if kept.find(b"\n\n") != len(kept) - 2:
            return None
        layout = _skeleton_layout(kept[:-2]) if body.isascii() else (0, 0)
        frame = Frame(self._headers, body, _split=len(body) - 2, _layout=layout)  # type: ignore[arg-type]
        self._headers = None
        return frame

    def _check_start(self, start: bytes) -> None:
        if not start.startswith(_EVENT_START):
            raise ESLProtocolError(f"an event frame's Content-Length ({self._need}) does not match its body, "
                                   f"which does not start like an event either: the stream is out of step")

    @property
    def pending(self) -> int:
        """Bytes buffered towards the next frame."""
        return len(self._buf)

    @property
    def in_frame(self) -> bool:
        """A frame has begun and is not complete (stray LFs between frames do not count)."""
        return self._headers is not None or bool(self._buf)  # feed() never leaves stray LFs buffered

    def close(self) -> TruncatedFrame | None:
        """The peer closed: what (if anything) was cut off."""
        size = len(self._buf)
        rest = bytes(self._buf).strip(b"\n")
        headers = self._headers
        need = self._event_need if self._event_plain and self._event_need >= 0 else self._need
        self._buf.clear()
        self._headers = None
        self._scan = 0
        self._event_need = -1
        if headers is not None:
            return TruncatedFrame(size + self._block_len, need + self._block_len,
                                  headers.get("Content-Type") or "")
        if rest:
            ct = re.search(rb"(?m)^Content-Type: ?([^\n]*)", rest)
            return TruncatedFrame(len(rest), None, ct.group(1).decode("utf-8", "replace") if ct else "")
        return None


class StallWatch:
    """When has one frame been arriving for too long?  Sans-IO: the caller passes the time.

    A ``Content-Length`` that claims more than was sent leaves the parser
    waiting for bytes that will never come (or swallowing the frames behind
    it); only time tells.  After each :meth:`fed`, the connection code arms a
    timer for :meth:`deadline` and, when it fires, calls :meth:`check`, which
    raises :class:`ESLProtocolError` if the same frame is still incomplete.
    """

    def __init__(self, parser: ESLParser, limit: float = FRAME_STALL_S):
        self.parser = parser
        self.limit = limit
        self._frame = -1
        self._since = 0.0

    def fed(self, now: float) -> float | None:
        """Call after every feed; returns the deadline to check at, or None between frames."""
        parser = self.parser
        if not parser.in_frame:
            self._frame = -1
            return None
        if parser.frames_begun != self._frame:
            self._frame = parser.frames_begun
            self._since = now
        return self._since + self.limit

    def check(self, now: float) -> float | None:
        """Raise if the frame in progress is overdue; else the next deadline (or None)."""
        deadline = self.fed(now)
        if deadline is not None and now >= deadline:
            raise ESLProtocolError(f"a frame has been arriving for {now - self._since:.2f} s "
                                   f"({self.parser.pending} bytes so far): a Content-Length that lies or "
                                   f"a stuck peer")
        return deadline


# -- commands we send -----------------------------------------------------------


def check_safe(text: str, what: str = "command") -> str:
    """Refuse CR, LF and NUL: one LF would end an ESL command early."""
    if "\n" in text or "\r" in text or "\x00" in text:
        raise UnsafeCommand(f"{what} contains a line break or NUL and was not sent: {text[:80]!r}")
    return text


def encode_command(line: str, headers: Mapping[str, str] | None = None) -> bytes:
    """``line`` + optional ``Name: value`` headers + the empty line, as bytes."""
    parts = [check_safe(line)]
    for name, value in (headers or {}).items():
        if not _HEADER_NAME.fullmatch(name):
            raise UnsafeCommand(f"bad header name {name!r}")
        parts.append(f"{name}: {check_safe(value, name)}")
    return ("\n".join(parts) + "\n\n").encode("utf-8")


def sendmsg_execute(app: str, arg: str = "", uuid: str = "", event_lock: bool = True) -> bytes:
    """``sendmsg`` that runs a dialplan application on the channel.

    ``event-lock: true`` makes FreeSWITCH run the applications in the
    order we sent them, each to completion, as in the verified fixtures.
    """
    headers = {"call-command": "execute", "execute-app-name": app}
    if arg:
        headers["execute-app-arg"] = arg
    if event_lock:
        headers["event-lock"] = "true"
    return encode_command(f"sendmsg {uuid}".rstrip(), headers)


def api(command: str) -> bytes:
    """A blocking ``api`` command; FreeSWITCH answers with ``api/response``."""
    return encode_command(f"api {command}")


def bgapi(command: str, job_uuid: str = "") -> bytes:
    """A ``bgapi`` command; the result arrives later as a ``BACKGROUND_JOB`` event."""
    return encode_command(f"bgapi {command}", {"Job-UUID": job_uuid} if job_uuid else None)


def event_subscription(names: list[str], custom: list[str] = ()) -> bytes:  # type: ignore[assignment]
    """``event plain A B CUSTOM x::y`` with CUSTOM and its subclasses last.

    FreeSWITCH reads every word after ``CUSTOM`` as a subclass name, so an
    event name placed after it would be silently ignored (verified).
    """
    words = [n for n in names if n != "CUSTOM"]
    if custom:
        words += ["CUSTOM", *custom]
    for word in words:
        if not word or any(c.isspace() for c in word):
            raise UnsafeCommand(f"bad event name {word!r}")
    return encode_command("event plain " + " ".join(words))


__all__ = [
    "ESLEvent",
    "ESLParser",
    "ESLProtocolError",
    "FRAME_STALL_S",
    "Frame",
    "Headers",
    "StallWatch",
    "TruncatedFrame",
    "UnsafeCommand",
    "api",
    "bgapi",
    "check_safe",
    "decode_value",
    "encode_command",
    "event_subscription",
    "parse_event",
    "sendmsg_execute",
]
