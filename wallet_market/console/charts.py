"""Charts drawn on the server with matplotlib and put in the page as inline SVG.

A time series, a grouped bar breakdown, estimates with intervals. No script
and no external file: the page carries the picture, with a title and a
description for screen readers, beside the table of the same numbers. Text
stays text, so the page's fonts draw it (Chinese names too), and the picture
scales to the width of its block. Values are integers: fen, with axes
labelled in yuan, or for the interval chart whatever its ``label`` function
shows (basis points as per cent).

Each mark carries an id made from the chart's, with a tooltip (``<title>``)
saying its value: ``{chart}-series-{n}`` is a series' line, its points the
``<use>`` elements inside it; ``{chart}-bar-{series}-{row}`` a bar;
``{chart}-estimate-{row}``, ``{chart}-interval-{row}`` and
``{chart}-reference`` the interval chart's marks.

matplotlib is imported when a chart is first drawn, so pages without one
never pay for it; each chart is drawn under :func:`..reports.figures.drawing`,
its settings in force only meanwhile.
"""
from __future__ import annotations

import functools
import io
import math
import re
import warnings
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator, Literal, Mapping, Sequence

from markupsafe import Markup, escape

from ..reports.figures import drawing

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.typing import RcKeyType

# Each at least 4.5:1 against white.
COLOURS = ("#1f5fa8", "#a34400", "#2e7d32", "#6a1b9a", "#00695c", "#ad1457", "#4e342e", "#37474f")
TEXT = "#1a1a1a"
GRID = "#d0d4da"

WIDTH = 880  # of the viewBox, in points: at 880 CSS pixels wide one point is one pixel
POINTS_PER_INCH = 72  # matplotlib sizes figures in inches
PAD = 8  # points of white round the labels
TICK = 3.5 + 3.5  # a tick's length and the gap to its label, matplotlib's defaults
TOP = PAD + 34  # the legend's row (13-point text in its box) and its gap above the plot
BOTTOM = PAD + 15 + TICK  # a row of 12-point tick labels
DASHED = (0, (6, 4))  # in points (dashes are not scaled by the line's width)
# Text is measured with matplotlib's own font, and Chinese with the first of these that is installed;
# the browser draws both with the page's fonts (console.css).
MEASURED_WITH = ("DejaVu Sans",)
CHINESE_FONTS = ("Noto Sans CJK SC", "Source Han Sans SC", "Noto Sans SC", "WenQuanYi Micro Hei", "WenQuanYi Zen Hei")

_SVG_OPEN = re.compile(r"<svg [^>]*>")
_VIEW_BOX = re.compile(r'viewBox="([^"]+)"')
# The ids matplotlib numbers itself (figure_1, axes_1, text_3, matplotlib.axis_2 …) repeat in every
# chart of a page; the ids set here (``{chart}-…``) and the hashed ones of clip paths and markers stay.
_NUMBERED_ID = re.compile(r' id="[\w.]+_\d+"')
_USE = re.compile(r"<use ([^>]*)/>")
_STYLE = re.compile(r' style="([^"]*)"')
_STYLE_ELEMENT = re.compile(r"<style[^>]*>.*?</style>", re.S)


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


def _ticks(low: float, high: float, step: float) -> list[float]:
    return [low + k * step for k in range(round((high - low) / step) + 1)]


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


def percent_label(bps: float) -> str:
    """Basis points as a short per cent for an axis: 250 → ``2.5%``."""
    return f"{bps / 100:g}%"


@functools.cache
def _installed_fonts() -> frozenset[str]:
    """The names of the fonts matplotlib found on this machine (read once per process)."""
    from matplotlib import font_manager

    return frozenset(font.name for font in font_manager.fontManager.ttflist)


def _settings(chart_id: str) -> dict[RcKeyType, Any]:
    """matplotlib's settings for one chart, in force only while it is drawn (:func:`drawing`)."""
    installed = _installed_fonts()
    return {
        "svg.fonttype": "none",  # text as <text>, drawn by the browser
        "svg.hashsalt": chart_id,  # clip path and marker ids: the same each time, apart from another chart's
        "text.parse_math": False,  # a $ in a name is a dollar sign
        "font.family": [*MEASURED_WITH, *(name for name in CHINESE_FONTS if name in installed)],
        "font.size": 12,
        "xtick.labelsize": 12,
        "ytick.labelsize": 12,
        "legend.fontsize": 13,
        "legend.frameon": False,
        "text.color": TEXT,
        "axes.labelcolor": TEXT,
        "axes.edgecolor": TEXT,
        "xtick.color": TEXT,
        "ytick.color": TEXT,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "lines.scale_dashes": False,
        "figure.facecolor": "white",
        "axes.facecolor": "white",
    }


