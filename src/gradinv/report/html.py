"""Self-contained HTML reports: one file with inline CSS and the image grid embedded as a data URI.

:func:`write_html` writes the report of one experiment (threat model and what the attacker saw, the
scenario, the attack and its parameters, metrics per image, labels, timing); :func:`write_index_html`
an overview page linking several reports (used by ``gradinv demo``). Metric titles, number formats
and the headline metrics come from the metric registry (:data:`gradinv.metrics.METRICS`). All text
is escaped with :func:`html.escape`; nothing is loaded from the network.

Numbers are written by :mod:`gradinv.report.format` (metrics in their registered format, other
numbers with 4 significant digits), so the report, the demo index, the CLI and the frontier agree.

>>> format_metric("psnr", 17.1629), format_metric("ssim", 0.463083), format_metric("psnr", float("inf"))
('17.16', '0.4631', 'inf')
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradinv.metrics import METRICS
from gradinv.report.format import (
    APPLICABILITY,
    format_metric,
    format_number,
    format_seconds,
    iteration_counts,
)
from gradinv.report.grid import class_name, reconstruction_image
from gradinv.report.json_report import report_dict, to_jsonable, total_seconds
from gradinv.threat import Knowledge

if TYPE_CHECKING:  # pragma: no cover
    from gradinv.experiment import ExperimentResult

__all__ = [
    "applicability_legend",
    "format_metric",
    "html_page",
    "metric_title",
    "reason_html",
    "render_html",
    "write_html",
    "write_index_html",
]

logger = logging.getLogger(__name__)

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1100px;padding:0 1em;color:#1d1d1f;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd}
.sub{color:#666;margin-top:0}table{border-collapse:collapse;margin:.5em 0}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f4f4f7}td.num{text-align:right;font-variant-numeric:tabular-nums}
.kpi{display:inline-block;margin:0 1.5em .5em 0}.kpi b{font-size:1.4em;display:block}
.ok{color:#117a32}.bad{color:#b3261e}.note{color:#666;font-size:.9em}.nowrap{white-space:nowrap}
.stars{color:#a86b00;letter-spacing:.08em;font-size:1.1em}
img.grid{image-rendering:pixelated;border:1px solid #ddd;max-width:100%}
pre{background:#f6f8fa;padding:.8em;overflow:auto;font-size:.85em}code{font-size:.9em}
svg.loss{border:1px solid #ddd;background:#fff}
"""


class _Raw(str):
    """A string that is already HTML (not escaped again by :func:`_cell`)."""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _cell(value: object) -> str:
    return value if isinstance(value, _Raw) else _e(value)


def _table(header: Sequence[str], rows: Iterable[Sequence[object]], *, numeric: Sequence[int] = ()) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{_cell(v)}</td>' if i in numeric else f"<td>{_cell(v)}</td>"
            for i, v in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _kv(
    items: Iterable[tuple[str, object]], header: tuple[str, str] = ("item", "value"), *, exact: bool = False
) -> str:
    return _table(header, ((k, _plain(v, exact=exact)) for k, v in items))


def _plain(value: object, *, exact: bool = False) -> str:
    """A value as short text: lists comma-joined, None as an em dash, booleans as yes / no, measured
    floats with 4 significant digits (``exact``: as configured, e.g. a parameter ``1.0``)."""
    v = to_jsonable(value)
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, list):
        return ", ".join(_plain(x, exact=exact) for x in v) if v else "—"
    if isinstance(v, dict):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, float) or v in ("inf", "-inf", "nan"):
        return repr(float(v)) if exact else format_number(float(v))
    return str(v)


def metric_title(name: str, title: str | None = None) -> str:
    """The display title of a registered metric with its caveat (ST-LPIPS is always marked as not
    being LPIPS); ``title`` (default: ``name``) for a name the registry does not know."""
    return METRICS[name].display_title if name in METRICS else (title or name)


def html_page(title: str, body: str) -> str:
    """A complete HTML5 document with the report stylesheet inlined."""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def _png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _loss_svg(history: Sequence[float], *, width: int = 360, height: int = 90) -> str:
    """An inline SVG line of the loss history (log10 scale when every value is positive)."""
    vals = [float(v) for v in history if math.isfinite(float(v))]
    if len(vals) < 2:
        return ""
    log = all(v > 0 for v in vals)
    ys = [math.log10(v) for v in vals] if log else vals
    lo, hi = min(ys), max(ys)
    span = (hi - lo) or 1.0
    m = 6
    pts = " ".join(
        f"{m + i * (width - 2 * m) / (len(ys) - 1):.1f},{m + (hi - y) * (height - 2 * m) / span:.1f}"
        for i, y in enumerate(ys)
    )
    scale = "log scale" if log else "linear scale"
    label = (
        f"best loss {format_number(vals[0])} → {format_number(vals[-1])} over {len(vals)} recorded "
        f"points ({scale})"
    )
    return (
        f'<figure><svg class="loss" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{_e(label)}">'
        f'<polyline fill="none" stroke="#3558c8" stroke-width="1.5" points="{pts}"/></svg>'
        f'<figcaption class="note">{_e(label)}</figcaption></figure>'
    )


