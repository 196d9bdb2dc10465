"""AsyncAGI text: the channel environment, command results, safe arguments.

AsyncAGI is how callguard drives a channel: ``AGI(agi:async)`` in the
dialplan parks the channel and emits ``AsyncAGIStart`` whose ``Env`` header
is the classic AGI environment, URL-encoded.  Commands go out as
``Action: AGI`` with a ``CommandID`` and come back as ``AsyncAGIExec``
events whose ``Result`` is URL-encoded too (``200%20result%3D1%0A``).

Everything that ends up inside an AGI command line is built here, from
values that are checked against strict patterns: prompt file names from
the catalogue, numbers, fixed outcome words, dialplan targets from the
config.  Caller-controlled text (caller ID, names) is never an argument.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

#: Characters allowed in a bare (unquoted) AGI argument we generate.
_BARE_ARG = re.compile(r"[A-Za-z0-9_./+*#@-]+")
#: A dialplan context / extension / priority label.
_DIALPLAN_TOKEN = re.compile(r"[A-Za-z0-9_+*#.-]{1,80}")
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,79}")
_RESULT = re.compile(r"^(\d{3})(?:[ -](.*))?$", re.S)
_RESULT_VALUE = re.compile(r"result=(\S*)")
_RESULT_DATA = re.compile(r"\(([^)]*)\)")
_ENDPOS = re.compile(r"endpos=(\d+)")


class UnsafeAgiArgument(ValueError):
    """An AGI argument we were about to send is not on the allowlist."""


#: The AGI environment in the order Asterisk writes it (res_agi.c setup_env).
ENV_KEYS = ("agi_request", "agi_channel", "agi_language", "agi_type", "agi_uniqueid", "agi_version",
            "agi_callerid", "agi_calleridname", "agi_callingpres", "agi_callingani2", "agi_callington",
            "agi_callingtns", "agi_dnid", "agi_rdnis", "agi_context", "agi_extension", "agi_priority",
            "agi_enhanced", "agi_accountcode", "agi_threadid")
_ENV_ORDER = {key: i for i, key in enumerate(ENV_KEYS)}
_CALLER_KEYS = frozenset({"agi_callerid", "agi_calleridname"})
_ENV_LINE = re.compile(r"(agi_[a-z0-9_]+): ?(.*)", re.S)


def parse_env(encoded: str) -> dict[str, str]:
    """Decode ``AsyncAGIStart``'s ``Env`` into ``{"agi_callerid": ..., ...}``.

    Asterisk writes each value raw after ``key: `` and ends it with a
    newline, so a caller ID containing a newline spills onto following
    lines.  Keys are therefore only accepted in the order Asterisk writes
    them (``agi_arg_N`` after the fixed ones; after the caller's own
    fields only the exact next key); any other line continues the previous
    value.  That restores the caller's text exactly, and a forged
    ``agi_context:`` inside a caller name stays part of the name.  Invalid UTF-8 in percent escapes is replaced, never fatal.  The
    values are data for the ledger only.
    """
    text = unquote(encoded, encoding="utf-8", errors="replace")
    if text.endswith("\n\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    env: dict[str, str] = {}
    last_key, last_rank = "", -1
    for line in text.split("\n"):
        m = _ENV_LINE.fullmatch(line)
        if m is not None and m.group(1) not in env:
            key = m.group(1)
            rank = _ENV_ORDER.get(key, len(ENV_KEYS) if key.startswith("agi_arg_") else -1)
            # After a caller-controlled value only the very next key may end
            # it; elsewhere tolerate keys an older Asterisk does not write.
            strict = last_key in _CALLER_KEYS
            if rank == last_rank + 1 or (not strict and (rank > last_rank or rank == len(ENV_KEYS))):
                env[key] = m.group(2)
                last_key, last_rank = key, rank
                continue
        if last_key:
            env[last_key] += "\n" + line
    return env


@dataclass(frozen=True, slots=True)
class AgiResult:
    """One AGI command's outcome, from ``AsyncAGIExec``'s ``Result``.

    ``code`` is the AGI status (200 ok, 510 invalid command, 511 dead
    channel, 520 usage); ``result`` is the text after ``result=`` (``""``
    for ``result= (timeout)``); ``data`` is the parenthesised part.
    ``code`` 0 means the command never ran (queue refused, channel gone,
    connection lost) and ``error`` says why.
    """

    code: int
    result: str = ""
    data: str = ""
    endpos: int | None = None
    raw: str = ""
    error: str = ""
    at: float = 0.0

    @property
    def ok(self) -> bool:
        return self.code == 200

    @property
    def hangup(self) -> bool:
        """The channel hung up while the command ran (``result=-1``, 511, ``HANGUP``)."""
        return self.code == 511 or (self.code == 200 and self.result == "-1") or self.raw.strip() == "HANGUP"

    @property
    def timed_out(self) -> bool:
        return self.code == 200 and self.data == "timeout"

    def digits(self) -> str:
        """For ``GET DATA``: the keys pressed (``""`` on timeout)."""
        if self.code != 200 or self.result in ("", "-1") or self.timed_out:
            return ""
        return self.result


def parse_result(encoded: str, at: float = 0.0) -> AgiResult:
    """Parse ``AsyncAGIExec``'s URL-encoded ``Result``."""
    raw = unquote(encoded, encoding="utf-8", errors="replace")
    text = raw.strip()
    if text == "HANGUP":
        return AgiResult(511, raw=raw, error="hangup", at=at)
    m = _RESULT.match(text)
    if not m:
        return AgiResult(0, raw=raw, error=f"unparsable AGI result {text[:80]!r}", at=at)
    code = int(m.group(1))
    rest = m.group(2) or ""
    value = _RESULT_VALUE.search(rest)
    data = _RESULT_DATA.search(rest)
    endpos = _ENDPOS.search(rest)
    error = "" if code == 200 else rest.strip()[:200] or f"AGI status {code}"
    return AgiResult(code, value.group(1) if value else "", data.group(1) if data else "",
                     int(endpos.group(1)) if endpos else None, raw, error, at)


