"""A study's outputs: the tidy and aggregated tables, one plot per metric and a self-contained HTML page.

:func:`write_study_outputs` writes, from the finished trials (:class:`~gradinv.studies.rows.TrialRow`)
alone, into one folder:

- ``trials.csv`` — one line per trial (:func:`~gradinv.studies.tables.tidy_csv`), in the study's order;
- ``table.csv``, ``table.md``, ``table.tex`` — the aggregated table (mean ± std over the repeats,
  :mod:`gradinv.studies.tables`);
- ``plot_<metric>.png`` — each metric of the layout against the plot axis
  (:func:`~gradinv.studies.plots.metric_plot`);
- ``report.html`` — one page with no external files (images as data URIs): the title, the claim the
  study reproduces, its description, the table, the plots, for each grid point the ground truth above
  the reconstruction of its first ok repeat, the refused points with their reasons, and how many
  stale rows were ignored.

Nothing written depends on the time or the machine's state: the same trials give byte-identical files.
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import torch

from gradinv.errors import DataError
from gradinv.report.grid import MAX_COLS, image_grid
from gradinv.report.html import _e, _png_data_uri, _table, html_page, reason_html
from gradinv.studies.plots import metric_plot, plot_axes
from gradinv.studies.rows import TableLayout, TrialRow, decode_images
from gradinv.studies.tables import (
    StudyTable,
    aggregate,
    cell_text,
    header_levels,
    metric_heading,
    sort_rows,
    table_note,
    tidy_csv,
    to_csv,
    to_latex,
    to_markdown,
)
from gradinv.studies.tradeoff import (
    FrontierSpec,
    frontier_plot,
    frontier_points,
    frontier_summary,
    panel_axes,
    summary_rows,
)

__all__ = ["MAX_IMAGES", "StudyOutputs", "plot_name", "render_study_html", "write_study_outputs"]

logger = logging.getLogger(__name__)

#: images drawn per grid point in the HTML page (the first ones of the batch)
MAX_IMAGES = MAX_COLS
_CENTER = 'style="text-align:center"'


@dataclass(frozen=True)
class StudyOutputs:
    """The files :func:`write_study_outputs` wrote (``plots``: metric name -> PNG path, in the
    layout's order)."""

    trials_csv: Path
    table_csv: Path
    table_md: Path
    table_tex: Path
    plots: Mapping[str, Path]
    html: Path

    def paths(self) -> tuple[Path, ...]:
        """Every file, in the order written."""
        return (
            self.trials_csv,
            self.table_csv,
            self.table_md,
            self.table_tex,
            *self.plots.values(),
            self.html,
        )


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "metric"


def _plottable(layout: TableLayout) -> bool:
    """Whether the layout has an axis to plot against (a study of one point has none: no plots)."""
    return bool(layout.plot or layout.rows or layout.columns)


#: the file name of the privacy–utility frontier plot (``[study.frontier]``)
FRONTIER_PLOT = "frontier.png"


def plot_name(metric: str) -> str:
    """The file name of a metric's plot: ``plot_psnr.png``."""
    return f"plot_{_slug(metric)}.png"


# ---------------------------------------------------------------------------------------------- HTML


def _table_html(table: StudyTable) -> str:
    """The aggregated table with a header line per column axis (``colspan`` groups), then the metrics."""
    stub = len(table.row_axes)
    mark = table.repeats[1]
    head = []
    for level in header_levels(table):
        if level.metric:
            lead = "".join(f"<th>{_e(a)}</th>" for a in table.row_axes)
            cells = "".join(f"<th>{_e(metric_heading(m))}</th>" for m, _ in level.groups)
        else:
            lead = (
                (f'<th colspan="{stub}">{_e(level.name)}</th>' if stub > 1 else f"<th>{_e(level.name)}</th>")
                if stub
                else ""
            )
            cells = "".join(
                f'<th colspan="{span}" {_CENTER}>{_e(text if stub else f"{level.name}={text}")}</th>'
                for text, span in level.groups
            )
        head.append(f"<tr>{lead}{cells}</tr>")
    body = []
    for labels, cells_ in zip(table.row_headers, table.cells):
        tds = "".join(f"<td>{_e(v)}</td>" for v in labels)
        for c in cells_:
            text = _e(cell_text(c, mark_n=mark))
            if c.reasons:
                text = f'<span title="{_e("; ".join(c.reasons))}">{text}</span>'
            tds += f'<td class="num">{text}</td>'
        body.append(f"<tr>{tds}</tr>")
    return f'<table class="study"><thead>{"".join(head)}</thead><tbody>{"".join(body)}</tbody></table>'


def _paragraphs(text: str) -> str:
    parts = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    return "\n".join(f"<p>{_e(p)}</p>" for p in parts)


def _grid_png(row: TrialRow) -> tuple[bytes, str]:
    """The truth-over-reconstruction PNG of a trial and a caption (the first :data:`MAX_IMAGES`)."""
    assert row.images is not None
    imgs = decode_images(row.images)
    truth = torch.from_numpy(imgs.truth[:MAX_IMAGES])
    rec = torch.from_numpy(imgs.reconstruction[:MAX_IMAGES])
    grid = image_grid([truth, rec], row_titles=["ground truth", "reconstruction"])
    buf = io.BytesIO()
    grid.save(buf, format="PNG")
    total = int(imgs.truth.shape[0])
    shown = f"the first {MAX_IMAGES} of {total} images" if total > MAX_IMAGES else f"{total} image(s)"
    labels = ", ".join(str(int(v)) for v in imgs.labels.tolist()[:MAX_IMAGES])
    return buf.getvalue(), f"repeat {row.repeat}: {shown}; labels {labels}"


def _points(rows: Sequence[TrialRow], fixed: Sequence[str] = ()) -> list[tuple[str, list[TrialRow]]]:
    """The grid points of ``rows`` (already in the study's order) with their trials, labelled by the
    axes that are not ``fixed``."""
    groups: dict[tuple[tuple[str, str], ...], list[TrialRow]] = {}
    for r in rows:
        groups.setdefault(tuple(r.point.items()), []).append(r)
    out = []
    for g in groups.values():
        axes = [a for a in g[0].point if a not in fixed]
        out.append((g[0].label(axes) or "the single grid point", g))
    return out


def _reconstructions(points: Sequence[tuple[str, list[TrialRow]]]) -> str:
    out = []
    for label, group in points:
        ok = sorted((r for r in group if r.status == "ok"), key=lambda r: (r.repeat, r.key))
        if not ok:
            reasons = "; ".join(dict.fromkeys(r.message for r in group if r.message)) or "no reason given"
            out.append(f'<h3>{_e(label)}</h3><p class="note">refused: {reason_html(reasons)}</p>')
            continue
        first = ok[0]
        if first.images is None:
            out.append(f'<h3>{_e(label)}</h3><p class="note">no images (repeat {first.repeat})</p>')
            continue
        try:
            png, caption = _grid_png(first)
        except (DataError, KeyError, ValueError, OSError) as exc:
            out.append(f'<h3>{_e(label)}</h3><p class="note">no images: {_e(exc)}</p>')
            continue
        out.append(
            f"<h3>{_e(label)}</h3><figure>"
            f'<img class="grid" src="{_png_data_uri(png)}" alt="ground truth (top) and reconstruction '
            f'(bottom) at {_e(label)}"><figcaption class="note">{_e(caption)}</figcaption></figure>'
        )
    return "\n".join(out)


def _refused(points: Sequence[tuple[str, list[TrialRow]]]) -> list[tuple[str, str, str]]:
    rows = []
    for label, group in points:
        refused = [r for r in group if r.status != "ok"]
        if refused:
            reasons = "; ".join(dict.fromkeys(r.message for r in refused if r.message)) or "no reason given"
            rows.append((label, f"{len(refused)} of {len(group)}", reasons))
    return rows


def render_study_html(
    *,
    title: str,
    description: str,
    claim: str,
    layout: TableLayout,
    rows: Sequence[TrialRow],
    table: StudyTable,
    plots: Mapping[str, bytes],
    stale: int = 0,
    extra: Mapping[str, str] | None = None,
    latex: str | None = None,
    frontier: tuple[FrontierSpec, bytes] | None = None,
) -> str:
    """The study's page (see the module docstring); ``rows`` in the study's order, ``plots`` metric
    name -> PNG, ``latex`` the table as LaTeX (default: :func:`~gradinv.studies.tables.to_latex`
    with the title as caption)."""
    points = _points(rows, [a for a, _ in table.fixed])
    ok = sum(r.status == "ok" for r in rows)
    versions = sorted({r.version for r in rows if r.version})
    stale_note = (
        f"{stale} stale row(s) in the store were ignored: trials of an earlier configuration or gradinv "
        "version, never mixed into these results."
        if stale
        else "No stale rows were ignored."
    )
    sub = (
        f"{len(rows)} trial(s) at {len(points)} grid point(s): {ok} ok, {len(rows) - ok} refused"
        + (f" · computed with gradinv {', '.join(versions)}" if versions else "")
        + (f" · {stale} stale row(s) ignored" if stale else "")
    )
    body = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="sub">{_e(sub)}</p>',
        "<h2>Claim</h2>",
        _paragraphs(claim) or '<p class="note">—</p>',
        "<h2>Description</h2>",
        _paragraphs(description) or '<p class="note">—</p>',
    ]
    if extra:
        body += ["<h2>Set-up</h2>", _table(("item", "value"), list(extra.items()))]
    body += [
        "<h2>Table</h2>",
        _table_html(table),
        f'<p class="note">{_e(table_note(table))}</p>',
        f'<p class="note">{_e(stale_note)}</p>',
    ]
    if plots:
        x_axis, _ = plot_axes(layout)
        body.append("<h2>Plots</h2>")
        for metric, png in plots.items():
            body.append(
                f'<figure><img class="plot" src="{_png_data_uri(png)}" alt="{_e(metric_heading(metric))} '
                f'against {_e(x_axis)}" style="max-width:100%"></figure>'
            )
    if frontier is not None:
        body += _frontier_html(rows, layout, *frontier)
    refused = _refused(points)
    if refused:
        body += [
            "<h2>Refused points</h2>",
            '<p class="note">The threat model does not grant what the attack needs at these points; a '
            "refusal is a result of the study.</p>",
            _table(("point", "refused trials", "reason"), refused),
        ]
    body += [
        "<h2>Reconstructions</h2>",
        '<p class="note">For each grid point: the ground truth (top) above the reconstruction (bottom) '
        "of its first ok repeat, upscaled with nearest-neighbour sampling.</p>",
        _reconstructions(points),
        "<h2>LaTeX</h2>",
        "<details><summary>The table as LaTeX (booktabs)</summary>"
        f"<pre>{_e(latex if latex is not None else to_latex(table, caption=title))}</pre></details>",
    ]
    return html_page(title, "\n".join(body))


