"""Does the AMI user in manager.conf get the ``dtmf`` read class card payments need?

Asterisk sends ``DTMFBegin``/``DTMFEnd`` only to sessions whose user has
``dtmf`` (or ``all``) among its read classes (``Privilege: dtmf,all``;
fixture asterisk22_dtmf_no_class.ami: a user without it gets none).  No AMI
action tells a session its own read classes (``manager show user`` is a
CLI command), so ``callguard run asterisk --check`` reads manager.conf the
way Asterisk does (main/manager.c ``__init_manager``): the user's section,
its templates (``[callguard](tmpl)``), ``#include``/``#tryinclude``, and for
``read`` the last line wins (each ``read =`` replaces the mask).

Pure text processing over the files named; nothing here talks to a PBX.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from callguard.adapters.asterisk.conffile import SECTION, conf_lines

DEFAULT_MANAGER_CONF = "/etc/asterisk/manager.conf"


@dataclass(frozen=True)
class ReadClasses:
    """The ``read =`` classes of one user and where they were set (``file:line``)."""

    classes: frozenset[str]
    where: str

    @property
    def has_dtmf(self) -> bool:
        return bool(self.classes & {"dtmf", "all"})


def read_classes(path: Path, username: str) -> ReadClasses | None:
    """The read classes of ``username`` in ``path`` (None: no such user section)."""
    sections: dict[str, list[tuple[str, str, str]]] = {}  #: section -> (key, value, where)
    templates: dict[str, list[str]] = {}
    current: str | None = None
    for line, where in conf_lines(path):
        header = SECTION.match(line)
        if header:
            current = header.group(1).strip()
            sections.setdefault(current, [])
            templates[current] = [t.strip() for t in (header.group(2) or "").split(",")
                                  if t.strip() and t.strip() != "!"]
            continue
        if current is not None and "=" in line:
            key, _, value = line.partition("=")
            sections[current].append((key.strip().lower(), value.lstrip(">").strip(), where))

    def settings(name: str, depth: int = 0) -> list[tuple[str, str, str]]:
        if depth > 8 or name not in sections:
            return []
        inherited = [s for t in templates.get(name, []) for s in settings(t, depth + 1)]
        return inherited + sections[name]

    if username not in sections or username == "general":
        return None
    found = ReadClasses(frozenset(), f"{path} [{username}] (no read = line)")
    for key, value, where in settings(username):
        if key == "read":
            found = ReadClasses(frozenset(c.strip().lower() for c in value.split(",") if c.strip()), where)
    return found


def dtmf_class_problem(path: str, username: str) -> str | None:
    """What to tell the admin, or None when ``username`` reads ``dtmf``.

    Raises :class:`OSError` when the file cannot be read (the caller says so).
    """
    found = read_classes(Path(path), username)
    if found is None:
        return (f"{path} has no [{username}] section: is this the manager.conf of the Asterisk callguard "
                f"connects to? (dialplan/asterisk/manager_callguard.conf has the user to include)")
    if found.has_dtmf:
        return None
    shown = ",".join(sorted(found.classes)) or "nothing"
    return (f"the AMI user {username!r} lacks the dtmf read class ({found.where}: read = {shown}): Asterisk "
            f"never sends it the caller's keys, so card payments cannot be taken. Add dtmf to that line "
            f"(read = {','.join(sorted(found.classes | {'dtmf'}))}) and run 'manager reload'")


__all__ = ["DEFAULT_MANAGER_CONF", "ReadClasses", "dtmf_class_problem", "read_classes"]
