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
* **Speed.** greenswitch builds a dict of every header of every event
  (plus one ``readline`` per header line).  We keep an event's header
  block as one string and look up the handful of headers callguard needs
  in place; the dict is built only if someone iterates the headers.
  ``bench/esl_ingest.py`` measures the difference on the same stream.

Wire format (FreeSWITCH ``mod_event_socket``, LF line ends): a frame is a
block of ``Name: value`` lines ended by an empty line, then exactly
``Content-Length`` bytes of body when that header is present.  A
``text/event-plain`` body is itself a serialized event: URL-encoded
``Name: value`` lines, an empty line, and optionally its own
``Content-Length`` + body (``BACKGROUND_JOB``, ``MESSAGE``, CUSTOM events
with a body).  Values are URL-encoded by FreeSWITCH (``switch_url_encode``,
which leaves an existing ``%XX`` alone), so a decoded value may contain any
character, including newlines: never splice one into a command.

Commands we send are built by :func:`encode_command` and friends, which
refuse CR, LF and NUL anywhere (:class:`UnsafeCommand`): a single LF would
end the command early and let the rest be read as another one.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

#: Bodies larger than this are a protocol error (FreeSWITCH's own event
#: bodies are a few KiB; ``show calls`` on a busy box a few MiB).
MAX_BODY = 64 * 1024 * 1024
#: A header block this long without its empty line is not ESL.
MAX_HEADER_BLOCK = 4 * 1024 * 1024

_TEXT_EVENT_PLAIN = "text/event-plain"
_HEADER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


class ESLProtocolError(ValueError):
    """The peer sent something that is not ESL (bad length, runaway header block)."""


class UnsafeCommand(ValueError):
    """A command part contained CR, LF or NUL (or a malformed header name)."""


def decode_value(raw: str) -> str:
    """URL-decode one header value (UTF-8, invalid sequences replaced).

    Same result as ``urllib.parse.unquote(raw, errors="replace")``, several
    times faster on FreeSWITCH's heavily escaped values: ``%XX`` is exactly
    quoted-printable's ``=XX``, which :func:`binascii.a2b_qp` decodes in C.
    Where the two differ - a literal ``=``, a ``%`` that starts no escape
    (it survives as ``=``), a ``%`` at the end of a line (a soft line
    break to quoted-printable) - the value goes to ``unquote``.  Raw text decodes to
    complete UTF-8 sequences, so decoding the bytes in one piece cannot join
    an escaped byte with a raw character differently.
    """
    if "%" not in raw:
        return raw
    if "=" not in raw and raw[-1] != "%" and raw[-2:-1] != "%" and "\n" not in raw and "\r" not in raw:
        decoded = binascii.a2b_qp(raw.replace("%", "=").encode("utf-8"))
        if b"=" not in decoded:
            return decoded.decode("utf-8", "replace")
    return unquote(raw, errors="replace")


class Headers(Mapping[str, str]):
    """One ``Name: value`` block, values URL-decoded on access.

    The block is kept as the text FreeSWITCH sent; :meth:`get` finds a
    header in place, so reading five headers of a 90-header event costs
    five string searches and no dict.  Iterating builds the full dict once
    and caches it.  When a name repeats, the first occurrence wins in both
    ways of reading (FreeSWITCH repeats only ``Hangup-Cause``, with the same
    value; encoded values cannot forge a line).
    """

    __slots__ = ("_text", "_dict")

    def __init__(self, text: str):
        self._text = text
        self._dict: dict[str, str] | None = None

    @classmethod
    def from_bytes(cls, block: bytes) -> "Headers":
        return cls(block.decode("utf-8", "replace"))

    @property
    def raw_text(self) -> str:
        """The block as received (UTF-8 decoded, values still URL-encoded)."""
        return self._text

    def raw(self, name: str) -> str | None:
        """The header's value exactly as sent (still URL-encoded)."""
        if self._dict is not None:
            return self._dict.get(name)
        text = self._text
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

    def _full(self) -> dict[str, str]:
        if self._dict is None:
            text = self._text.rstrip("\n")
            parts = text.replace("\n", ": ").split(": ") if text else []
            if parts and len(parts) == 2 * (text.count("\n") + 1):
                # Every line is "Name: value" with one separator (event values are
                # URL-encoded, so ": " cannot occur in them): split in C.
                names, values = parts[0::2], parts[1::2]
                out = dict(zip(names, values))
                if len(out) != len(names):  # a repeated name: keep the first, as raw() does
                    out = {}
                    for name, value in zip(names, values):
                        out.setdefault(name, value)
            else:
                out = {}
                for line in text.split("\n"):
                    name, sep, value = line.partition(":")
                    if sep and name and name not in out:
                        out[name] = value[1:] if value.startswith(" ") else value
            self._dict = out
        return self._dict

    def __iter__(self) -> Iterator[str]:
        return iter(self._full())

    def __len__(self) -> int:
        return len(self._full())

    def decoded(self) -> dict[str, str]:
        """Every header, URL-decoded (what greenswitch's ``headers`` holds, minus its bugs)."""
        raw = self._full()
        values = list(raw.values())
        joined = "\x00".join(values)
        if "%" not in joined:
            return dict(raw)
        # One decode for the whole block: NUL is not a hex digit, so no escape
        # spans two values; a decoded NUL (%00) shows up as a count mismatch.
        parts = decode_value(joined).split("\x00")
        if len(parts) == len(values):
            return dict(zip(raw, parts))
        return {k: decode_value(v) for k, v in raw.items()}

    def __repr__(self) -> str:
        return f"Headers({self.decoded()!r})"


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
        if raw and raw.isdigit():
            return int(raw) / 1_000_000
        return None

    @property
    def text(self) -> str:
        """The body as text (UTF-8, invalid sequences replaced)."""
        return self.body.decode("utf-8", "replace")


