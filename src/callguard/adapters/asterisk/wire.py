"""AMI framing without I/O: bytes in, messages out; headers in, bytes out.

Why our own parser instead of panoramisk 1.4's ``AMIProtocol.data_received``:

* panoramisk decodes every TCP read on its own (``data.decode(enc,
  'ignore')``), so a UTF-8 character split across two reads is silently
  dropped (``José`` becomes ``Jos``).  We buffer *bytes* and decode only
  complete messages, so a split can never damage text; invalid UTF-8 is
  replaced (U+FFFD), never fatal.
* panoramisk joins each read to everything still buffered and splits it
  all again, so a long message in small reads costs O(n^2); we append to
  one buffer and only search the bytes that are new.
* On a real PBX about half of all events are ``VarSet`` and ``Newexten``
  that callguard never looks at.  We read only the ``Event:`` line of each
  message and drop unwanted ones before building a dict.
* Every action we write goes through :func:`encode_action`, which refuses
  CR or LF in any header: caller-controlled text can never smuggle a second
  header (or a second action) into the stream.

The grammar, as Asterisk writes it (``main/manager.c``: ``astman_append``
and ``manager_event`` write every header as ``"%s: %s\r\n"`` and end a
message with an empty line):

* The stream starts with the banner line ``Asterisk Call Manager/<ver>``.
* A message is a run of CRLF-terminated lines ended by an empty line.
  Empty lines where a message would start are skipped.
* A line is a header when it contains ``": "``: the name is what precedes
  the *first* ``": "`` (so ``ChanVariable(IAX2/10.0.0.1:4569-1): x`` keeps
  its colon, and a dialplan ``UserEvent`` may put a space in a name), the
  value is the rest, byte for byte.  A line ending in ``:`` is a header
  with an empty value.  Any other line (and one with an empty name) is
  body text.  A repeated header's values are joined with ``\n``.
* ``Response: Follows`` (``action_command`` up to Asterisk 13) is written
  as ``Response: Follows\r\nPrivilege: Command\r\n[ActionID: x\r\n]``,
  then the CLI output verbatim (LF line ends, any text, ``": "``
  included), then ``--END COMMAND--\r\n\r\n``.  Its headers are those
  lines; the output between them and ``--END COMMAND--`` is the body.  It
  still ends at the first empty line like every other message: a caller
  number carrying a forged ``Response: Follows`` must not swallow the real
  events behind it.
* A block with neither ``Event`` nor ``Response`` is not a message (a
  caller's CR/LF cut a real event in two, or the peer is not Asterisk): it
  is dropped and counted in :attr:`AmiParser.garbage`.

The framing runs in C when the optional extension is built
(``_cwire.AmiFramer``; see :mod:`callguard.adapters.speedups`) and in
pure Python otherwise (:class:`_Framer`, :func:`parse_message`): the same
rules, cited from manager.c in both.

``tests/adapters/asterisk/ami_reference.py`` implements the same grammar
line by line, as plainly as possible; property tests hold this module's
quick paths to it on arbitrary messages cut into arbitrary reads.

Bounds (a peer that is broken or hostile costs O(bytes), never more memory
than the limits): every message, and every run of blocks that are not
messages, is at most ``max_message`` bytes (1 MiB); the filter remembers at
most :data:`MAX_CACHED_NAMES` event names.  Crossing a bound raises
:class:`AmiProtocolError`, and the connection drops and reconnects.
"""

from __future__ import annotations

import re
from typing import Callable, Iterable, Mapping  # noqa: F401 (Mapping: annotations)

from callguard.adapters import speedups

EOL = b"\r\n"
EOM = b"\r\n\r\n"
BANNER_PREFIX = b"Asterisk Call Manager/"
_FOLLOWS = "Response: Follows"
_END_COMMAND = "--END COMMAND--"
#: The header lines manager.c writes before a Follows response's output.
_FOLLOWS_HEADERS = ("Privilege: ", "ActionID: ")
_SLOT_DEFAULTS = {"received_at": 0.0, "body": ""}

