"""The captured FreeSWITCH 1.10.12 byte streams, split by direction.

In the ``.esl`` files, lines starting ``>>> `` are what the client sent;
everything else is exactly what FreeSWITCH sent (LF line ends kept).
"""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"
FILES = sorted(FIXTURES.glob("*.esl"))


def server_bytes(path: Path) -> bytes:
    """What FreeSWITCH sent, byte for byte."""
    return b"".join(line for line in path.read_bytes().splitlines(keepends=True) if not line.startswith(b">>> "))


def client_commands(path: Path) -> list[str]:
    """The commands the client sent, one string per command (lines joined by LF)."""
    out: list[str] = []
    current: list[str] = []
    for line in path.read_bytes().splitlines():
        if not line.startswith(b">>> "):
            continue
        text = line[4:].decode("utf-8")
        if text:
            current.append(text)
        elif current:
            out.append("\n".join(current))
            current = []
    return out
