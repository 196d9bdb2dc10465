"""``callguard prompts ...`` driven as a designer would: CliRunner and one real process."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from callguard.cli import main
from callguard.prompts.check import REQUIRED_PROMPTS

from .conftest import needs_espeak, needs_ffmpeg, tone, write_audio, write_catalog


def _config(tmp_path: Path, catalog: Path, extra: str = "") -> Path:
    path = tmp_path / "callguard.toml"
    path.write_text(f'[prompts]\ncatalog = "{catalog}"\nlanguages = ["en", "es"]\n{extra}')
    return path


def _run(*args: str, config: Path | None = None):
    argv = (["--config", str(config)] if config else []) + list(args)
    return CliRunner().invoke(main, argv, catch_exceptions=False)


def test_list_show_and_check_a_built_catalogue(catalog_dir: Path, tmp_path: Path) -> None:
    config = _config(tmp_path, catalog_dir / "prompts.toml")
    listing = _run("prompts", "list", "--number", "+34911234567", config=config)
    assert listing.exit_code == 0, listing.output
    assert "a caller from +34911234567 hears: es" in listing.output
    assert [line.split()[0] for line in listing.output.splitlines() if line.startswith(("notice ", "fallback"))] \
        == ["notice", "fallback-notice"]

    as_json = json.loads(_run("prompts", "list", "--json", config=config).output)
    assert as_json["languages"] == ["en", "es"]
    assert as_json["prompts"]["notice"]["languages"]["es"]["files"]["asterisk-wav"]["path"] == \
        "asterisk/es/callguard/notice.wav"

    show = _run("prompts", "show", "notice", "--language", "es", config=config)
    assert show.exit_code == 0 and "[es] notice in es. Press 1 to agree" in show.output
    assert f"asterisk: {catalog_dir.absolute()}/build/asterisk/es/callguard/notice\n" in show.output

    check = _run("prompts", "check", config=config)
    assert check.exit_code == 0, check.output
    n = len(REQUIRED_PROMPTS)
    assert f"OK: {n} prompts in en, es; {n * 10} files verified" in check.output


def test_check_fails_with_every_problem_and_a_nonzero_exit(catalog_dir: Path, tmp_path: Path) -> None:
    config = _config(tmp_path, catalog_dir / "prompts.toml", "notice_max_s = 0.3\n")
    (catalog_dir / "build/asterisk/en/callguard/notice.ulaw").unlink()
    result = _run("prompts", "check", config=config)
    assert result.exit_code == 1
    assert "Error:" in result.output and "problem(s) in" in result.output
    assert "notice (en): " in result.output and "notice.ulaw is missing" in result.output
    assert "longer than [prompts] notice_max_s = 0.3 s" in result.output
    assert "Traceback" not in result.output


def test_unknown_prompt_and_missing_catalogue_are_clear_errors(catalog_dir: Path, tmp_path: Path) -> None:
    config = _config(tmp_path, catalog_dir / "prompts.toml")
    result = _run("prompts", "show", "notise", config=config)
    assert result.exit_code == 1 and "unknown prompt 'notise' (did you mean 'notice'?)" in result.output
    result = _run("prompts", "check", "--catalog", str(tmp_path / "nope.toml"), config=config)
    assert result.exit_code == 1 and "catalogue not found" in result.output


def test_install_copies_into_each_pbx_layout(catalog_dir: Path, tmp_path: Path) -> None:
    config = _config(tmp_path, catalog_dir / "prompts.toml")
    ast, fs = tmp_path / "asterisk-sounds", tmp_path / "fs-sounds"
    dry = _run("prompts", "install", "--asterisk", str(ast), "--dry-run", config=config)
    asterisk_files, freeswitch_files = len(REQUIRED_PROMPTS) * 2 * 3, len(REQUIRED_PROMPTS) * 2 * 2
    assert dry.exit_code == 0 and f"would copy {asterisk_files} file(s)" in dry.output and not ast.exists()
    result = _run("prompts", "install", "--asterisk", str(ast), "--freeswitch", str(fs), config=config)
    assert result.exit_code == 0, result.output
    assert f"asterisk: copied {asterisk_files} file(s)" in result.output
    assert f"freeswitch: copied {freeswitch_files} file(s)" in result.output
    assert f'[prompts] asterisk_dir = "{ast.absolute()}"' in result.output
    manifest = json.loads((catalog_dir / "build/manifest.json").read_text())
    entry = manifest["prompts"]["notice"]["es"]["files"]
    assert hashlib.sha256((ast / "es/callguard/notice.sln16").read_bytes()).hexdigest() == \
        entry["asterisk-sln16"]["sha256"]
    assert hashlib.sha256((fs / "es/callguard/16000/notice.wav").read_bytes()).hexdigest() == \
        entry["freeswitch-16000"]["sha256"]
    again = _run("prompts", "install", "--asterisk", str(ast), config=config)
    assert f"copied 0 file(s), {asterisk_files} already up to date" in again.output
    # the installed copies are what the listener names once configured
    config = _config(tmp_path, catalog_dir / "prompts.toml", f'asterisk_dir = "{ast}"\n')
    show = _run("prompts", "show", "notice", "--language", "es", config=config)
    assert f"asterisk: {ast}/es/callguard/notice\n" in show.output


def test_install_needs_a_target_and_a_clean_build(catalog_dir: Path, tmp_path: Path) -> None:
    config = _config(tmp_path, catalog_dir / "prompts.toml")
    result = _run("prompts", "install", config=config)
    assert result.exit_code == 2 and "--asterisk DIR and/or --freeswitch DIR" in result.output
    (catalog_dir / "build/freeswitch/en/callguard/8000/notice.wav").write_bytes(b"corrupt")
    result = _run("prompts", "install", "--freeswitch", str(tmp_path / "fs"), config=config)
    assert result.exit_code == 1 and "does not match the manifest" in result.output
    assert "nothing was installed" in result.output and not (tmp_path / "fs").exists()


@needs_ffmpeg
def test_build_from_the_cli_reports_each_prompt(tmp_path: Path) -> None:
    catalog = write_catalog(tmp_path / "cat", {"hello": {"text": {"en": "Hello."}}})
    write_audio(tone(600, lead_ms=300, rate=44100, channels=2), tmp_path / "cat/source/en/hello.wav")
    config = _config(tmp_path, catalog)
    result = _run("prompts", "build", config=config)
    assert result.exit_code == 0, result.output
    assert "hello" in result.output and "0.65 s" in result.output and "trimmed 0.25+0.00 s" in result.output
    assert "built 1, unchanged 0" in result.output
    assert "built 0, unchanged 1" in _run("prompts", "build", config=config).output
    missing = write_catalog(tmp_path / "cat2", {"bye": {"text": {"en": "Bye."}}})
    result = _run("prompts", "build", "--catalog", str(missing), config=config)
    assert result.exit_code == 1 and "bye (en): no recording at source/en/bye.wav" in result.output


@needs_espeak
@needs_ffmpeg
def test_synth_makes_placeholders_and_builds_them(tmp_path: Path) -> None:
    catalog = write_catalog(tmp_path / "cat", {
        "notice": {"kind": "notice", "text": {"en": "This call is recorded.", "es": "Esta llamada se graba."}}})
    config = _config(tmp_path, catalog)
    result = _run("prompts", "synth", config=config)
    assert result.exit_code == 0, result.output
    assert "synthesized 2 placeholder(s)" in result.output and "built 2" in result.output
    manifest = json.loads((tmp_path / "cat/build/manifest.json").read_text())
    for lang in ("en", "es"):
        entry = manifest["prompts"]["notice"][lang]
        assert entry["origin"] == "placeholder" and 0.8 < entry["duration_s"] < 4
    bad = _run("prompts", "synth", "--voice", "es=klingon", config=config)
    assert bad.exit_code == 1 and "no espeak-ng voice 'klingon' for 'es'" in bad.output


def test_init_copies_the_shipped_catalogue(tmp_path: Path) -> None:
    target = tmp_path / "my-prompts"
    result = _run("prompts", "init", str(target))
    assert result.exit_code == 0, result.output
    assert (target / "prompts.toml").is_file() and (target / "build/manifest.json").is_file()
    assert (target / "build/asterisk/es/callguard/notice.wav").is_file()
    config = _config(tmp_path, target / "prompts.toml")
    check = _run("prompts", "check", config=config)
    assert check.exit_code == 0 and f"{target / 'build' / 'manifest.json'}" in check.output
    again = _run("prompts", "init", str(target))
    assert again.exit_code == 1 and "already exists" in again.output


def test_real_process_checks_the_shipped_catalogue(tmp_path: Path) -> None:
    """The installed console script, in its own process, against the catalogue callguard ships."""
    exe = Path(sys.executable).with_name("callguard")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from callguard.cli import main; main()"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLGUARD_")}
    (tmp_path / "callguard.toml").write_text("[prompts]\n")
    proc = subprocess.run(cmd + ["--config", str(tmp_path / "callguard.toml"), "prompts", "check", "--pbx", "all"],
                          capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"OK: {len(REQUIRED_PROMPTS)} prompts in en, es, fr;")
    assert "still use espeak-ng placeholders" in proc.stderr
    proc = subprocess.run(cmd + ["--config", str(tmp_path / "callguard.toml"), "prompts", "show", "nope"],
                          capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert proc.returncode == 1 and "unknown prompt 'nope'" in proc.stderr and "Traceback" not in proc.stderr