def parse_event(body: bytes) -> ESLEvent:
    """Parse a ``text/event-plain`` body (which may carry a body of its own)."""
    end = body.find(b"\n\n")
    if end < 0:
        return ESLEvent(Headers.from_bytes(body.rstrip(b"\n")))
    headers = Headers.from_bytes(body[:end])
    inner = b""
    # switch_event_serialize writes an event's own Content-Length as its last
    # header, right before the empty line: look there, not through the block.
    last = body.rfind(b"\n", 0, end) + 1
    if body.startswith(b"Content-Length:", last):
        length = body[last + 15:end].strip()
        if not length.isdigit():
            raise ESLProtocolError(f"event body Content-Length is not a number: {length[:40]!r}")
        inner = body[end + 2:end + 2 + int(length)]
    return ESLEvent(headers, inner)


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
            if not self.is_event:
                raise ValueError(f"a {self.content_type or 'header-only'} frame is not an event")
            self._event = parse_event(self.body)
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


class ESLParser:
    """Incremental ESL deframer.

    ``feed(data)`` returns the frames completed by ``data``; split points
    may fall anywhere, including inside a UTF-8 sequence (values are only
    decoded once a whole header block is in).  ``close()`` reports a
    partial frame the peer left behind.
    """

    __slots__ = ("_buf", "_scan", "_headers", "_need", "_block_len")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._scan = 0  #: where to resume looking for the end of the header block
        self._headers: Headers | None = None  #: header block of a frame waiting for its body
        self._need = 0  #: body length that frame waits for
        self._block_len = 0

    def feed(self, data: bytes) -> list[Frame]:
        buf = self._buf
        buf += data
        frames: list[Frame] = []
        pos = 0
        size = len(buf)
        while True:
            if self._headers is not None:
                if size - pos < self._need:
                    break
                end = pos + self._need
                frames.append(Frame(self._headers, bytes(buf[pos:end])))
                self._headers = None
                pos = end
                self._scan = pos
                continue
            # Frames may be separated by stray LFs (after an api/response body).
            while pos < size and buf[pos] == 10:
                pos += 1
            if pos >= size:
                self._scan = pos
                break
            end = buf.find(b"\n\n", max(pos, self._scan - 1))
            if end < 0:
                if size - pos > MAX_HEADER_BLOCK:
                    raise ESLProtocolError(f"no end of header block after {size - pos} bytes")
                self._scan = size
                break
            headers = Headers.from_bytes(bytes(buf[pos:end]))
            self._block_len = end + 2 - pos
            pos = end + 2
            self._scan = pos
            length = headers.raw("Content-Length")
            if length is None:
                frames.append(Frame(headers))
                continue
            length = length.strip()
            if not length.isdigit() or int(length) > MAX_BODY:
                raise ESLProtocolError(f"bad Content-Length {length[:40]!r}")
            self._headers = headers
            self._need = int(length)
        if pos:
            del buf[:pos]
            self._scan = max(0, self._scan - pos)
        return frames

    @property
    def pending(self) -> int:
        """Bytes buffered towards the next frame."""
        return len(self._buf)

    def close(self) -> TruncatedFrame | None:
        """The peer closed: what (if anything) was cut off."""
        size = len(self._buf)
        rest = bytes(self._buf).strip(b"\n")
        headers, need = self._headers, self._need
        self._buf.clear()
        self._headers = None
        self._scan = 0
        if headers is not None:
            return TruncatedFrame(size + self._block_len, need + self._block_len,
                                  headers.get("Content-Type") or "")
        if rest:
            ct = re.search(rb"(?m)^Content-Type: ?([^\n]*)", rest)
            return TruncatedFrame(len(rest), None, ct.group(1).decode("utf-8", "replace") if ct else "")
        return None


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
    "Frame",
    "Headers",
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
