"""Real audio for the vault tests, made with sox and espeak-ng (no synthetic arrays).

Recordings from Asterisk MixMonitor and FreeSWITCH record_session are
16-bit PCM WAV at 8 or 16 kHz; these helpers produce the same, so the tests
exercise the code on the files it will meet in production.
"""

from __future__ import annotations

import atexit
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

#: Standard DTMF pairs (row Hz, column Hz).
DTMF = {
    "1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "A": (697, 1633),
    "4": (770, 1209), "5": (770, 1336), "6": (770, 1477), "B": (770, 1633),
    "7": (852, 1209), "8": (852, 1336), "9": (852, 1477), "C": (852, 1633),
    "*": (941, 1209), "0": (941, 1336), "#": (941, 1477), "D": (941, 1633),
}


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (apt-get install {tool})")
    return path


def run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def noise_wav(path: Path, seconds: float, rate: int = 8000, level: float = 0.05) -> Path:
    """Pink noise: speech-like spectrum, no tones."""
    run(need("sox"), "-n", "-r", str(rate), "-b", "16", "-c", "1", str(path),
        "synth", f"{seconds}", "pinknoise", "vol", f"{level}")
    return path


_SPOKEN: dict[tuple[str, str], Path] = {}
_SPEECH_DIR: list[Path] = []


def _speech_dir() -> Path:
    """One temporary directory for espeak-ng output per test session, removed at exit."""
    if not _SPEECH_DIR:
        path = Path(tempfile.mkdtemp(prefix="callguard-speech-"))
        atexit.register(shutil.rmtree, path, True)
        _SPEECH_DIR.append(path)
    return _SPEECH_DIR[0]


def speech_wav(path: Path, text: str, rate: int = 8000, voice: str = "en") -> Path:
    """espeak-ng speech resampled to telephone rate (the way a PBX would hear it).

    espeak-ng runs once per (voice, text); other rates are resampled from it.
    """
    raw = _SPOKEN.get((voice, text))
    if raw is None or not raw.exists():
        raw = _speech_dir() / f"speech-{len(_SPOKEN)}.wav"
        run(need("espeak-ng"), "-v", voice, "-w", str(raw), text)
        _SPOKEN[(voice, text)] = raw
    run(need("sox"), str(raw), "-r", str(rate), "-b", "16", "-c", "1", str(path))
    return path


def _tone_effects(digit: str, seconds: float, level: float, twist_db: float = 0.0) -> list[str]:
    """sox effects that synthesise one digit: two sines on two channels, remixed to one."""
    low, high = DTMF[digit]
    low_gain = 10 ** (-twist_db / 20)
    return ["synth", f"{seconds}", "sine", str(low), "sine", str(high),
            "remix", f"1v{low_gain:.4f},2", "vol", f"{level}"]


def tone_wav(path: Path, digit: str, seconds: float, rate: int = 8000, level: float = 0.3,
             twist_db: float = 0.0) -> Path:
    """One DTMF digit as sox renders it; ``twist_db`` lowers the row (low) tone."""
    run(need("sox"), "-n", "-r", str(rate), "-b", "16", str(path),
        *_tone_effects(digit, seconds, level, twist_db))
    return path


def silence_wav(path: Path, seconds: float, rate: int = 8000) -> Path:
    run(need("sox"), "-n", "-r", str(rate), "-b", "16", "-c", "1", str(path), "trim", "0", f"{seconds}")
    return path


def overlay(base: Path, clips: list[tuple[float, Path]], out: Path) -> Path:
    """Mix ``clips`` into ``base`` at the given offsets (seconds), keeping base's length."""
    need("sox")
    inputs: list[str] = [str(base)]
    for i, (offset, clip) in enumerate(clips):
        padded = out.with_name(f"{out.stem}.pad{i}.wav")
        run("sox", str(clip), str(padded), "pad", f"{offset}")
        inputs.append(str(padded))
    if len(inputs) == 1:
        shutil.copy(base, out)
        return out
    run("sox", "-m", "-v", "1", *inputs, str(out), "trim", "0", f"{duration(base)}")
    for i in range(len(clips)):
        out.with_name(f"{out.stem}.pad{i}.wav").unlink()
    return out


def concat(parts: list[Path], out: Path) -> Path:
    run(need("sox"), *map(str, parts), str(out))
    return out


def duration(path: Path) -> float:
    return float(subprocess.run(["soxi", "-D", str(path)], check=True, capture_output=True,
                                text=True).stdout.strip())


def digit_sequence(workdir: Path, digits: str, rate: int = 8000, tone_s: float = 0.08,
                   gap_s: float = 0.08, level: float = 0.3) -> Path:
    """A keypad burst as a phone sends it: tone, gap, tone, ... (one sox run)."""
    effects: list[str] = []
    for i, digit in enumerate(digits):
        if i:
            effects.append(":")
        effects += _tone_effects(digit, tone_s, level) + ["pad", "0", f"{gap_s}"]
    out = workdir / f"seq-{digits.replace('*', 's').replace('#', 'h')}-{rate}-{tone_s}-{gap_s}.wav"
    run(need("sox"), "-n", "-r", str(rate), "-b", "16", str(out), *effects)
    return out