def _metrics_section(result: ExperimentResult) -> str:
    ev = result.evaluation
    rows = [
        (
            metric_title(name, m.title),
            "higher" if m.higher_is_better else "lower",
            format_metric(name, m.mean),
            ", ".join(format_metric(name, v) for v in m.per_image),
        )
        for name, m in ev.metrics.items()
    ]
    out = [
        "<h2>Metrics</h2>",
        f'<p class="note">Per-image values in ground-truth order after matching reconstructions to the '
        f"ground truth (criterion: {_e(ev.matching.criterion)}). Means ignore NaN values.</p>",
        _table(("metric", "better", "mean", "per image"), rows, numeric=(2,)),
    ]
    if ev.unmatched_truth:
        out.append(f"<p>{ev.unmatched_truth} ground-truth image(s) have no matched reconstruction.</p>")
    if ev.unavailable:
        out.append("<h3>Unavailable metrics</h3>")
        out.append(
            _table(
                ("metric", "reason"),
                ((metric_title(k), _Raw(reason_html(r))) for k, r in ev.unavailable.items()),
            )
        )
    return "\n".join(out)


def reason_html(text: str) -> str:
    """A long explanation (why a metric is unavailable) as escaped HTML: its first sentence, the
    rest folded away in ``<details>``."""
    first, sep, rest = text.partition(". ")
    if not sep or not rest.strip():
        return _e(text)
    return f"{_e(first)}.<details><summary>more</summary>{_e(rest)}</details>"


def _labels_section(result: ExperimentResult) -> str:
    names = result.truth.class_names
    true = [int(v) for v in result.truth.labels.tolist()]
    ev = result.evaluation
    rec = result.result.reconstruction
    matched: dict[int, int] = {}
    if ev.matched_labels is not None:
        matched = dict(zip(ev.matching.truth_index.tolist(), ev.matched_labels.tolist()))
    rows: list[tuple[object, ...]] = []
    for i, t in enumerate(true):
        if i in matched:
            r = int(matched[i])
            ok = r == t
            mark = _Raw(f'<span class="{"ok" if ok else "bad"}">{"yes" if ok else "no"}</span>')
            rows.append((i, f"{class_name(t, names)} ({t})", f"{class_name(r, names)} ({r})", mark))
        else:
            rows.append((i, f"{class_name(t, names)} ({t})", "—", "—"))
    recovered = (
        ", ".join(f"{class_name(int(v), names)} ({int(v)})" for v in rec.labels.tolist())
        if rec.labels is not None
        else "none (the attack infers no labels)"
    )
    return "\n".join(
        [
            "<h2>Labels</h2>",
            f"<p>Recovery method: <code>{_e(rec.label_method)}</code>. Recovered (as a multiset): "
            f"{_e(recovered)}.</p>",
            _table(("#", "true", "recovered (matched image)", "same"), rows, numeric=(0,)),
        ]
    )


def _stars(rating: str) -> str:
    """``"**"`` -> ``"★★☆"`` (the SoK's notation); other ratings unchanged."""
    if rating and set(rating) == {"*"} and len(rating) <= 3:
        return "★" * len(rating) + "☆" * (3 - len(rating))
    return rating


def applicability_legend(current: str = "") -> str:
    """The threat-model applicability ratings and their meaning as an HTML list (``current`` in bold)."""
    items = []
    for rating, meaning in APPLICABILITY.items():
        text = f'<span class="stars">{_e(_stars(rating))}</span> {_e(meaning)}'
        items.append(f"<li><b>{text}</b> (this report)</li>" if rating == current else f"<li>{text}</li>")
    return (
        '<p class="note">Applicability is the real-world applicability rating of threat models A–H in '
        "Carletti et al., <i>SoK: Gradient Inversion Attacks in Federated Learning</i> (USENIX Security "
        "2025): how realistic an attacker with this knowledge is, and how easily it is noticed.</p>"
        f'<ul class="note">{"".join(items)}</ul>'
    )


