"""``build/manifest.json``: every built file with its duration and SHA-256.

The manifest is the bridge between the audio and the evidence: the engine
puts a prompt's content hash (``sha256``: the 16 kHz master, identical to
the ``.sln16`` file) into the ledger, and the manifest ties that hash to
the exact file each PBX played, to the recording it came from and to the
text it says.  It is written last and atomically, so a crashed build never
leaves a manifest that describes files that are not there.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callguard.prompts.spec import CatalogError

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class BuiltFile:
    path: str  #: relative to the build directory
    sha256: str
    bytes: int
    rate: int
    duration_s: float


@dataclass(frozen=True)
class BuiltPrompt:
    """One prompt in one language as built."""

    prompt_id: str
    language: str
    sha256: str  #: content hash of the master (16 kHz PCM) = the ledger's hash
    duration_s: float
    text_sha256: str
    origin: str  #: "recording" or "placeholder"
    source: dict[str, Any]
    trimmed_s: dict[str, float]
    gain_db: float
    files: dict[str, BuiltFile]

    def as_dict(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "duration_s": self.duration_s,
            "text_sha256": self.text_sha256,
            "origin": self.origin,
            "source": self.source,
            "trimmed_s": self.trimmed_s,
            "gain_db": self.gain_db,
            "files": {name: vars(f).copy() for name, f in self.files.items()},
        }


@dataclass
class Manifest:
    settings: dict[str, Any] = field(default_factory=dict)
    tools: dict[str, str] = field(default_factory=dict)
    generator: str = ""
    prompts: dict[str, dict[str, BuiltPrompt]] = field(default_factory=dict)

    def get(self, prompt_id: str, language: str) -> BuiltPrompt | None:
        return self.prompts.get(prompt_id, {}).get(language)

    def put(self, built: BuiltPrompt) -> None:
        self.prompts.setdefault(built.prompt_id, {})[built.language] = built

    def entries(self) -> list[BuiltPrompt]:
        return [b for langs in self.prompts.values() for b in langs.values()]

    def as_dict(self) -> dict[str, Any]:
        return {
            "manifest_version": MANIFEST_VERSION,
            "generator": self.generator,
            "tools": self.tools,
            "settings": self.settings,
            "prompts": {
                pid: {lang: b.as_dict() for lang, b in sorted(langs.items())}
                for pid, langs in sorted(self.prompts.items())
            },
        }


def _parse(data: Any, where: str) -> Manifest:
    if not isinstance(data, dict) or data.get("manifest_version") != MANIFEST_VERSION:
        raise CatalogError([f"{where}: not a callguard prompt manifest (version {MANIFEST_VERSION}); "
                            f"rebuild it with `callguard prompts build`"])
    manifest = Manifest(dict(data.get("settings", {})), dict(data.get("tools", {})), str(data.get("generator", "")))
    try:
        for pid, langs in data["prompts"].items():
            for lang, raw in langs.items():
                files = {name: BuiltFile(**f) for name, f in raw["files"].items()}
                manifest.put(BuiltPrompt(pid, lang, raw["sha256"], float(raw["duration_s"]), raw["text_sha256"],
                                         raw["origin"], raw["source"], raw["trimmed_s"], float(raw["gain_db"]),
                                         files))
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise CatalogError([f"{where}: damaged manifest ({type(exc).__name__}: {exc}); "
                            f"rebuild it with `callguard prompts build --force`"]) from None
    return manifest


def read_manifest(build_dir: Path) -> Manifest | None:
    """The manifest in ``build_dir``, or None if nothing was built yet."""
    path = build_dir / MANIFEST_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CatalogError([f"{path}: cannot read: {exc}"]) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CatalogError([f"{path}: not valid JSON ({exc}); rebuild it with `callguard prompts build --force`"]) from None
    return _parse(data, str(path))


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write via a temporary file in the same directory and rename.

    Readers (a PBX playing the prompt right now, a listener loading the
    manifest) see the old file or the new one, never half of either.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_manifest(build_dir: Path, manifest: Manifest) -> Path:
    path = build_dir / MANIFEST_NAME
    text = json.dumps(manifest.as_dict(), indent=1, ensure_ascii=False, sort_keys=False) + "\n"
    write_atomic(path, text.encode("utf-8"))
    return path
