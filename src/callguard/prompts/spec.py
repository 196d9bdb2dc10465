"""``prompts.toml``: what each prompt says, in which languages, from which recording.

The catalogue is written by IVR designers, so every mistake is reported as
``prompts.toml: [prompts.notice] text.de: ...`` with what to do, and all
problems are reported at once.  Prompt ids and language codes end up in
file paths and in PBX commands (``GET DATA``, ``play_and_get_digits``), so
they are held to a strict alphabet here, at the edge.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callguard.prompts.formats import FORMATS, sha256_bytes

PROMPT_ID_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,47}")
LANGUAGE_RE = re.compile(r"[a-z]{2,3}(?:-[a-z0-9]{2,8})?")
KINDS = ("notice", "retry", "confirmation", "message")
USERS = ("engine", "dialplan")


class CatalogError(ValueError):
    """The catalogue or its manifest is invalid; ``problems`` lists every issue."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class BuildSettings:
    """How designer audio becomes PBX audio; part of the build's identity."""

    target_dbfs: float = -20.0
    peak_ceiling_dbfs: float = -1.0
    silence_threshold_db: float = -40.0
    keep_silence_ms: int = 50
    formats: tuple[str, ...] = tuple(FORMATS)

    def as_dict(self) -> dict[str, Any]:
        return {
            "target_dbfs": self.target_dbfs,
            "peak_ceiling_dbfs": self.peak_ceiling_dbfs,
            "silence_threshold_db": self.silence_threshold_db,
            "keep_silence_ms": self.keep_silence_ms,
            "formats": list(self.formats),
        }


@dataclass(frozen=True)
class SynthSettings:
    """espeak-ng voice per language for placeholder audio."""

    speed_wpm: int = 175
    voices: dict[str, str] = field(default_factory=dict)

    def voice_for(self, language: str) -> str:
        return self.voices.get(language, language)


@dataclass(frozen=True)
class PromptSpec:
    """One prompt: why it exists, and its words and recording per language."""

    prompt_id: str
    purpose: str
    kind: str
    used_by: str
    collects_digits: bool
    texts: dict[str, str]
    audio: dict[str, str]  #: language -> recording path relative to source_dir

    def text_sha256(self, language: str) -> str:
        return sha256_bytes(self.texts[language].encode("utf-8"))

    @property
    def is_notice(self) -> bool:
        """Notices must end within the configured limit after they start."""
        return self.kind == "notice"


@dataclass(frozen=True)
class CatalogSpec:
    """The parsed ``prompts.toml``; paths resolved against its directory."""

    path: Path
    name: str
    grant_digits: str
    decline_digits: str
    source_dir: Path
    placeholder_dir: Path
    build_dir: Path
    build: BuildSettings
    synth: SynthSettings
    prompts: dict[str, PromptSpec]

    @property
    def languages(self) -> frozenset[str]:
        """Every language any prompt has text for."""
        return frozenset(lang for p in self.prompts.values() for lang in p.texts)

    def recording_path(self, prompt: PromptSpec, language: str) -> Path:
        """Where the designer's recording is expected."""
        return self.source_dir / prompt.audio.get(language, f"{language}/{prompt.prompt_id}.wav")

    def placeholder_path(self, prompt_id: str, language: str) -> Path:
        """Where ``prompts synth`` writes the espeak-ng placeholder."""
        return self.placeholder_dir / language / f"{prompt_id}.wav"



# -- parsing ----------------------------------------------------------------------

_CATALOG_KEYS = {"name", "grant_digits", "decline_digits", "source_dir",
                 "placeholder_dir", "build_dir"}
_BUILD_KEYS = {"target_dbfs", "peak_ceiling_dbfs", "silence_threshold_db", "keep_silence_ms", "formats"}
_SYNTH_KEYS = {"speed_wpm", "voices"}
_PROMPT_KEYS = {"purpose", "kind", "used_by", "collects_digits", "text", "audio"}
_TOP_KEYS = {"catalog", "build", "synth", "prompts"}


class _Problems(list):
    def unknown(self, where: str, keys: set[str], known: set[str]) -> None:
        for key in sorted(keys - known):
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; known keys: {', '.join(sorted(known))}"
            self.append(f"{where} {key}: unknown key{hint}")


def _table(raw: dict[str, Any], key: str, where: str, problems: _Problems) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        problems.append(f"{where}: [{key}] must be a table, got {type(value).__name__}")
        return {}
    return value


def _get(table: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any, where: str,
         problems: _Problems) -> Any:
    value = table.get(key, default)
    ok = isinstance(value, kind) and not (isinstance(value, bool) and kind in (int, float, (int, float)))
    if not ok:
        names = {str: "a string", bool: "true or false", int: "an integer", (int, float): "a number"}
        problems.append(f"{where} {key}: expected {names.get(kind, str(kind))}, got {value!r}")
        return default
    return value


def _language_table(value: Any, where: str, problems: _Problems) -> dict[str, str]:
    if not isinstance(value, dict):
        problems.append(f"{where}: must be a table of language = \"...\", got {value!r}")
        return {}
    out: dict[str, str] = {}
    for lang, text in value.items():
        if not LANGUAGE_RE.fullmatch(lang):
            problems.append(f"{where}.{lang}: not a language code; use lower-case ISO 639 like "
                            f"'en', 'es', 'pt-br'")
        elif not isinstance(text, str) or not text.strip():
            problems.append(f"{where}.{lang}: must be a non-empty string, got {text!r}")
        else:
            out[lang] = text.strip()
    return out


