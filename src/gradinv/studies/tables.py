"""Paper-style tables of a study's finished trials: aggregation over repeats, CSV, Markdown and LaTeX.

:func:`aggregate` groups the trials (:class:`~gradinv.studies.rows.TrialRow`) of a study by grid
point as a :class:`~gradinv.studies.rows.TableLayout` lays them out and summarises each metric over
the repeats: mean, sample standard deviation (``ddof = 1``; ``None`` with one repeat) and ``n``. A
refused trial (the threat model does not grant what the attack needs) is a result too: its cells say
``refused``, with the reason kept. NaN values are left out of the means and counted; a metric a trial
does not have is left out of that trial's cells (``n`` counts only the trials that have it).

Rows and columns follow the study's order of each axis (``TableLayout.order``), never alphabetical
order. Every axis that varies across the trials must be a row or a column axis: a table never
averages silently across an axis (only the repeats are averaged).

:func:`to_markdown`, :func:`to_latex` (booktabs) and :func:`to_csv` write the aggregated table;
:func:`tidy_csv` writes one line per trial. Numbers people read are written by
:mod:`gradinv.report.format` (each metric in its registered format); the CSV files keep every digit.

>>> from gradinv.studies.rows import TableLayout, TrialRow
>>> def trial(batch, repeat, psnr):
...     return TrialRow(key=f"{batch}-{repeat}", study="demo", point={"batch": batch},
...                     values={"batch": int(batch)}, repeat=repeat, config={}, metrics={"psnr": psnr})
>>> layout = TableLayout(rows=("batch",), columns=(), metrics=("psnr",), order={"batch": ("4", "1")})
>>> table = aggregate([trial("1", 0, 30.0), trial("1", 1, 32.0), trial("4", 0, 20.0)], layout)
>>> table.row_headers
(('4',), ('1',))
>>> c = table.cell(("1",), table.column_headers[0])
>>> c.mean, round(c.std, 4), c.n
(31.0, 1.4142, 2)
>>> print(to_markdown(table).splitlines()[3])
| 1 | 31.00 ± 1.41 |
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from gradinv.errors import ConfigError
from gradinv.metrics import METRICS
from gradinv.report.html import metric_title
from gradinv.studies.rows import TableLayout, TrialRow, format_value, scalar_title

__all__ = [
    "Cell",
    "Column",
    "HeaderLevel",
    "StudyTable",
    "aggregate",
    "arrow",
    "axis_labels",
    "axis_points",
    "cell_text",
    "check_layout",
    "direction",
    "header_levels",
    "latex_escape",
    "metric_heading",
    "metric_names",
    "sort_rows",
    "summarize",
    "table_note",
    "tidy_csv",
    "to_csv",
    "to_latex",
    "to_markdown",
]

#: the axis name that is never an axis of a table (the repeats are what a cell averages over)
REPEAT = "repeat"


@dataclass(frozen=True)
class Column:
    """One column of a table: a point of the column axes (their labels, in order) and a metric."""

    point: tuple[str, ...]
    metric: str


@dataclass(frozen=True)
class Cell:
    """One metric at one (row point, column point) of a table, over the repeats.

    ``mean`` is ``None`` when no trial has a (non-NaN) value; ``std`` is the sample standard
    deviation (``ddof = 1``), ``None`` with fewer than two values or when a value is infinite.
    ``n`` counts the values averaged, ``nan`` the NaN values left out, ``trials`` the ok trials at
    the point, ``refused`` the refused ones and ``reasons`` their distinct messages (in trial order)."""

    metric: str
    mean: float | None
    std: float | None
    n: int
    nan: int = 0
    trials: int = 0
    refused: int = 0
    reasons: tuple[str, ...] = ()

    @property
    def missing(self) -> int:
        """Ok trials at the point without this metric."""
        return self.trials - self.n - self.nan

    @property
    def is_refused(self) -> bool:
        """Whether the cell shows ``refused``: refused trials and no value."""
        return self.refused > 0 and self.n == 0


@dataclass(frozen=True)
class StudyTable:
    """A study's aggregated table (see :func:`aggregate`).

    ``row_headers[i]`` holds the labels of the row axes of row ``i``, ``column_headers[j]`` the
    column point and metric of column ``j``, and ``cells[i][j]`` their :class:`Cell`. ``fixed``
    lists the axes that do not vary (name, label); ``trials`` / ``refused`` / ``nan`` count all
    trials, the refused ones and the NaN values left out of the means; ``unavailable`` the table's
    metrics some ok trial could not compute, with the reason."""

    row_axes: tuple[str, ...]
    column_axes: tuple[str, ...]
    metrics: tuple[str, ...]
    row_headers: tuple[tuple[str, ...], ...]
    column_headers: tuple[Column, ...]
    cells: tuple[tuple[Cell, ...], ...]
    fixed: tuple[tuple[str, str], ...] = ()
    trials: int = 0
    refused: int = 0
    nan: int = 0
    #: ``(metric, reason)`` of the table's metrics some ok trial could not compute ("—" cells)
    unavailable: tuple[tuple[str, str], ...] = ()

    def cell(self, row: Sequence[str], column: Column) -> Cell:
        """The cell at row ``row`` (labels of the row axes) and ``column``."""
        try:
            i = self.row_headers.index(tuple(row))
            j = self.column_headers.index(column)
        except ValueError:
            raise KeyError(f"no cell at row {tuple(row)!r}, column {column!r}") from None
        return self.cells[i][j]

    @property
    def repeats(self) -> tuple[int, int]:
        """The smallest and largest ``n`` over the cells with a value (``(0, 0)`` when none)."""
        ns = [c.n for row in self.cells for c in row if c.n > 0]
        return (min(ns), max(ns)) if ns else (0, 0)


# ---------------------------------------------------------------------------------------------- axes


def axis_labels(rows: Sequence[TrialRow], axis: str, order: Mapping[str, Sequence[str]]) -> list[str]:
    """The labels of ``axis`` that occur in ``rows``, in the study's order (``order[axis]``); labels
    the order does not list follow in the order they first occur."""
    seen = list(dict.fromkeys(r.point[axis] for r in rows if axis in r.point))
    listed = [v for v in order.get(axis, ()) if v in seen]
    return listed + [v for v in seen if v not in listed]


def _rank(
    rows: Sequence[TrialRow], axes: Sequence[str], order: Mapping[str, Sequence[str]]
) -> dict[str, dict[str, int]]:
    return {a: {v: i for i, v in enumerate(axis_labels(rows, a, order))} for a in axes}


def sort_rows(rows: Sequence[TrialRow], layout: TableLayout) -> list[TrialRow]:
    """``rows`` in the study's order: by each axis (as the trials' points order them) in
    ``layout.order``, then by repeat and key. Used for the one-line-per-trial outputs."""
    axes = list(dict.fromkeys(a for r in rows for a in r.point))
    rank = _rank(rows, axes, layout.order)
    return sorted(
        rows,
        key=lambda r: (tuple(rank[a].get(r.point.get(a, ""), -1) for a in axes), r.repeat, r.key),
    )


def _check_names(layout: TableLayout) -> None:
    for field, names in (("rows", layout.rows), ("columns", layout.columns), ("metrics", layout.metrics)):
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(
                f"Expected each name once in the layout's {field}, but {dup} repeat. Drop the copies."
            )
    both = sorted(set(layout.rows) & set(layout.columns))
    if both:
        raise ConfigError(
            f"Expected an axis to be a row or a column axis, not both, but {both} are both. Keep each in one."
        )
    if not layout.metrics:
        raise ConfigError(
            "Expected at least one metric in the table layout, but got none. Name the metrics to show."
        )


def check_layout(
    rows: Sequence[TrialRow], layout: TableLayout, axes: Iterable[str]
) -> tuple[tuple[str, str], ...]:
    """Check that every trial has each of ``axes`` and that no other axis varies within a point of
    ``axes`` (the repeat is not an axis; an axis that moves with a shown one, as a zip partner does,
    is fine: nothing is averaged across it). Returns the axes with one label in all trials, with that
    label. Raises :class:`~gradinv.errors.ConfigError` naming the offending axes."""
    shown = list(axes)
    for r in rows:
        lacking = [a for a in shown if a not in r.point]
        if lacking:
            raise ConfigError(
                f"Expected every trial to have the axes {shown} of the table layout, but trial {r.key!r} "
                f"({r.label()}) has no {lacking}. Lay out the table by the study's axes: {list(r.point)}."
            )
    others = list(dict.fromkeys(a for r in rows for a in r.point if a not in shown and a != REPEAT))
    within: dict[tuple[str, ...], list[TrialRow]] = {}
    for r in rows:
        within.setdefault(tuple(r.point[a] for a in shown), []).append(r)
    bad: dict[str, list[str]] = {}
    for a in others:
        for group in within.values():
            if len({r.point.get(a) for r in group}) > 1:
                bad[a] = axis_labels(group, a, layout.order)
                break
    if bad:
        detail = "; ".join(f"{a}: {', '.join(v)}" for a, v in bad.items())
        raise ConfigError(
            f"Expected every axis that varies across the trials to be a row or column axis, but "
            f"{sorted(bad)} vary ({detail}) and are not: a table must not average across an axis. "
            "Add them to the layout's rows or columns, or select the trials of one value first."
        )
    fixed = []
    for a in others:
        labels = axis_labels(rows, a, layout.order)
        if len(labels) == 1 and all(a in r.point for r in rows):
            fixed.append((a, labels[0]))
    return tuple(fixed)


def axis_points(
    rows: Sequence[TrialRow], axes: Sequence[str], order: Mapping[str, Sequence[str]]
) -> list[tuple[str, ...]]:
    """The points of ``axes`` that occur in ``rows``, nested in the study's order (first axis outermost)."""
    present = {tuple(r.point[a] for a in axes) for r in rows}
    return [c for c in itertools.product(*(axis_labels(rows, a, order) for a in axes)) if c in present]


