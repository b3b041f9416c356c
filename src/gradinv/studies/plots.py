"""Plots of a study's finished trials: one metric against one axis, a line per series, as PNG bytes.

:func:`metric_plot` draws the mean of a metric over the repeats at each grid point with its sample
standard deviation as error bars. The x axis is ``TableLayout.plot`` (default: the first row axis,
else the first column axis); it is numeric when every label of it parses as a number, else
categorical in the study's order. Each value of ``TableLayout.series`` (default: the first column
axis other than the x axis) is one line; the other axes of the layout that vary split the lines
further, and an axis outside the layout that varies is an error (as for the tables: nothing is
averaged across an axis but the repeats).

The figure is drawn on matplotlib's Agg canvas directly (no pyplot, no global backend switch) at
:data:`PLOT_SIZE` pixels and saved without metadata, so the same trials give the same bytes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

from gradinv.errors import ConfigError
from gradinv.report.html import metric_title
from gradinv.studies.rows import TableLayout, TrialRow, scalar_title
from gradinv.studies.tables import axis_labels, axis_points, check_layout, direction, summarize

__all__ = ["PLOT_DPI", "PLOT_SIZE", "metric_plot", "plot_axes"]

#: the size of a plot in pixels (width, height) and its resolution
PLOT_SIZE = (720, 450)
PLOT_DPI = 100
_MARKERS = "osD^v<>pPhX*"
_MAX_TICKS = 12  # a numeric axis with at most this many values gets a tick at each


def plot_axes(layout: TableLayout) -> tuple[str, tuple[str, ...]]:
    """The x axis of a study's plots and the axes whose values make the lines (series first)."""
    x = layout.plot or (layout.rows[0] if layout.rows else layout.columns[0] if layout.columns else None)
    if x is None:
        raise ConfigError(
            "Expected an axis for the x axis of the plot (TableLayout.plot, or a row or column axis), "
            "but the layout has none. Name one in `plot`."
        )
    series = layout.series
    if series is None:
        series = next((a for a in layout.columns if a != x), None)
    if series == x:
        raise ConfigError(
            f"Expected the plot's series axis to differ from its x axis, but both are {x!r}. "
            "Choose another `series`."
        )
    rest = [a for a in (*layout.rows, *layout.columns) if a not in (x, series)]
    return x, tuple(([series] if series else []) + rest)


def _number(label: str) -> float | None:
    try:
        v = float(label)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def metric_plot(rows: Sequence[TrialRow], layout: TableLayout, metric: str) -> bytes:
    """A PNG of ``metric`` against the plot's x axis (see the module docstring). Refused trials and
    NaN values are not drawn; a point whose mean is infinite is left out and counted in the title."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    x_axis, line_axes = plot_axes(layout)
    check_layout(rows, layout, (x_axis, *line_axes))
    ok = [r for r in rows if r.status == "ok"]
    xs = axis_labels(rows, x_axis, layout.order)
    parsed = [_number(v) for v in xs]
    numbers = [v for v in parsed if v is not None]
    numeric = bool(xs) and len(numbers) == len(xs)
    pos: dict[str, float] = {v: (numbers[i] if numeric else float(i)) for i, v in enumerate(xs)}

    fig = Figure(figsize=(PLOT_SIZE[0] / PLOT_DPI, PLOT_SIZE[1] / PLOT_DPI), dpi=PLOT_DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    infinite = 0
    drawn = 0
    for i, line in enumerate(axis_points(rows, line_axes, layout.order) if rows else []):
        pts: list[tuple[float, float, float]] = []
        for label in xs:
            vals = [
                r.metrics[metric]
                for r in ok
                if r.point[x_axis] == label
                and tuple(r.point[a] for a in line_axes) == line
                and metric in r.metrics
            ]
            mean, std, _, _ = summarize(vals)
            if mean is None or math.isnan(mean):
                continue
            if math.isinf(mean):
                infinite += 1
                continue
            pts.append((pos[label], mean, std or 0.0))
        if not pts:
            continue
        pts.sort(key=lambda p: p[0])
        name = ", ".join(f"{a}={v}" for a, v in zip(line_axes, line)) or None
        ax.errorbar(
            [p[0] for p in pts],
            [p[1] for p in pts],
            yerr=[p[2] for p in pts],
            marker=_MARKERS[i % len(_MARKERS)],
            capsize=3,
            label=name,
        )
        drawn += 1
    if numeric:
        positive = [v for v in numbers if v > 0]
        if len(positive) == len(numbers) and max(positive) / min(positive) >= 100:
            ax.set_xscale("log")
            ax.minorticks_off()
        if len(xs) <= _MAX_TICKS:
            ax.set_xticks(numbers, xs)
    else:
        ax.set_xticks(range(len(xs)), xs)
    if drawn == 0:
        ax.text(0.5, 0.5, "no values to draw", ha="center", va="center", transform=ax.transAxes)
    elif drawn > 1:
        ax.legend(fontsize=8, loc="best")
    d = direction(metric)
    better = {1: " (↑ higher is better)", -1: " (↓ lower is better)", 0: ""}[d]
    title = f"{metric_title(metric, scalar_title(metric))}{better}"
    if infinite:
        title += f"\n{infinite} point(s) with an infinite mean not drawn"
    ax.set_title(title)
    ax.set_xlabel(x_axis)
    ax.set_ylabel(metric_title(metric, scalar_title(metric)) + " (mean ± std over repeats)")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()