#: A peer that sends this much without ending a message is not speaking AMI
#: (or is hostile); we drop the connection instead of buffering forever.
MAX_MESSAGE_BYTES = 1 << 20
#: Event names whose filter decision is remembered; beyond this (a peer
#: inventing names) each further name is decided afresh, uncached.
MAX_CACHED_NAMES = 4096

_HEADER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


class AmiProtocolError(ValueError):
    """The byte stream cannot be AMI (oversized message, garbage, bad banner)."""


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
    ``body`` holds the text that is not headers (a ``Response: Follows``
    command output; lines without ``": "``).  ``received_at`` is our clock
    when the bytes arrived; :attr:`at` prefers the PBX's own ``Timestamp``.
    """

    # Slots, not an instance dict: one store per message on the hot path.  Unset
    # ones read as their defaults (see __getattr__), so no __init__ runs either.
    __slots__ = ("received_at", "body")
    received_at: float
    body: str

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
        if attr in _SLOT_DEFAULTS:
            return _SLOT_DEFAULTS[attr]  # type: ignore[return-value]
        # panoramisk compatibility: ``event.channel`` / ``event.Channel``.
        if attr.startswith("__"):
            raise AttributeError(attr)
        value = self.get_ci(attr)
        return "" if value is None else value

    def __repr__(self) -> str:
        kind = self.get("Event") or self.get("Response") or "?"
        return f"<AmiMessage {kind} {dict.__repr__(self)}>"


def parse_message(text: str) -> AmiMessage:
    """One message (its lines, without the empty line that ends it) -> :class:`AmiMessage`.

    The quick path takes a handful of C calls instead of one split per line,
    for the usual message whose every line holds exactly one ``": "`` and
    whose names are distinct and not empty.  Each line break becomes
    ``": \x01"``, so one split at ``": "`` cuts names and values, and the
    first piece of every line but the first starts with ``\x01``.  If an
    even number of pieces came out and no value (odd piece) holds a
    ``\x01``, every line start sits at an even index, which forces exactly
    one ``": "`` per line: a line with none would shift the next line's
    start to an odd index, and the counts cannot balance otherwise.  (Text
    that holds a ``\x01`` of its own could fake a line start: it takes the
    plain path, like anything else the quick path cannot vouch for.)
    """
    if not text.startswith(_FOLLOWS) and "\x01" not in text:
        parts = text.replace("\r\n", ": \x01").split(": ")
        if not len(parts) & 1:
            values = parts[1::2]
            if "\x01" not in "".join(values):
                names = "".join(parts[0::2]).split("\x01")
                if len(names) == len(values):
                    msg = AmiMessage(zip(names, values))
                    if len(msg) == len(names) and "" not in msg:
                        return msg
    lines = text.split("\r\n")
    if lines[0] == _FOLLOWS:
        return _parse_follows(lines, AmiMessage())
    msg = AmiMessage()
    body = [line for line in lines if not _add_header(msg, line)]
    if body:
        msg.body = "\n".join(body)
    return msg


def _add_header(msg: AmiMessage, line: str) -> bool:
    """Store ``line`` in ``msg`` if it is a header line; False for body text."""
    name, sep, value = line.partition(": ")
    if not sep:
        if not line.endswith(":"):
            return False
        name = line[:-1]
    if not name:
        return False
    old = msg.get(name)
    msg[name] = value if old is None else old + "\n" + value
    return True


def _parse_follows(lines: list[str], msg: AmiMessage) -> AmiMessage:
    """``Response: Follows`` as manager.c's ``action_command`` (Asterisk <= 13) writes it."""
    msg["Response"] = "Follows"
    index = 1
    while index < len(lines) and lines[index].startswith(_FOLLOWS_HEADERS):
        _add_header(msg, lines[index])
        index += 1
    output = "\r\n".join(lines[index:])
    msg.body = output[:-len(_END_COMMAND)] if output.endswith(_END_COMMAND) else output
    return msg


def parse_block(block: bytes) -> AmiMessage:
    """Decode one message (bytes between two blank lines) into an :class:`AmiMessage`."""
    return parse_message(block.decode("utf-8", "replace"))


