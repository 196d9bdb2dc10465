"""``callguard prompts build``: recordings -> PBX audio + manifest, all or nothing.

For every prompt and language the build takes the designer's recording
(``source_dir``) or, when there is none yet, the espeak-ng placeholder,
makes the 16 kHz master (trim, normalise) and writes every configured PBX
format.  All audio is processed in memory first: if any recording is
missing or broken the build stops with every problem listed and nothing on
disk changes.  Files are then replaced atomically and the manifest written
last.  Unchanged prompts (same recording, text, settings and ffmpeg, files
intact) are skipped, so a rebuild after one re-recording takes a moment.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from callguard import __version__
from callguard.prompts.audio import AudioError, ffmpeg_version, process
from callguard.prompts.formats import FORMATS, MASTER_RATE, sha256_bytes
from callguard.prompts.manifest import BuiltFile, BuiltPrompt, Manifest, read_manifest, write_atomic, write_manifest
from callguard.prompts.spec import CatalogError, CatalogSpec, PromptSpec


class BuildError(CatalogError):
    """The build could not run; nothing was written."""


@dataclass
class BuildResult:
    built: list[BuiltPrompt] = field(default_factory=list)
    unchanged: list[BuiltPrompt] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    manifest_path: Path | None = None


@dataclass(frozen=True)
class _Job:
    prompt: PromptSpec
    language: str
    source: Path
    origin: str


def find_source(spec: CatalogSpec, prompt: PromptSpec, language: str) -> tuple[Path, str] | None:
    """The designer's recording if it exists, else the placeholder, else None."""
    recording = spec.recording_path(prompt, language)
    if recording.is_file():
        return recording, "recording"
    placeholder = spec.placeholder_path(prompt.prompt_id, language)
    if placeholder.is_file():
        return placeholder, "placeholder"
    return None


def _relative(path: Path, base: Path) -> str:
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return str(path)


def _encode(job: _Job, spec: CatalogSpec) -> tuple[BuiltPrompt, dict[str, bytes], list[str]]:
    settings = spec.build
    proc = process(job.source, settings)
    info = proc.info
    master, narrow = proc.wide.raw_data, proc.narrow.raw_data
    files: dict[str, BuiltFile] = {}
    blobs: dict[str, bytes] = {}
    for name in settings.formats:
        fmt = FORMATS[name]
        data = fmt.encode(master if fmt.rate == MASTER_RATE else narrow, fmt.rate)
        rel = fmt.build_relpath(job.prompt.prompt_id, job.language)
        files[name] = BuiltFile(rel, sha256_bytes(data), len(data), fmt.rate, round(fmt.info(data).duration_s, 3))
        blobs[rel] = data
    warnings = []
    where = f"{job.prompt.prompt_id} ({job.language})"
    if job.origin == "placeholder":
        warnings.append(f"{where}: built from the espeak-ng placeholder; record "
                        f"{_relative(spec.recording_path(job.prompt, job.language), spec.path.parent)} to replace it")
    if job.origin == "recording":  # advice a designer can act on; placeholders are what they are
        if info.rate and info.rate < MASTER_RATE and any(FORMATS[f].rate == MASTER_RATE for f in settings.formats):
            warnings.append(f"{where}: the recording is {info.rate} Hz; its 16 kHz versions are upsampled "
                            f"(no wideband detail). Record at 16 kHz or more for wideband calls")
        if proc.source_peak_dbfs > -0.1:
            warnings.append(f"{where}: the recording peaks at full scale; it may be clipped (distorted). "
                            f"Record with more headroom")
        if proc.wide.dBFS < settings.target_dbfs - 1.0:
            warnings.append(f"{where}: {proc.wide.dBFS:.1f} dBFS instead of {settings.target_dbfs:g}: its peaks "
                            f"limited the gain. A more even (compressed) recording will sound louder")
    built = BuiltPrompt(
        prompt_id=job.prompt.prompt_id,
        language=job.language,
        sha256=sha256_bytes(master),
        duration_s=round(proc.duration_s, 3),
        text_sha256=job.prompt.text_sha256(job.language),
        origin=job.origin,
        source={"path": _relative(job.source, spec.path.parent), "sha256": sha256_bytes(job.source.read_bytes()),
                **info.as_dict()},
        trimmed_s={"start": round(proc.trimmed_start_s, 3), "end": round(proc.trimmed_end_s, 3)},
        gain_db=proc.gain_db,
        files=files,
    )
    return built, blobs, warnings


def _intact(entry: BuiltPrompt, build_dir: Path) -> bool:
    for f in entry.files.values():
        path = build_dir / f.path
        try:
            if path.stat().st_size != f.bytes or sha256_bytes(path.read_bytes()) != f.sha256:
                return False
        except OSError:
            return False
    return True


