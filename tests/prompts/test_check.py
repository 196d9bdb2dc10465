"""``check_catalog``: the deployment gate, one failure mode at a time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from callguard.prompts.catalog import PromptCatalog
from callguard.prompts.check import REQUIRED_PROMPTS, check_catalog


def _check(root: Path, **overrides):
    catalog = PromptCatalog.load(root / "prompts.toml", **overrides.pop("load", {}))
    kwargs = dict(languages=["en", "es"], notice_max_s=10.0, grant_digits="1", decline_digits="2",
                  notice_start_limit_s=2.0, notice_end_limit_s=10.0)
    kwargs.update(overrides)
    return check_catalog(catalog, **kwargs)


def test_a_complete_build_passes(catalog_dir: Path) -> None:
    report = _check(catalog_dir)
    assert report.errors == [] and report.warnings == []
    assert report.files_checked == len(REQUIRED_PROMPTS) * 2 * 5


def test_notice_longer_than_the_limit_fails(catalog_dir: Path) -> None:
    durations = {pid: langs["en"]["duration_s"]
                 for pid, langs in json.loads((catalog_dir / "build/manifest.json").read_text())["prompts"].items()}
    limit = durations["notice"] - 0.05
    report = _check(catalog_dir, notice_max_s=limit)
    assert f"notice (en): lasts {durations['notice']:.2f} s, longer than [prompts] notice_max_s = {limit:g} s; " \
           f"shorten the words or the recording" in report.errors
    # only notices are limited: the longer retry prompts are not
    assert not any(e.startswith(("no-input-retry", "invalid-retry", "pause-confirm")) for e in report.errors)


def test_notice_that_would_end_late_is_a_warning(catalog_dir: Path) -> None:
    report = _check(catalog_dir, notice_start_limit_s=9.8)
    assert report.errors == []
    assert any(w.startswith("notice (en): lasts") and "notice_end_limit_s = 10 s" in w for w in report.warnings)


def test_configured_language_without_prompts_fails(catalog_dir: Path) -> None:
    report = _check(catalog_dir, languages=["en", "es", "de"])
    assert "notice (de): no text in" in report.errors[0] and "add text.de and a recording" in report.errors[0]
    assert len([e for e in report.errors if "(de)" in e]) == len(REQUIRED_PROMPTS)


def test_missing_and_tampered_files_fail(catalog_dir: Path) -> None:
    (catalog_dir / "build/freeswitch/es/callguard/16000/notice.wav").unlink()
    ulaw = catalog_dir / "build/asterisk/en/callguard/opt-out-confirm.ulaw"
    ulaw.write_bytes(ulaw.read_bytes()[:-1] + b"\x00")
    report = _check(catalog_dir)
    assert any("notice (es):" in e and "16000/notice.wav is missing" in e for e in report.errors)
    assert any("opt-out-confirm (en):" in e and "does not match the manifest" in e for e in report.errors)
    assert len(report.errors) == 2


def test_a_required_prompt_missing_from_the_catalogue_fails(catalog_dir: Path) -> None:
    toml = catalog_dir / "prompts.toml"
    text = toml.read_text()
    start = text.index("[prompts.fallback-notice]")
    toml.write_text(text[:start])
    report = _check(catalog_dir)
    assert any(e.startswith("fallback-notice: used by callguard but missing from") for e in report.errors)


def test_keys_in_the_prompts_must_match_the_consent_config(catalog_dir: Path) -> None:
    report = _check(catalog_dir, grant_digits="5")
    assert any("tell callers to press 1 to agree, but [consent] grant_digits is '5'" in e for e in report.errors)


def test_changed_recording_after_the_build_fails(catalog_dir: Path) -> None:
    from .conftest import tone, write_audio

    write_audio(tone(500, freq=999), catalog_dir / "source/en/notice.wav")
    report = _check(catalog_dir)
    assert any("notice (en):" in e and "changed after the build; run `callguard prompts build`" in e
               for e in report.errors)


def test_changed_text_after_the_build_is_flagged(catalog_dir: Path) -> None:
    toml = catalog_dir / "prompts.toml"
    toml.write_text(toml.read_text().replace('"notice in en.', '"A new notice in en.'))
    report = _check(catalog_dir)
    assert report.errors == []
    assert any("notice (en): the text changed after the recording was built" in w for w in report.warnings)


def test_installed_copies_are_checked_too(catalog_dir: Path, tmp_path: Path) -> None:
    from callguard.prompts.install import install

    catalog = PromptCatalog.load(catalog_dir / "prompts.toml")
    install(catalog, "asterisk", tmp_path / "sounds")
    assert _check(catalog_dir, load={"asterisk_dir": tmp_path / "sounds"}).errors == []
    (tmp_path / "sounds/es/callguard/notice.wav").write_bytes(b"RIFF")
    errors = _check(catalog_dir, load={"asterisk_dir": tmp_path / "sounds"}).errors
    assert len(errors) == 1 and "notice (es) installed for asterisk" in errors[0]


@pytest.mark.parametrize("pbx", ["asterisk", "freeswitch"])
def test_a_pbx_with_no_format_fails(catalog_dir: Path, pbx: str) -> None:
    toml = catalog_dir / "prompts.toml"
    other = "freeswitch" if pbx == "asterisk" else "asterisk"
    formats = {"asterisk": '["asterisk-wav", "asterisk-ulaw", "asterisk-sln16"]',
               "freeswitch": '["freeswitch-8000", "freeswitch-16000"]'}[other]
    text = toml.read_text()
    start = text.index("formats = ")
    toml.write_text(text[:start] + f"formats = {formats}" + text[text.index("\n", start):])
    report = _check(catalog_dir, pbxes=(pbx,))
    assert any(f"has no {pbx} format" in e for e in report.errors)
    assert any("the build has formats" in e for e in report.errors)


def test_the_default_language_must_be_a_configured_one(catalog_dir: Path) -> None:
    report = _check(catalog_dir, default_language="fr")
    assert report.errors == ["[policy] default_language 'fr' is not in [prompts] languages (en, es): callers "
                             "from elsewhere would get no notice"]
    assert _check(catalog_dir, default_language="en").errors == []