def _names_event_or_response(text: str) -> bool:
    """Would :func:`parse_message` give ``text`` an ``Event`` or a ``Response`` header?

    A line names one when it starts ``Event: `` / ``Response: `` (the name
    ends at the first ``": "``) or is exactly ``Event:`` / ``Response:``.
    """
    for name in ("Event:", "Response:"):
        if text.startswith(name + " ") or f"\r\n{name} " in text:
            return True
        if text == name or text.startswith(name + "\r\n") or text.endswith("\r\n" + name) \
                or f"\r\n{name}\r\n" in text:
            return True
    return False


class AmiParser:
    """Incremental AMI framer.

    :attr:`feed` takes whatever bytes a read returned and gives back the
    complete messages, keeping any partial message (even a partial UTF-8
    sequence) for the next read.  ``wanted(name)`` decides per event name
    (as bytes) whether an event is worth parsing; the answer is cached, so
    the decision costs one dict lookup per event.  Responses, and events
    that carry an ``ActionID`` (answers to one of our list actions), are
    always parsed.

    The framing itself is done by ``_cwire.AmiFramer`` (C) when the
    extension is built, else by its pure-Python twin :class:`_Framer`;
    ``feed`` is bound straight to it, so a read that completes nothing
    costs one C call (see :mod:`callguard.adapters.speedups`).
    """

    #: ``feed(data)`` -> the messages ``data`` completed (bound to the framer in ``__init__``)
    feed: Callable[[bytes], list[AmiMessage]]

    def __init__(self, wanted: Callable[[bytes], bool] | None = None, expect_banner: bool = True,
                 max_message: int = MAX_MESSAGE_BYTES):
        self._wanted = wanted
        #: event name -> keep it?  Shared with the framer, which reads it first.
        self._decisions: dict[str, bool] = {}
        cwire = speedups.cwire
        if cwire is not None:
            framer = cwire.AmiFramer(self._decide, self._decisions, expect_banner, max_message,
                                     parse_message, AmiMessage, AmiProtocolError)
        else:
            framer = _Framer(self._decide, self._decisions, expect_banner, max_message)
        self._framer = framer
        self.feed = framer.feed

    @property
    def banner(self) -> str | None:
        """The ``Asterisk Call Manager/<version>`` line, once it came."""
        return self._framer.banner

    @property
    def parsed(self) -> int:
        """Messages returned so far."""
        return self._framer.parsed

    @property
    def skipped(self) -> int:
        """Unwanted events dropped by name, unparsed."""
        return self._framer.skipped

    @property
    def garbage(self) -> int:
        """Blocks dropped because they had neither ``Event`` nor ``Response``."""
        return self._framer.garbage

    @property
    def pending_bytes(self) -> int:
        return self._framer.pending_bytes

    def set_wanted(self, wanted: Callable[[bytes], bool] | None) -> None:
        """Change the event filter (and forget cached decisions)."""
        self._wanted = wanted
        self._decisions.clear()

    def _decide(self, name: str) -> bool:
        keep = True if self._wanted is None else bool(self._wanted(name.encode("utf-8", "surrogateescape")))
        if len(self._decisions) < MAX_CACHED_NAMES:
            self._decisions[name] = keep
        return keep


