"""Where a recording was muted, and which detected keypad tones leaked.

The ledger says, in PBX time, when the recording started and when the PBX
confirmed each mute and unmute.  Subtracting the start gives the muted
spans as offsets into the audio file.  A DTMF tone detected outside every
muted span is a leak: keypad digits stored in the recording.  A tone
detected *inside* a muted span is worse news - the PBX confirmed the mute
but the audio was not silenced - and is reported as such.  Payment
segments (requested pauses) are reported too, so a leak in the gap between
"pause requested" and "mute confirmed" is visible as exactly that.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Sequence

if TYPE_CHECKING:  # the detector needs numpy; reading spans does not
    from callguard.vault.dtmf import Tone

#: A tone within this many seconds of a span edge is attributed generously to the span
#: (PBX confirmation times and file start differ by a few milliseconds).
EDGE_S = 0.05


@dataclass(frozen=True, slots=True)
class Span:
    start: float
    end: float | None  #: None: until the end of the recording

    def contains(self, t0: float, t1: float, pad: float = 0.0) -> bool:
        end = float("inf") if self.end is None else self.end
        return t0 >= self.start - pad and t1 <= end + pad

    def overlaps(self, t0: float, t1: float) -> bool:
        end = float("inf") if self.end is None else self.end
        return t0 < end and t1 > self.start

    def as_list(self) -> list[float | None]:
        return [round(self.start, 3), None if self.end is None else round(self.end, 3)]


@dataclass(frozen=True)
class RecordingWindow:
    """The recording's place on the call timeline."""

    started_at: float | None  #: PBX time the recording started (None: not in the ledger)
    stopped: bool
    muted: list[Span]
    pauses: list[Span]  #: requested pause / payment segments (what should be muted)


def _kind_time_data(entry: Any) -> tuple[str, float, dict]:
    data = entry.data if isinstance(entry.data, dict) else {}
    return entry.kind, entry.pbx_time, data


def recording_window(entries: Iterable[Any], file_name: str | None = None) -> RecordingWindow:
    """Spans from a call's ledger timeline (``StoredEntry``-like objects, in order)."""
    items = [_kind_time_data(e) for e in entries]
    starts = [(t, d) for k, t, d in items if k == "recording-started"]
    start = None
    if starts:
        wanted = os.path.basename(file_name) if file_name else None
        match = [t for t, d in starts if wanted and os.path.basename(str(d.get("file", ""))) == wanted]
        start = match[0] if match else starts[0][0]
    if start is None:
        return RecordingWindow(None, any(k in ("recording-stopped", "hangup") for k, _, _ in items), [], [])
    muted: list[Span] = []
    pauses: list[Span] = []
    mute_open: float | None = None
    pause_open: float | None = None
    stopped = False
    for kind, at, _ in items:
        if at < start and kind not in ("recording-muted", "recording-unmuted"):
            continue
        offset = max(0.0, at - start)
        if kind == "recording-muted" and mute_open is None:
            mute_open = offset
        elif kind == "recording-unmuted" and mute_open is not None:
            muted.append(Span(mute_open, offset))
            mute_open = None
        elif kind in ("pause-requested", "payment-started") and pause_open is None:
            pause_open = offset
        elif kind in ("resume-requested", "payment-ended") and pause_open is not None:
            pauses.append(Span(pause_open, offset))
            pause_open = None
        elif kind in ("recording-stopped", "hangup"):
            stopped = True
    if mute_open is not None:
        muted.append(Span(mute_open, None))
    if pause_open is not None:
        pauses.append(Span(pause_open, None))
    return RecordingWindow(start, stopped, muted, pauses)


def classify(tones: Sequence["Tone"], window: RecordingWindow) -> list[dict[str, Any]]:
    """Every tone with where it fell: ``unmuted`` (a leak) or ``muted-span`` (mute failed)."""
    out = []
    for tone in tones:
        in_muted = any(s.contains(tone.start, tone.end, EDGE_S) for s in window.muted)
        in_pause = any(s.overlaps(tone.start, tone.end) for s in window.pauses)
        out.append({**tone.as_dict(), "where": "muted-span" if in_muted else "unmuted",
                    "in_payment_segment": in_pause})
    return out


def summary(classified: list[dict[str, Any]], window: RecordingWindow) -> dict[str, Any]:
    """The JSON stored with the recording and read by the audit."""
    leaks = [t for t in classified if t["where"] == "unmuted"]
    failed = [t for t in classified if t["where"] == "muted-span"]
    return {
        "tones": classified,
        "leaked_digits": "".join(t["digit"] for t in leaks),
        "leaks": len(leaks) + len(failed),
        "mute_failures": len(failed),
        "muted_spans": [s.as_list() for s in window.muted],
        "payment_segments": [s.as_list() for s in window.pauses],
        "recording_started_at": window.started_at,
    }


__all__ = ["RecordingWindow", "Span", "classify", "recording_window", "summary"]
