"""AMI framing without I/O: bytes in, messages out; headers in, bytes out.

Why our own parser instead of panoramisk 1.4's ``AMIProtocol.data_received``:

* panoramisk decodes every TCP read on its own (``data.decode(enc,
  'ignore')``), so a UTF-8 character split across two reads is silently
  dropped (``José`` becomes ``Jos``).  We buffer *bytes* and decode one
  whole message at a time, so a split can never damage text; invalid UTF-8
  is replaced (U+FFFD), never fatal.
* On a real PBX about half of all events are ``VarSet`` and ``Newexten``
  that callguard never looks at.  We read only the ``Event:`` line of each
  message and drop unwanted ones before decoding or building a dict.
* Every action we write goes through :func:`encode_action`, which refuses
  CR or LF in any header: caller-controlled text can never smuggle a second
  header (or a second action) into the stream.
"""

from __future__ import annotations

import re
from typing import Callable, Iterable, Mapping  # noqa: F401 (Mapping: annotations)

EOL = b"\r\n"
EOM = b"\r\n\r\n"
BANNER_PREFIX = b"Asterisk Call Manager/"
_EVENT_PREFIX = b"Event: "
_EVENT_PREFIX_LEN = len(_EVENT_PREFIX)
_ACTION_ID = b"\r\nActionID: "

#: A peer that sends this much without ending a message is not speaking AMI
#: (or is hostile); we drop the connection instead of buffering forever.
MAX_MESSAGE_BYTES = 1 << 20

_HEADER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


class AmiProtocolError(ValueError):
    """The byte stream cannot be AMI (oversized message, garbage banner)."""


class UnsafeHeaderValue(ValueError):
    """A header we were about to send contains CR/LF or an invalid name.

    Raised before anything is written, so a hostile value never reaches the
    socket.
    """


class AmiMessage(dict):
    """One AMI response or event: header name -> value, as Asterisk spelled it.

    A plain ``dict`` (fast to build, cheap to keep) with a few helpers.
    Header names keep Asterisk's case (``CommandId`` in ``AsyncAGIExec``
    versus ``CommandID`` in the action); :meth:`get_ci` looks a name up
    case-insensitively when a caller cannot know the spelling.  A header
    repeated in one message (``Output:`` lines) is joined with ``\\n``.
    ``body`` holds text lines without ``Key: value`` form (legacy
    ``Response: Follows`` output).  ``received_at`` is our clock when the
    bytes arrived; :attr:`at` prefers the PBX's own ``Timestamp`` header.
    """

    #: Class-level defaults: no ``__init__`` to run per message (hot path).
    received_at: float = 0.0
    body: str = ""

    @property
    def name(self) -> str:
        """The event name, or ``""`` for a response."""
        return self.get("Event", "")

    @property
    def is_event(self) -> bool:
        return "Event" in self

    @property
    def is_response(self) -> bool:
        return "Response" in self and "Event" not in self

    @property
    def ok(self) -> bool:
        """A response that reports success (``Success``/``Follows``/``Goodbye``)."""
        return self.get("Response") in ("Success", "Follows", "Goodbye")

    @property
    def action_id(self) -> str | None:
        return self.get("ActionID")

    @property
    def message(self) -> str:
        return self.get("Message", "")

    @property
    def pbx_time(self) -> float | None:
        """The PBX clock from ``Timestamp:`` (``timestampevents = yes``), if any."""
        raw = self.get("Timestamp")
        if raw:
            try:
                return float(raw)
            except ValueError:
                return None
        return None

    @property
    def at(self) -> float:
        """When it happened: PBX time when the PBX said so, else receive time."""
        pbx = self.pbx_time
        return self.received_at if pbx is None else pbx

    def get_ci(self, key: str, default: str | None = None) -> str | None:
        """Case-insensitive header lookup (slow path; exact names are faster)."""
        value = self.get(key)
        if value is not None:
            return value
        lowered = key.lower()
        for name, value in self.items():
            if name.lower() == lowered:
                return value
        return default

    def __getattr__(self, attr: str) -> str:
        # panoramisk compatibility: ``event.channel`` / ``event.Channel``.
        if attr.startswith("__"):
            raise AttributeError(attr)
        value = self.get_ci(attr)
        return "" if value is None else value

    def __repr__(self) -> str:
        kind = self.get("Event") or self.get("Response") or "?"
        return f"<AmiMessage {kind} {dict.__repr__(self)}>"


def parse_block(block: bytes) -> AmiMessage:
    """Decode one message (bytes between two blank lines) into an :class:`AmiMessage`."""
    text = block.decode("utf-8", "replace")
    lines = text.split("\r\n")
    msg = AmiMessage()
    try:
        # Fast path: every line is "Key: value" and no key repeats.
        msg.update([line.split(": ", 1) for line in lines])  # type: ignore[misc]
        if len(msg) == len(lines):
            return msg
        msg.clear()
    except ValueError:
        msg.clear()
    body: list[str] = []
    for line in lines:
        key, sep, value = line.partition(":")
        if not sep or not key or " " in key:
            if line:
                body.append(line)
            continue
        if value.startswith(" "):
            value = value[1:]
        if key in msg:
            msg[key] = msg[key] + "\n" + value
        else:
            msg[key] = value
    msg.body = "\n".join(body)
    return msg


