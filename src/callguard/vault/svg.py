"""Tiny inline-SVG charts for the audit report: no scripts, no fonts, no network.

A compliance report is archived and opened years later, often offline, so
the charts are plain SVG elements inside the HTML.  Every label is
escaped: call ids and user names end up here and may contain anything.
"""

from __future__ import annotations

from html import escape
from typing import Sequence

PALETTE = {"blue": "#2b6cb0", "grey": "#a0aec0", "red": "#c53030", "amber": "#d69e2e", "green": "#2f855a",
           "ink": "#1a202c", "muted": "#718096", "grid": "#e2e8f0"}


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000):
        if value <= step:
            return float(step)
    return float(value)


def _svg(width: int, height: int, body: list[str], title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
            f'role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>{"".join(body)}</svg>')


def stacked_columns(labels: Sequence[str], series: Sequence[tuple[str, str, Sequence[float]]], title: str,
                    width: int = 640, height: int = 220) -> str:
    """Columns per label, each stacked from ``series`` = [(name, colour, values)]."""
    left, bottom, top = 36, 28, 22
    plot_w, plot_h = width - left - 8, height - bottom - top
    totals = [sum(values[i] for _, _, values in series) for i in range(len(labels))]
    peak = _nice_max(max(totals, default=0))
    n = max(1, len(labels))
    slot = plot_w / n
    bar = max(1.0, slot * 0.7)
    body = [f'<text x="{left}" y="14" font-size="12" fill="{PALETTE["ink"]}">{escape(title)}</text>']
    for frac in (0, 0.5, 1):
        y = top + plot_h * (1 - frac)
        body.append(f'<line x1="{left}" x2="{width - 8}" y1="{y:.1f}" y2="{y:.1f}" stroke="{PALETTE["grid"]}"/>')
        body.append(f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end" '
                    f'fill="{PALETTE["muted"]}">{peak * frac:g}</text>')
    for i, label in enumerate(labels):
        x = left + i * slot + (slot - bar) / 2
        y = top + plot_h
        for name, colour, values in series:
            h = plot_h * values[i] / peak
            if h > 0:
                y -= h
                body.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{colour}">'
                            f'<title>{escape(label)}: {escape(name)} {values[i]:g}</title></rect>')
        if n <= 12 or i % max(1, n // 10) == 0:
            body.append(f'<text x="{x + bar / 2:.1f}" y="{height - 10}" font-size="10" text-anchor="middle" '
                        f'fill="{PALETTE["muted"]}">{escape(label)}</text>')
    legend_x = width - 8
    for name, colour, _ in reversed(series):
        legend_x -= 8 + 7 * len(name) + 14
        body.append(f'<rect x="{legend_x}" y="5" width="10" height="10" fill="{colour}"/>'
                    f'<text x="{legend_x + 14}" y="14" font-size="11" fill="{PALETTE["ink"]}">{escape(name)}</text>')
    return _svg(width, height, body, title)


def histogram(values: Sequence[float], title: str, unit: str, limit: float | None = None, bins: int = 20,
              width: int = 420, height: int = 200) -> str:
    """Distribution of ``values`` with a dashed line at ``limit`` (bars past it in red)."""
    left, bottom, top = 36, 30, 22
    plot_w, plot_h = width - left - 10, height - bottom - top
    high = max([*values, (limit or 0) * 1.5, 1e-9]) * 1.08
    step = high / bins
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, max(0, int(v / step)))] += 1
    peak = _nice_max(max(counts, default=0))
    body = [f'<text x="{left}" y="14" font-size="12" fill="{PALETTE["ink"]}">{escape(title)}</text>']
    slot = plot_w / bins
    for i, count in enumerate(counts):
        if not count:
            continue
        h = plot_h * count / peak
        over = limit is not None and i * step >= limit
        body.append(f'<rect x="{left + i * slot + 1:.1f}" y="{top + plot_h - h:.1f}" width="{slot - 2:.1f}" '
                    f'height="{h:.1f}" fill="{PALETTE["red"] if over else PALETTE["blue"]}">'
                    f'<title>{i * step:.2f}-{(i + 1) * step:.2f} {escape(unit)}: {count}</title></rect>')
    body.append(f'<line x1="{left}" x2="{width - 10}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="{PALETTE["ink"]}"/>')
    for frac, anchor in ((0, "start"), (0.5, "middle"), (1, "end")):
        body.append(f'<text x="{left + plot_w * frac:.1f}" y="{height - 14}" font-size="10" text-anchor="{anchor}" '
                    f'fill="{PALETTE["muted"]}">{high * frac:.3g}</text>')
    body.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 2}" font-size="10" text-anchor="middle" '
                f'fill="{PALETTE["muted"]}">{escape(unit)}</text>')
    body.append(f'<text x="{left - 4}" y="{top + 4}" font-size="10" text-anchor="end" fill="{PALETTE["muted"]}">'
                f'{peak:g}</text>')
    if limit is not None:
        x = left + plot_w * min(1.0, limit / high)
        body.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top - 4}" y2="{top + plot_h}" stroke="{PALETTE["red"]}" '
                    f'stroke-dasharray="4 3"/><text x="{x + 3:.1f}" y="{top + 6}" font-size="10" '
                    f'fill="{PALETTE["red"]}">limit {limit:g}</text>')
    if not values:
        body.append(f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h / 2:.1f}" font-size="12" '
                    f'text-anchor="middle" fill="{PALETTE["muted"]}">no data</text>')
    return _svg(width, height, body, title)


def bars(items: Sequence[tuple[str, float, str]], title: str, width: int = 420, row: int = 20) -> str:
    """Horizontal bars: [(label, value, colour)]."""
    label_w, top = 190, 22
    height = top + row * max(1, len(items)) + 8
    peak = max((v for _, v, _ in items), default=0) or 1
    plot_w = width - label_w - 40
    body = [f'<text x="0" y="14" font-size="12" fill="{PALETTE["ink"]}">{escape(title)}</text>']
    for i, (label, value, colour) in enumerate(items):
        y = top + i * row
        w = plot_w * value / peak
        shown = label if len(label) <= 28 else label[:27] + "…"
        body.append(f'<text x="{label_w - 6}" y="{y + 13}" font-size="11" text-anchor="end" '
                    f'fill="{PALETTE["ink"]}">{escape(shown)}</text>')
        body.append(f'<rect x="{label_w}" y="{y + 3}" width="{max(w, 1):.1f}" height="{row - 6}" fill="{colour}">'
                    f'<title>{escape(label)}: {value:g}</title></rect>')
        body.append(f'<text x="{label_w + max(w, 1) + 4:.1f}" y="{y + 13}" font-size="11" '
                    f'fill="{PALETTE["muted"]}">{value:g}</text>')
    if not items:
        body.append(f'<text x="{label_w}" y="{top + 13}" font-size="11" fill="{PALETTE["muted"]}">none</text>')
    return _svg(width, height, body, title)


__all__ = ["PALETTE", "bars", "histogram", "stacked_columns"]