class _Framer:
    """:class:`AmiParser`'s framing in pure Python: the twin of ``_cwire.AmiFramer`` (``_cwire.c``)."""

    def __init__(self, decide: Callable[[str], bool], decisions: dict[str, bool], expect_banner: bool,
                 max_message: int):
        self._buf = bytearray()
        #: where the search for the next end of message resumes
        self._scan = 0
        self._decide = decide
        self._decisions = decisions
        self._expect_banner = expect_banner
        self._max = max_message
        #: characters of consecutive blocks that were not AMI messages
        self._garbage_run = 0
        self.banner: str | None = None
        self.parsed = 0
        self.skipped = 0
        self.garbage = 0

    def _take_banner(self) -> bool:
        """Consume the one-line banner; False while it is incomplete."""
        buf = self._buf
        if len(buf) < len(BANNER_PREFIX) and BANNER_PREFIX.startswith(buf):
            return False
        self._expect_banner = False
        if not buf.startswith(BANNER_PREFIX):
            return True  # a stream that starts mid-session
        eol = buf.find(EOL)
        if eol < 0:
            if len(buf) > 1024:
                raise AmiProtocolError("banner line longer than 1 KiB: this peer is not an Asterisk manager")
            self._expect_banner = True
            return False
        self.banner = buf[:eol].decode("utf-8", "replace")
        del buf[:eol + 2]
        return True

    def feed(self, data: bytes) -> list[AmiMessage]:
        buf = self._buf
        buf += data
        if self._expect_banner and not self._take_banner():
            return []
        end = buf.find(EOM, self._scan)
        if end < 0:
            size = len(buf)
            if size > self._max:
                raise AmiProtocolError(f"{size} bytes without the empty line that ends an AMI message "
                                       f"(limit {self._max}): this peer is not speaking AMI")
            # A terminator split across reads starts at most 3 bytes back.
            self._scan = size - 3 if size > 3 else 0
            return []
        # Take every complete message at once.
        cut = buf.rfind(EOM, end) + 4
        if cut > self._max:
            self._check_sizes(cut)
        try:
            # Boundaries are ASCII, so decoding them together cannot join bytes
            # of two messages differently than decoding each alone.
            out, skipped, garbage, run = self._batch(buf[:cut].decode("utf-8", "replace"))
        finally:
            del buf[:cut]
        self.garbage += garbage
        self._garbage_run = run
        if run > self._max:
            raise AmiProtocolError(f"{run} bytes of blocks with neither Event: nor Response: "
                                   f"in a row: this peer is not speaking AMI")
        size = len(buf)
        if size > self._max:
            raise AmiProtocolError(f"{size} bytes without the empty line that ends an AMI message "
                                   f"(limit {self._max}): this peer is not speaking AMI")
        self._scan = size - 3 if size > 3 else 0
        self.skipped += skipped
        self.parsed += len(out)
        return out

    def _batch(self, text: str) -> tuple[list[AmiMessage], int, int, int]:
        """The messages in ``text`` (whole messages, each ended by an empty line).

        Returns ``(messages, skipped, garbage, garbage_run)``, stopping early
        once the run of blocks that are not messages exceeds the limit.
        ``framer_batch`` in ``_cwire.c`` is the same loop in C (on the bytes).
        """
        pieces = text.split("\r\n\r\n")
        # The last piece is "" or, after an odd run of empty lines, "\r\n".
        pieces.pop()
        out: list[AmiMessage] = []
        decisions = self._decisions
        skipped = garbage = 0
        run = self._garbage_run
        for piece in pieces:
            if not piece.startswith("Event: "):
                if not piece.startswith("Response: "):
                    if piece.startswith("\r\n"):
                        piece = piece[2:]  # an odd empty line before a message
                    if not piece.startswith(("Event: ", "Response: ")) and not _names_event_or_response(piece):
                        if piece:  # a block that is not a message (an even run of empty lines is nothing)
                            garbage += 1
                            run += len(piece) + 4
                            if run > self._max:
                                break
                        continue
                if not piece.startswith("Event: "):
                    run = 0
                    out.append(parse_message(piece))
                    continue
            run = 0
            eol = piece.find("\r\n")
            name = piece[7:eol] if eol >= 0 else piece[7:]
            keep = decisions.get(name)
            if keep is None:
                keep = self._decide(name)
            # Events answering one of our actions (list items, OriginateResponse)
            # carry ActionID: never drop those, whatever their name.
            if keep or "\r\nActionID: " in piece:
                out.append(parse_message(piece))
            else:
                skipped += 1
        return out, skipped, garbage, run

    def _check_sizes(self, cut: int) -> None:
        """Raise if any message in ``buf[:cut]`` is longer than the limit."""
        buf, start = self._buf, 0
        # The messages as the batch splits them: the last EOM may overlap the one before
        # ("\r\n\r\n\r\n"), and what follows the last split point is no message.
        while (end := buf.find(EOM, start, cut)) >= 0:
            if end - start > self._max:
                raise AmiProtocolError(f"an AMI message of {end - start} bytes (limit {self._max}): "
                                       f"this peer is not speaking AMI")
            start = end + 4

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
    "parse_message",
]