def _granted(tm: Any, k: Knowledge) -> _Raw:
    if k in tm.grants:
        return _Raw('<span class="ok nowrap">granted</span>')
    if tm.allows(k):
        return _Raw('<span class="ok nowrap">granted</span> (with client data distribution)')
    return _Raw('<span class="note nowrap">not granted</span>')


def _threat_section(result: ExperimentResult) -> str:
    tm = result.threat
    rating = ""
    if tm.applicability:
        meaning = APPLICABILITY.get(tm.applicability)
        rating = f' · applicability <span class="stars">{_e(_stars(tm.applicability))}</span>' + (
            f" <b>{_e(meaning)}</b>" if meaning else ""
        )
    return "\n".join(
        [
            "<h2>Threat model</h2>",
            f"<p><b>{_e(tm.id)}</b> — {_e(tm.name)}{rating}</p>",
            applicability_legend(tm.applicability) if tm.applicability else "",
            "<h3>Knowledge flags</h3>",
            '<p class="note">What each flag of the threat model gives the attacker; only granted flags '
            "reach the attacker's view below.</p>",
            _table(
                ("flag", "status", "exposes to the attacker"),
                ((k.value, _granted(tm, k), k.exposes) for k in Knowledge),
            ),
            "<h3>What the attacker's view contained</h3>",
            _kv(((str(k), v) for k, v in result.view.items()), ("field", "value")),
        ]
    )


def _scenario_section(result: ExperimentResult) -> str:
    cfg, sc = result.config, result.scenario
    tr = cfg.training
    items: list[tuple[str, object]] = [
        ("data source", cfg.data.source),
        ("dataset", sc.get("dataset")),
        ("victim indices", sc.get("victim_indices")),
        ("images (victim batch)", len(sc.get("victim_indices", ()) or ())),
        ("image shape (C, H, W)", sc.get("image_shape")),
        ("normalization", sc.get("normalization")),
        ("model", f"{cfg.model.name} ({sc.get('model_parameters', '?')} parameters)"),
        ("model options", dict(cfg.model.options) or None),
        ("number of classes", sc.get("num_classes")),
        ("protocol", tr.protocol),
        (
            "local training",
            f"epochs {tr.epochs}, batch size {tr.batch_size or 'all'}, lr {tr.lr}, "
            f"momentum {tr.momentum}, weight decay {tr.weight_decay}, shuffle {tr.shuffle}",
        ),
        ("local steps", sc.get("local_steps")),
        ("pretraining (FedAvg rounds before this round)", sc.get("pretrain_rounds") or None),
        ("test accuracy of the attacked model", sc.get("test_accuracy")),
        (
            "test accuracy after the whole training",
            sc.get("final_accuracy") if sc.get("final_accuracy") != sc.get("test_accuracy") else None,
        ),
        ("test accuracy per pretraining round", sc.get("train_history") or None),
        ("clients", cfg.server.num_clients),
        ("victim client", cfg.server.victim),
        ("aggregation", sc.get("aggregation", cfg.server.aggregation)),
        ("client train loss", sc.get("client_train_loss")),
        ("update norm", sc.get("update_norm")),
        ("device", sc.get("device")),
    ]
    return "<h2>Scenario</h2>\n" + _kv(items)


def _attack_section(result: ExperimentResult) -> str:
    a, res = result.attack, result.result
    counts = iteration_counts(res, family=a.family)
    items: list[tuple[str, object]] = [
        ("name", a.name),
        ("title", a.title),
        ("family", a.family),
        ("paper", a.paper),
        ("requires", [r.knowledge.value for r in a.requirements()]),
        ("iterations", counts.text),
        (
            f"time per {counts.per}",
            f"{format_number(res.seconds_per_iteration * 1000)} ms ({format_seconds(res.seconds)} s in all)",
        ),
        ("interrupted", "yes (Ctrl-C: best result so far)" if res.interrupted else "no"),
        ("best candidate", res.best_candidate),
    ]
    out = [
        "<h2>Attack</h2>",
        _kv(items),
        "<h3>Parameters</h3>",
        _kv(res.parameters.items(), ("parameter", "value"), exact=True),
    ]
    if res.notes:
        out.append("<h3>Notes</h3>")
        out.append("<ul>" + "".join(f"<li>{_e(n)}</li>" for n in res.notes) + "</ul>")
    svg = _loss_svg(res.loss_history)
    if svg:
        out += ["<h3>Loss history</h3>", svg]
    return "\n".join(out)


def _timing_section(result: ExperimentResult) -> str:
    rows = [(k, format_seconds(v)) for k, v in result.timing.items()]
    rows.append(("total_seconds", format_seconds(total_seconds(result.timing))))
    return "<h2>Timing</h2>\n" + _table(("stage", "value"), rows, numeric=(1,))


