"""Designer audio in several real formats -> every PBX format, checked from the bytes."""

from __future__ import annotations

import hashlib
import json
import wave
from pathlib import Path

import pytest
from pydub import AudioSegment

from callguard.prompts.build import build_catalog
from callguard.prompts.spec import load_catalog_spec

from .conftest import needs_ffmpeg, tone, write_audio, write_catalog

pytestmark = needs_ffmpeg

KEEP_S = 0.05  # [build] keep_silence_ms default


def _build_one(tmp_path: Path, seg: AudioSegment, ext: str, **catalog) -> tuple[dict, Path]:
    path = write_catalog(tmp_path, {"hello": {"text": {"en": "Hello."}}}, **catalog)
    write_audio(seg, tmp_path / "source" / "en" / f"hello.{ext}")
    # the catalogue's default audio path is <lang>/<id>.wav; point it at the real file
    text = path.read_text().replace('text.en = "Hello."', f'text.en = "Hello."\naudio.en = "en/hello.{ext}"')
    path.write_text(text)
    build_catalog(load_catalog_spec(path))
    manifest = json.loads((tmp_path / "build" / "manifest.json").read_text())
    return manifest["prompts"]["hello"]["en"], tmp_path / "build"


def _wav_header(path: Path) -> tuple[int, int, int, float]:
    with wave.open(str(path), "rb") as w:
        return w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes() / w.getframerate()


@pytest.mark.parametrize(
    ("ext", "rate", "channels"),
    [("wav", 44100, 2), ("wav", 16000, 1), ("wav", 8000, 1), ("mp3", 44100, 2), ("ogg", 48000, 1),
     ("flac", 22050, 1)],
)
def test_any_input_format_becomes_every_pbx_format(tmp_path: Path, ext: str, rate: int, channels: int) -> None:
    seg = tone(1000, lead_ms=300, tail_ms=400, rate=rate, channels=channels)
    entry, build = _build_one(tmp_path, seg, ext)
    assert entry["source"]["rate"] == rate and entry["source"]["channels"] == channels
    expected = 1.0 + 2 * KEEP_S
    tolerance = 0.06 if ext in ("mp3", "ogg") else 0.025  # lossy codecs smear the edges a little
    assert entry["duration_s"] == pytest.approx(expected, abs=tolerance)
    files = entry["files"]

    # Asterisk: 8 kHz mono 16-bit wav, raw 16 kHz sln16, raw 8 kHz mu-law, side by side
    wav8 = build / files["asterisk-wav"]["path"]
    assert wav8 == build / "asterisk/en/callguard/hello.wav"
    assert _wav_header(wav8)[:3] == (8000, 1, 2)
    duration = _wav_header(wav8)[3]
    assert duration == pytest.approx(entry["duration_s"], abs=0.002)
    sln16 = (build / files["asterisk-sln16"]["path"]).read_bytes()
    assert len(sln16) == pytest.approx(duration * 16000 * 2, abs=8)
    ulaw = (build / files["asterisk-ulaw"]["path"]).read_bytes()
    assert len(ulaw) == pytest.approx(duration * 8000, abs=4)
    assert (build / files["asterisk-ulaw"]["path"]).parent == wav8.parent

    # FreeSWITCH: one directory per rate
    assert _wav_header(build / "freeswitch/en/callguard/8000/hello.wav")[:3] == (8000, 1, 2)
    rate16, ch16, width16, dur16 = _wav_header(build / "freeswitch/en/callguard/16000/hello.wav")
    assert (rate16, ch16, width16) == (16000, 1, 2) and dur16 == pytest.approx(duration, abs=0.002)


def test_silence_is_trimmed_by_the_measured_amount(tmp_path: Path) -> None:
    entry, build = _build_one(tmp_path, tone(1200, lead_ms=800, tail_ms=1500, rate=44100), "wav")
    assert entry["source"]["duration_s"] == pytest.approx(3.5, abs=0.01)
    assert entry["trimmed_s"]["start"] == pytest.approx(0.8 - KEEP_S, abs=0.015)
    assert entry["trimmed_s"]["end"] == pytest.approx(1.5 - KEEP_S, abs=0.015)
    audio = AudioSegment.from_wav(build / entry["files"]["freeswitch-16000"]["path"])
    assert len(audio) / 1000 == pytest.approx(1.2 + 2 * KEEP_S, abs=0.02)
    # what is left at the edges is the kept silence, then the tone
    assert audio[:40].dBFS < -60 and audio[80:120].dBFS > -30


