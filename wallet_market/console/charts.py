"""Charts drawn on the server as inline SVG: a time series, a grouped bar breakdown, estimates with intervals.

No script and no external file: the page carries the picture, with a title
and description for screen readers, beside the table of the same numbers.
Values are integers: fen, with axes labelled in yuan, or for the interval
chart whatever its ``label`` function shows (basis points as per cent).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

from markupsafe import Markup, escape

# Both at least 4.5:1 against white.
COLOURS = ("#1f5fa8", "#a34400", "#2e7d32", "#6a1b9a", "#00695c", "#ad1457", "#4e342e", "#37474f")
TEXT = "#1a1a1a"
GRID = "#d0d4da"


def _nice_step(span: float, ticks: int = 5) -> float:
    if span <= 0:
        return 1.0
    raw = span / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def _axis(values: Sequence[int]) -> tuple[float, float, float]:
    low = min([0, *values])
    high = max([0, *values])
    if low == high:
        high = low + 100
    step = _nice_step(high - low)
    return math.floor(low / step) * step, math.ceil(high / step) * step, step


def yuan_label(fen: float) -> str:
    """Fen as a short yuan label, the sign before the ¥: -250000 → ``-¥2,500``."""
    if fen < 0:
        return "-" + yuan_label(-fen)
    yuan = fen / 100
    if yuan >= 10_000:
        return f"¥{yuan / 10_000:,.1f}万"
    if yuan >= 100 or yuan == int(yuan):
        return f"¥{yuan:,.0f}"
    return f"¥{yuan:,.2f}"


def _legend(series_names: Sequence[str], x: float, y: float) -> list[str]:
    parts = []
    for index, name in enumerate(series_names):
        cx = x + index * 170
        parts.append(f'<rect x="{cx}" y="{y - 10}" width="14" height="14" fill="{COLOURS[index % len(COLOURS)]}"/>')
        parts.append(f'<text x="{cx + 20}" y="{y + 2}" font-size="13" fill="{TEXT}">{escape(name)}</text>')
    return parts


def _open(chart_id: str, width: int, height: int, title: str, description: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{escape(chart_id)}" viewBox="0 0 {width} {height}" '
        f'width="100%" role="img" aria-labelledby="{escape(chart_id)}-title {escape(chart_id)}-desc" '
        f'preserveAspectRatio="xMinYMin meet">',
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
        f'<desc id="{escape(chart_id)}-desc">{escape(description)}</desc>',
    ]


def time_series(chart_id: str, title: str, days: Sequence[str], series: Sequence[tuple[str, Sequence[int]]]) -> Markup:
    """Lines of fen values by day, one per series, with points and a legend."""
    width, height = 880, 320
    left, right, top, bottom = 78, 20, 36, 52
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for _, vs in series for v in vs]
    low, high, step = _axis(values or [0])
    description = "; ".join(
        f"{name}: " + ", ".join(f"{day} {yuan_label(v)}" for day, v in zip(days, vs)) for name, vs in series
    )
    parts = _open(chart_id, width, height, title, description)

    def x_of(index: int) -> float:
        return left + (plot_w * (index + 0.5) / max(len(days), 1))

    def y_of(value: float) -> float:
        return top + plot_h * (1 - (value - low) / (high - low))

    tick = low
    while tick <= high + step / 2:
        y = y_of(tick)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}" stroke-width="1"/>')
        parts.append(f'<text x="{left - 8}" y="{y + 4:.1f}" font-size="12" text-anchor="end" fill="{TEXT}">{escape(yuan_label(tick))}</text>')
        tick += step
    label_every = max(1, math.ceil(len(days) / 10))
    for index, day in enumerate(days):
        if index % label_every == 0 or index == len(days) - 1:
            parts.append(
                f'<text x="{x_of(index):.1f}" y="{height - bottom + 18}" font-size="12" text-anchor="middle" fill="{TEXT}">{escape(day[5:])}</text>'
            )
    parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y_of(0):.1f}" y2="{y_of(0):.1f}" stroke="{TEXT}" stroke-width="1"/>')
    for index_s, (name, vs) in enumerate(series):
        colour = COLOURS[index_s % len(COLOURS)]
        points = " ".join(f"{x_of(i):.1f},{y_of(v):.1f}" for i, v in enumerate(vs))
        dash = ' stroke-dasharray="6 4"' if index_s % 2 else ""
        if len(vs) > 1:
            parts.append(f'<polyline class="series" data-series="{escape(name)}" points="{points}" fill="none" stroke="{colour}" stroke-width="2.5"{dash}/>')
        for i, v in enumerate(vs):
            parts.append(
                f'<circle class="point" cx="{x_of(i):.1f}" cy="{y_of(v):.1f}" r="3.5" fill="{colour}">'
                f"<title>{escape(name)} {escape(days[i])}: {escape(yuan_label(v))}</title></circle>"
            )
    parts.extend(_legend([name for name, _ in series], left, 20))
    parts.append("</svg>")
    return Markup("".join(parts))


def bars(chart_id: str, title: str, categories: Sequence[str], series: Sequence[tuple[str, Sequence[int]]]) -> Markup:
    """Horizontal grouped bars of fen values: one group per category, one bar per series."""
    width = 880
    left, right, top = 190, 90, 40
    bar_h, gap = 14, 12
    group_h = bar_h * max(len(series), 1) + gap
    height = top + group_h * max(len(categories), 1) + 36
    plot_w = width - left - right
    values = [v for _, vs in series for v in vs]
    low, high, step = _axis(values or [0])
    description = "; ".join(
        f"{category}: " + ", ".join(f"{name} {yuan_label(vs[i])}" for name, vs in series)
        for i, category in enumerate(categories)
    )
    parts = _open(chart_id, width, height, title, description)

    def x_of(value: float) -> float:
        return left + plot_w * (value - low) / (high - low)

    tick = low
    while tick <= high + step / 2:
        x = x_of(tick)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top - 6}" y2="{height - 30}" stroke="{GRID}" stroke-width="1"/>')
        parts.append(f'<text x="{x:.1f}" y="{height - 12}" font-size="12" text-anchor="middle" fill="{TEXT}">{escape(yuan_label(tick))}</text>')
        tick += step
    zero = x_of(0)
    for index, category in enumerate(categories):
        y0 = top + index * group_h
        parts.append(
            f'<text x="{left - 8}" y="{y0 + group_h / 2:.1f}" font-size="13" text-anchor="end" fill="{TEXT}">{escape(category)}</text>'
        )
        for index_s, (name, vs) in enumerate(series):
            value = vs[index]
            x1, x2 = sorted((zero, x_of(value)))
            y = y0 + index_s * bar_h
            parts.append(
                f'<rect class="bar" x="{x1:.1f}" y="{y:.1f}" width="{max(x2 - x1, 0.5):.1f}" height="{bar_h - 2}" '
                f'fill="{COLOURS[index_s % len(COLOURS)]}"><title>{escape(category)}, {escape(name)}: {escape(yuan_label(value))}</title></rect>'
            )
            parts.append(
                f'<text x="{x2 + 4:.1f}" y="{y + bar_h - 4:.1f}" font-size="11" fill="{TEXT}">{escape(yuan_label(value))}</text>'
            )
    parts.append(f'<line x1="{zero:.1f}" x2="{zero:.1f}" y1="{top - 6}" y2="{height - 30}" stroke="{TEXT}" stroke-width="1"/>')
    parts.extend(_legend([name for name, _ in series], left, 20))
    parts.append("</svg>")
    return Markup("".join(parts))


def percent_label(bps: float) -> str:
    """Basis points as a short per cent for an axis: 250 → ``2.5%``."""
    return f"{bps / 100:g}%"


def intervals(
    chart_id: str,
    title: str,
    rows: Sequence[tuple[str, int | None, int | None, int | None]],
    label: Callable[[float], str] = yuan_label,
    reference: tuple[str, int] | None = None,
) -> Markup:
    """One row per ``(name, estimate, low, high)``: the estimate as a point, its interval as a line with caps.

    Rows without an estimate say so; an interval that is ``None`` is left out.
    ``reference`` draws a dashed line across every row (e.g. what the logging
    policy earned); zero is always on the axis.
    """
    width = 880
    left, right, top, row_h = 150, 30, 40, 34
    height = top + row_h * max(len(rows), 1) + 36
    plot_w = width - left - right
    values = [v for _, *numbers in rows for v in numbers if v is not None]
    if reference is not None:
        values.append(reference[1])
    low, high, step = _axis(values or [0])

    def x_of(value: float) -> float:
        return left + plot_w * (value - low) / (high - low)

    def said(name: str, estimate: int | None, lo: int | None, hi: int | None) -> str:
        if estimate is None:
            return f"{name}: no estimate"
        interval = f" (95% interval {label(lo)} to {label(hi)})" if lo is not None and hi is not None else ""
        return f"{name}: {label(estimate)}{interval}"

    description = "; ".join(said(*row) for row in rows)
    if reference is not None:
        description += f"; {reference[0]}: {label(reference[1])}"
    parts = _open(chart_id, width, height, title, description)
    bottom = height - 30
    tick = low
    while tick <= high + step / 2:
        x = x_of(tick)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top - 6}" y2="{bottom}" stroke="{GRID}" stroke-width="1"/>')
        parts.append(f'<text x="{x:.1f}" y="{height - 12}" font-size="12" text-anchor="middle" fill="{TEXT}">{escape(label(tick))}</text>')
        tick += step
    zero = x_of(0)
    parts.append(f'<line x1="{zero:.1f}" x2="{zero:.1f}" y1="{top - 6}" y2="{bottom}" stroke="{TEXT}" stroke-width="1"/>')
    if reference is not None:
        x = x_of(reference[1])
        parts.append(
            f'<line class="reference" x1="{x:.1f}" x2="{x:.1f}" y1="{top - 10}" y2="{bottom}" stroke="{COLOURS[1]}" '
            f'stroke-width="2" stroke-dasharray="6 4"><title>{escape(reference[0])}: {escape(label(reference[1]))}</title></line>'
        )
        parts.append(
            f'<text x="{min(x + 4, width - right):.1f}" y="{top - 16}" font-size="12" fill="{COLOURS[1]}">'
            f'{escape(reference[0])} {escape(label(reference[1]))}</text>'
        )
    colour = COLOURS[0]
    for index, (name, estimate, lo, hi) in enumerate(rows):
        y = top + index * row_h + row_h / 2
        parts.append(f'<text x="{left - 10}" y="{y + 4:.1f}" font-size="13" text-anchor="end" fill="{TEXT}">{escape(name)}</text>')
        if estimate is None:
            parts.append(f'<text x="{left + 6}" y="{y + 4:.1f}" font-size="12" fill="{TEXT}">no estimate</text>')
            continue
        if lo is not None and hi is not None:
            x1, x2 = x_of(lo), x_of(hi)
            parts.append(
                f'<line class="interval" x1="{x1:.1f}" x2="{x2:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="{colour}" stroke-width="2.5"/>'
            )
            for x in (x1, x2):
                parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y - 7:.1f}" y2="{y + 7:.1f}" stroke="{colour}" stroke-width="2.5"/>')
        parts.append(
            f'<circle class="estimate" cx="{x_of(estimate):.1f}" cy="{y:.1f}" r="5" fill="{colour}">'
            f"<title>{escape(said(name, estimate, lo, hi))}</title></circle>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))