def quote_arg(value: str) -> str:
    """Quote one AGI argument the way Asterisk's AGI parser reads it.

    Only used for values from our own allowlists; CR/LF (which would end
    the command) and NUL are refused outright.
    """
    if any(ch in value for ch in "\r\n\x00"):
        raise UnsafeAgiArgument(f"AGI argument contains CR, LF or NUL: {value[:60]!r}")
    if value and _BARE_ARG.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def safe_token(value: str, what: str, pattern: re.Pattern[str] = _BARE_ARG) -> str:
    """Return ``value`` if it matches ``pattern`` (and has no ``..``), else raise."""
    if not pattern.fullmatch(value) or ".." in value:
        raise UnsafeAgiArgument(f"{what} {value[:60]!r} has characters outside {pattern.pattern}")
    return value


def get_data(prompt_file: str, timeout_ms: int, max_digits: int) -> str:
    """``GET DATA <file> <ms> <max>``: plays the prompt, takes keys during it."""
    return f"GET DATA {safe_token(prompt_file, 'prompt file')} {int(timeout_ms)} {int(max_digits)}"


def stream_file(prompt_file: str) -> str:
    """``STREAM FILE <file> ""``: plays without listening for keys."""
    return f'STREAM FILE {safe_token(prompt_file, "prompt file")} ""'


def set_variable(name: str, value: str) -> str:
    """``SET VARIABLE NAME value`` with a checked name and a quoted value."""
    safe_token(name, "variable name", _VARIABLE_NAME)
    return f"SET VARIABLE {name} {quote_arg(value)}"


def parse_destination(text: str) -> tuple[str, str, str]:
    """``context,exten,priority`` (Goto syntax) -> checked parts.

    ``exten`` defaults to ``s`` and ``priority`` to ``1`` like ``Goto``.
    """
    if any(ch in text for ch in "\r\n\t\x00"):
        raise UnsafeAgiArgument(f"destination {text!r} contains control characters")
    parts = [p.strip() for p in text.split(",")]
    if not 1 <= len(parts) <= 3 or not parts[0]:
        raise UnsafeAgiArgument(f"destination {text!r} is not 'context[,exten[,priority]]'")
    context, exten, priority = (parts + ["s", "1"][len(parts) - 1:])[:3]
    for part, what in ((context, "context"), (exten, "extension"), (priority, "priority")):
        safe_token(part, f"destination {what}", _DIALPLAN_TOKEN)
    return context, exten, priority


def goto_commands(destination: str) -> list[str]:
    """AGI commands that move the channel to ``destination`` once AGI returns.

    ``SET PRIORITY`` goes through Asterisk's explicit-goto logic, so after
    ``ASYNCAGI BREAK`` the dialplan continues exactly at the target.
    """
    context, exten, priority = parse_destination(destination)
    return [f"SET CONTEXT {context}", f"SET EXTENSION {exten}", f"SET PRIORITY {priority}"]


BREAK = "ASYNCAGI BREAK"

__all__ = [
    "AgiResult",
    "BREAK",
    "UnsafeAgiArgument",
    "get_data",
    "goto_commands",
    "parse_destination",
    "parse_env",
    "parse_result",
    "quote_arg",
    "safe_token",
    "set_variable",
    "stream_file",
]
