"""Do callguard's hotkeys collide with the in-call feature codes of this Asterisk?

Asterisk matches in-call DTMF against every enabled feature: when one code
equals another, or is a prefix of it (``*`` vs ``*6``), only one of them can
ever fire.  A site whose ``features.conf`` maps attended transfer to ``*6``
would find its agents' pause key transferring calls instead, and nothing
would say so.  ``callguard config check --features /etc/asterisk/features.conf``
reads the file (following ``#include``, as Asterisk does), finds callguard's
``[applicationmap]`` entries (``callguard_*``) and reports each collision with
a ``[featuremap]`` code or another application's code.

Pure text processing over the files named; nothing here talks to a PBX.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from callguard.adapters.asterisk.conffile import SECTION, conf_lines

#: the codes ``dialplan/asterisk/features_callguard.conf`` ships, used when the file does not include it
SHIPPED = {"callguard_pause": "*6", "callguard_resume": "*7"}



@dataclass(frozen=True)
class FeatureCode:
    """One DTMF code in features.conf and where it was defined."""

    name: str
    code: str
    section: str  #: "featuremap" or "applicationmap"
    where: str  #: file:line


def read_features(path: Path) -> list[FeatureCode]:
    """Every ``[featuremap]`` and ``[applicationmap]`` code in ``path`` and the files it includes."""
    codes: list[FeatureCode] = []
    section = ""
    for line, where in conf_lines(path):
        header = SECTION.match(line)
        if header:
            section = header.group(1).strip()
            continue
        if section not in ("featuremap", "applicationmap") or "=" not in line:
            continue
        name, _, value = line.partition("=>") if "=>" in line else line.partition("=")
        code = value.split(",", 1)[0].strip()
        if code:
            codes.append(FeatureCode(name.strip(), code, section, where))
    return codes


def collisions(codes: list[FeatureCode]) -> list[str]:
    """One sentence per callguard code that equals, or is a prefix of, another enabled code (or vice versa)."""
    ours = [c for c in codes if c.section == "applicationmap" and c.name.startswith("callguard_")]
    if not ours:
        ours = [FeatureCode(name, code, "applicationmap", "shipped default") for name, code in SHIPPED.items()]
    out = []
    for mine in ours:
        for other in codes:
            if other.name == mine.name and other.section == mine.section:
                continue
            if mine.code == other.code or mine.code.startswith(other.code) or other.code.startswith(mine.code):
                relation = "is the same code as" if mine.code == other.code else "overlaps (one is a prefix of the other)"
                out.append(f"{mine.name} {mine.code!r} ({mine.where}) {relation} [{other.section}] "
                           f"{other.name} {other.code!r} ({other.where}): only one of them can fire; change one "
                           f"(callguard's is the first field of its line in features_callguard.conf)")
    return out


__all__ = ["SHIPPED", "FeatureCode", "collisions", "read_features"]