class AmiParser:
    """Incremental AMI framer.

    :meth:`feed` takes whatever bytes a read returned and gives back the
    complete messages, keeping any partial message (even a partial UTF-8
    sequence) for the next read.  ``wanted(name)`` decides per event name
    (as bytes) whether an event is worth parsing; the answer is cached, so
    the decision costs one dict lookup per event.  Responses, and events
    that carry an ``ActionID`` (answers to one of our list actions), are
    always parsed.
    """

    def __init__(self, wanted: Callable[[bytes], bool] | None = None, expect_banner: bool = True,
                 max_message: int = MAX_MESSAGE_BYTES):
        self._buf = b""
        self._wanted = wanted
        self._decisions: dict[bytes, bool] = {}
        self._expect_banner = expect_banner
        self._max = max_message
        self.banner: str | None = None
        self.parsed = 0
        self.skipped = 0

    def set_wanted(self, wanted: Callable[[bytes], bool] | None) -> None:
        """Change the event filter (and forget cached decisions)."""
        self._wanted = wanted
        self._decisions = {}

    def _decide(self, name: bytes) -> bool:
        keep = True if self._wanted is None else bool(self._wanted(name))
        self._decisions[name] = keep
        return keep

    def _take_banner(self, buf: bytes) -> int:
        """Consume the one-line banner; -1 while it is incomplete."""
        if len(buf) < len(BANNER_PREFIX) and BANNER_PREFIX.startswith(buf):
            return -1
        if not buf.startswith(BANNER_PREFIX):
            self._expect_banner = False  # a stream that starts mid-session
            return 0
        eol = buf.find(EOL)
        if eol < 0:
            if len(buf) > 1024:
                raise AmiProtocolError("banner line longer than 1 KiB")
            return -1
        self.banner = buf[:eol].decode("utf-8", "replace")
        self._expect_banner = False
        return eol + 2

    def feed(self, data: bytes) -> list[AmiMessage]:
        # Where the end-of-message search may resume: bytes already searched
        # cannot hide a terminator (minus 3, for one split across reads).
        scan = max(len(self._buf) - 3, 0)
        buf = self._buf + data if self._buf else data
        pos = 0
        if self._expect_banner:
            pos = self._take_banner(buf)
            if pos < 0:
                self._buf = buf
                return []
        out: list[AmiMessage] = []
        find = buf.find
        startswith = buf.startswith
        decisions = self._decisions
        skipped = 0
        while True:
            end = find(EOM, max(pos, scan))
            if end < 0:
                break
            while pos < end and startswith(EOL, pos):
                pos += 2  # stray blank lines between messages
            if startswith(_EVENT_PREFIX, pos):
                eol = find(EOL, pos + _EVENT_PREFIX_LEN, end + 2)
                name = buf[pos + _EVENT_PREFIX_LEN:eol]
                keep = decisions.get(name)
                if keep is None:
                    keep = self._decide(name)
                # Events answering one of our actions (list items, OriginateResponse)
                # carry ActionID: never drop those, whatever their name.
                if not keep and find(_ACTION_ID, pos, end) < 0:
                    skipped += 1
                    pos = end + 4
                    continue
            if end > pos:
                out.append(parse_block(buf[pos:end]))
            pos = end + 4
        rest = buf[pos:] if pos else buf
        if len(rest) > self._max:
            raise AmiProtocolError(f"message longer than {self._max} bytes without an end")
        self._buf = rest
        self.skipped += skipped
        self.parsed += len(out)
        return out

    @property
    def pending_bytes(self) -> int:
        return len(self._buf)


_GOOD_NAMES: set[str] = set()


def check_header(name: str, value: str) -> None:
    """Raise :class:`UnsafeHeaderValue` unless ``name: value`` is one safe line."""
    if name not in _GOOD_NAMES:
        if not _HEADER_NAME.fullmatch(name):
            raise UnsafeHeaderValue(f"invalid AMI header name {name!r}")
        if len(_GOOD_NAMES) < 1024:
            _GOOD_NAMES.add(name)
    if "\r" in value or "\n" in value or "\x00" in value:
        raise UnsafeHeaderValue(
            f"AMI header {name!r} value contains CR, LF or NUL; refusing to send it "
            f"(it would end the header and inject another): {value[:60]!r}")


def encode_action(headers: Mapping[str, object] | Iterable[tuple[str, object]]) -> bytes:
    """Serialise one action; ``Action`` first, every header checked.

    Values are ``str()``-ed; a list or tuple value repeats the header
    (``Variable: a=1`` / ``Variable: b=2``).
    """
    items = list(headers.items() if hasattr(headers, "items") else headers)  # type: ignore[union-attr]
    if items and items[0][0] != "Action":
        items.sort(key=lambda kv: kv[0].lower() != "action")  # stable: Action first
    lines: list[str] = []
    for name, value in items:
        if isinstance(value, (list, tuple)):
            for one in value:
                text = str(one)
                check_header(name, text)
                lines.append(f"{name}: {text}")
        else:
            text = value if type(value) is str else str(value)
            check_header(name, text)
            lines.append(f"{name}: {text}")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("utf-8")


__all__ = [
    "AmiMessage",
    "AmiParser",
    "AmiProtocolError",
    "BANNER_PREFIX",
    "MAX_MESSAGE_BYTES",
    "UnsafeHeaderValue",
    "check_header",
    "encode_action",
    "parse_block",
]
