"""Reading recordings' WAV headers without numpy (ingest needs duration and format only)."""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO


class AudioFormatError(ValueError):
    """The audio cannot be read as PCM WAV (not WAV, compressed, cut short)."""


@dataclass(frozen=True, slots=True)
class AudioInfo:
    rate: int
    channels: int
    sample_width: int
    frames: int

    @property
    def duration(self) -> float:
        return self.frames / self.rate if self.rate else 0.0


def open_wav(source: str | Path | BinaryIO) -> wave.Wave_read:
    try:
        return wave.open(str(source) if isinstance(source, Path) else source, "rb")
    except wave.Error as exc:
        raise AudioFormatError(f"not a PCM WAV file ({exc}); convert it with "
                               f"`ffmpeg -i IN -acodec pcm_s16le OUT.wav`") from None
    except EOFError:
        raise AudioFormatError("the WAV file is empty or cut short") from None


def wav_info(source: str | Path | BinaryIO) -> AudioInfo:
    with open_wav(source) as w:
        return AudioInfo(w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes())


__all__ = ["AudioFormatError", "AudioInfo", "open_wav", "wav_info"]
