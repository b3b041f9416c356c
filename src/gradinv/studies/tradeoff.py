"""The privacy–utility frontier of a study: utility against leakage per defense setting, as a plot
and a summary (``[study.frontier]``).

Du, Hu, Wang, Sun, Gong, Ren, Chen, "SoK: On Gradient Leakage in Federated Learning", USENIX Security
2025, §6 and Fig. 11, read a defense off two numbers: the test accuracy of the model trained with it
(utility) and the leakage of an attack on a defended update. A study with a ``[study.frontier]``
table names its defense axis (``axis``), the utility and leakage numbers of its rows (``utility``,
default ``final_accuracy``; ``leakage``, default ``psnr``), the axis label of the undefended point
(``baseline``, default ``"none"``), the largest tolerated utility drop relative to it
(``max_utility_drop``, default 0.3: the paper's blue line) and optionally a leakage threshold below
which (for a metric where higher means more leakage) a point counts as protected
(``leakage_threshold``: the paper's red line).

Each grid point is one point: the mean over its ok repeats. Points are grouped into lines by the
defenses of the trial's config (their names with any string-valued option such as a clipping mode,
joined by "+"; "none" without one), in the axis's order, and a panel is drawn for every combination
of the study's other table axes (e.g. one per attack). A point is *useful* when its utility is at
least ``(1 - max_utility_drop)`` times the baseline's; a defense's *best trade-off* is (with a
threshold) its most useful protected point, else its most private useful point, else its most
useful protected one; the summary ranks the defenses of each panel by it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gradinv._checks import check_range
from gradinv.errors import ConfigError, did_you_mean
from gradinv.report.html import metric_title
from gradinv.studies.rows import RUN_SCALARS, TableLayout, TrialRow, format_value, scalar_title
from gradinv.studies.tables import axis_labels, axis_points, direction, summarize

__all__ = [
    "TIERS",
    "FrontierPoint",
    "FrontierSpec",
    "FrontierSummary",
    "frontier_plot",
    "frontier_points",
    "frontier_summary",
    "panel_axes",
    "summary_rows",
]

#: the tiers of a defense's best trade-off, best first
TIERS = ("protected and useful", "useful, not protected", "protected, not useful", "neither")
#: where an infinite PSNR (a perfect reconstruction) is drawn
PSNR_PLOT_CAP = 100.0


@dataclass(frozen=True)
class FrontierSpec:
    """The ``[study.frontier]`` table (see the module docstring)."""

    axis: str
    utility: str = "final_accuracy"
    leakage: str = "psnr"
    baseline: str = "none"
    max_utility_drop: float = 0.3
    leakage_threshold: float | None = None

    def __post_init__(self) -> None:
        from gradinv.metrics import METRICS

        check_range("max_utility_drop", self.max_utility_drop, low=0.0, high=1.0, high_open=True)
        for what, name in (("utility", self.utility), ("leakage", self.leakage)):
            if name not in METRICS and name not in RUN_SCALARS:
                valid = sorted({*METRICS, *RUN_SCALARS})
                raise ConfigError(
                    f"Unknown {what} {name!r} in [study.frontier].{did_you_mean(name, valid)} "
                    f"Valid: {', '.join(valid)}."
                )
        if self.leakage_threshold is not None and not math.isfinite(self.leakage_threshold):
            raise ConfigError(
                f"Expected [study.frontier] leakage_threshold to be a finite number, but got "
                f"{self.leakage_threshold!r}. Leave it out for no threshold."
            )

    @property
    def sign(self) -> int:
        """+1 when a higher leakage number means more leakage (PSNR), -1 when lower does (LPIPS)."""
        return direction(self.leakage) or 1


@dataclass(frozen=True)
class FrontierPoint:
    """One grid point: its panel (labels of the other axes), axis label, defense group, and the means
    over its ok repeats (NaN where none has the number)."""

    panel: tuple[str, ...]
    label: str
    group: str
    utility: float
    leakage: float
    repeats: int


@dataclass(frozen=True)
class FrontierSummary:
    """A defense group's best trade-off in one panel (``best`` is ``None`` in the last tier)."""

    panel: tuple[str, ...]
    group: str
    tier: str
    best: FrontierPoint | None
    useful: int
    points: int


