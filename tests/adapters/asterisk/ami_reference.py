"""AMI read the plainest possible way: the oracle for the quick paths in ``adapters/asterisk/wire.py``.

Same grammar as that module's docstring, which follows what Asterisk's
``main/manager.c`` writes (``astman_append``/``manager_event``: one
``"%s: %s\\r\\n"`` per header, an empty line after each message;
``action_command`` up to 13.x: ``Response: Follows``, ``Privilege: Command``,
optional ``ActionID``, the CLI output verbatim, ``--END COMMAND--``).  Here
it is applied to the *whole* stream at once, line by line, with no search
tricks, no batching and no fast path, so a disagreement points at the
quick paths.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

BANNER_PREFIX = b"Asterisk Call Manager/"


@dataclass
class Reading:
    banner: str | None = None
    #: (headers, body) of every complete message, in order
    messages: list[tuple[dict[str, str], str]] = field(default_factory=list)
    skipped: int = 0
    garbage: int = 0


def read_stream(data: bytes, wanted: Callable[[str], bool] | None = None, expect_banner: bool = True) -> Reading:
    """Every complete message in ``data`` (a trailing partial message is not one)."""
    out = Reading()
    if expect_banner:
        if len(data) < len(BANNER_PREFIX) and BANNER_PREFIX.startswith(data):
            return out  # the banner may still be coming
        if data.startswith(BANNER_PREFIX):
            if b"\r\n" not in data:
                return out
            line, data = data.split(b"\r\n", 1)
            out.banner = line.decode("utf-8", "replace")
    lines = data.split(b"\r\n")
    lines.pop()  # not ended by CRLF (or "" after a final CRLF): part of no complete message
    current: list[bytes] = []
    for line in lines:
        if line:
            current.append(line)
        elif current:  # an empty line ends the message; extra empty lines end nothing
            _finish(current, wanted, out)
            current = []
    return out


def _finish(raw_lines: list[bytes], wanted: Callable[[str], bool] | None, out: Reading) -> None:
    lines = [line.decode("utf-8", "replace") for line in raw_lines]
    first = lines[0]
    if wanted is not None and first.startswith("Event: ") and not wanted(first[len("Event: "):]):
        if not any(line.startswith("ActionID: ") for line in lines[1:]):
            out.skipped += 1
            return
    headers: dict[str, str] = {}
    body: list[str] = []
    if first == "Response: Follows":
        headers["Response"] = "Follows"
        rest = lines[1:]
        while rest and (rest[0].startswith("Privilege: ") or rest[0].startswith("ActionID: ")):
            name, _, value = rest.pop(0).partition(": ")
            _add(headers, name, value)
        output = "\r\n".join(rest)
        if output.endswith("--END COMMAND--"):
            output = output[:-len("--END COMMAND--")]
        text = output
    else:
        for line in lines:
            if ": " in line:
                name, value = line.split(": ", 1)
            elif line.endswith(":"):
                name, value = line[:-1], ""
            else:
                body.append(line)
                continue
            if name == "":
                body.append(line)
            else:
                _add(headers, name, value)
        text = "\n".join(body)
    if "Event" not in headers and "Response" not in headers:
        out.garbage += 1
        return
    out.messages.append((headers, text))


def _add(headers: dict[str, str], name: str, value: str) -> None:
    headers[name] = headers[name] + "\n" + value if name in headers else value
