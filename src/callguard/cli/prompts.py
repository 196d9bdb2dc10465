"""``callguard prompts ...``: the IVR designer's commands.

``init`` copies the shipped catalogue to edit, ``synth`` makes placeholder
audio, ``build`` converts recordings for both PBXs, ``check`` gates a
deployment, ``install`` copies the audio where the PBX looks, ``list`` and
``show`` tell what is there.  Every command takes ``--catalog`` (default:
``[prompts] catalog`` in callguard.toml, else the catalogue shipped with
callguard).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import click

from callguard.cli.common import get_config
from callguard.config import Config
from callguard.prompts.audio import AudioError
from callguard.prompts.catalog import PromptCatalog, default_catalog_path
from callguard.prompts.formats import FORMATS, PBXES
from callguard.prompts.spec import CatalogError, CatalogSpec, load_catalog_spec


def _fail(problems: list[str]) -> click.ClickException:
    return click.ClickException("\n  ".join(problems) if len(problems) == 1 else
                                "\n  " + "\n  ".join(problems))


def _config_path(config: Config, value: str) -> Path | None:
    """A path from callguard.toml, relative to the file it appears in."""
    if not value:
        return None
    path = Path(value).expanduser()
    source = Path(config.source)
    return source.parent / path if not path.is_absolute() and source.is_file() else path


def _catalog_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--catalog", "catalog_path", type=click.Path(dir_okay=False), default=None,
                        help="prompts.toml to use (default: [prompts] catalog, else the shipped one).")(fn)


def _spec(ctx: click.Context, catalog_path: str | None) -> tuple[Config, CatalogSpec]:
    config = get_config(ctx)
    path = Path(catalog_path) if catalog_path else (_config_path(config, config.prompts.catalog)
                                                    or default_catalog_path())
    try:
        return config, load_catalog_spec(path)
    except CatalogError as exc:
        raise _fail(exc.problems) from None


def _catalog(ctx: click.Context, catalog_path: str | None, restrict: bool = False) -> tuple[Config, PromptCatalog]:
    config = get_config(ctx)
    p = config.prompts
    try:
        catalog = PromptCatalog.load(
            Path(catalog_path) if catalog_path else _config_path(config, p.catalog),
            None if catalog_path else _config_path(config, p.audio_dir),
            languages=p.languages if restrict else None,
            asterisk_dir=_config_path(config, p.asterisk_dir), freeswitch_dir=_config_path(config, p.freeswitch_dir))
    except CatalogError as exc:
        raise _fail(exc.problems) from None
    return config, catalog


def _parse_voices(values: tuple[str, ...]) -> dict[str, str]:
    voices = {}
    for value in values:
        lang, sep, voice = value.partition("=")
        if not sep or not lang or not voice:
            raise click.BadParameter(f"{value!r}: use LANGUAGE=VOICE, e.g. es=es-419", param_hint="--voice")
        voices[lang] = voice
    return voices


@click.group("prompts")
def prompts_group() -> None:
    """IVR prompts: catalogue, audio for Asterisk and FreeSWITCH, checks."""


@prompts_group.command("init")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Overwrite an existing prompts.toml in DIRECTORY.")
def init(directory: str, force: bool) -> None:
    """Copy the shipped catalogue (texts + built audio) to DIRECTORY to customise it."""
    target = Path(directory)
    shipped = default_catalog_path()
    if (target / "prompts.toml").exists() and not force:
        raise click.ClickException(f"{target / 'prompts.toml'} already exists; edit it, or pass --force to replace it")
    spec = load_catalog_spec(shipped)
    try:
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(shipped, target / "prompts.toml")
        for src in (spec.build_dir, spec.placeholder_dir):
            if src.is_dir():
                shutil.copytree(src, target / src.relative_to(shipped.parent), dirs_exist_ok=True)
        (target / spec.source_dir.relative_to(shipped.parent)).mkdir(exist_ok=True)
    except OSError as exc:
        raise click.ClickException(f"cannot copy the catalogue to {target}: {exc.strerror or exc}") from None
    click.echo(f"copied the catalogue to {target}")
    click.echo("next: put recordings in source/<language>/<prompt>.wav (or edit the texts and run "
               "`callguard prompts synth`), then `callguard prompts build` and `check`.")
    click.echo("callguard.toml:")
    click.echo(f'  [prompts]\n  catalog = "{(target / "prompts.toml").absolute()}"')


@prompts_group.command("synth")
@_catalog_option
@click.option("--prompt", "prompt_ids", multiple=True, help="Only this prompt id (repeatable).")
@click.option("--language", "languages", multiple=True, help="Only this language (repeatable).")
@click.option("--voice", "voices", multiple=True, help="espeak-ng voice for a language: LANG=VOICE (repeatable).")
@click.option("--build/--no-build", "then_build", default=True, show_default=True,
              help="Build the PBX audio right after synthesizing.")
@click.pass_context
def synth(ctx: click.Context, catalog_path: str | None, prompt_ids: tuple[str, ...], languages: tuple[str, ...],
          voices: tuple[str, ...], then_build: bool) -> None:
    """Make espeak-ng placeholder audio from the texts (never over a recording)."""
    from callguard.prompts.synth import synthesize

    config, spec = _spec(ctx, catalog_path)
    try:
        made = synthesize(spec, prompt_ids=list(prompt_ids) or None, languages=list(languages) or None,
                          voices=_parse_voices(voices))
    except AudioError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"synthesized {len(made)} placeholder(s) in {spec.placeholder_dir}")
    if then_build:
        _run_build(config, spec, list(prompt_ids), list(languages), force=False, jobs=None)


def _run_build(config: Config, spec: CatalogSpec, prompt_ids: list[str], languages: list[str], force: bool,
               jobs: int | None) -> None:
    from callguard.prompts.build import build_catalog

    try:
        result = build_catalog(spec, prompt_ids=prompt_ids or None, languages=languages or None, force=force,
                               jobs=jobs, notice_max_s=config.prompts.notice_max_s)
    except CatalogError as exc:
        raise _fail(exc.problems) from None
    except AudioError as exc:
        raise click.ClickException(str(exc)) from None
    for built in result.built:
        click.echo(f"  {built.prompt_id:<20} {built.language:<5} {built.duration_s:6.2f} s  "
                   f"trimmed {built.trimmed_s['start']:.2f}+{built.trimmed_s['end']:.2f} s  "
                   f"gain {built.gain_db:+.1f} dB  {built.origin}")
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"built {len(result.built)}, unchanged {len(result.unchanged)}, removed {len(result.removed)} "
               f"file(s); manifest {result.manifest_path}")


@prompts_group.command("build")
@_catalog_option
@click.option("--prompt", "prompt_ids", multiple=True, help="Only this prompt id (repeatable).")
@click.option("--language", "languages", multiple=True, help="Only this language (repeatable).")
@click.option("--force", is_flag=True, help="Rebuild everything, even unchanged prompts.")
@click.option("--jobs", type=click.IntRange(1, 64), default=None, help="Parallel conversions (default: 2 x CPUs).")
@click.pass_context
def build(ctx: click.Context, catalog_path: str | None, prompt_ids: tuple[str, ...], languages: tuple[str, ...],
          force: bool, jobs: int | None) -> None:
    """Trim, normalise and convert recordings for Asterisk and FreeSWITCH; write the manifest."""
    config, spec = _spec(ctx, catalog_path)
    _run_build(config, spec, list(prompt_ids), list(languages), force, jobs)


@prompts_group.command("check")
@_catalog_option
@click.option("--pbx", type=click.Choice([*PBXES, "all"]), default="all", show_default=True,
              help="Which PBX's formats and installed files to check.")
@click.pass_context
def check(ctx: click.Context, catalog_path: str | None, pbx: str) -> None:
    """Fail unless every prompt exists in every configured language and PBX format, intact and short enough."""
    from callguard.prompts.check import check_catalog

    config, catalog = _catalog(ctx, catalog_path)
    report = check_catalog(
        catalog, languages=config.prompts.languages, notice_max_s=config.prompts.notice_max_s,
        grant_digits=config.consent.grant_digits, decline_digits=config.consent.decline_digits,
        notice_start_limit_s=config.consent.notice_start_limit_s,
        notice_end_limit_s=config.consent.notice_end_limit_s, default_language=config.policy.default_language,
        pbxes=PBXES if pbx == "all" else (pbx,))
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    if not report.ok:
        raise _fail([f"{len(report.errors)} problem(s) in {catalog.spec.path}:"] + report.errors)
    click.echo(f"OK: {len(catalog.spec.prompts)} prompts in {', '.join(config.prompts.languages)}; "
               f"{report.files_checked} files verified against {catalog.build_dir / 'manifest.json'}")


@prompts_group.command("install")
@_catalog_option
@click.option("--asterisk", "asterisk_dir", type=click.Path(file_okay=False), default=None,
              help="Asterisk sounds directory, e.g. /var/lib/asterisk/sounds.")
@click.option("--freeswitch", "freeswitch_dir", type=click.Path(file_okay=False), default=None,
              help="FreeSWITCH sounds directory, e.g. /usr/share/freeswitch/sounds.")
@click.option("--language", "languages", multiple=True, help="Only this language (repeatable).")
@click.option("--dry-run", is_flag=True, help="Say what would be copied, copy nothing.")
@click.pass_context
def install_cmd(ctx: click.Context, catalog_path: str | None, asterisk_dir: str | None, freeswitch_dir: str | None,
                languages: tuple[str, ...], dry_run: bool) -> None:
    """Copy the built prompts where the PBX looks for them (verified, atomic)."""
    from callguard.prompts.install import install

    targets = [(pbx, Path(d)) for pbx, d in (("asterisk", asterisk_dir), ("freeswitch", freeswitch_dir)) if d]
    if not targets:
        raise click.UsageError("say where: --asterisk DIR and/or --freeswitch DIR")
    _, catalog = _catalog(ctx, catalog_path)
    for pbx, target in targets:
        try:
            result = install(catalog, pbx, target, languages=list(languages) or None, dry_run=dry_run)
        except CatalogError as exc:
            raise _fail(exc.problems) from None
        verb = "would copy" if dry_run else "copied"
        click.echo(f"{pbx}: {verb} {len(result.copied)} file(s), {len(result.unchanged)} already up to date, "
                   f"in {target}")
        for path in result.copied if dry_run else []:
            click.echo(f"  {path}")
        click.echo(f'  so the listener names these files, set in callguard.toml: [prompts] {pbx}_dir = '
                   f'"{target.absolute()}"')


@prompts_group.command("list")
@_catalog_option
@click.option("--number", default=None, help="Also show which language a caller from NUMBER hears.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def list_cmd(ctx: click.Context, catalog_path: str | None, number: str | None, as_json: bool) -> None:
    """Every prompt with its duration per language (* = espeak-ng placeholder)."""
    from callguard.wiring import build_policy

    config, catalog = _catalog(ctx, catalog_path, restrict=True)
    spec = catalog.spec
    langs = sorted(spec.languages)
    chosen = build_policy(config).language_for(number, catalog.languages()) if number else None
    if as_json:
        click.echo(json.dumps({
            "catalog": str(spec.path), "build_dir": str(catalog.build_dir),
            "languages": sorted(catalog.languages()),
            **({"number": number, "language": chosen} if number else {}),
            "prompts": {pid: {"purpose": p.purpose, "kind": p.kind, "used_by": p.used_by,
                              "languages": {lang: catalog.manifest.get(pid, lang).as_dict()
                                            for lang in langs if catalog.manifest.get(pid, lang)}}
                        for pid, p in spec.prompts.items()},
        }, indent=2, ensure_ascii=False))
        return
    click.echo(f"catalogue: {spec.path} ({spec.name})")
    click.echo(f"audio:     {catalog.build_dir} ({', '.join(spec.build.formats)})")
    click.echo(f"languages: {', '.join(sorted(catalog.languages())) or '(none complete)'}"
               f" (configured: {', '.join(config.prompts.languages)})")
    if number:
        click.echo(f"a caller from {number} hears: {chosen}")
    click.echo("")
    click.echo(f"{'ID':<18} {'KIND':<13} {'USED BY':<9}" + "".join(f"{lang:>9}" for lang in langs))
    placeholder = False
    for pid, prompt in spec.prompts.items():
        cells = []
        for lang in langs:
            built = catalog.manifest.get(pid, lang)
            if built is None:
                cells.append("-" if lang not in prompt.texts else "unbuilt")
            else:
                placeholder |= built.origin == "placeholder"
                cells.append(f"{built.duration_s:.2f}s" + ("*" if built.origin == "placeholder" else " "))
        click.echo(f"{pid:<18} {prompt.kind:<13} {prompt.used_by:<9}" + "".join(f"{c:>9}" for c in cells))
    if placeholder:
        click.echo("\n* espeak-ng placeholder: record it before going live")


@prompts_group.command("show")
@_catalog_option
@click.argument("prompt_id")
@click.option("--language", "languages", multiple=True, help="Only this language (repeatable).")
@click.pass_context
def show(ctx: click.Context, catalog_path: str | None, prompt_id: str, languages: tuple[str, ...]) -> None:
    """One prompt: purpose, exact words, audio hash and the file each PBX plays."""
    from callguard.core.prompts import UnknownPrompt

    _, catalog = _catalog(ctx, catalog_path)
    try:
        prompt = catalog.prompt(prompt_id)
    except UnknownPrompt as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{prompt.prompt_id}: {prompt.purpose}")
    click.echo(f"  kind {prompt.kind}, played by the {prompt.used_by}"
               + (", collects a keypress" if prompt.collects_digits else ""))
    for lang in sorted(prompt.texts):
        if languages and lang not in languages:
            continue
        click.echo(f"\n[{lang}] {prompt.texts[lang]}")
        try:
            ref = catalog.resolve(prompt_id, lang)
        except UnknownPrompt as exc:
            click.echo(f"  {exc}")
            continue
        built = catalog.built(ref)
        click.echo(f"  {built.duration_s:.2f} s, {built.origin} {built.source.get('path')}, sha256 {built.sha256}")
        for pbx in PBXES:
            if any(FORMATS[f].pbx == pbx for f in built.files):
                click.echo(f"  {pbx}: {catalog.path_for(ref, pbx)}")