def _group(row: TrialRow) -> str:
    """The defense group of a trial: its defenses' names, each with its string-valued options (a
    mode, e.g. ``clipping (mode=norm)``: a different defense, not a strength), joined by "+"."""
    parts = []
    for d in row.config.get("defenses") or []:
        if isinstance(d, Mapping):
            modes = ", ".join(f"{k}={v}" for k, v in d.items() if k != "name" and isinstance(v, str))
            parts.append(f"{d.get('name', '?')}" + (f" ({modes})" if modes else ""))
    return "+".join(parts) or "none"


def panel_axes(layout: TableLayout, spec: FrontierSpec) -> tuple[str, ...]:
    """The table axes other than the frontier's: one panel per combination of their labels."""
    if spec.axis not in layout.order:
        valid = list(layout.order)
        raise ConfigError(
            f"Expected [study.frontier] axis to name an axis, but got {spec.axis!r}."
            f"{did_you_mean(spec.axis, valid)} Axes: {', '.join(valid)}."
        )
    return tuple(a for a in (*layout.rows, *layout.columns) if a != spec.axis)


def frontier_points(rows: Sequence[TrialRow], layout: TableLayout, spec: FrontierSpec) -> list[FrontierPoint]:
    """One :class:`FrontierPoint` per grid point of ``rows``, panels and the axis in the study's order."""
    panels = panel_axes(layout, spec)
    ok = [r for r in rows if r.status == "ok"]
    out = []
    for panel in axis_points(rows, panels, layout.order) if panels else [()]:
        for label in axis_labels(rows, spec.axis, layout.order):
            cell = [
                r for r in ok if r.point[spec.axis] == label and tuple(r.point[a] for a in panels) == panel
            ]
            if not cell:
                continue
            means = [
                summarize(r.metrics.get(m, math.nan) for r in cell)[0] for m in (spec.utility, spec.leakage)
            ]
            utility, leakage = (math.nan if m is None else m for m in means)
            out.append(FrontierPoint(panel, label, _group(cell[0]), utility, leakage, len(cell)))
    return out


def _floor(points: Sequence[FrontierPoint], spec: FrontierSpec, panel: tuple[str, ...]) -> float:
    base = next((p for p in points if p.panel == panel and p.label == spec.baseline), None)
    if base is None or not math.isfinite(base.utility):
        return -math.inf
    return base.utility * (1 - spec.max_utility_drop)


def _best(
    points: Sequence[FrontierPoint], floor: float, spec: FrontierSpec
) -> tuple[int, FrontierPoint | None]:
    sign, threshold = spec.sign, spec.leakage_threshold
    pts = [p for p in points if math.isfinite(p.leakage) and not math.isnan(p.utility)]
    useful = [p for p in pts if p.utility >= floor]
    protected = [p for p in pts if threshold is not None and sign * p.leakage < sign * threshold]
    both = [p for p in protected if p.utility >= floor]
    if both:
        return 0, max(both, key=lambda p: (p.utility, -sign * p.leakage))
    if useful:
        return 1, min(useful, key=lambda p: sign * p.leakage)
    if protected:
        return 2, max(protected, key=lambda p: p.utility)
    return 3, None


def frontier_summary(points: Sequence[FrontierPoint], spec: FrontierSpec) -> list[FrontierSummary]:
    """Every defense group's best trade-off per panel (the baseline's group left out), ranked within
    each panel: by tier, then by the best point's utility (tier 0, 2) or privacy (tier 1)."""
    out: list[FrontierSummary] = []
    for panel in dict.fromkeys(p.panel for p in points):
        floor = _floor(points, spec, panel)
        ranked = []
        groups = dict.fromkeys(p.group for p in points if p.panel == panel and p.label != spec.baseline)
        for group in groups:
            pts = [p for p in points if p.panel == panel and p.group == group and p.label != spec.baseline]
            tier, best = _best(pts, floor, spec)
            useful = sum(p.utility >= floor for p in pts if not math.isnan(p.utility))
            key = (tier, 0.0 if best is None else (spec.sign * best.leakage if tier == 1 else -best.utility))
            ranked.append((key, group, FrontierSummary(panel, group, TIERS[tier], best, useful, len(pts))))
        out += [s for _, _, s in sorted(ranked, key=lambda t: (t[0], t[1]))]
    return out


