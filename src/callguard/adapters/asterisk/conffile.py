"""Asterisk's ``.conf`` files as Asterisk reads them: comments cut, ``#include`` / ``#tryinclude`` inlined.

Shared by the checks that read a site's configuration (feature codes in
features.conf, the AMI user's read classes in manager.conf).  An included
file's lines continue the includer's current section, as in Asterisk's
config parser; a file included twice (a loop) is read once.
"""

from __future__ import annotations

import re
from pathlib import Path

_INCLUDE = re.compile(r"^#(try)?include\s+\"?([^\"]+?)\"?\s*$")
SECTION = re.compile(r"^\[([^\]]+)\](?:\(([^)]*)\))?")


def conf_lines(path: Path, _seen: frozenset[Path] = frozenset()) -> list[tuple[str, str]]:
    """``(text, "file:line")`` for every non-empty line of ``path`` and of what it includes.

    A missing ``#include`` raises :class:`OSError` (Asterisk refuses the file);
    a missing ``#tryinclude`` is skipped.
    """
    path = path.resolve()
    if path in _seen:
        return []
    out: list[tuple[str, str]] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        line = raw.split(";", 1)[0].strip()
        include = _INCLUDE.match(line)
        if include:
            target = Path(include.group(2))
            target = target if target.is_absolute() else path.parent / target
            if target.is_file() or not include.group(1):
                out.extend(conf_lines(target, _seen | {path}))
        elif line:
            out.append((line, f"{path}:{number}"))
    return out


__all__ = ["SECTION", "conf_lines"]
