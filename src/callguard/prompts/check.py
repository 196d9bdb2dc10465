"""``callguard prompts check``: is what the PBX will play what the policy needs?

Errors block a deployment: a prompt the engine or dialplan uses is missing
in a configured language or PBX format, a file's hash or header does not
match the manifest, a notice runs past the configured limit, the prompts
tell callers to press keys the engine does not treat as consent, or the
audio is older than its recording or text.  Warnings are advice
(placeholders still in use, a language only partly recorded).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from callguard.core.prompts import DIALPLAN_PROMPTS, ENGINE_PROMPTS, PAYMENT_PROMPTS
from callguard.prompts.build import find_source
from callguard.prompts.catalog import PromptCatalog
from callguard.prompts.formats import FORMATS, PBXES, sha256_bytes
from callguard.prompts.manifest import BuiltPrompt
from callguard.wav import AudioFormatError

#: Every prompt id the engine and the shipped dialplan refer to.
REQUIRED_PROMPTS = ENGINE_PROMPTS + PAYMENT_PROMPTS + DIALPLAN_PROMPTS


@dataclass
class CheckReport:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    files_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


def _check_file(path: Path, expected_sha: str, expected_bytes: int, fmt_name: str, duration_s: float,
                what: str, report: CheckReport) -> None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        report.errors.append(f"{what}: {path} is missing; run `callguard prompts build`"
                             + (" / `prompts install`" if "build" not in path.parts else ""))
        return
    except OSError as exc:
        report.errors.append(f"{what}: cannot read {path}: {exc.strerror or exc}")
        return
    report.files_checked += 1
    if len(data) != expected_bytes or sha256_bytes(data) != expected_sha:
        report.errors.append(f"{what}: {path} does not match the manifest (SHA-256 {sha256_bytes(data)[:12]}..., "
                             f"manifest {expected_sha[:12]}...); it was changed after the build. Rebuild "
                             f"(`callguard prompts build --force`) or reinstall it")
        return
    try:
        info = FORMATS[fmt_name].info(data)
    except AudioFormatError as exc:
        report.errors.append(f"{what}: {path}: {exc}")
        return
    if abs(info.duration_s - duration_s) > 0.02:
        report.errors.append(f"{what}: {path} lasts {info.duration_s:.3f} s, the manifest says {duration_s:.3f} s")


def _check_entry(catalog: PromptCatalog, built: BuiltPrompt, pbxes: Iterable[str], report: CheckReport) -> None:
    spec = catalog.spec
    prompt = spec.prompts[built.prompt_id]
    what = f"{built.prompt_id} ({built.language})"
    missing = [f for f in spec.build.formats if f not in built.files]
    if missing:
        report.errors.append(f"{what}: not built for {', '.join(missing)}; run `callguard prompts build`")
    for name, f in built.files.items():
        if name not in FORMATS:
            report.errors.append(f"{what}: unknown format {name!r} in the manifest; rebuild with `--force`")
            continue
        _check_file(catalog.build_dir / f.path, f.sha256, f.bytes, name, f.duration_s, what, report)
        fmt = FORMATS[name]
        installed = catalog.pbx_dirs[fmt.pbx]
        if fmt.pbx in pbxes and installed != catalog.build_dir / fmt.pbx:
            _check_file(installed / fmt.relpath(built.prompt_id, built.language), f.sha256, f.bytes, name,
                        f.duration_s, f"{what} installed for {fmt.pbx}", report)
    if built.text_sha256 != prompt.text_sha256(built.language):
        if built.origin == "placeholder":
            report.errors.append(f"{what}: the text changed after the placeholder was made, so the audio says "
                                 f"something else; run `callguard prompts synth` (it rebuilds)")
        else:
            report.warnings.append(f"{what}: the text changed after the recording was built; make sure the "
                                   f"recording says the new words, then run `callguard prompts build --force`")
    found = find_source(spec, prompt, built.language)
    if found is not None:
        source, origin = found
        if origin != built.origin:
            report.errors.append(f"{what}: a {origin} ({source}) exists but the audio was built from the "
                                 f"{built.origin}; run `callguard prompts build`")
        elif sha256_bytes(source.read_bytes()) != built.source.get("sha256"):
            report.errors.append(f"{what}: {source} changed after the build; run `callguard prompts build`")


def check_catalog(catalog: PromptCatalog, *, languages: Iterable[str], notice_max_s: float,
                  grant_digits: str | None = None, decline_digits: str | None = None,
                  notice_start_limit_s: float | None = None, notice_end_limit_s: float | None = None,
                  default_language: str | None = None, required: Iterable[str] = REQUIRED_PROMPTS,
                  pbxes: Iterable[str] = PBXES) -> CheckReport:
    """Everything that must hold before a PBX plays this catalogue."""
    report = CheckReport()
    spec = catalog.spec
    languages = list(languages)
    pbxes = list(pbxes)
    if default_language is not None and default_language not in languages:
        report.errors.append(f"[policy] default_language {default_language!r} is not in [prompts] languages "
                             f"({', '.join(languages)}): callers from elsewhere would get no notice")
    for pbx in pbxes:
        if not any(FORMATS[f].pbx == pbx for f in spec.build.formats):
            report.errors.append(f"[build] formats in {spec.path} has no {pbx} format; add e.g. "
                                 f"{next(f.name for f in FORMATS.values() if f.pbx == pbx)!r}")
    if grant_digits is not None and grant_digits != spec.grant_digits:
        report.errors.append(f"the prompts tell callers to press {spec.grant_digits} to agree, but [consent] "
                             f"grant_digits is {grant_digits!r}; re-record the prompts or change the config, then "
                             f"set [catalog] grant_digits in {spec.path}")
    if decline_digits is not None and decline_digits != spec.decline_digits:
        report.errors.append(f"the prompts tell callers to press {spec.decline_digits} to decline, but [consent] "
                             f"decline_digits is {decline_digits!r}; re-record the prompts or change the config, "
                             f"then set [catalog] decline_digits in {spec.path}")
    if manifest_formats := catalog.manifest.settings.get("formats"):
        if list(manifest_formats) != list(spec.build.formats):
            report.errors.append(f"the build has formats {', '.join(manifest_formats)} but [build] formats says "
                                 f"{', '.join(spec.build.formats)}; run `callguard prompts build`")
    if catalog.manifest.settings and catalog.manifest.settings != spec.build.as_dict():
        report.warnings.append("the [build] settings changed after the last build; run `callguard prompts build`")

    for prompt_id in required:
        if prompt_id not in spec.prompts:
            report.errors.append(f"{prompt_id}: used by callguard but missing from {spec.path}; add "
                                 f"[prompts.{prompt_id}] (see the catalogue shipped with callguard)")
    for language in languages:
        for prompt_id in spec.prompts:
            prompt = spec.prompts[prompt_id]
            what = f"{prompt_id} ({language})"
            if language not in prompt.texts:
                if prompt_id in required:
                    report.errors.append(f"{what}: no text in {spec.path}; add text.{language} and a recording")
                continue
            built = catalog.manifest.get(prompt_id, language)
            if built is None:
                report.errors.append(f"{what}: not built; run `callguard prompts build`"
                                     f" (or `prompts synth` for a placeholder)")
                continue
            _check_entry(catalog, built, pbxes, report)
            if prompt.is_notice and built.duration_s > notice_max_s:
                report.errors.append(f"{what}: lasts {built.duration_s:.2f} s, longer than [prompts] notice_max_s "
                                     f"= {notice_max_s:g} s; shorten the words or the recording")
            elif (prompt.is_notice and notice_start_limit_s is not None and notice_end_limit_s is not None
                  and notice_start_limit_s + built.duration_s > notice_end_limit_s):
                report.warnings.append(f"{what}: lasts {built.duration_s:.2f} s; if it starts at the latest allowed "
                                       f"{notice_start_limit_s:g} s it ends after [consent] notice_end_limit_s = "
                                       f"{notice_end_limit_s:g} s")
    unconfigured = sorted(spec.languages - set(languages))
    if unconfigured:
        report.warnings.append(f"the catalogue also has {', '.join(unconfigured)}, not in [prompts] languages: "
                               f"those callers hear the default language")
    placeholders = [f"{b.prompt_id} ({b.language})" for b in catalog.manifest.entries()
                    if b.origin == "placeholder" and b.language in languages]
    if placeholders:
        report.warnings.append(f"{len(placeholders)} prompt(s) still use espeak-ng placeholders; record them in "
                               f"{spec.source_dir} before going live")
    return report