def _title(name: str) -> str:
    return metric_title(name, scalar_title(name))


def frontier_plot(points: Sequence[FrontierPoint], spec: FrontierSpec, panels: Sequence[str]) -> bytes:
    """A PNG: utility against leakage, a line per defense group through its settings (in the axis's
    order, each point labelled), the baseline as a star, the utility floor and the leakage threshold
    as lines; one panel per panel of ``points`` (``panels`` names their axes). An infinite PSNR is
    drawn at :data:`PSNR_PLOT_CAP` dB; NaN values are left out."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    keys = list(dict.fromkeys(p.panel for p in points)) or [()]
    fig = Figure(figsize=(6.4 * len(keys), 4.8), dpi=100)
    FigureCanvasAgg(fig)
    markers = "osD^v<>pPhX*"

    def x_of(p: FrontierPoint) -> float:
        return PSNR_PLOT_CAP if spec.leakage == "psnr" and p.leakage == math.inf else p.leakage

    for k, panel in enumerate(keys):
        ax = fig.add_subplot(1, len(keys), k + 1)
        mine = [p for p in points if p.panel == panel and math.isfinite(x_of(p)) and math.isfinite(p.utility)]
        groups = dict.fromkeys(p.group for p in mine if p.label != spec.baseline)
        for i, group in enumerate(groups):
            pts = [p for p in mine if p.group == group and p.label != spec.baseline]
            ax.plot(
                [x_of(p) for p in pts],
                [p.utility for p in pts],
                marker=markers[i % len(markers)],
                label=group,
            )
            for p in pts:
                ax.annotate(
                    p.label, (x_of(p), p.utility), fontsize=7, xytext=(3, 3), textcoords="offset points"
                )
        for p in mine:
            if p.label == spec.baseline:
                ax.plot(
                    [x_of(p)],
                    [p.utility],
                    marker="*",
                    color="black",
                    markersize=14,
                    linestyle="none",
                    label=f"{spec.baseline} (baseline)",
                )
        floor = _floor(points, spec, panel)
        if math.isfinite(floor):
            ax.axhline(
                floor,
                color="tab:blue",
                linestyle="--",
                linewidth=1,
                label=f"{spec.max_utility_drop:.0%} utility drop",
            )
        if spec.leakage_threshold is not None:
            ax.axvline(
                spec.leakage_threshold, color="tab:red", linestyle=":", linewidth=1, label="leakage threshold"
            )
        more = "lower" if spec.sign > 0 else "higher"
        ax.set_xlabel(f"{_title(spec.leakage)} ({more} = more private)")
        ax.set_ylabel(_title(spec.utility))
        where = ", ".join(f"{a}={v}" for a, v in zip(panels, panel))
        ax.set_title("privacy–utility frontier" + (f": {where}" if where else ""))
        ax.grid(True, alpha=0.3)
        if mine:
            ax.legend(fontsize=7, loc="best")
        else:
            ax.text(0.5, 0.5, "no values to draw", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def summary_rows(
    summary: Sequence[FrontierSummary], spec: FrontierSpec, panels: Sequence[str]
) -> list[tuple[str, ...]]:
    """The summary as table rows: panel, defense, tier, best setting, its utility and leakage, useful
    points of all."""
    out: list[tuple[str, ...]] = []
    for s in summary:
        best = s.best
        out.append(
            (
                ", ".join(f"{a}={v}" for a, v in zip(panels, s.panel)) or "—",
                s.group,
                s.tier,
                best.label if best else "—",
                format_value(spec.utility, best.utility) if best else "—",
                format_value(spec.leakage, best.leakage) if best else "—",
                f"{s.useful}/{s.points}",
            )
        )
    return out
