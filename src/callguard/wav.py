"""WAV headers: what the prompt builder checks and the vault catalogues.

One reader for both, on the standard library's :mod:`wave` (no numpy, no
ffmpeg): the build verifies that what it wrote is what each PBX expects,
ingest stores a recording's duration and format, the DTMF scan needs the
rate and sample width before it reads a sample.  Anything that is not plain
PCM WAV is refused with the conversion that fixes it.
"""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO


class AudioFormatError(ValueError):
    """The audio is not what it should be (not PCM WAV, cut short, wrong rate or channels)."""


@dataclass(frozen=True, slots=True)
class AudioInfo:
    """What a file's header (or, for raw formats, its size) says."""

    rate: int
    channels: int
    sample_width: int
    frames: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.rate if self.rate else 0.0


def open_wav(source: str | Path | BinaryIO | bytes) -> wave.Wave_read:
    """Open a PCM WAV file (path, binary file or the bytes themselves) for reading."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(source)
    try:
        reader = wave.open(str(source) if isinstance(source, Path) else source, "rb")
    except wave.Error as exc:
        raise AudioFormatError(f"not a PCM WAV file ({exc}); convert it with "
                               f"`ffmpeg -i IN -acodec pcm_s16le OUT.wav`") from None
    except EOFError:
        raise AudioFormatError("the WAV file is empty or cut short") from None
    if reader.getcomptype() != "NONE":
        reader.close()
        raise AudioFormatError(f"compressed WAV ({reader.getcomptype()}); expected plain PCM")
    return reader


def wav_info(source: str | Path | BinaryIO | bytes) -> AudioInfo:
    """The header of a PCM WAV file, with a clear error if it is not one."""
    with open_wav(source) as w:
        return AudioInfo(w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes())


__all__ = ["AudioFormatError", "AudioInfo", "open_wav", "wav_info"]
