"""Build errors, all-or-nothing writes, incremental rebuilds, recording vs placeholder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from callguard.prompts.build import BuildError, build_catalog
from callguard.prompts.spec import CatalogError, load_catalog_spec

from .conftest import needs_ffmpeg, tone, write_audio, write_catalog

pytestmark = needs_ffmpeg

TWO = {"hello": {"text": {"en": "Hello."}}, "bye": {"text": {"en": "Bye."}}}


def _manifest(root: Path) -> dict:
    return json.loads((root / "build/manifest.json").read_text())


def test_missing_recording_names_the_file_and_the_fix(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, TWO)
    write_audio(tone(300), tmp_path / "source/en/hello.wav")
    with pytest.raises(BuildError) as info:
        build_catalog(load_catalog_spec(path))
    assert info.value.problems == ["bye (en): no recording at source/en/bye.wav and no placeholder; record it, "
                                   "or run `callguard prompts synth --language en`"]
    assert not (tmp_path / "build").exists()  # nothing written, not even hello


def test_a_broken_recording_leaves_the_previous_build_untouched(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, TWO)
    write_audio(tone(300), tmp_path / "source/en/hello.wav")
    write_audio(tone(400), tmp_path / "source/en/bye.wav")
    build_catalog(load_catalog_spec(path))
    before = (tmp_path / "build/manifest.json").read_bytes()
    old_wav = (tmp_path / "build/asterisk/en/callguard/hello.wav").read_bytes()

    write_audio(tone(900, freq=880), tmp_path / "source/en/hello.wav")  # a good new take ...
    (tmp_path / "source/en/bye.wav").write_bytes(b"this is not audio at all" * 10)  # ... and a broken file
    with pytest.raises(BuildError) as info:
        build_catalog(load_catalog_spec(path))
    assert any(p.startswith("bye (en):") and "cannot decode" in p for p in info.value.problems)
    assert "nothing was written" in info.value.problems[-1]
    assert (tmp_path / "build/manifest.json").read_bytes() == before
    assert (tmp_path / "build/asterisk/en/callguard/hello.wav").read_bytes() == old_wav


def test_a_silent_recording_is_refused(tmp_path: Path) -> None:
    from pydub import AudioSegment

    path = write_catalog(tmp_path, {"hello": {"text": {"en": "Hello."}}})
    write_audio(AudioSegment.silent(1000, frame_rate=16000), tmp_path / "source/en/hello.wav")
    with pytest.raises(BuildError, match="hello \\(en\\): .*completely silent"):
        build_catalog(load_catalog_spec(path))


def test_unchanged_prompts_are_skipped_and_changed_ones_rebuilt(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, TWO)
    write_audio(tone(300), tmp_path / "source/en/hello.wav")
    write_audio(tone(400), tmp_path / "source/en/bye.wav")
    first = build_catalog(load_catalog_spec(path))
    assert len(first.built) == 2
    again = build_catalog(load_catalog_spec(path))
    assert (len(again.built), len(again.unchanged)) == (0, 2)

    write_audio(tone(600, freq=500), tmp_path / "source/en/bye.wav")
    third = build_catalog(load_catalog_spec(path))
    assert [b.prompt_id for b in third.built] == ["bye"] and len(third.unchanged) == 1
    assert _manifest(tmp_path)["prompts"]["bye"]["en"]["duration_s"] == pytest.approx(0.6, abs=0.02)

    (tmp_path / "build/asterisk/en/callguard/hello.ulaw").write_bytes(b"\xff" * 100)  # damaged output
    fourth = build_catalog(load_catalog_spec(path))
    assert [b.prompt_id for b in fourth.built] == ["hello"]


def test_a_recording_wins_over_the_placeholder(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, {"hello": {"text": {"en": "Hello."}}})
    write_audio(tone(300), tmp_path / "placeholders/en/hello.wav")
    result = build_catalog(load_catalog_spec(path))
    assert result.built[0].origin == "placeholder"
    assert any("placeholder" in w and "source/en/hello.wav" in w for w in result.warnings)
    write_audio(tone(800), tmp_path / "source/en/hello.wav")
    result = build_catalog(load_catalog_spec(path))
    assert result.built[0].origin == "recording"
    assert result.built[0].duration_s == pytest.approx(0.8, abs=0.02)


def test_designer_warnings_for_narrowband_and_clipped_recordings(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, {"hello": {"text": {"en": "Hello."}}})
    write_audio(tone(500, rate=8000, dbfs=0.0), tmp_path / "source/en/hello.wav")
    warnings = build_catalog(load_catalog_spec(path)).warnings
    assert any("8000 Hz" in w and "upsampled" in w for w in warnings)
    assert any("full scale" in w for w in warnings)


def test_removed_prompts_lose_their_files(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, TWO)
    write_audio(tone(300), tmp_path / "source/en/hello.wav")
    write_audio(tone(400), tmp_path / "source/en/bye.wav")
    build_catalog(load_catalog_spec(path))
    write_catalog(tmp_path, {"hello": TWO["hello"]})
    result = build_catalog(load_catalog_spec(path))
    assert "asterisk/en/callguard/bye.wav" in result.removed
    assert not (tmp_path / "build/asterisk/en/callguard/bye.wav").exists()
    assert list(_manifest(tmp_path)["prompts"]) == ["hello"]


def test_partial_build_keeps_the_other_prompts(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, TWO)
    write_audio(tone(300), tmp_path / "source/en/hello.wav")
    write_audio(tone(400), tmp_path / "source/en/bye.wav")
    build_catalog(load_catalog_spec(path))
    write_audio(tone(700), tmp_path / "source/en/hello.wav")
    result = build_catalog(load_catalog_spec(path), prompt_ids=["hello"])
    assert [b.prompt_id for b in result.built] == ["hello"]
    assert set(_manifest(tmp_path)["prompts"]) == {"hello", "bye"}
    with pytest.raises(BuildError, match="unknown prompt 'helo'"):
        build_catalog(load_catalog_spec(path), prompt_ids=["helo"])


def test_catalogue_mistakes_are_all_reported_with_their_place(tmp_path: Path) -> None:
    path = tmp_path / "prompts.toml"
    path.write_text('[catalog]\ngrant_digit = "1"\n[build]\nformats = ["asterisk-mp3"]\n'
                    '[prompts."Bad Id"]\ntext.en = "x"\n[prompts.ok]\nkind = "song"\ntext.EN = "x"\n'
                    'audio.en = "../../etc/passwd"\n')
    with pytest.raises(CatalogError) as info:
        load_catalog_spec(path)
    text = "\n".join(info.value.problems)
    assert "[catalog] grant_digit: unknown key (did you mean 'grant_digits'?)" in text
    assert "[build] formats: must be a non-empty list of asterisk-wav" in text
    assert "[prompts.Bad Id]: prompt ids must be lower-case" in text
    assert "[prompts.ok] kind: 'song' is not one of" in text
    assert "text.EN: not a language code" in text
    assert "audio.en: '../../etc/passwd' must be a path inside source_dir" in text
