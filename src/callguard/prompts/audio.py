"""Designer audio in, telephone-ready master out: decode, trim, normalise, resample.

Decoding and resampling go through ffmpeg (any format it reads: wav at any
rate or channel count, mp3, ogg, flac, m4a...; band-limited resampling,
unlike a naive sample-rate change that aliases).  Trimming and loudness
use pydub on the decoded 16 kHz master.  Each step is deterministic, so
rebuilding the same recording with the same ffmpeg gives the same hashes.
"""

from __future__ import annotations

import functools
import math
import re
import shutil
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# pydub looks for ffmpeg when imported and warns on stderr if it is missing, which
# every command importing this module would print.  Only the steps that run ffmpeg
# need it, and they say so once, with what to install (require_tool).
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Couldn't find ffmpeg", category=RuntimeWarning)
    from pydub import AudioSegment
    from pydub.silence import detect_leading_silence

from callguard.prompts.formats import MASTER_RATE, SAMPLE_WIDTH
from callguard.prompts.spec import BuildSettings

_TIMEOUT_S = 60


class AudioError(ValueError):
    """A recording cannot be used; the message names the file and the fix."""


class ToolMissing(AudioError):
    """An external program (ffmpeg, espeak-ng) is not installed."""


def require_tool(name: str, package: str | None = None) -> str:
    path = shutil.which(name)
    if path is None:
        raise ToolMissing(f"{name} is not installed or not on PATH; install it "
                          f"(Debian/Ubuntu: apt install {package or name})")
    return path


@functools.lru_cache(maxsize=1)
def ffmpeg_version() -> str:
    """The ffmpeg version string, recorded in the manifest (hashes depend on it)."""
    out = subprocess.run([require_tool("ffmpeg"), "-hide_banner", "-version"], capture_output=True,
                         text=True, timeout=_TIMEOUT_S).stdout
    first = out.splitlines()[0] if out else ""
    return first.split(" ")[2] if first.startswith("ffmpeg version ") else first


@dataclass(frozen=True)
class SourceInfo:
    """What the designer handed in, for the manifest and for warnings."""

    codec: str
    rate: int
    channels: int
    duration_s: float

    def as_dict(self) -> dict[str, Any]:
        return {"codec": self.codec, "rate": self.rate, "channels": self.channels,
                "duration_s": round(self.duration_s, 3)}


_STREAM_RE = re.compile(r"Stream #0:\d+\S*: Audio: (\w+)[^,\n]*, (\d+) Hz, ([^,\n]+)")
_DURATION_RE = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_LAYOUTS = {"mono": 1, "stereo": 2, "2.1": 3, "quad": 4, "4.0": 4, "5.0": 5, "5.1": 6, "5.1(side)": 6,
            "6.1": 7, "7.1": 8}


def _source_info(log: str) -> SourceInfo:
    """Codec, rate, channels and duration from ffmpeg's description of its input.

    Parsed from the same run that decodes (one process per recording
    instead of an extra ffprobe); only used for the manifest and warnings.
    """
    stream = _STREAM_RE.search(log)
    duration = _DURATION_RE.search(log)
    codec, rate, channels = "?", 0, 0
    if stream:
        codec, rate = stream.group(1), int(stream.group(2))
        layout = stream.group(3).strip()
        count = re.match(r"(\d+) channels", layout)
        channels = int(count.group(1)) if count else _LAYOUTS.get(layout, 0)
    seconds = 0.0
    if duration:
        h, m, sec = duration.groups()
        seconds = int(h) * 3600 + int(m) * 60 + float(sec)
    return SourceInfo(codec, rate, channels, seconds)


@dataclass(frozen=True)
class Decoded:
    """A recording as mono 16-bit PCM at the master rate and at 8 kHz."""

    wide: AudioSegment
    narrow: AudioSegment
    info: SourceInfo


