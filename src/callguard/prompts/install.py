"""``callguard prompts install``: copy built prompts to where the PBX looks for them.

The build tree already has each PBX's layout (``build/asterisk/<lang>/
callguard/...``, ``build/freeswitch/<lang>/callguard/<rate>/...``), so
installing is a verified copy: every file is checked against the manifest
before it is copied (a corrupted build is never installed), written
atomically (a call playing the old prompt is not cut off), and skipped if
the installed copy is already identical.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from callguard.prompts.catalog import PromptCatalog
from callguard.prompts.formats import FORMATS, sha256_bytes
from callguard.prompts.manifest import write_atomic
from callguard.prompts.spec import CatalogError


@dataclass
class InstallResult:
    copied: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)


def install(catalog: PromptCatalog, pbx: str, target: Path, *, languages: Iterable[str] | None = None,
            dry_run: bool = False) -> InstallResult:
    """Copy every built file of ``pbx`` into ``target`` (e.g. /var/lib/asterisk/sounds)."""
    wanted = set(languages) if languages is not None else None
    plan: list[tuple[bytes, Path]] = []
    problems: list[str] = []
    result = InstallResult()
    entries = [b for b in catalog.manifest.entries() if wanted is None or b.language in wanted]
    if wanted is not None:
        for lang in sorted(wanted - {b.language for b in entries}):
            problems.append(f"nothing built in {lang!r}; built languages: "
                            f"{', '.join(sorted({b.language for b in catalog.manifest.entries()}))}")
    for built in entries:
        for name, f in built.files.items():
            fmt = FORMATS.get(name)
            if fmt is None or fmt.pbx != pbx:
                continue
            source = catalog.build_dir / f.path
            try:
                data = source.read_bytes()
            except OSError as exc:
                problems.append(f"{source}: {exc.strerror or exc}; run `callguard prompts build`")
                continue
            if sha256_bytes(data) != f.sha256:
                problems.append(f"{source} does not match the manifest; run `callguard prompts build --force`")
                continue
            dest = target / fmt.relpath(built.prompt_id, built.language)
            if dest.is_file() and dest.stat().st_size == len(data) and sha256_bytes(dest.read_bytes()) == f.sha256:
                result.unchanged.append(dest)
            else:
                plan.append((data, dest))
    if not plan and not result.unchanged and not problems:
        problems.append(f"the build has no {pbx} files; add {pbx} formats to [build] formats and build again")
    if problems:
        raise CatalogError(problems + ["nothing was installed"])
    if not dry_run:
        try:
            for data, dest in plan:
                write_atomic(dest, data)
        except OSError as exc:
            raise CatalogError([f"cannot write to {target}: {exc.strerror or exc} (run as a user that may write "
                                f"there, e.g. the {pbx} user or root)"]) from None
    result.copied = [dest for _, dest in plan]
    return result
