"""Redacting audio: the spans of the findings replaced by digital silence or a tone.

Sans-IO over sample arrays (the stage reads and writes the files).  Spans
are padded by ``[transcripts] pad_ms`` each side, because recognisers place
word edges to within a frame or two, and merged where they touch, so a card
number read in groups becomes one silent stretch rather than a comb.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

#: Tone level when ``fill = "tone"`` (of 32767; about -20 dBFS, like the fake PBX's test tone).
TONE_LEVEL = 3000


def merge_spans(spans: Iterable[tuple[float, float]], pad_s: float, duration_s: float) -> list[tuple[float, float]]:
    """Padded, clipped to the recording, sorted and merged where they overlap."""
    padded = sorted((max(0.0, a - pad_s), min(duration_s, b + pad_s)) for a, b in spans)
    merged: list[tuple[float, float]] = []
    for a, b in padded:
        if b <= a:
            continue
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def fill_spans(frames: np.ndarray, rate: int, spans: Sequence[tuple[float, float]], *, fill: str = "silence",
               tone_hz: float = 1000.0) -> np.ndarray:
    """A copy of ``frames`` (samples x channels, or mono) with every span silenced or replaced by a tone."""
    out = frames.copy()
    for a, b in spans:
        i, j = int(math.floor(a * rate)), min(len(out), int(math.ceil(b * rate)))
        if j <= i:
            continue
        if fill == "tone":
            t = np.arange(i, j) / rate
            tone = np.round(TONE_LEVEL * np.sin(2 * np.pi * tone_hz * t)).astype(out.dtype)
            out[i:j] = tone if out.ndim == 1 else tone[:, None]
        else:
            out[i:j] = 0
    return out


__all__ = ["TONE_LEVEL", "fill_spans", "merge_spans"]