def _frontier_html(
    rows: Sequence[TrialRow], layout: TableLayout, spec: FrontierSpec, png: bytes
) -> list[str]:
    panels = panel_axes(layout, spec)
    summary = frontier_summary(frontier_points(rows, layout, spec), spec)
    more = "higher" if spec.sign > 0 else "lower"
    threshold = (
        f"; protected when {metric_heading(spec.leakage)} is {'below' if spec.sign > 0 else 'above'} "
        f"{spec.leakage_threshold:g}"
        if spec.leakage_threshold is not None
        else ""
    )
    return [
        "<h2>Privacy–utility frontier</h2>",
        f'<figure><img class="plot" src="{_png_data_uri(png)}" alt="privacy–utility frontier" '
        'style="max-width:100%"></figure>',
        f'<p class="note">A setting of axis {_e(spec.axis)} is useful when its '
        f"{_e(metric_heading(spec.utility))} is at least {1 - spec.max_utility_drop:.0%} of the "
        f"baseline's ({_e(spec.baseline)}){_e(threshold)}; "
        f"{_e(more)} {_e(metric_heading(spec.leakage))} means more leakage. Each defense's best trade-off, "
        "ranked (Du et al., USENIX Security 2025, §6):</p>",
        _table(
            (
                "panel",
                "defense",
                "tier",
                "best setting",
                metric_heading(spec.utility),
                metric_heading(spec.leakage),
                "useful points",
            ),
            summary_rows(summary, spec, panels),
        ),
    ]


