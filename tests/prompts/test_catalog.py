"""PromptCatalog as the engine and the adapters use it."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from callguard.config import parse_config
from callguard.core import events as ev
from callguard.core.commands import LedgerEntry, PlayAndCollect, PromptRef
from callguard.core.prompts import PromptResolver, UnknownPrompt
from callguard.core.session import CallSession
from callguard.prompts.catalog import PromptCatalog, default_catalog_path
from callguard.prompts.check import REQUIRED_PROMPTS, check_catalog
from callguard.prompts.spec import CatalogError
from callguard.wiring import build_policy, build_session_settings

from .conftest import needs_ffmpeg


@pytest.fixture
def catalog(catalog_dir: Path) -> PromptCatalog:
    return PromptCatalog.load(catalog_dir / "prompts.toml")


def test_satisfies_the_engine_protocol(catalog: PromptCatalog) -> None:
    assert isinstance(catalog, PromptResolver)
    assert catalog.languages() == frozenset({"en", "es"})


def test_resolve_gives_the_manifest_hash_and_duration(catalog: PromptCatalog, catalog_dir: Path) -> None:
    manifest = json.loads((catalog_dir / "build/manifest.json").read_text())
    ref = catalog.resolve("notice", "es")
    assert ref == PromptRef("notice", "es", manifest["prompts"]["notice"]["es"]["sha256"],
                            manifest["prompts"]["notice"]["es"]["duration_s"])
    sln16 = catalog.file_for(ref, "asterisk-sln16").read_bytes()
    assert hashlib.sha256(sln16).hexdigest() == ref.sha256
    assert catalog.resolve("notice", "en").sha256 != ref.sha256


def test_unknown_prompt_suggests_the_close_one(catalog: PromptCatalog) -> None:
    with pytest.raises(UnknownPrompt, match=r"unknown prompt 'notic' \(did you mean 'notice'\?\)"):
        catalog.resolve("notic", "en")


def test_missing_language_says_what_exists_and_what_to_do(catalog: PromptCatalog) -> None:
    with pytest.raises(UnknownPrompt) as info:
        catalog.resolve("notice", "de")
    message = str(info.value)
    assert "no 'de' version" in message and "en, es" in message and "text.de" in message


def test_text_without_built_audio_is_reported_as_unbuilt(catalog_dir: Path) -> None:
    toml = catalog_dir / "prompts.toml"
    toml.write_text(toml.read_text().replace('text.en = "notice in en.', 'text.fr = "avis."\ntext.en = "notice in en.'))
    catalog = PromptCatalog.load(toml)
    with pytest.raises(UnknownPrompt, match=r"'notice' \(fr\) .* not been built; run `callguard prompts build`"):
        catalog.resolve("notice", "fr")
    assert "fr" not in catalog.languages()  # incomplete languages are never chosen


def test_configured_languages_restrict_the_choice(catalog_dir: Path) -> None:
    catalog = PromptCatalog.load(catalog_dir / "prompts.toml", languages=["en"])
    assert catalog.languages() == frozenset({"en"})
    with pytest.raises(UnknownPrompt, match="not in \\[prompts\\] languages"):
        catalog.resolve("notice", "es")


def test_no_manifest_is_a_clear_error(catalog_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="no build manifest; run `callguard prompts build`"):
        PromptCatalog.load(catalog_dir / "prompts.toml", tmp_path / "empty")


def test_asterisk_path_has_no_extension_and_names_existing_files(catalog: PromptCatalog, catalog_dir: Path) -> None:
    ref = catalog.resolve("notice", "es")
    path = catalog.path_for(ref, "asterisk")
    assert path == str((catalog_dir / "build/asterisk/es/callguard/notice").absolute())
    assert all(Path(f"{path}.{ext}").is_file() for ext in ("wav", "ulaw", "sln16"))
    assert re.fullmatch(r"[A-Za-z0-9/._-]+", path)  # one GET DATA argument


def test_freeswitch_path_per_rate(catalog: PromptCatalog, catalog_dir: Path) -> None:
    ref = catalog.resolve("opt-out-confirm", "en")
    p8, p16 = catalog.path_for(ref, "freeswitch"), catalog.path_for(ref, "freeswitch", 16000)
    assert p8.endswith("/freeswitch/en/callguard/8000/opt-out-confirm.wav") and Path(p8).is_file()
    assert p16.endswith("/freeswitch/en/callguard/16000/opt-out-confirm.wav") and Path(p16).is_file()
    assert catalog.path_for(ref, "freeswitch", 48000) == p16  # nearest built rate


def test_installed_directories_are_used_when_configured(catalog_dir: Path, tmp_path: Path) -> None:
    catalog = PromptCatalog.load(catalog_dir / "prompts.toml", asterisk_dir=tmp_path / "ast",
                                 freeswitch_dir=tmp_path / "fs")
    ref = catalog.resolve("notice", "en")
    assert catalog.path_for(ref, "asterisk") == str(tmp_path / "ast/en/callguard/notice")
    assert catalog.path_for(ref, "freeswitch", 16000) == str(tmp_path / "fs/en/callguard/16000/notice.wav")


def test_a_directory_the_pbx_cannot_take_is_refused_at_load(catalog_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="spaces or special characters"):
        PromptCatalog.load(catalog_dir / "prompts.toml", asterisk_dir=tmp_path / "My Prompts")


def test_path_for_refuses_a_stale_reference(catalog: PromptCatalog) -> None:
    stale = PromptRef("notice", "en", "0" * 64, 1.0)
    with pytest.raises(UnknownPrompt, match="was rebuilt"):
        catalog.path_for(stale, "asterisk")
    with pytest.raises(ValueError, match="pbx must be one of"):
        catalog.path_for(catalog.resolve("notice", "en"), "yate")


def test_spanish_caller_gets_spanish_when_the_catalogue_has_it(catalog: PromptCatalog, catalog_dir: Path) -> None:
    policy = build_policy(parse_config({}, environ={}))
    assert policy.language_for("+34911234567", catalog.languages()) == "es"
    assert policy.language_for("+33142685300", catalog.languages()) == "en"  # no French here: default
    english_only = PromptCatalog.load(catalog_dir / "prompts.toml", languages=["en"])
    assert policy.language_for("+34911234567", english_only.languages()) == "en"


def test_the_session_plays_and_logs_the_callers_language(catalog: PromptCatalog) -> None:
    config = parse_config({}, environ={})
    session = CallSession("call-1", build_session_settings(config), build_policy(config), catalog)
    offered = ev.CallOffered(at=100.0, call_id="call-1", channel="PJSIP/a-1",
                             parties=(ev.Party("PJSIP/a-1", "+34911234567"),))
    commands = session.handle(offered) + session.handle(ev.CallAnswered(at=100.2))
    plays = [c for c in commands if isinstance(c, PlayAndCollect)]
    assert plays and plays[0].prompt == catalog.resolve("notice", "es")
    commands = session.handle(ev.NoticeStarted(at=100.5, channel="PJSIP/a-1"))
    started = [c for c in commands if isinstance(c, LedgerEntry) and c.kind == "notice-started"]
    assert started and started[0].data["language"] == "es"
    assert started[0].data["sha256"] == catalog.resolve("notice", "es").sha256


@needs_ffmpeg
def test_the_shipped_catalogue_is_complete_and_intact() -> None:
    catalog = PromptCatalog.load()
    assert default_catalog_path().is_file()
    assert {"en", "es", "fr"} <= catalog.languages()
    for pid in REQUIRED_PROMPTS:
        for lang in ("en", "es", "fr"):
            ref = catalog.resolve(pid, lang)
            assert ref.duration_s > 0.5 and len(ref.sha256) == 64
            assert Path(catalog.path_for(ref, "freeswitch")).is_file()
            assert Path(catalog.path_for(ref, "asterisk") + ".wav").is_file()
    config = parse_config({}, environ={})
    report = check_catalog(catalog, languages=config.prompts.languages, notice_max_s=config.prompts.notice_max_s,
                           grant_digits=config.consent.grant_digits, decline_digits=config.consent.decline_digits,
                           notice_start_limit_s=config.consent.notice_start_limit_s,
                           notice_end_limit_s=config.consent.notice_end_limit_s)
    assert report.errors == []
    assert [w for w in report.warnings if "placeholder" not in w] == []


def test_the_shipped_keypress_instructions_match_the_default_consent_config() -> None:
    config = parse_config({}, environ={})
    spec = PromptCatalog.load().spec
    assert (spec.grant_digits, spec.decline_digits) == (config.consent.grant_digits, config.consent.decline_digits)
    for pid in ("notice", "notice-sensitive", "no-input-retry", "invalid-retry", "renotice-join"):
        for lang, text in spec.prompts[pid].texts.items():
            digits = re.findall(r"\d", text)
            assert digits == [config.consent.grant_digits, config.consent.decline_digits], (pid, lang, text)
