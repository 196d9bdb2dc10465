"""Chart geometry for the audit page (pure: numbers in, rectangles and ticks out).

The template (``templates/_charts.html``) draws the SVG; this module only
decides where things go, so the drawing stays markup and the maths stays
testable.  Axis labels are real text at 13 px with a value on every bar.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence


def nice_axis(value: float, ticks: int = 4) -> tuple[float, float]:
    """(axis maximum, tick step): a 1/2/5 step with at most ``ticks`` steps reaching ``value``."""
    if value <= 0:
        return 1.0, 1.0
    raw = value / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    if value >= 1 and step < 1:
        step = 1.0  # counts: whole-number ticks
    return step * math.ceil(value / step), step


def _ticks(peak: float, step: float) -> list[float]:
    return [step * k for k in range(int(round(peak / step)) + 1)]


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    x: float
    y: float
    width: float
    height: float
    series: str = ""


@dataclass
class Chart:
    title: str
    width: int
    height: int
    bars: list[Bar] = field(default_factory=list)
    ticks: list[tuple[float, str]] = field(default_factory=list)  #: (position, label) on the value axis
    labels: list[tuple[float, str]] = field(default_factory=list)  #: (position, label) on the category axis
    series: list[str] = field(default_factory=list)
    horizontal: bool = False
    plot: tuple[float, float, float, float] = (0, 0, 0, 0)  #: left, top, width, height


def columns(title: str, labels: Sequence[str], series: Sequence[tuple[str, Sequence[float]]],
            width: int = 640, height: int = 240, every: int = 1) -> Chart:
    """Stacked columns per label; ``every``: label every n-th column (days of a month)."""
    left, top, bottom = 44, 16, 34
    plot_w, plot_h = width - left - 10, height - top - bottom
    totals = [sum(values[i] for _, values in series) for i in range(len(labels))]
    peak, step = nice_axis(max(totals, default=0))
    slot = plot_w / max(1, len(labels))
    chart = Chart(title, width, height, series=[name for name, _ in series], plot=(left, top, plot_w, plot_h))
    for i, label in enumerate(labels):
        base = 0.0
        for name, values in series:
            v = values[i]
            h = plot_h * v / peak
            chart.bars.append(Bar(label, v, left + i * slot + slot * 0.15, top + plot_h - (plot_h * base / peak) - h,
                                  slot * 0.7, h, name))
            base += v
        if i % every == 0:
            chart.labels.append((left + (i + 0.5) * slot, label))
    chart.ticks = [(top + plot_h - plot_h * t / peak, f"{t:g}") for t in _ticks(peak, step)]
    return chart


def bars(title: str, items: Sequence[tuple[str, float]], width: int = 640, row: int = 24) -> Chart:
    """Horizontal bars, one per (label, value), labels left of the bars, values at their ends."""
    left, top = 220, 8
    plot_w = width - left - 60
    height = top + row * max(1, len(items)) + 24
    peak, step = nice_axis(max((v for _, v in items), default=0))
    chart = Chart(title, width, height, horizontal=True, plot=(left, top, plot_w, row * max(1, len(items))))
    for i, (label, value) in enumerate(items):
        chart.bars.append(Bar(label, value, left, top + i * row + 4, plot_w * value / peak, row - 8))
    chart.ticks = [(left + plot_w * t / peak, f"{t:g}") for t in _ticks(peak, step)]
    return chart


__all__ = ["Bar", "Chart", "bars", "columns", "nice_axis"]
