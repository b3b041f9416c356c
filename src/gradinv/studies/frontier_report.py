"""Outputs of a privacy–utility frontier: the table (CSV, JSON), the plot (PNG) and an HTML report.

Everything is computed from the point records of :mod:`gradinv.studies.frontier` alone, so the
outputs can be rebuilt at any time from ``OUT/points`` (``gradinv frontier --report-only``).

The summary per defense and attack follows the reading of Du et al. (USENIX Security 2025, §6,
Fig. 11): a point is *useful* when its accuracy is at least ``(1 - max_accuracy_drop)`` times the
undefended accuracy (their blue line: 30 %); a defense's *best trade-off* is its most private useful
point, and defenses are ranked by it. It also says whether accuracy and leakage change monotonically
along the configured strengths (Spearman's rank correlation with the strength value).

>>> leakage_direction("psnr"), leakage_direction("lpips")
(1, -1)
"""

from __future__ import annotations

import base64
import csv
import html
import io
import itertools
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradinv
from gradinv.metrics import METRICS
from gradinv.report.format import format_metric
from gradinv.report.html import html_page, metric_title, reason_html

if TYPE_CHECKING:  # pragma: no cover
    from gradinv.studies.frontier_config import FrontierConfig, Point

__all__ = [
    "CSV_COLUMNS",
    "frontier_rows",
    "leakage_direction",
    "leakage_value",
    "plot_frontier",
    "render_frontier_html",
    "summarize",
    "write_outputs",
]

logger = logging.getLogger(__name__)

#: The metric columns of the CSV table (titles, formats and directions come from the metric registry).
_METRICS = ("psnr", "ssim", "mse", "lpips", "stlpips", "label_accuracy", "brr", "brr_stlpips", "brr_psnr")
#: The metric columns of the HTML table of all points.
_POINT_METRICS = ("psnr", "ssim", "lpips", "stlpips", "label_accuracy", "brr", "brr_stlpips", "brr_psnr")
CSV_COLUMNS = (
    "order",
    "key",
    "label",
    "defense",
    "param",
    "value",
    "accuracy",
    "accuracy_drop",
    "attack",
    "status",
    *_METRICS,
    "victim_update_norm",
    "training_seconds",
    "attack_seconds",
    "client_info",
)


def leakage_direction(metric: str) -> int:
    """+1 when a larger value of ``metric`` means more leakage (PSNR, SSIM, BRR…), -1 otherwise
    (the registry's ``higher_is_better``, which is from the attacker's side; +1 for unknown names)."""
    return -1 if metric in METRICS and not METRICS[metric].higher_is_better else 1


def _num(v: Any) -> float:
    if v is None:
        return math.nan
    if isinstance(v, str):
        return {"inf": math.inf, "-inf": -math.inf}.get(v, math.nan)
    return float(v)


def _attack(record: Mapping[str, Any], label: str) -> Mapping[str, Any] | None:
    for a in record.get("attacks", ()):
        if a.get("label") == label:
            return a
    return None


def leakage_value(record: Mapping[str, Any], attack: str, metric: str) -> float:
    """Mean ``metric`` of attack ``attack`` in ``record`` (NaN when refused or unavailable)."""
    a = _attack(record, attack)
    if a is None or a.get("status") != "ok":
        return math.nan
    return _num(a.get("metrics", {}).get(metric))


def _baseline_accuracy(records: Sequence[Mapping[str, Any]]) -> float:
    for r in records:
        if r["point"]["defense"] is None:
            return _num(r["accuracy"])
    return math.nan