def _figure(height: float) -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(WIDTH / POINTS_PER_INCH, height / POINTS_PER_INCH))
    axes = figure.subplots()
    axes.set_axisbelow(True)
    return figure, axes


def _widest(texts: Sequence[str], size: float) -> float:
    """The width in points of the widest text at ``size``, as the SVG renderer measures it."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    measure, font = TextToPath(), FontProperties(size=size)
    return max((measure.get_text_width_height_descent(text, font, ismath=False)[0] for text in texts), default=0.0)


def _fit(figure: Figure, height: float, left: float, right: float) -> None:
    """Margins in points: the legend's row above the plot, a row of tick labels below it.

    Measured rather than left to a layout engine, which draws the whole
    figure once more to find them (twice the time of a chart).
    """
    figure.subplots_adjust(left=left / WIDTH, right=1 - right / WIDTH, top=1 - TOP / height, bottom=BOTTOM / height)


def _legend_above(axes: Axes, handles: Sequence[Any] | None = None) -> None:
    """The legend in one row over the plot, where it covers no mark."""
    handles = list(handles) if handles is not None else axes.get_legend_handles_labels()[0]
    axes.legend(handles=handles, loc="lower left", bbox_to_anchor=(0, 1), ncols=max(len(handles), 1),
                borderaxespad=0.5, handlelength=2.4, columnspacing=2.0)


def _value_axis(
    axes: Axes, which: Literal["x", "y"], low: float, high: float, step: float, label: Callable[[float], str],
) -> list[str]:
    """The axis of values from ``low`` to ``high`` with a grid line each ``step`` and zero marked; its labels."""
    ticks = _ticks(low, high, step)
    labels = [label(tick) for tick in ticks]
    if which == "x":
        axes.set_xlim(low, high)
        axes.set_xticks(ticks, labels)
        axes.axvline(0, color=TEXT, linewidth=1)
    else:
        axes.set_ylim(low, high)
        axes.set_yticks(ticks, labels)
        axes.axhline(0, color=TEXT, linewidth=1)
    axes.grid(axis=which, color=GRID, linewidth=1)
    return labels


def _svg(
    figure: Figure, chart_id: str, title: str, description: str,
    titles: Mapping[str, str] | None = None, point_titles: Mapping[str, Sequence[str]] | None = None,
) -> Markup:
    """The figure as an ``<svg>`` to put in a page: no XML prolog, no fixed size, titled and described.

    ``titles`` gives a tooltip to the group of each id; ``point_titles`` one to
    each point (``<use>``) of a line's group, in order.
    """
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Creator": None, "Date": None, "Format": None, "Type": None})
    text = buffer.getvalue()
    opening = _SVG_OPEN.search(text)
    view_box = _VIEW_BOX.search(opening.group(0)) if opening else None
    if opening is None or view_box is None:
        raise RuntimeError("matplotlib wrote no <svg> element with a viewBox")
    chart = escape(chart_id)
    body = _NUMBERED_ID.sub("", text[opening.end():])
    # The console's Content-Security-Policy allows no inline CSS: matplotlib's styles become SVG's
    # presentation attributes, and its one style rule (round line joins) is set on the <svg> to inherit.
    body = _STYLE.sub(_attributes, _STYLE_ELEMENT.sub("", body, count=1))
    for gid, tooltip in (titles or {}).items():
        body = body.replace(f'<g id="{gid}">', f'<g id="{gid}"><title>{escape(tooltip)}</title>', 1)
    for gid, tooltips in (point_titles or {}).items():
        body = _titled_points(body, gid, tooltips)
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" class="chart" '
        f'id="{chart}" viewBox="{view_box.group(1)}" role="img" aria-labelledby="{chart}-title {chart}-desc" '
        f'preserveAspectRatio="xMinYMin meet" stroke-linejoin="round" stroke-linecap="butt">'
        f'<title id="{chart}-title">{escape(title)}</title><desc id="{chart}-desc">{escape(description)}</desc>'
        f"{body}"
    )


def _attributes(style: re.Match[str]) -> str:
    """A ``style`` attribute as presentation attributes; the font is the page's (console.css)."""
    declarations = (declaration.partition(":") for declaration in style.group(1).split(";"))
    return "".join(
        f' {name.strip()}="{value.strip()}"' for name, _, value in declarations
        if name.strip() and name.strip() != "font-family"
    )


