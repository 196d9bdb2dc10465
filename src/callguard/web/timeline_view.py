"""A call's evidence as spans on a time axis (pure: entries in, geometry-free spans out).

The call page draws one lane per kind of span - notice, recording, muted,
pause, payment - from the ledger entries, with the offsets from the call's
first entry; the template turns offsets into SVG coordinates.  An open
span (a live call still paused) ends at ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from callguard.timeline import describe

#: lane -> (entry kinds that open a span, entry kinds that close it)
LANES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "notice": (frozenset({"notice-started"}), frozenset({"notice-ended", "consent", "continued"})),
    "recording": (frozenset({"recording-started"}), frozenset({"recording-stopped"})),
    "muted": (frozenset({"recording-muted"}), frozenset({"recording-unmuted", "recording-stopped"})),
    "pause": (frozenset({"pause-requested"}), frozenset({"resume-requested"})),
    "payment": (frozenset({"payment-started"}), frozenset({"payment-ended"})),
}
_CLOSE_ALL = frozenset({"hangup"})


@dataclass(frozen=True)
class Span:
    start: float  #: seconds from the first entry
    end: float
    open: bool = False  #: still going (live call)

    @property
    def length(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Mark:
    offset: float
    at: float
    kind: str
    text: str
    data: Mapping[str, Any]


@dataclass
class TimelineView:
    origin: float
    duration: float
    lanes: dict[str, list[Span]] = field(default_factory=dict)
    marks: list[Mark] = field(default_factory=list)

    def ticks(self, count: int = 6) -> list[float]:
        """Round axis ticks (seconds) across the duration."""
        if self.duration <= 0:
            return [0.0]
        raw = self.duration / count
        step = next(s for s in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 1e9)
                    if s >= raw)
        out, t = [], 0.0
        while t <= self.duration + 1e-9:
            out.append(round(t, 3))
            t += step
        return out


def build_timeline(entries: Iterable[tuple[str, float, Mapping[str, Any]]], now: float | None = None) -> TimelineView:
    """Spans and marks from ``(kind, pbx time, data)`` in ledger order."""
    rows = list(entries)
    if not rows:
        return TimelineView(0.0, 0.0)
    origin = rows[0][1]
    end_at = max(now or 0.0, max(at for _, at, _ in rows))
    view = TimelineView(origin, end_at - origin, {lane: [] for lane in LANES})
    opened: dict[str, float] = {}
    for kind, at, data in rows:
        offset = at - origin
        view.marks.append(Mark(offset, at, kind, describe(kind, data), data))
        for lane, (opens, closes) in LANES.items():
            if kind in opens and lane not in opened and not _joiner(data):
                opened[lane] = offset
            elif (kind in closes or kind in _CLOSE_ALL) and lane in opened and not _joiner(data):
                view.lanes[lane].append(Span(opened.pop(lane), offset))
    for lane, start in opened.items():
        view.lanes[lane].append(Span(start, view.duration, open=now is not None))
    return view


def _joiner(data: Mapping[str, Any]) -> bool:
    """A joiner's own notice/consent entries do not open or close the call's notice lane."""
    return data.get("party") == "joiner"


__all__ = ["LANES", "Mark", "Span", "TimelineView", "build_timeline"]