def _kpis(result: ExperimentResult) -> str:
    ev = result.evaluation
    parts = []
    for key in (name for name, spec in METRICS.items() if spec.headline):
        if key in ev.metrics:
            m = ev.metrics[key]
            parts.append(
                f'<span class="kpi"><b>{_e(format_metric(key, m.mean))}</b>{_e(metric_title(key, m.title))}'
                "</span>"
            )
    parts.append(f'<span class="kpi"><b>{format_seconds(total_seconds(result.timing))}</b>seconds</span>')
    return "<p>" + "".join(parts) + "</p>"


def render_html(
    result: ExperimentResult, *, png: bytes | None = None, created: datetime | None = None
) -> str:
    """The HTML report of ``result`` as a string; ``png`` is the grid image (drawn when omitted),
    ``created`` the timestamp shown (default: now)."""
    if png is None:
        buf = io.BytesIO()
        reconstruction_image(result).save(buf, format="PNG")
        png = buf.getvalue()
    title = f"gradinv report: {result.attack.title} under threat model {result.threat.id}"
    doc = report_dict(result, created=created)
    body = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="sub">gradinv {_e(doc["gradinv_version"])} · created {_e(doc["created"])} · '
        f"{result.truth.size} image(s) from {_e(result.config.data.source)} · model "
        f"{_e(result.config.model.name)}</p>",
        _kpis(result),
        "<h2>Reconstruction</h2>",
        f'<img class="grid" src="{_png_data_uri(png)}" alt="ground truth (top) and matched '
        f'reconstruction (bottom)">',
        '<p class="note">Top: ground truth with its class. Bottom: the matched reconstruction with '
        "its recovered label ([ok] / [x] against the true label) and its PSNR; a gray tile marks a "
        "ground-truth image with no matched reconstruction. Tiles are upscaled with nearest-neighbour "
        "sampling (pixels stay visible).</p>",
        _metrics_section(result),
        _labels_section(result),
        _threat_section(result),
        _scenario_section(result),
        _attack_section(result),
        _timing_section(result),
        "<h2>Configuration</h2>",
        "<details><summary>The experiment's configuration (TOML sections as JSON)</summary>"
        f"<pre>{_e(json.dumps(doc['config'], indent=2, ensure_ascii=False))}</pre></details>",
    ]
    return html_page(title, "\n".join(body))


def write_html(
    result: ExperimentResult,
    path: str | Path,
    *,
    png_path: str | Path | None = None,
    created: datetime | None = None,
) -> Path:
    """Write the self-contained HTML report of ``result``; ``png_path`` reuses an already written
    grid PNG (embedded as base64), otherwise the grid is drawn. Returns the path."""
    png = Path(png_path).read_bytes() if png_path is not None else None
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(render_html(result, png=png, created=created), encoding="utf-8")
    logger.info("wrote HTML report %s", p)
    return p


def _mean_cell(metrics: Mapping[str, Any], name: str) -> str:
    return format_metric(name, metrics[name].mean) if name in metrics else "—"


def write_index_html(
    entries: Sequence[tuple[str, ExperimentResult, str]],
    path: str | Path,
    *,
    title: str = "gradinv experiments",
) -> Path:
    """Write an overview page of several experiments.

    ``entries`` are ``(title, result, href)`` with ``href`` the (relative) link to each
    experiment's ``report.html``. Shows attack, threat model, images and the mean PSNR, SSIM, label
    accuracy and seconds of each. Returns the path."""
    rows = []
    for name, result, href in entries:
        m = result.evaluation.metrics
        rows.append(
            (
                _Raw(f'<a href="{_e(href)}">{_e(name)}</a>'),
                result.attack.title,
                f"{result.threat.id} ({result.threat.name})",
                result.truth.size,
                _mean_cell(m, "psnr"),
                _mean_cell(m, "ssim"),
                _mean_cell(m, "label_accuracy"),
                format_seconds(total_seconds(result.timing)),
            )
        )
    body = "\n".join(
        [
            f"<h1>{_e(title)}</h1>",
            f'<p class="sub">{len(entries)} experiment(s). Means over each experiment\'s images; '
            "follow a link for the full report.</p>",
            _table(
                (
                    "experiment",
                    "attack",
                    "threat model",
                    "images",
                    METRICS["psnr"].heading,
                    METRICS["ssim"].heading,
                    METRICS["label_accuracy"].heading,
                    "seconds",
                ),
                rows,
                numeric=(3, 4, 5, 6, 7),
            ),
        ]
    )
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(html_page(title, body), encoding="utf-8")
    logger.info("wrote index %s", p)
    return p