def _parse_prompt(prompt_id: str, raw: Any, where: str, problems: _Problems) -> PromptSpec | None:
    at = f"{where}: [prompts.{prompt_id}]"
    if not PROMPT_ID_RE.fullmatch(prompt_id):
        problems.append(f"{at}: prompt ids must be lower-case letters, digits and '-' (max 48), "
                        f"because they become file names and PBX arguments")
        return None
    if not isinstance(raw, dict):
        problems.append(f"{at}: must be a table")
        return None
    problems.unknown(at, set(raw), _PROMPT_KEYS)
    purpose = _get(raw, "purpose", str, "", at, problems)
    kind = _get(raw, "kind", str, "message", at, problems)
    if kind not in KINDS:
        problems.append(f"{at} kind: {kind!r} is not one of {', '.join(KINDS)}")
    used_by = _get(raw, "used_by", str, "engine", at, problems)
    if used_by not in USERS:
        problems.append(f"{at} used_by: {used_by!r} is not one of {', '.join(USERS)}")
    texts = _language_table(raw.get("text", {}), f"{at} text", problems)
    if not texts:
        problems.append(f"{at}: no text; add text.en = \"...\" (the exact words of the recording)")
    audio = _language_table(raw.get("audio", {}), f"{at} audio", problems)
    for lang, rel in audio.items():
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            problems.append(f"{at} audio.{lang}: {rel!r} must be a path inside source_dir, without '..'")
        if lang not in texts:
            problems.append(f"{at} audio.{lang}: a recording without text; add text.{lang} with its exact words")
    return PromptSpec(prompt_id, purpose, kind, used_by,
                      _get(raw, "collects_digits", bool, False, at, problems), texts, audio)


def parse_catalog(data: dict[str, Any], path: Path) -> CatalogSpec:
    """Validate parsed TOML; raise :class:`CatalogError` listing every problem."""
    where = str(path)
    problems = _Problems()
    problems.unknown(f"{where}:", set(data), _TOP_KEYS)
    cat = _table(data, "catalog", where, problems)
    problems.unknown(f"{where}: [catalog]", set(cat), _CATALOG_KEYS)
    at = f"{where}: [catalog]"
    digits = {}
    for key, default in (("grant_digits", "1"), ("decline_digits", "2")):
        digits[key] = _get(cat, key, str, default, at, problems)
        if not digits[key] or any(ch not in "0123456789*#" for ch in digits[key]):
            problems.append(f"{at} {key}: must be keypad digits (0-9, *, #), got {digits[key]!r}")
    base = path.parent
    dirs = {key: base / _get(cat, key, str, default, at, problems)
            for key, default in (("source_dir", "source"), ("placeholder_dir", "placeholders"),
                                 ("build_dir", "build"))}

    b = _table(data, "build", where, problems)
    at = f"{where}: [build]"
    problems.unknown(at, set(b), _BUILD_KEYS)
    formats = b.get("formats", list(FORMATS))
    if not isinstance(formats, list) or not formats or any(f not in FORMATS for f in formats):
        problems.append(f"{at} formats: must be a non-empty list of {', '.join(FORMATS)}; got {formats!r}")
        formats = list(FORMATS)
    build = BuildSettings(
        target_dbfs=float(_get(b, "target_dbfs", (int, float), -20.0, at, problems)),
        peak_ceiling_dbfs=float(_get(b, "peak_ceiling_dbfs", (int, float), -1.0, at, problems)),
        silence_threshold_db=float(_get(b, "silence_threshold_db", (int, float), -40.0, at, problems)),
        keep_silence_ms=_get(b, "keep_silence_ms", int, 50, at, problems),
        formats=tuple(f for f in FORMATS if f in formats),  # canonical order
    )
    if not -60 <= build.target_dbfs <= -3:
        problems.append(f"{at} target_dbfs: {build.target_dbfs} is outside -60..-3 dBFS")
    if build.peak_ceiling_dbfs > 0:
        problems.append(f"{at} peak_ceiling_dbfs: must be <= 0 dBFS")
    if build.silence_threshold_db >= 0:
        problems.append(f"{at} silence_threshold_db: must be negative (dB below the clip's peak)")
    if build.keep_silence_ms < 0:
        problems.append(f"{at} keep_silence_ms: must be >= 0")

    s = _table(data, "synth", where, problems)
    at = f"{where}: [synth]"
    problems.unknown(at, set(s), _SYNTH_KEYS)
    voices = s.get("voices", {})
    if not isinstance(voices, dict) or not all(isinstance(v, str) for v in voices.values()):
        problems.append(f"{at} voices: must be a table of language = \"espeak-ng voice\"")
        voices = {}
    synth = SynthSettings(_get(s, "speed_wpm", int, 175, at, problems), dict(voices))
    if not 80 <= synth.speed_wpm <= 400:
        problems.append(f"{at} speed_wpm: {synth.speed_wpm} is outside 80..400")

    raw_prompts = _table(data, "prompts", where, problems)
    prompts = {}
    for prompt_id, raw in raw_prompts.items():
        spec = _parse_prompt(prompt_id, raw, where, problems)
        if spec is not None:
            prompts[prompt_id] = spec
    if not raw_prompts:
        problems.append(f"{where}: no [prompts.<id>] tables; the catalogue is empty")
    if problems:
        raise CatalogError(list(problems))
    return CatalogSpec(path, cat.get("name", path.parent.name), digits["grant_digits"],
                       digits["decline_digits"], dirs["source_dir"], dirs["placeholder_dir"],
                       dirs["build_dir"], build, synth, prompts)


def load_catalog_spec(path: Path) -> CatalogSpec:
    """Read and validate ``prompts.toml``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CatalogError([f"{path}: catalogue not found; pass --catalog PATH, set [prompts] catalog in "
                            f"callguard.toml, or start from the defaults with `callguard prompts init DIR`"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError([f"{path}: cannot read: {exc}"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError([f"{path}: not valid TOML: {exc}"]) from None
    return parse_catalog(data, path)