def frontier_rows(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One flat row per (point, attack) with the :data:`CSV_COLUMNS`."""
    base = _baseline_accuracy(records)
    rows = []
    for r in records:
        p = r["point"]
        acc = _num(r["accuracy"])
        for a in r["attacks"]:
            m = a.get("metrics", {})
            rows.append(
                {
                    "order": p["order"],
                    "key": r["key"],
                    "label": p["label"],
                    "defense": p["defense"] or "none",
                    "param": p["param"],
                    "value": p["value"],
                    "accuracy": acc,
                    "accuracy_drop": (base - acc) / base if base and math.isfinite(base) else math.nan,
                    "attack": a["label"],
                    "status": a["status"],
                    **{k: _num(m.get(k)) for k in _METRICS},
                    "victim_update_norm": _num(r["victim"]["update_norm"]),
                    "training_seconds": _num(r["seconds"]["training"]),
                    "attack_seconds": _num(a.get("seconds")),
                    "client_info": json.dumps(r.get("client_info") or {}, sort_keys=True),
                }
            )
    return rows


def _monotone(values: Sequence[float]) -> bool | None:
    vals = [v for v in values if math.isfinite(v)]
    if len(vals) < 2 or len(vals) != len(values):
        return None
    diffs = [b - a for a, b in itertools.pairwise(vals)]
    return all(d >= 0 for d in diffs) or all(d <= 0 for d in diffs)


def _spearman(xs: Sequence[Any], ys: Sequence[float]) -> float | None:
    pairs = [(float(x), y) for x, y in zip(xs, ys) if isinstance(x, (int, float)) and math.isfinite(y)]
    if len(pairs) < 3:
        return None
    from scipy.stats import spearmanr

    rho = spearmanr([p[0] for p in pairs], [p[1] for p in pairs]).statistic
    return None if rho is None or math.isnan(float(rho)) else float(rho)


_TIERS = ("protected and useful", "useful, not protected", "protected, not useful", "neither")


def _best_tradeoff(
    points: Sequence[tuple[Any, float, float]], floor: float, sign: int, threshold: float | None
) -> tuple[int, tuple[Any, float, float] | None]:
    """A defense's best ``(value, accuracy, leakage)`` point and its tier (index into ``_TIERS``).

    With a leakage threshold (the paper's red line): the most accurate useful protected point; else
    the most private useful point; else the most accurate protected point. Without a threshold: the
    most private useful point."""
    useful = [p for p in points if p[1] >= floor]
    protected = [p for p in points if threshold is not None and sign * p[2] < sign * threshold]
    both = [p for p in protected if p[1] >= floor]
    if both:
        return 0, max(both, key=lambda p: (p[1], -sign * p[2]))
    if useful:
        return 1, min(useful, key=lambda p: sign * p[2])
    if protected:
        return 2, max(protected, key=lambda p: p[1])
    return 3, None


def _rank_key(tier: int, best: tuple[Any, float, float] | None, sign: int) -> tuple[int, float]:
    if best is None:
        return tier, 0.0
    return tier, (sign * best[2] if tier == 1 else -best[1])


def summarize(cfg: FrontierConfig, records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Baseline, per-defense best trade-off and monotonicity, and the ranking, for every attack."""
    opts = cfg.frontier
    metric, sign = opts.leakage, leakage_direction(opts.leakage)
    base_acc = _baseline_accuracy(records)
    floor = base_acc * (1 - opts.max_accuracy_drop) if math.isfinite(base_acc) else -math.inf
    labels: list[str] = []
    for r in records:
        if r["point"]["defense"] is not None and r["point"]["label"] not in labels:
            labels.append(r["point"]["label"])
    per_attack: dict[str, Any] = {}
    for entry in cfg.attacks:
        base_rec = next((r for r in records if r["point"]["defense"] is None), None)
        defenses = []
        for label in labels:
            rs = sorted(
                (r for r in records if r["point"]["label"] == label), key=lambda r: r["point"]["order"]
            )
            values = [r["point"]["value"] for r in rs]
            accs = [_num(r["accuracy"]) for r in rs]
            leaks = [leakage_value(r, entry.label, metric) for r in rs]
            points = [(v, a, lk) for v, a, lk in zip(values, accs, leaks) if math.isfinite(lk)]
            tier, best = _best_tradeoff(points, floor, sign, opts.leakage_threshold)
            item: dict[str, Any] = {
                "label": label,
                "defense": rs[0]["point"]["defense"],
                "param": rs[0]["point"]["param"],
                "values": values,
                "accuracy": accs,
                "leakage": leaks,
                "accuracy_monotone": _monotone(accs),
                "leakage_monotone": _monotone(leaks),
                "spearman_accuracy": _spearman(values, accs),
                "spearman_leakage": _spearman(values, leaks),
                "useful_points": sum(a >= floor for _, a, _ in points),
                "tier": _TIERS[tier],
                "best": None if best is None else {"value": best[0], "accuracy": best[1], "leakage": best[2]},
            }
            defenses.append((tier, best, item))
        ranking = sorted(defenses, key=lambda t: (*_rank_key(t[0], t[1], sign), t[2]["label"]))
        per_attack[entry.label] = {
            "baseline_leakage": leakage_value(base_rec, entry.label, metric) if base_rec else math.nan,
            "defenses": [d for _, _, d in defenses],
            "ranking": [d["label"] for _, _, d in ranking],
        }
    return {
        "leakage_metric": metric,
        "more_leakage_when": "higher" if sign > 0 else "lower",
        "baseline_accuracy": base_acc,
        "useful_accuracy_floor": floor if math.isfinite(floor) else None,
        "max_accuracy_drop": opts.max_accuracy_drop,
        "leakage_threshold": opts.leakage_threshold,
        "attacks": per_attack,
    }


#: where an infinite PSNR (a perfect reconstruction) is drawn on the plot
PSNR_PLOT_CAP = 100.0


def _plotted(record: Mapping[str, Any], attack: str, metric: str) -> float:
    v = leakage_value(record, attack, metric)
    return PSNR_PLOT_CAP if metric == "psnr" and v == math.inf else v


def plot_frontier(cfg: FrontierConfig, records: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Accuracy against leakage, one line per defense through its strengths, one panel per attack
    (an infinite PSNR is drawn at :data:`PSNR_PLOT_CAP` dB; NaN leakage is left out)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = cfg.frontier.leakage
    attacks = [a.label for a in cfg.attacks]
    fig, axes = plt.subplots(1, len(attacks), figsize=(6.4 * len(attacks), 4.8), squeeze=False)
    base_acc = _baseline_accuracy(records)
    labels: list[str] = []
    for r in records:
        if r["point"]["defense"] is not None and r["point"]["label"] not in labels:
            labels.append(r["point"]["label"])
    markers = "osD^v<>pPhX*"
    colors = plt.get_cmap("tab20")
    for ax, attack in zip(axes[0], attacks):
        for i, label in enumerate(labels):
            rs = sorted(
                (r for r in records if r["point"]["label"] == label), key=lambda r: r["point"]["order"]
            )
            pts = [(_plotted(r, attack, metric), _num(r["accuracy"]), r["point"]["value"]) for r in rs]
            pts = [p for p in pts if math.isfinite(p[0]) and math.isfinite(p[1])]
            if not pts:
                continue
            ax.plot(
                [p[0] for p in pts],
                [p[1] for p in pts],
                marker=markers[i % len(markers)],
                color=colors(i % 20) if len(labels) > 10 else None,
                label=label,
                alpha=0.85,
            )
            for x, y, v in pts:
                if v is not None:
                    ax.annotate(
                        f"{v:g}" if isinstance(v, float) else str(v),
                        (x, y),
                        fontsize=7,
                        xytext=(3, 3),
                        textcoords="offset points",
                    )
        for r in records:
            if r["point"]["defense"] is None:
                x = _plotted(r, attack, metric)
                if math.isfinite(x):
                    ax.plot(
                        [x],
                        [_num(r["accuracy"])],
                        marker="*",
                        color="black",
                        markersize=14,
                        linestyle="none",
                        label="no defense",
                    )
        if math.isfinite(base_acc):
            ax.axhline(
                base_acc * (1 - cfg.frontier.max_accuracy_drop),
                color="tab:blue",
                linestyle="--",
                linewidth=1,
                label=f"{cfg.frontier.max_accuracy_drop:.0%} accuracy drop",
            )
        if cfg.frontier.leakage_threshold is not None:
            ax.axvline(
                cfg.frontier.leakage_threshold,
                color="tab:red",
                linestyle=":",
                linewidth=1,
                label="leakage threshold",
            )
        more = "lower" if leakage_direction(metric) > 0 else "higher"
        ax.set_xlabel(f"{metric_title(metric)} of the reconstruction ({more} = more private)")
        ax.set_ylabel("final test accuracy")
        ax.set_title(f"privacy–utility frontier: {attack}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    p = Path(path)
    fig.savefig(p, dpi=120)
    plt.close(fig)
    return p


def _e(v: object) -> str:
    return html.escape(str(v), quote=True)


def _fmt(name: str, v: Any) -> str:
    x = _num(v) if not isinstance(v, bool) else float(v)
    if math.isnan(x):
        return "—"
    if name in ("accuracy", "accuracy_drop"):
        return f"{x:.2%}"
    return format_metric(name, x)


def _table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    raw: Sequence[int] = (),
    numeric: Sequence[int] = (),
) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    num = ' class="num"'
    body = "".join(
        "<tr>"
        + "".join(
            f"<td{num if i in numeric else ''}>{c if i in raw else _e(c)}</td>" for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _options(options: Mapping[str, Any]) -> str:
    """``{"hidden": [16]}`` -> ``"hidden = [16]"`` (TOML-like, not a Python repr)."""
    return ", ".join(f"{k} = {json.dumps(_jsonable(v), ensure_ascii=False)}" for k, v in options.items())


def _thumbnail(b64: str) -> str:
    """A truth-over-reconstruction PNG (base64) as an ``<img>``, shown at an integer zoom that makes
    it at least 96 CSS px wide (pixelated, so the zoom adds no blur)."""
    width = 0
    try:
        head = base64.b64decode(b64[:32])
        if head[:8] == b"\x89PNG\r\n\x1a\n":
            width = int.from_bytes(head[16:20], "big")
    except ValueError:  # pragma: no cover - not base64: show it as it is
        pass
    size = f" width={width * max(1, math.ceil(96 / width))}" if width else ""
    return (
        f'<img src="data:image/png;base64,{b64}" alt="truth above reconstruction"{size} '
        'style="image-rendering:pixelated">'
    )


def _value(v: Any) -> str:
    return "—" if v is None else (f"{v:g}" if isinstance(v, float) else str(v))


def _tick(v: bool | None) -> str:
    return "—" if v is None else ("yes" if v else "no")


def _rho(v: float | None) -> str:
    return "—" if v is None else f"{v:+.2f}"


def render_frontier_html(
    cfg: FrontierConfig,
    points: Sequence[Point],
    records: Sequence[Mapping[str, Any]],
    summary: Mapping[str, Any],
    *,
    png: bytes | None,
) -> str:
    """The self-contained HTML report (inline CSS, the plot and thumbnails as data URIs)."""
    metric = summary["leakage_metric"]
    first = records[0]["data"] if records else {}
    missing = [p for p in points if p.key not in {r["key"] for r in records}]
    body = [
        "<h1>Privacy–utility frontier</h1>",
        f'<p class="sub">gradinv {_e(gradinv.__version__)} · {len(records)} of {len(points)} '
        "point(s) finished"
        + (f" · <b>{len(missing)} missing</b> (rerun to compute them)" if missing else "")
        + "</p>",
        "<p>For every defense and strength the model is trained with FedAvg with the defense on every client "
        "(utility: final test accuracy), and a victim client's defended update is attacked (leakage). After "
        "Du et al., <i>SoK: On Gradient Leakage in Federated Learning</i>, USENIX Security 2025, §6 and "
        "Fig. 11, scaled down for CPUs.</p>",
        "<h2>Set-up</h2>",
        _table(
            ("item", "value"),
            [
                (
                    "data",
                    f"{first.get('dataset', '?')}: {first.get('train_images', '?')} training images, "
                    f"{first.get('test_images', '?')} test images, shape {first.get('image_shape', '?')}",
                ),
                (
                    "model",
                    f"{cfg.model.name}"
                    + (f" ({_options(cfg.model.options)})" if cfg.model.options else "")
                    + f", init {cfg.model.init or 'default'}, seed {cfg.model.seed}",
                ),
                (
                    "local training",
                    f"{cfg.training.protocol}, E = {cfg.training.epochs}, B = "
                    f"{cfg.training.batch_size}, lr {cfg.training.lr}, momentum {cfg.training.momentum}",
                ),
                (
                    "federation",
                    f"{cfg.fl.num_clients} clients ({cfg.fl.split}"
                    + (f", alpha {cfg.fl.alpha}" if cfg.fl.split == "dirichlet" else "")
                    + f"), {cfg.fl.rounds} rounds, "
                    + (
                        f"{cfg.fl.clients_per_round} clients per round"
                        if cfg.fl.clients_per_round
                        else f"fraction {cfg.fl.fraction}"
                        if cfg.fl.fraction
                        else "all clients every round"
                    ),
                ),
                (
                    "victim",
                    f"{cfg.victim.clients} victim client(s) with {cfg.victim.images_per_victim} image(s) "
                    f"each (rows {first.get('victim_indices', '')}) joining round {cfg.victim.round}; "
                    "leakage is averaged over the victims",
                ),
                (
                    "threat model",
                    cfg.threat.model
                    + "".join(f" +{g}" for g in cfg.threat.grant)
                    + "".join(f" -{r}" for r in cfg.threat.revoke),
                ),
                (
                    "attacks",
                    "; ".join(
                        f"{a.label}: {a.name}" + (f" ({_options(a.params)})" if a.params else "")
                        for a in cfg.attacks
                    ),
                ),
                (
                    "leakage metric",
                    f"{metric_title(metric)} (more leakage when {summary['more_leakage_when']})",
                ),
                (
                    "useful accuracy",
                    f">= {summary['useful_accuracy_floor']:.2%} ({1 - cfg.frontier.max_accuracy_drop:.0%} "
                    "of the undefended accuracy)"
                    if summary.get("useful_accuracy_floor") is not None
                    else "—",
                ),
            ],
        ),
    ]
    if png is not None:
        uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        body += [
            "<h2>Frontier</h2>",
            f'<img src="{uri}" alt="accuracy against leakage per defense" style="max-width:100%">',
        ]
    for attack, s in summary["attacks"].items():
        body.append(f"<h2>Ranking against {_e(attack)}</h2>")
        body.append(
            f'<p class="note">A point is useful when its accuracy stays within '
            f"{cfg.frontier.max_accuracy_drop:.0%} of the undefended accuracy, protected when its "
            f"{metric_title(metric)} is beyond the threshold "
            f"({_e(_value(cfg.frontier.leakage_threshold))}). "
            "Best trade-off: the most accurate useful protected point; else the most private useful point; "
            "else the most accurate protected point. Undefended "
            f"{metric_title(metric)}: {_fmt(metric, s['baseline_leakage'])}. Monotone: whether "
            "accuracy / leakage move in one direction along the configured strengths; ρ: Spearman rank "
            "correlation with the strength value.</p>"
        )
        by_label = {d["label"]: d for d in s["defenses"]}
        rows = []
        for rank, label in enumerate(s["ranking"], 1):
            d = by_label[label]
            b = d["best"]
            rows.append(
                (
                    str(rank),
                    label,
                    d["param"] or "—",
                    d["tier"],
                    "—" if b is None else _value(b["value"]),
                    "—" if b is None else _fmt("accuracy", b["accuracy"]),
                    "—" if b is None else _fmt(metric, b["leakage"]),
                    f"{_tick(d['accuracy_monotone'])} (ρ {_rho(d['spearman_accuracy'])})",
                    f"{_tick(d['leakage_monotone'])} (ρ {_rho(d['spearman_leakage'])})",
                )
            )
        body.append(
            _table(
                (
                    "rank",
                    "defense",
                    "parameter",
                    "best point",
                    "strength",
                    "accuracy",
                    metric_title(metric),
                    "accuracy monotone",
                    "leakage monotone",
                ),
                rows,
                numeric=(0, 4, 5, 6),
            )
        )
    body.append("<h2>All points</h2>")
    shown = [
        k for k in _POINT_METRICS if any(k in a.get("metrics", {}) for r in records for a in r["attacks"])
    ]
    point_rows: list[tuple[str, ...]] = []
    unavailable: dict[str, str] = {}
    for r in records:
        p = r["point"]
        for a in r["attacks"]:
            m = a.get("metrics", {})
            for k, why in (a.get("unavailable") or {}).items():
                unavailable.setdefault(k, why)
            thumb = _thumbnail(a["image_png"]) if a.get("image_png") else ""
            point_rows.append(
                (
                    _e(p["label"]),
                    _e(_value(p["value"]) if p["param"] else "—"),
                    _e(_fmt("accuracy", r["accuracy"])),
                    _e(a["label"]),
                    *(_e(_fmt(k, m.get(k))) for k in shown),
                    _e(a.get("reason", "")) if a["status"] != "ok" else thumb,
                )
            )
    header = (
        "defense",
        "strength",
        "accuracy",
        "attack",
        *(metric_title(k) for k in shown),
        "truth / reconstruction",
    )
    if len(shown) < len(_POINT_METRICS):
        body.append(
            '<p class="note">Metrics computed for no point are left out (see <i>Unavailable metrics</i>).</p>'
        )
    numeric = (1, 2, *range(4, 4 + len(shown)))
    body.append(_table(header, point_rows, raw=tuple(range(len(header))), numeric=numeric))  # escaped above
    if unavailable:
        body.append("<h3>Unavailable metrics</h3>")
        body.append(
            _table(
                ("metric", "reason"),
                [(metric_title(k), reason_html(v)) for k, v in unavailable.items()],
                raw=(1,),
            )
        )
    if missing:
        body.append(
            "<h3>Missing points</h3><ul>" + "".join(f"<li>{_e(p.describe())}</li>" for p in missing) + "</ul>"
        )
    body.append(
        "<h2>Configuration</h2><details><summary>The study's configuration (as JSON)</summary>"
        f"<pre>{_e(json.dumps(_jsonable(cfg.to_dict()), indent=2, ensure_ascii=False))}</pre></details>"
    )
    return html_page("gradinv privacy–utility frontier", "\n".join(body))


def _jsonable(obj: Any) -> Any:
    from gradinv.report.json_report import to_jsonable

    return to_jsonable(obj)


def _atomic_bytes(path: Path, data: bytes) -> Path:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def write_outputs(
    cfg: FrontierConfig, points: Sequence[Point], records: Sequence[Mapping[str, Any]], out_dir: str | Path
) -> dict[str, Path]:
    """Write ``frontier.csv``, ``frontier.json``, ``frontier.png`` and ``frontier.html`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(cfg, records)
    rows = frontier_rows(records)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})
    csv_path = _atomic_bytes(out / "frontier.csv", buf.getvalue().encode("utf-8"))
    finished = {r["key"] for r in records}
    doc = {
        "schema": 1,
        "gradinv_version": gradinv.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": cfg.to_dict(),
        "summary": summary,
        "points": [
            {**r, "attacks": [{k: v for k, v in a.items() if k != "image_png"} for a in r["attacks"]]}
            for r in records
        ],
        "missing": [p.to_dict() for p in points if p.key not in finished],
    }
    json_path = _atomic_bytes(
        out / "frontier.json", json.dumps(_jsonable(doc), indent=1, allow_nan=False).encode("utf-8")
    )
    png_path = plot_frontier(cfg, records, out / "frontier.png")
    html_text = render_frontier_html(cfg, points, records, summary, png=png_path.read_bytes())
    html_path = _atomic_bytes(out / "frontier.html", html_text.encode("utf-8"))
    logger.info("frontier outputs written to %s", out)
    return {"csv": csv_path, "json": json_path, "png": png_path, "html": html_path}