def decode(path: Path) -> Decoded:
    """Any audio file -> mono 16-bit PCM at 16 kHz and 8 kHz, in one ffmpeg run.

    Both rates are resampled from the original (stereo is mixed down), so
    the 8 kHz files are not a resample of a resample.
    """
    if not path.is_file():
        raise AudioError(f"{path}: file not found")
    with tempfile.TemporaryDirectory(prefix="callguard-decode-") as tmp:
        wide, narrow = Path(tmp) / "16k.raw", Path(tmp) / "8k.raw"
        outputs = []
        for out, rate in ((wide, MASTER_RATE), (narrow, 8000)):
            outputs += ["-map", "0:a:0", "-ac", "1", "-ar", str(rate), "-c:a", "pcm_s16le", "-f", "s16le", str(out)]
        cmd = [require_tool("ffmpeg"), "-nostdin", "-hide_banner", "-nostats", "-loglevel", "info",
               "-i", str(path), *outputs]
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=_TIMEOUT_S, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise AudioError(f"{path}: ffmpeg took longer than {_TIMEOUT_S} s to decode it") from None
        log = proc.stderr.decode("utf-8", "replace")
        if proc.returncode != 0:
            raise AudioError(f"{path}: cannot decode: {_ffmpeg_error(log, path)}")
        pcm16, pcm8 = wide.read_bytes(), narrow.read_bytes()
    if not pcm16:
        raise AudioError(f"{path}: decoded to no audio at all (empty or zero-length recording)")
    return Decoded(AudioSegment(data=pcm16, sample_width=SAMPLE_WIDTH, frame_rate=MASTER_RATE, channels=1),
                   AudioSegment(data=pcm8, sample_width=SAMPLE_WIDTH, frame_rate=8000, channels=1),
                   _source_info(log))


def _ffmpeg_error(log: str, path: Path) -> str:
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    if any("matches no streams" in ln for ln in lines):
        return "no audio stream in this file"
    for line in reversed(lines):
        if line.startswith(str(path)) or "Invalid data" in line or "Error" in line or "error" in line:
            return line.removeprefix(f"{path}: ")
    return lines[-1] if lines else "ffmpeg failed"


@dataclass(frozen=True)
class Processed:
    """The master (16 kHz) and its 8 kHz twin after trimming and normalising."""

    wide: AudioSegment
    narrow: AudioSegment
    info: SourceInfo
    source_peak_dbfs: float
    trimmed_start_s: float
    trimmed_end_s: float
    gain_db: float

    @property
    def duration_s(self) -> float:
        return len(self.wide.raw_data) / (SAMPLE_WIDTH * self.wide.frame_rate)


def silence_bounds(audio: AudioSegment, threshold_db: float, keep_ms: int) -> tuple[int, int]:
    """(start_ms, end_ms) of the audio once leading/trailing silence is cut.

    "Silence" is anything ``threshold_db`` (negative) below the clip's own
    peak, so a recording with a little room noise trims as well as digital
    silence does, whatever its level; ``keep_ms`` of it stays at each end
    so the first consonant is not clipped.
    """
    peak = audio.max_dBFS
    if math.isinf(peak):
        raise AudioError("the recording is completely silent")
    threshold = peak + threshold_db
    lead = detect_leading_silence(audio, silence_threshold=threshold, chunk_size=10)
    tail = detect_leading_silence(audio.reverse(), silence_threshold=threshold, chunk_size=10)
    total = len(audio)
    start, end = max(0, lead - keep_ms), min(total, total - tail + keep_ms)
    if end <= start:
        raise AudioError("nothing but silence after trimming")
    return start, end


def loudness_gain(audio: AudioSegment, target_dbfs: float, ceiling_dbfs: float) -> float:
    """Gain (dB) that brings the RMS level to ``target_dbfs`` without a peak above ``ceiling_dbfs``.

    Every prompt then plays at the same loudness, so a caller does not
    strain to hear the notice and then get blasted by the confirmation.
    """
    return round(min(target_dbfs - audio.dBFS, ceiling_dbfs - audio.max_dBFS), 2)


def process(path: Path, settings: BuildSettings) -> Processed:
    """Decode ``path``; trim and normalise it identically at 16 and 8 kHz."""
    decoded = decode(path)
    try:
        start, end = silence_bounds(decoded.wide, settings.silence_threshold_db, settings.keep_silence_ms)
    except AudioError as exc:
        raise AudioError(f"{path}: {exc}") from None
    wide, narrow = decoded.wide[start:end], decoded.narrow[start:end]
    gain = loudness_gain(wide, settings.target_dbfs, settings.peak_ceiling_dbfs)
    if gain:
        wide, narrow = wide.apply_gain(gain), narrow.apply_gain(gain)
    total_ms = len(decoded.wide)
    return Processed(wide, narrow, decoded.info, decoded.wide.max_dBFS, start / 1000, (total_ms - end) / 1000, gain)