def test_room_noise_counts_as_silence(tmp_path: Path) -> None:
    """The threshold is relative to the recording's peak, so hiss at -55 dBFS is trimmed too."""
    entry, _ = _build_one(tmp_path, tone(1000, lead_ms=600, tail_ms=600, noise_dbfs=-55, rate=16000), "wav")
    assert entry["trimmed_s"]["start"] == pytest.approx(0.55, abs=0.02)
    assert entry["duration_s"] == pytest.approx(1.1, abs=0.03)


@pytest.mark.parametrize("level", [-40.0, -25.0, -6.0])
def test_loudness_is_normalised_to_the_target(tmp_path: Path, level: float) -> None:
    entry, build = _build_one(tmp_path, tone(1000, dbfs=level, rate=16000), "wav")
    for fmt in ("asterisk-wav", "freeswitch-16000"):
        audio = AudioSegment.from_wav(build / entry["files"][fmt]["path"])
        assert audio[50:-50].dBFS == pytest.approx(-20.0, abs=0.3)
        assert audio.max_dBFS <= -1.0 + 0.05
    assert entry["gain_db"] == pytest.approx(-20.0 - (level - 3.01), abs=0.3)  # sine RMS = peak - 3 dB


def test_peaks_limit_the_gain(tmp_path: Path) -> None:
    """A spiky recording is not pushed into clipping to reach the RMS target."""
    seg = tone(1000, dbfs=-30, rate=16000).overlay(tone(10, freq=1000, dbfs=-0.5, rate=16000), position=500)
    entry, build = _build_one(tmp_path, seg, "wav")
    audio = AudioSegment.from_wav(build / entry["files"]["freeswitch-16000"]["path"])
    assert audio.max_dBFS == pytest.approx(-1.0, abs=0.1)
    assert audio.dBFS < -21.0


def test_resampling_is_band_limited(tmp_path: Path) -> None:
    """A 6 kHz tone cannot exist at 8 kHz: a proper resampler removes it instead of aliasing it to 2 kHz."""
    entry, build = _build_one(tmp_path, tone(1000, freq=6000, rate=44100), "wav")
    wide = AudioSegment.from_wav(build / entry["files"]["freeswitch-16000"]["path"])
    narrow = AudioSegment.from_wav(build / entry["files"]["asterisk-wav"]["path"])
    assert wide.dBFS == pytest.approx(-20.0, abs=0.5)
    assert narrow.dBFS < wide.dBFS - 40


def test_manifest_hashes_match_the_files(tmp_path: Path) -> None:
    entry, build = _build_one(tmp_path, tone(700, rate=16000, lead_ms=100), "wav")
    assert set(entry["files"]) == {"asterisk-wav", "asterisk-ulaw", "asterisk-sln16", "freeswitch-8000",
                                   "freeswitch-16000"}
    for f in entry["files"].values():
        data = (build / f["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == f["sha256"] and len(data) == f["bytes"]
    # the content hash (the one the ledger gets) is the 16 kHz master = the .sln16 file
    assert entry["sha256"] == entry["files"]["asterisk-sln16"]["sha256"]
    source = (tmp_path / "source/en/hello.wav").read_bytes()
    assert entry["source"]["sha256"] == hashlib.sha256(source).hexdigest()


def test_same_recording_builds_the_same_bytes(tmp_path: Path) -> None:
    a, _ = _build_one(tmp_path / "a", tone(600, rate=44100, channels=2), "wav")
    b, _ = _build_one(tmp_path / "b", tone(600, rate=44100, channels=2), "wav")
    assert a["sha256"] == b["sha256"]
    assert {k: v["sha256"] for k, v in a["files"].items()} == {k: v["sha256"] for k, v in b["files"].items()}


def test_only_the_configured_formats_are_written(tmp_path: Path) -> None:
    entry, build = _build_one(tmp_path, tone(500), "wav", formats=["asterisk-ulaw", "freeswitch-16000"])
    assert set(entry["files"]) == {"asterisk-ulaw", "freeswitch-16000"}
    assert not (build / "asterisk/en/callguard/hello.wav").exists()