# --------------------------------------------------------------------------------------------- write


def _write(path: Path, data: bytes) -> Path:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def write_study_outputs(
    out_dir: str | Path,
    *,
    title: str,
    description: str,
    claim: str,
    layout: TableLayout,
    rows: Sequence[TrialRow],
    stale: int = 0,
    extra: Mapping[str, str] | None = None,
    frontier: FrontierSpec | None = None,
) -> StudyOutputs:
    """Write a study's outputs into ``out_dir`` (see the module docstring) and return their paths.

    ``stale`` is the number of stored rows the caller left out (the page says so); ``extra`` are
    ``item -> text`` lines shown under *Set-up*. Everything is computed before the first file is
    written, so a bad layout (:class:`~gradinv.errors.ConfigError`) writes nothing."""
    ordered = sort_rows(rows, layout)
    table = aggregate(ordered, layout)
    study = next((r.study for r in ordered if r.study), "")
    texts = {
        "trials.csv": tidy_csv(ordered),
        "table.csv": to_csv(table),
        "table.md": to_markdown(table, title=title),
        "table.tex": to_latex(table, caption=title, label=f"tab:{_slug(study)}" if study else None),
    }
    plots = {m: metric_plot(ordered, layout, m) for m in layout.metrics} if _plottable(layout) else {}
    front = None
    if frontier is not None:
        panels = panel_axes(layout, frontier)
        front = (frontier, frontier_plot(frontier_points(ordered, layout, frontier), frontier, panels))
    page = render_study_html(
        title=title,
        description=description,
        claim=claim,
        layout=layout,
        rows=ordered,
        table=table,
        plots=plots,
        stale=stale,
        extra=extra,
        latex=texts["table.tex"],
        frontier=front,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {name: _write(out / name, text.encode("utf-8")) for name, text in texts.items()}
    plot_paths = {m: _write(out / plot_name(m), png) for m, png in plots.items()}
    if front is not None:
        plot_paths["frontier"] = _write(out / FRONTIER_PLOT, front[1])
    html = _write(out / "report.html", page.encode("utf-8"))
    logger.info("study outputs written to %s", out)
    return StudyOutputs(
        trials_csv=written["trials.csv"],
        table_csv=written["table.csv"],
        table_md=written["table.md"],
        table_tex=written["table.tex"],
        plots=MappingProxyType(plot_paths),
        html=html,
    )