def _titled_points(body: str, gid: str, tooltips: Sequence[str]) -> str:
    """Each marker of the line ``gid`` (its ``<use>`` elements, before the group's first ``</g>``) with a tooltip."""
    start = body.find(f'<g id="{gid}">')
    if start < 0:
        return body
    end = body.index("</g>", start)
    remaining = iter(tooltips)

    def titled(match: re.Match[str]) -> str:
        tooltip = next(remaining, None)
        if tooltip is None:
            return match.group(0)
        return f"<use {match.group(1)}><title>{escape(tooltip)}</title></use>"

    return body[:start] + _USE.sub(titled, body[start:end]) + body[end:]


@contextmanager
def _draw(chart_id: str) -> Iterator[None]:
    """Draw one chart: the drawing lock with its settings, and no warning for a glyph the server's fonts lack.

    The SVG keeps its text as text, drawn by the browser with the page's fonts,
    so a Chinese name the server has no font for (a slim image) only makes its
    measured width approximate; matplotlib would warn once per character.
    """
    with drawing(_settings(chart_id)), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from font", category=UserWarning)
        yield


def time_series(chart_id: str, title: str, days: Sequence[str], series: Sequence[tuple[str, Sequence[int]]]) -> Markup:
    """Lines of fen values by day, one per series, with points and a legend."""
    height = 320
    values = [v for _, vs in series for v in vs]
    low, high, step = _axis(values or [0])
    description = "; ".join(
        f"{name}: " + ", ".join(f"{day} {yuan_label(v)}" for day, v in zip(days, vs)) for name, vs in series
    )
    with _draw(chart_id):
        figure, axes = _figure(height)
        value_labels = _value_axis(axes, "y", low, high, step, yuan_label)
        label_every = max(1, math.ceil(len(days) / 10))
        shown = [i for i in range(len(days)) if i % label_every == 0 or i == len(days) - 1]
        day_labels = [days[i][5:] for i in shown]
        axes.set_xticks(shown, day_labels)
        _fit(figure, height, PAD + _widest(value_labels, 12) + TICK, PAD + _widest(day_labels[-1:], 12) / 2)
        axes.set_xlim(-0.5, max(len(days), 1) - 0.5)
        point_titles = {}
        for index, (name, vs) in enumerate(series):
            gid = f"{chart_id}-series-{index}"
            axes.plot(
                range(len(vs)), vs, color=COLOURS[index % len(COLOURS)], linewidth=2.5,
                linestyle=DASHED if index % 2 else "solid", marker="o", markersize=7, clip_on=False, gid=gid,
                label=name,
            )
            point_titles[gid] = [f"{name} {day}: {yuan_label(v)}" for day, v in zip(days, vs)]
        _legend_above(axes)
        return _svg(figure, chart_id, title, description, point_titles=point_titles)