def _up_to_date(old: Manifest | None, job: _Job, spec: CatalogSpec, tools: dict[str, str],
                build_dir: Path) -> BuiltPrompt | None:
    if old is None or old.settings != spec.build.as_dict() or old.tools != tools:
        return None
    entry = old.get(job.prompt.prompt_id, job.language)
    if entry is None or entry.origin != job.origin or entry.text_sha256 != job.prompt.text_sha256(job.language):
        return None
    if entry.source.get("sha256") != sha256_bytes(job.source.read_bytes()):
        return None
    return entry if _intact(entry, build_dir) else None


def build_catalog(spec: CatalogSpec, build_dir: Path | None = None, *, prompt_ids: list[str] | None = None,
                  languages: list[str] | None = None, force: bool = False, jobs: int | None = None,
                  notice_max_s: float | None = None) -> BuildResult:
    """Build ``spec`` into ``build_dir`` (default: the catalogue's ``build_dir``)."""
    build_dir = build_dir or spec.build_dir
    problems: list[str] = []
    for pid in prompt_ids or []:
        if pid not in spec.prompts:
            problems.append(f"unknown prompt {pid!r}; the catalogue has: {', '.join(spec.prompts)}")
    for lang in languages or []:
        if lang not in spec.languages:
            problems.append(f"no prompt has {lang!r} text; the catalogue's languages: {', '.join(sorted(spec.languages))}")
    if problems:
        raise BuildError(problems)
    try:
        previous = read_manifest(build_dir)
    except CatalogError as exc:
        if not force:
            raise BuildError(exc.problems + ["(or pass --force to rebuild everything)"]) from None
        previous = None
    old = None if force else previous
    result = BuildResult()
    if (prompt_ids or languages) and previous is not None and previous.settings != spec.build.as_dict():
        # the other prompts' files no longer match the settings: a partial
        # manifest would silently drop them, so build everything
        result.warnings.append("the [build] settings changed since the last build: rebuilding every prompt")
        prompt_ids = languages = None

    todo: list[_Job] = []
    for prompt in spec.prompts.values():
        if prompt_ids and prompt.prompt_id not in prompt_ids:
            continue
        for lang in prompt.texts:
            if languages and lang not in languages:
                continue
            found = find_source(spec, prompt, lang)
            if found is None:
                rec = _relative(spec.recording_path(prompt, lang), spec.path.parent)
                problems.append(f"{prompt.prompt_id} ({lang}): no recording at {rec} and no placeholder; "
                                f"record it, or run `callguard prompts synth --language {lang}`")
            else:
                todo.append(_Job(prompt, lang, *found))
    if problems:
        raise BuildError(problems)

    tools = {"ffmpeg": ffmpeg_version()}
    fresh: list[_Job] = []
    for job in todo:
        entry = _up_to_date(old, job, spec, tools, build_dir)
        if entry is not None:
            result.unchanged.append(entry)
        else:
            fresh.append(job)

    def run(job: _Job):
        try:
            return _encode(job, spec)
        except AudioError as exc:
            return f"{job.prompt.prompt_id} ({job.language}): {exc}"

    with ThreadPoolExecutor(max_workers=jobs or min(8, (os.cpu_count() or 2) * 2)) as pool:
        outcomes = list(pool.map(run, fresh))
    problems = [o for o in outcomes if isinstance(o, str)]
    if problems:
        raise BuildError(problems + ["nothing was written; fix the recordings above and build again"])

    manifest = Manifest(spec.build.as_dict(), tools, f"callguard {__version__}")
    partial = bool(prompt_ids or languages)
    if partial and previous is not None and previous.settings == manifest.settings:
        for entry in previous.entries():  # keep what this run was not asked to touch
            if entry.prompt_id in spec.prompts and entry.language in spec.prompts[entry.prompt_id].texts:
                manifest.put(entry)
    for entry in result.unchanged:
        manifest.put(entry)
    try:
        for built, blobs, warnings in outcomes:  # type: ignore[misc]
            for rel, data in blobs.items():
                write_atomic(build_dir / rel, data)
            manifest.put(built)
            result.built.append(built)
            result.warnings.extend(warnings)
        kept = {f.path for e in manifest.entries() for f in e.files.values()}
        for entry in previous.entries() if previous else []:
            for f in entry.files.values():
                if f.path not in kept and (build_dir / f.path).is_file():
                    (build_dir / f.path).unlink()
                    result.removed.append(f.path)
        result.manifest_path = write_manifest(build_dir, manifest)
    except OSError as exc:
        raise BuildError([f"cannot write to {build_dir}: {exc.strerror or exc}; if this is the catalogue "
                          f"shipped with callguard, copy it first with `callguard prompts init DIR`"]) from None
    for entry in manifest.entries():
        if notice_max_s is not None and spec.prompts[entry.prompt_id].is_notice and entry.duration_s > notice_max_s:
            result.warnings.append(f"{entry.prompt_id} ({entry.language}): {entry.duration_s:.2f} s is longer than "
                                   f"[prompts] notice_max_s = {notice_max_s:g} s; `prompts check` will fail")
    return result
