"""Is this file really a finished recording?  Checked before anything is stored.

A vault that encrypts whatever it is handed would turn a text file named
``.wav``, a spool file cut short by a full disk or a crashed PBX, or random
bytes into "evidence" with a hash and a ledger entry.  So ingest probes the
container first and refuses anything that is not complete audio, naming the
file and the reason:

* WAV (anything that starts ``RIFF....WAVE``, or is named ``.wav``): the RIFF
  chunks are walked; a ``data`` chunk must exist and lie wholly inside the
  file, its size must be whole frames, the format must be one the PBXs write
  (PCM, or the mu-law/A-law/GSM codes Asterisk's wav49 and FreeSWITCH use).
* ``.gsm`` (Asterisk's raw GSM 06.10): whole 33-byte frames, each with the
  frame signature nibble ``0xD``.
* Headerless PCM (``.sln``, ``.ulaw``, ``.alaw``...): nothing in the bytes can
  be checked but the size (whole samples); said so in the module, not hidden.
* Anything else (``.ogg``, ``.mp3``, ``.flac``...): ``ffprobe`` must recognise
  the container by its content (probe score >= 50, not by the extension) and
  find an audio stream; without ffprobe the file is refused rather than
  taken on trust.
"""

from __future__ import annotations

import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

#: WAVE format tags the PBXs write: PCM, IEEE float, A-law, mu-law, GSM 6.10 (wav49), extensible
_WAVE_FORMATS = {1: "PCM", 3: "float", 6: "A-law", 7: "mu-law", 49: "GSM 6.10", 0xFFFE: "extensible"}


class NotAudio(ValueError):
    """The file is not a complete recording; the message says why (without the path)."""


@dataclass(frozen=True, slots=True)
class AudioFacts:
    duration_s: float | None
    sample_rate: int | None
    channels: int | None


def _wav(path: Path, size: int) -> AudioFacts:
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise NotAudio(f"named .wav but not a WAV file (it starts with {head[:12]!r})")
        fmt: tuple[int, int, int, int, int] | None = None
        offset = 12
        while offset + 8 <= size:
            f.seek(offset)
            chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
            body = offset + 8
            if chunk_id == b"fmt ":
                if chunk_size < 16 or body + chunk_size > size:
                    raise NotAudio("its format (fmt) chunk is cut short")
                tag, channels, rate, _, align = struct.unpack("<HHIIH", f.read(14))
                fmt = (tag, channels, rate, align, chunk_size)
            elif chunk_id == b"data":
                if fmt is None:
                    raise NotAudio("it has audio data but no format (fmt) chunk before it")
                tag, channels, rate, align, _ = fmt
                if tag not in _WAVE_FORMATS:
                    raise NotAudio(f"unknown WAVE format tag {tag}")
                if not channels or not rate or not align:
                    raise NotAudio(f"impossible format: {channels} channel(s), {rate} Hz, block size {align}")
                if body + chunk_size > size:
                    raise NotAudio(f"truncated: the header announces {chunk_size} bytes of audio, the file holds "
                                   f"{size - body}")
                if tag in (1, 3, 6, 7, 0xFFFE) and chunk_size % align:
                    raise NotAudio(f"truncated mid-frame: {chunk_size} bytes of audio is not a whole number of "
                                   f"{align}-byte frames")
                return AudioFacts(chunk_size / align / rate if tag != 49 else None, rate, channels)
            offset = body + chunk_size + (chunk_size & 1)
        raise NotAudio("truncated: no audio (data) chunk" if fmt else "truncated: no format (fmt) chunk")


#: headerless sample formats Asterisk can record -> (bytes per sample, rate)
_RAW = {".sln": (2, 8000), ".sln16": (2, 16000), ".sln48": (2, 48000), ".ul": (1, 8000), ".ulaw": (1, 8000),
        ".al": (1, 8000), ".alaw": (1, 8000), ".pcm": (1, 8000)}
_GSM_FRAME = 33  #: bytes per 20 ms frame


def _gsm(path: Path, size: int) -> AudioFacts:
    if size % _GSM_FRAME:
        raise NotAudio(f"truncated: {size} bytes is not a whole number of {_GSM_FRAME}-byte GSM frames")
    with open(path, "rb") as f:
        while frame := f.read(_GSM_FRAME):
            if frame[0] & 0xF0 != 0xD0:
                raise NotAudio(f"not GSM 06.10 audio (frame at byte {f.tell() - _GSM_FRAME} lacks the 0xD signature)")
    return AudioFacts(size / _GSM_FRAME * 0.02, 8000, 1)


def _ffprobe(path: Path) -> AudioFacts:
    command = ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
               "stream=sample_rate,channels:format=duration,probe_score", "-of", "default=nw=1", str(path)]
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise NotAudio("cannot check a non-WAV recording without ffprobe; install ffmpeg "
                       "(apt-get install ffmpeg) or record WAV ([recording] format = \"wav\")") from None
    except subprocess.TimeoutExpired:
        raise NotAudio("ffprobe did not finish reading it within 60 s") from None
    facts = dict(line.partition("=")[::2] for line in out.stdout.splitlines() if "=" in line)
    if out.returncode != 0 or "sample_rate" not in facts or int(facts.get("probe_score") or 0) < 50:
        problem = (out.stderr.strip().splitlines() or ["no audio container recognised by its content"])[-1]
        raise NotAudio(f"not an audio file ffprobe can read ({problem.replace(str(path), path.name)})")
    try:
        duration = float(facts.get("duration", ""))
    except ValueError:
        duration = None
    return AudioFacts(duration, int(facts["sample_rate"]), int(facts.get("channels") or 0) or None)


def probe(path: Path) -> AudioFacts:
    """What the recording holds, or :class:`NotAudio` saying why it is not a complete recording."""
    size = path.stat().st_size
    if size == 0:
        raise NotAudio("empty file")
    with open(path, "rb") as f:
        magic = f.read(4)
    suffix = path.suffix.lower()
    if magic == b"RIFF" or suffix == ".wav":
        return _wav(path, size)
    if suffix == ".gsm":
        return _gsm(path, size)
    if suffix in _RAW:
        width, rate = _RAW[suffix]
        if size % width:
            raise NotAudio(f"truncated mid-sample: {size} bytes of {width}-byte samples")
        return AudioFacts(size / width / rate, rate, 1)
    return _ffprobe(path)


__all__ = ["AudioFacts", "NotAudio", "probe"]
