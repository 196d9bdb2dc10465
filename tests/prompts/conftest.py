"""Real audio for the prompt tests: tones with measured silence, in real file formats.

Inputs are generated here (pydub; mp3/ogg through ffmpeg) rather than
checked in, so each test states exactly what goes in: how long the sound
is, how much silence surrounds it, at which rate and channel count.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydub import AudioSegment
from pydub.generators import Sine, WhiteNoise

from callguard.prompts.check import REQUIRED_PROMPTS

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None,
                                  reason="ffmpeg is not installed (apt install ffmpeg); CI installs it")
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng is not installed (apt install espeak-ng); CI installs it")

ALL_FORMATS = ["asterisk-wav", "asterisk-ulaw", "asterisk-sln16", "freeswitch-8000", "freeswitch-16000"]


def tone(ms: int, *, freq: int = 440, dbfs: float = -12.0, lead_ms: int = 0, tail_ms: int = 0, rate: int = 16000,
         channels: int = 1, noise_dbfs: float | None = None) -> AudioSegment:
    """``lead_ms`` silence, ``ms`` of a sine at ``dbfs`` peak, ``tail_ms`` silence.

    ``noise_dbfs`` fills the "silence" with white noise at that level, like
    a real room recording.
    """
    sound = Sine(freq, sample_rate=rate).to_audio_segment(duration=ms, volume=dbfs)

    def quiet(duration: int) -> AudioSegment:
        if noise_dbfs is None:
            return AudioSegment.silent(duration, frame_rate=rate)
        return WhiteNoise(sample_rate=rate).to_audio_segment(duration=duration, volume=noise_dbfs)

    seg = quiet(lead_ms) + sound + quiet(tail_ms) if (lead_ms or tail_ms) else sound
    seg = seg.set_sample_width(2).set_frame_rate(rate)
    return seg.set_channels(channels) if channels != 1 else seg


def write_audio(seg: AudioSegment, path: Path) -> Path:
    """Write ``seg`` in the format its extension names (mp3/ogg/flac via ffmpeg)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = path.suffix.lstrip(".")
    kwargs = {"codec": "libvorbis"} if fmt == "ogg" else {}
    seg.export(path, format=fmt, **kwargs)
    return path


def write_catalog(directory: Path, prompts: dict[str, dict], *, formats: list[str] | None = None,
                  grant: str = "1", decline: str = "2") -> Path:
    """A prompts.toml with ``prompts`` = {id: {"kind":..., "text": {lang: ...}}}."""
    lines = ["[catalog]", 'name = "test"', f'grant_digits = "{grant}"', f'decline_digits = "{decline}"', "",
             "[build]", f"formats = {formats or ALL_FORMATS!r}".replace("'", '"'), "",
             "[synth]", 'voices = { en = "en-us", es = "es" }', ""]
    for pid, p in prompts.items():
        lines.append(f"[prompts.{pid}]")
        lines.append(f'purpose = "test prompt {pid}"')
        lines.append(f'kind = "{p.get("kind", "message")}"')
        if p.get("used_by"):
            lines.append(f'used_by = "{p["used_by"]}"')
        for lang, text in p["text"].items():
            lines.append(f'text.{lang} = "{text}"')
        lines.append("")
    path = directory / "prompts.toml"
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def required_prompts(languages: tuple[str, ...] = ("en", "es")) -> dict[str, dict]:
    kinds = {"notice": "notice", "notice-sensitive": "notice", "renotice-join": "notice",
             "fallback-notice": "notice", "no-input-retry": "retry", "invalid-retry": "retry"}
    return {pid: {"kind": kinds.get(pid, "confirmation"),
                  "text": {lang: f"{pid} in {lang}. Press 1 to agree, 2 to decline." for lang in languages}}
            for pid in REQUIRED_PROMPTS}


@pytest.fixture(scope="session")
def _built_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A catalogue of every required prompt in en + es, recorded and built once."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (apt install ffmpeg); CI installs it")
    from callguard.prompts.build import build_catalog
    from callguard.prompts.spec import load_catalog_spec

    root = tmp_path_factory.mktemp("catalog")
    path = write_catalog(root, required_prompts())
    for i, pid in enumerate(REQUIRED_PROMPTS):
        for j, lang in enumerate(("en", "es")):
            # distinct lengths and pitches so every file (and hash) differs
            write_audio(tone(300 + 40 * i + 20 * j, freq=300 + 50 * i + 25 * j, lead_ms=200, tail_ms=200),
                        root / "source" / lang / f"{pid}.wav")
    build_catalog(load_catalog_spec(path))
    return root


@pytest.fixture
def catalog_dir(_built_template: Path, tmp_path: Path) -> Path:
    """A private copy of the built catalogue (tests may tamper with it)."""
    target = tmp_path / "prompts"
    shutil.copytree(_built_template, target)
    return target