# --------------------------------------------------------------------------------------------- stats


def _float(v: object) -> float:
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def summarize(values: Iterable[float]) -> tuple[float | None, float | None, int, int]:
    """``(mean, std, n, nan)`` of ``values``: NaN values left out and counted; the sample standard
    deviation (``ddof = 1``) is ``None`` with fewer than two values or an infinite one.

    >>> summarize([1.0, 2.0, 3.0, float("nan")])
    (2.0, 1.0, 3, 1)
    >>> summarize([3.0]), summarize([])
    ((3.0, None, 1, 0), (None, None, 0, 0))
    """
    vals = [_float(v) for v in values]
    kept = np.asarray([v for v in vals if not math.isnan(v)], dtype=np.float64)
    nan, n = len(vals) - kept.size, int(kept.size)
    if n == 0:
        return None, None, 0, nan
    if not np.all(np.isfinite(kept)):
        with np.errstate(invalid="ignore"):
            return float(np.sum(kept)), None, n, nan  # inf, -inf, or nan for inf and -inf together
    mean = float(np.mean(kept))
    std = float(np.std(kept, ddof=1)) if n >= 2 else None
    return mean, std, n, nan


def aggregate(rows: Sequence[TrialRow], layout: TableLayout) -> StudyTable:
    """The table of ``rows`` laid out by ``layout`` (see the module docstring)."""
    _check_names(layout)
    fixed = check_layout(rows, layout, (*layout.rows, *layout.columns))
    row_points = axis_points(rows, layout.rows, layout.order) if rows else []
    col_points = axis_points(rows, layout.columns, layout.order) if rows else []
    columns = tuple(Column(p, m) for p in col_points for m in layout.metrics)
    groups: dict[tuple[tuple[str, ...], tuple[str, ...]], list[TrialRow]] = {}
    for r in rows:
        key = (tuple(r.point[a] for a in layout.rows), tuple(r.point[a] for a in layout.columns))
        groups.setdefault(key, []).append(r)
    cells = []
    nan_total = 0
    for rp in row_points:
        line = []
        for col in columns:
            group = groups.get((rp, col.point), [])
            ok = [r for r in group if r.status == "ok"]
            refused = [r for r in group if r.status != "ok"]
            mean, std, n, nan = summarize(r.metrics[col.metric] for r in ok if col.metric in r.metrics)
            nan_total += nan
            line.append(
                Cell(
                    metric=col.metric,
                    mean=mean,
                    std=std,
                    n=n,
                    nan=nan,
                    trials=len(ok),
                    refused=len(refused),
                    reasons=tuple(dict.fromkeys(r.message for r in refused if r.message)),
                )
            )
        cells.append(tuple(line))
    return StudyTable(
        row_axes=tuple(layout.rows),
        column_axes=tuple(layout.columns),
        metrics=tuple(layout.metrics),
        row_headers=tuple(row_points),
        column_headers=columns,
        cells=tuple(cells),
        fixed=fixed,
        trials=len(rows),
        refused=sum(r.status != "ok" for r in rows),
        nan=nan_total,
        unavailable=_unavailable(rows, layout.metrics),
    )


