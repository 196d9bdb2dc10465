"""DTMF (keypad tone) detection in recorded audio: the proof that pauses worked.

A card number typed on a keypad while the recording runs is stored as
tones anyone can decode.  This detector finds them in real 8/16 kHz
recordings so the audit can show every digit that is audible outside a
muted span.

Method: Goertzel-equivalent single-bin DFTs, vectorised.  The audio is cut
into windowed frames of 25.6 ms (205 samples at 8 kHz, the classic Goertzel
block) every 6.4 ms; one matrix product gives, for every frame, the power
at the 8 DTMF frequencies and at their second harmonics.  A frame holds a
digit only when all of these hold (the usual ITU-T Q.24 style checks that
separate keypad tones from speech and music):

* **level**: both tones above ``min_level_dbfs``;
* **energy**: the two tones carry ``min_tone_ratio`` of the frame's energy
  (speech spreads its energy over many frequencies);
* **twist**: the high tone is at most ``max_normal_twist_db`` above and at
  most ``max_reverse_twist_db`` below the low tone;
* **purity**: the strongest tone of each group beats the others of its
  group by ``min_group_margin_db``;
* **harmonics**: the second harmonic of each tone is ``min_harmonic_margin_db``
  below it (voiced speech is rich in harmonics, a keypad tone is not);

and a digit is reported only when the same digit holds for ``min_frames``
consecutive frames (bridging dropouts up to ``max_dropout_s``) and the run's
energy-weighted duration reaches ``min_duration_s`` (ITU-T Q.24 receivers
must accept 40 ms tones and reject blips of about 20 ms).  The thresholds were tuned
on sox-generated keypad bursts over pink noise and over speech (all found)
against 112 espeak-ng recordings in 20 voices - spoken digits, sustained
vowels, sung scales - at 8 and 16 kHz (no false digit).  Audio is processed block by block with
overlap, so memory stays constant whatever the recording's length.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

import numpy as np

from callguard.wav import AudioFormatError, AudioInfo, open_wav, wav_info

ROWS = (697.0, 770.0, 852.0, 941.0)
COLS = (1209.0, 1336.0, 1477.0, 1633.0)
KEYS = ("123A", "456B", "789C", "*0#D")
FRAME_S = 0.0256
BLOCK_S = 8.0


@dataclass(frozen=True, slots=True)
class Tone:
    """One detected keypress: which digit, where in the recording (seconds)."""

    digit: str
    start: float
    end: float
    level_dbfs: float

    @property
    def duration(self) -> float:
        return self.end - self.start

    def as_dict(self) -> dict[str, object]:
        return {"digit": self.digit, "start": round(self.start, 3), "end": round(self.end, 3),
                "level_dbfs": round(self.level_dbfs, 1)}


@dataclass(frozen=True, slots=True)
class DetectorSettings:
    """Thresholds; the defaults follow common DTMF receiver practice (see module doc)."""

    min_level_dbfs: float = -40.0
    min_tone_ratio: float = 0.4
    max_normal_twist_db: float = 8.0
    max_reverse_twist_db: float = 6.0
    min_group_margin_db: float = 10.0
    min_harmonic_margin_db: float = 10.0
    min_frames: int = 3
    #: Gaps in a run up to this long (frames that fail a check) are bridged.
    max_dropout_s: float = 0.013
    #: Energy-weighted tone duration a run must reach (rejects < ~23 ms blips, keeps 40 ms tones).
    min_duration_s: float = 0.022


def _db(ratio: np.ndarray) -> np.ndarray:
    return 10.0 * np.log10(np.maximum(ratio, 1e-20))


class DtmfDetector:
    """Streaming detector: :meth:`feed` float samples in [-1, 1], then :meth:`finish`."""

    def __init__(self, rate: int, settings: DetectorSettings | None = None) -> None:
        if rate < 4000:
            raise AudioFormatError(f"sample rate {rate} Hz is too low for DTMF (needs >= 4000 Hz)")
        self.rate = rate
        self.settings = settings or DetectorSettings()
        self.frame = int(round(FRAME_S * rate))
        self.hop = self.frame // 4
        window = np.hamming(self.frame).astype(np.float64)
        freqs = np.array(ROWS + COLS + tuple(2 * f for f in ROWS + COLS))
        n = np.arange(self.frame)
        phase = 2.0 * np.pi * np.outer(n, freqs) / rate
        basis = np.concatenate([np.cos(phase), np.sin(phase)], axis=1) * window[:, None]
        self._basis = basis.astype(np.float32)
        # |X|^2 * scale = mean power of a sine at that frequency (A^2/2)
        self._scale = 2.0 / float(window.sum()) ** 2
        self._nfreq = len(freqs)
        self._carry = np.zeros(0, dtype=np.float32)
        self._consumed = 0  #: samples before _carry[0]
        self._frame_index = 0  #: global index of the next frame to analyse
        # run state
        self._digit = -1
        self._run_start = 0
        self._run_frames = 0
        self._misses = 0
        self._max_misses = max(1, int(self.settings.max_dropout_s * rate / self.hop))
        self._level_sum = 0.0
        self._power_sum = 0.0
        self._power_peak = 0.0
        self._level_count = 0
        self._tones: list[Tone] = []

    # -- frame analysis ---------------------------------------------------------

    def _classify(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Digit index (0..15, -1 none) and tone level (dBFS) for every frame."""
        s = self.settings
        spectrum = frames @ self._basis
        power = (spectrum[:, : self._nfreq] ** 2 + spectrum[:, self._nfreq:] ** 2) * self._scale
        energy = np.einsum("ij,ij->i", frames, frames) / frames.shape[1]
        rows, cols = power[:, 0:4], power[:, 4:8]
        r = rows.argmax(axis=1)
        c = cols.argmax(axis=1)
        idx = np.arange(len(frames))
        pr = rows[idx, r]
        pc = cols[idx, c]
        rows_sorted = np.sort(rows, axis=1)
        cols_sorted = np.sort(cols, axis=1)
        h_r = power[idx, 8 + r]
        h_c = power[idx, 12 + c]
        min_power = 10 ** (s.min_level_dbfs / 10) / 2  # a full-scale sine has mean power 1/2
        twist = _db(pc / np.maximum(pr, 1e-20))
        ok = (
            (pr >= min_power) & (pc >= min_power)
            & ((pr + pc) >= s.min_tone_ratio * energy)
            & (twist <= s.max_normal_twist_db) & (twist >= -s.max_reverse_twist_db)
            & (_db(pr / np.maximum(rows_sorted[:, 2], 1e-20)) >= s.min_group_margin_db)
            & (_db(pc / np.maximum(cols_sorted[:, 2], 1e-20)) >= s.min_group_margin_db)
            & (_db(pr / np.maximum(h_r, 1e-20)) >= s.min_harmonic_margin_db)
            & (_db(pc / np.maximum(h_c, 1e-20)) >= s.min_harmonic_margin_db)
        )
        digit = np.where(ok, r * 4 + c, -1)
        level = _db(2.0 * (pr + pc))  # dBFS: a full-scale sine has mean power 1/2
        return digit, level

    def feed(self, samples: np.ndarray) -> None:
        """Analyse more audio (mono float32 in [-1, 1])."""
        data = np.concatenate([self._carry, samples.astype(np.float32, copy=False)])
        start = self._frame_index * self.hop - self._consumed
        count = (len(data) - start - self.frame) // self.hop + 1 if len(data) - start >= self.frame else 0
        if count > 0:
            view = np.lib.stride_tricks.sliding_window_view(data[start:], self.frame)[:: self.hop][:count]
            digits, levels = self._classify(np.ascontiguousarray(view))
            self._track(digits, levels)
            self._frame_index += count
        keep_from = self._frame_index * self.hop - self._consumed
        self._carry = data[keep_from:].copy()
        self._consumed += keep_from

    def _track(self, digits: np.ndarray, levels: np.ndarray) -> None:
        """Turn per-frame decisions into tones (min duration, one-frame dropouts bridged)."""
        base = self._frame_index
        if self._digit < 0 and not (digits >= 0).any():
            return
        for offset, (d, level) in enumerate(zip(digits.tolist(), levels.tolist())):
            i = base + offset
            if d == self._digit and d >= 0:
                self._run_frames += 1 + self._misses
                self._misses = 0
                self._add_level(level)
                continue
            if self._digit >= 0 and d < 0 and self._misses < self._max_misses:
                self._misses += 1  # bridge a short dropout (speech or noise over the tone)
                continue
            self._close()
            if d >= 0:
                self._digit, self._run_start, self._run_frames = d, i, 1
                self._level_sum, self._misses, self._power_sum, self._power_peak = 0.0, 0, 0.0, 0.0
                self._level_count = 0
                self._add_level(level)

    def _add_level(self, level: float) -> None:
        power = 10.0 ** (level / 10.0)
        self._level_sum += level
        self._level_count += 1
        self._power_sum += power
        self._power_peak = max(self._power_peak, power)

    def _close(self) -> None:
        # Energy-weighted duration: sum of frame powers over the peak, in hops.  A frame that
        # only partly covers a short blip counts for little, so a 20 ms blip measures ~19 ms
        # while a 40 ms tone measures ~31 ms, whatever the frame overlap.
        effective = self._power_sum / self._power_peak * self.hop / self.rate if self._power_peak else 0.0
        if (self._digit >= 0 and self._run_frames >= self.settings.min_frames
                and effective >= self.settings.min_duration_s):
            start = self._run_start * self.hop / self.rate
            end = ((self._run_start + self._run_frames - 1) * self.hop + self.frame) / self.rate
            key = KEYS[self._digit // 4][self._digit % 4]
            self._tones.append(Tone(key, start, end, self._level_sum / max(1, self._level_count)))
        self._digit, self._run_frames, self._misses, self._level_sum = -1, 0, 0, 0.0
        self._power_sum, self._power_peak, self._level_count = 0.0, 0.0, 0

    def finish(self) -> list[Tone]:
        self._close()
        return list(self._tones)


# -- reading audio ---------------------------------------------------------------


def pcm_blocks(reader: wave.Wave_read, block_s: float = BLOCK_S) -> Iterator[np.ndarray]:
    """Mono float32 blocks from a PCM WAV (channels summed and clipped)."""
    width, channels, rate = reader.getsampwidth(), reader.getnchannels(), reader.getframerate()
    if width not in (1, 2, 4):
        raise AudioFormatError(f"{8 * width}-bit WAV is not supported; use 16-bit PCM")
    per_block = max(1, int(block_s * rate))
    while True:
        raw = reader.readframes(per_block)
        if not raw:
            return
        usable = len(raw) - len(raw) % (width * channels)
        if width == 1:
            samples = (np.frombuffer(raw[:usable], dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
        elif width == 2:
            samples = np.frombuffer(raw[:usable], dtype="<i2").astype(np.float32) / 32768.0
        else:
            samples = (np.frombuffer(raw[:usable], dtype="<i4") / 2147483648.0).astype(np.float32)
        if channels > 1:
            samples = np.clip(samples.reshape(-1, channels).sum(axis=1), -1.0, 1.0)
        yield samples


def scan(source: str | Path | BinaryIO, settings: DetectorSettings | None = None) -> tuple[list[Tone], AudioInfo]:
    """Every DTMF tone in a PCM WAV file or file object, with the audio's facts."""
    with open_wav(source) as reader:
        info = AudioInfo(reader.getframerate(), reader.getnchannels(), reader.getsampwidth(),
                         reader.getnframes())
        detector = DtmfDetector(info.rate, settings)
        for block in pcm_blocks(reader):
            detector.feed(block)
        return detector.finish(), info


def digits_of(tones: Iterable[Tone]) -> str:
    return "".join(t.digit for t in tones)


__all__ = [
    "AudioFormatError",
    "AudioInfo",
    "DetectorSettings",
    "DtmfDetector",
    "Tone",
    "digits_of",
    "open_wav",
    "pcm_blocks",
    "scan",
    "wav_info",
]