def bars(chart_id: str, title: str, categories: Sequence[str], series: Sequence[tuple[str, Sequence[int]]]) -> Markup:
    """Horizontal grouped bars of fen values: one group per category, one bar per series, each labelled."""
    bar_h, gap = 14, 12  # points: a bar and the space between groups
    group_h = bar_h * max(len(series), 1) + gap
    height = 40 + group_h * max(len(categories), 1) + 36
    values = [v for _, vs in series for v in vs]
    low, high, step = _axis(values or [0])
    description = "; ".join(
        f"{category}: " + ", ".join(f"{name} {yuan_label(vs[i])}" for name, vs in series)
        for i, category in enumerate(categories)
    )
    with _draw(chart_id):
        figure, axes = _figure(height)
        ticks = _value_axis(axes, "x", low, high, step, yuan_label)
        axes.set_yticks(range(len(categories)), categories, fontsize=13)
        axes.tick_params(axis="y", length=0)
        # a value's label stands right of its bar's end (zero, for a loss): only those near the edge can stick out
        ends = sorted({yuan_label(v) for v in values if max(v, 0) > high - step})
        _fit(figure, height, PAD + max(_widest(sorted(set(categories)), 13) + 4, _widest(ticks[:1], 12) / 2),
             PAD + max(_widest(ends, 11) + 4, _widest(ticks[-1:], 12) / 2))
        axes.set_ylim(max(len(categories), 1) - 0.5, -0.5)  # the first category at the top
        titles = {}
        for index_s, (name, vs) in enumerate(series):
            # each group fills one unit of the axis: half a gap, the series' bars, half a gap
            centres = [i - 0.5 + (gap / 2 + bar_h * index_s + bar_h / 2) / group_h for i in range(len(vs))]
            container = axes.barh(
                centres, vs, height=(bar_h - 2) / group_h, color=COLOURS[index_s % len(COLOURS)], label=name,
            )
            for index, (patch, centre, value) in enumerate(zip(container.patches, centres, vs)):
                gid = f"{chart_id}-bar-{index_s}-{index}"
                patch.set_gid(gid)
                titles[gid] = f"{categories[index]}, {name}: {yuan_label(value)}"
                axes.annotate(
                    yuan_label(value), (max(value, 0), centre), xytext=(4, 0), textcoords="offset points",
                    va="center", fontsize=11,
                )
        _legend_above(axes)
        return _svg(figure, chart_id, title, description, titles=titles)


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
    from matplotlib.lines import Line2D

    height = 40 + 34 * max(len(rows), 1) + 36
    values = [v for _, *numbers in rows for v in numbers if v is not None]
    if reference is not None:
        values.append(reference[1])
    low, high, step = _axis(values or [0])

    def said(name: str, estimate: int | None, lo: int | None, hi: int | None) -> str:
        if estimate is None:
            return f"{name}: no estimate"
        interval = f" (95% interval {label(lo)} to {label(hi)})" if lo is not None and hi is not None else ""
        return f"{name}: {label(estimate)}{interval}"

    description = "; ".join(said(*row) for row in rows)
    if reference is not None:
        description += f"; {reference[0]}: {label(reference[1])}"
    colour = COLOURS[0]
    with _draw(chart_id):
        figure, axes = _figure(height)
        ticks = _value_axis(axes, "x", low, high, step, label)
        names = [name for name, *_ in rows]
        axes.set_yticks(range(len(rows)), names, fontsize=13)
        axes.tick_params(axis="y", length=0)
        _fit(figure, height, PAD + max(_widest(names, 13) + 4, _widest(ticks[:1], 12) / 2),
             PAD + _widest(ticks[-1:], 12) / 2)
        axes.set_ylim(max(len(rows), 1) - 0.5, -0.5)
        titles = {}
        for index, (name, estimate, lo, hi) in enumerate(rows):
            if estimate is None:
                axes.annotate("no estimate", (0, index), xycoords=("axes fraction", "data"), xytext=(6, 0),
                              textcoords="offset points", va="center")
                continue
            if lo is not None and hi is not None:
                axes.plot([lo, hi], [index, index], color=colour, linewidth=2.5, marker="|", markersize=14,
                          markeredgewidth=2.5, clip_on=False, gid=f"{chart_id}-interval-{index}")
            gid = f"{chart_id}-estimate-{index}"
            axes.plot([estimate], [index], linestyle="none", marker="o", markersize=10, color=colour, clip_on=False,
                      gid=gid)
            titles[gid] = said(name, estimate, lo, hi)
        handles: list[Any] = [Line2D([], [], color=colour, linewidth=2.5, marker="o", markersize=8,
                                     label="estimate and its 95% interval")]
        if reference is not None:
            gid = f"{chart_id}-reference"
            handles.append(axes.axvline(reference[1], color=COLOURS[1], linewidth=2, linestyle=DASHED, gid=gid,
                                        label=f"{reference[0]} {label(reference[1])}"))
            titles[gid] = f"{reference[0]}: {label(reference[1])}"
        _legend_above(axes, handles)
        return _svg(figure, chart_id, title, description, titles=titles)