def _unavailable(rows: Sequence[TrialRow], metrics: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """``(metric, reason)`` for every metric of the table some ok trial could not compute (each
    distinct reason once, in trial order)."""
    found: dict[tuple[str, str], None] = {}
    for r in rows:
        if r.status == "ok":
            for m in metrics:
                if m in r.unavailable and m not in r.metrics:
                    found[(m, r.unavailable[m])] = None
    return tuple(found)


# ------------------------------------------------------------------------------------------ headings


def direction(metric: str) -> int:
    """+1 when higher values of ``metric`` are better (the registry's ``higher_is_better``, from the
    attacker's side), -1 when lower are, 0 for a name the registry does not know."""
    if metric not in METRICS:
        return 0
    return 1 if METRICS[metric].higher_is_better else -1


def arrow(metric: str) -> str:
    """``"↑"`` (higher is better), ``"↓"`` (lower is better) or ``""`` (unknown metric)."""
    return {1: "↑", -1: "↓", 0: ""}[direction(metric)]


def metric_heading(metric: str) -> str:
    """The metric's display title with its direction arrow: ``"PSNR (dB) ↑"``."""
    a = arrow(metric)
    return (
        f"{metric_title(metric, scalar_title(metric))} {a}"
        if a
        else metric_title(metric, scalar_title(metric))
    )


@dataclass(frozen=True)
class HeaderLevel:
    """One header line of a table: the name of what it shows (a column axis, or ``""`` for the
    metrics) and its groups of adjacent columns as ``(label, span)``; ``metric`` is set on the
    metrics line, whose labels are metric names."""

    name: str
    groups: tuple[tuple[str, int], ...]
    metric: bool = False


def header_levels(table: StudyTable) -> list[HeaderLevel]:
    """The header lines of ``table``: one per column axis (adjacent columns with the same value of
    it and of the axes above it share a group), then the metrics line (one group per column)."""
    levels = []
    for i, axis in enumerate(table.column_axes):
        groups: list[tuple[str, int]] = []
        prev: tuple[str, ...] | None = None
        for col in table.column_headers:
            prefix = col.point[: i + 1]
            if prefix == prev:
                groups[-1] = (groups[-1][0], groups[-1][1] + 1)
            else:
                groups.append((col.point[i], 1))
            prev = prefix
        levels.append(HeaderLevel(axis, tuple(groups)))
    levels.append(HeaderLevel("", tuple((c.metric, 1) for c in table.column_headers), metric=True))
    return levels


def metric_names(names: Iterable[str]) -> list[str]:
    """``names`` without repeats, registered metrics first in registry order, then the rest by name.

    >>> metric_names(["zeta", "ssim", "attack_seconds", "psnr"])
    ['psnr', 'ssim', 'attack_seconds', 'zeta']
    """
    registry = {n: i for i, n in enumerate(METRICS)}
    return sorted(set(names), key=lambda n: (registry.get(n, len(registry)), n))


# ------------------------------------------------------------------------------------------ cell text


def cell_text(cell: Cell, *, mark_n: int | None = None, sep: str = " ± ") -> str:
    """A cell as people read it: ``mean ± std`` in the metric's format, ``mean`` alone with one
    value, ``refused``, ``nan`` (only NaN values) or ``—`` (no value); ``(n=k)`` is appended when ``k``
    differs from ``mark_n``, and ``(k refused)`` when some but not all trials were refused."""
    if cell.mean is None:
        if cell.is_refused:
            return "refused"
        return "nan" if cell.nan else "—"
    text = format_value(cell.metric, cell.mean)
    if cell.std is not None:
        text += sep + format_value(cell.metric, cell.std)
    if mark_n is not None and cell.n != mark_n:
        text += f" (n={cell.n})"
    if cell.refused:
        text += f" ({cell.refused} refused)"
    return text


def _mark_n(table: StudyTable) -> int:
    return table.repeats[1]


def table_note(table: StudyTable) -> str:
    """The sentence under a table: what a cell is, the repeats, the arrows, fixed axes, NaN values."""
    lo, hi = table.repeats
    if hi <= 1:
        parts = ["One trial per cell (no repeats)."]
    elif lo == hi:
        parts = [f"Mean ± sample standard deviation over n = {hi} repeats."]
    else:
        parts = [f"Mean ± sample standard deviation over up to n = {hi} repeats (cells with fewer say n=k)."]
    arrows = {direction(m) for m in table.metrics}
    if arrows & {1, -1}:
        parts.append("↑: higher is better, ↓: lower is better (from the attacker's side).")
    if table.refused:
        parts.append(
            f"{table.refused} trial(s) refused: the threat model does not grant what the attack needs, "
            "or the attack does not apply (cells say refused; the reasons are in trials.csv)."
        )
    if table.nan:
        parts.append(f"{table.nan} NaN value(s) left out of the means.")
    for metric, reason in table.unavailable:
        parts.append(f"{metric_heading(metric)} unavailable: {reason.rstrip('.')}.")
    if table.fixed:
        parts.append("Fixed: " + ", ".join(f"{a} = {v}" for a, v in table.fixed) + ".")
    return " ".join(parts)


# ------------------------------------------------------------------------------------------ markdown


def _md(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _column_title(table: StudyTable, col: Column) -> str:
    axes = ", ".join(f"{a}={v}" for a, v in zip(table.column_axes, col.point))
    return f"{axes}: {metric_heading(col.metric)}" if axes else metric_heading(col.metric)


def to_markdown(table: StudyTable, *, title: str | None = None) -> str:
    """``table`` as a Markdown (GitHub) table: one column per row axis, then one per column point
    and metric (``axis=value: PSNR (dB) ↑``), numbers right-aligned; ``title`` in bold above it and
    the note (:func:`table_note`) under it."""
    header = [*table.row_axes, *(_column_title(table, c) for c in table.column_headers)]
    align = ["---"] * len(table.row_axes) + ["---:"] * len(table.column_headers)
    mark = _mark_n(table)
    lines = []
    if title:
        lines += [f"**{_md(title)}**", ""]
    lines.append("| " + " | ".join(_md(h) for h in header) + " |")
    lines.append("| " + " | ".join(align) + " |")
    for labels, cells in zip(table.row_headers, table.cells):
        row = [*labels, *(cell_text(c, mark_n=mark) for c in cells)]
        lines.append("| " + " | ".join(_md(v) for v in row) + " |")
    lines += ["", _md(table_note(table))]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------- LaTeX

_TEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
    "±": r"$\pm$",
    "↑": r"$\uparrow$",
    "↓": r"$\downarrow$",
    "—": "---",
    "–": "--",
}
_TEX_RE = re.compile("|".join(re.escape(k) for k in _TEX_SPECIALS))


def latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped (for text mode).

    >>> print(latex_escape("lr_1 & 50% {a} ~x^2 $5 #3 \\\\"))
    lr\\_1 \\& 50\\% \\{a\\} \\textasciitilde{}x\\textasciicircum{}2 \\$5 \\#3 \\textbackslash{}
    """
    return _TEX_RE.sub(lambda m: _TEX_SPECIALS[m.group(0)], text)


def _tex_number(text: str) -> str:
    """A formatted number for math mode: ``inf`` as ``\\infty``, ``2.29e-01`` as ``2.29\\mathrm{e}{-01}``."""
    if text in ("inf", "-inf"):
        return text.replace("inf", r"\infty")
    if text == "nan":
        return r"\mathrm{nan}"
    mantissa, e, exponent = text.partition("e")
    return f"{mantissa}\\mathrm{{e}}{{{exponent}}}" if e else text


def _tex_cell(cell: Cell, mark_n: int) -> str:
    if cell.mean is None:
        if cell.is_refused:
            return "refused"
        return "nan" if cell.nan else "--"
    text = _tex_number(format_value(cell.metric, cell.mean))
    if cell.std is not None:
        text += r" \pm " + _tex_number(format_value(cell.metric, cell.std))
    out = f"${text}$"
    if cell.n != mark_n:
        out += f" ($n={cell.n}$)"
    if cell.refused:
        out += f" ({cell.refused} refused)"
    return out


def _tex_heading(metric: str) -> str:
    a = {1: r" $\uparrow$", -1: r" $\downarrow$", 0: ""}[direction(metric)]
    return latex_escape(metric_title(metric, scalar_title(metric))) + a


def to_latex(table: StudyTable, *, caption: str | None = None, label: str | None = None) -> str:
    """``table`` as a LaTeX ``table`` with a booktabs ``tabular``: one left-aligned column per row
    axis (an outer label is written once per group), the column axes as header lines with
    ``\\multicolumn`` and ``\\cmidrule``, then the metric titles with their direction arrows; cells as
    ``$m \\pm s$``. Labels, titles and the caption are escaped (:func:`latex_escape`); ``label`` is
    used as it is (``\\label{...}``). Needs ``\\usepackage{booktabs}``."""
    stub = len(table.row_axes)
    ncols = len(table.column_headers)
    mark = _mark_n(table)
    lines = [r"\begin{table}[t]", r"\centering"]
    if caption:
        lines.append(rf"\caption{{{latex_escape(caption)}}}")
    if label:
        lines.append(rf"\label{{{label}}}")
    lines += [rf"\begin{{tabular}}{{{'l' * stub}{'r' * ncols}}}", r"\toprule"]
    for level in header_levels(table):
        if level.metric:
            lead = [latex_escape(a) for a in table.row_axes]
            heads = [_tex_heading(m) for m, _ in level.groups]
            lines.append(" & ".join([*lead, *heads]) + r" \\")
            continue
        lead = ([""] * (stub - 1) + [latex_escape(level.name)]) if stub else []
        heads, rules = [], []
        start = stub + 1
        for text, span in level.groups:
            shown = latex_escape(text if stub else f"{level.name}={text}")
            heads.append(rf"\multicolumn{{{span}}}{{c}}{{{shown}}}")
            rules.append(rf"\cmidrule(lr){{{start}-{start + span - 1}}}")
            start += span
        lines.append(" & ".join([*lead, *heads]) + r" \\")
        lines.append(" ".join(rules))
    lines.append(r"\midrule")
    prev: tuple[str, ...] = ()
    for i, (labels, cells_) in enumerate(zip(table.row_headers, table.cells)):
        if stub > 1 and i and labels[0] != prev[0]:
            lines.append(r"\addlinespace")
        stubs = [
            "" if i and labels[: k + 1] == prev[: k + 1] and k < stub - 1 else latex_escape(v)
            for k, v in enumerate(labels)
        ]
        lines.append(" & ".join([*stubs, *(_tex_cell(c, mark) for c in cells_)]) + r" \\")
        prev = labels
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------- CSV


def _num(v: float | None) -> str:
    return "" if v is None else repr(float(v))


def _csv(header: Sequence[str], lines: Iterable[Sequence[object]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(lines)
    return buf.getvalue()


def to_csv(table: StudyTable) -> str:
    """The aggregated table as CSV, one line per cell (rows in table order, then columns): the row
    and column axes' labels, ``metric``, ``mean``, ``std``, ``n``, ``nan``, ``trials``, ``refused``
    and ``message`` (the refusal reasons, ``; ``-joined). Numbers keep every digit; empty when
    there is none."""
    header = [
        *table.row_axes,
        *table.column_axes,
        "metric",
        "mean",
        "std",
        "n",
        "nan",
        "trials",
        "refused",
        "message",
    ]
    lines = []
    for labels, cells in zip(table.row_headers, table.cells):
        for col, c in zip(table.column_headers, cells):
            lines.append(
                [
                    *labels,
                    *col.point,
                    c.metric,
                    _num(c.mean),
                    _num(c.std),
                    c.n,
                    c.nan,
                    c.trials,
                    c.refused,
                    "; ".join(c.reasons),
                ]
            )
    return _csv(header, lines)


def tidy_csv(rows: Sequence[TrialRow]) -> str:
    """One CSV line per trial, in the given order: the axes (labels; union of the trials' axes in the
    order they first occur), ``repeat``, ``status``, ``message``, ``seconds``, every metric (union of
    names: registered metrics in registry order, then the rest by name; empty where a trial has none,
    ``nan`` where it is NaN) and ``key``."""
    axes = list(dict.fromkeys(a for r in rows for a in r.point))
    metrics = metric_names(m for r in rows for m in r.metrics)
    header = [*axes, "repeat", "status", "message", "seconds", *metrics, "key"]
    lines = [
        [
            *(r.point.get(a, "") for a in axes),
            r.repeat,
            r.status,
            r.message,
            repr(float(r.seconds)),
            *(repr(_float(r.metrics[m])) if m in r.metrics else "" for m in metrics),
            r.key,
        ]
        for r in rows
    ]
    return _csv(header, lines)
