"""``audit.json`` and ``audit.html``: the audit written for the FL engineer.

``audit.html`` is one self-contained file (inline CSS, images as base64 PNG data URIs, no network),
built with the experiment report's helpers (:func:`gradinv.report.html.html_page`, metric titles
from the registry — ST-LPIPS always labelled as such — and :func:`gradinv.report.format.format_metric`).
Both files are written to a temporary name and renamed, so an interrupted write never leaves a
broken file; a partial audit says so at the top of both.
"""

from __future__ import annotations

import base64
import html
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from gradinv.audit.results import AttackRun, Audit, ThreatReport, audit_dict

__all__ = ["AuditPaths", "render_audit_html", "write_audit"]

#: the metrics of the summary table, in order (those the registry knows)
HEADLINE = ("psnr", "ssim", "stlpips", "lpips", "label_accuracy", "exact")


class AuditPaths:
    def __init__(self, out: Path) -> None:
        self.dir = out
        self.json = out / "audit.json"
        self.html = out / "audit.html"


def _e(v: object) -> str:
    return html.escape(str(v), quote=True)


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], *, numeric: Sequence[int] = ()) -> str:
    """A table of cells that are already HTML (escape them first)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _title(name: str) -> str:
    from gradinv.report.html import metric_title

    return metric_title(name)


def _value(run: AttackRun | None, name: str) -> str:
    from gradinv.report.format import format_metric

    if run is None:
        return "—"
    m = run.metrics.get(name)
    if m is None:
        why = run.unavailable.get(name)
        return f'<span class="note" title="{_e(why)}">unavailable</span>' if why else "—"
    if name == "exact":
        return f"{int(m.mean) if math.isfinite(m.mean) else 0}/{run.num_images}"
    return _e(format_metric(name, m.mean))


def _status(run: AttackRun) -> str:
    css = {
        "ok": "bad",
        "budget": "bad",
        "interrupted": "bad",
        "refused": "ok",
        "not run": "note",
        "failed": "note",
    }
    label = {"budget": "ran (stopped by budget)", "ok": "ran"}.get(run.status, run.status)
    return f'<span class="{css.get(run.status, "")}">{_e(label)}</span>'


def _reasons(run: AttackRun) -> str:
    from gradinv.report.html import reason_html

    parts = [reason_html(r) for r in run.reasons]
    if run.vet is not None:
        v = run.vet
        if v.error:
            parts.append(f"vet could not judge it: {_e(v.error)}")
        elif v.flagged:
            parts.append(f'<b class="ok">gradinv vet flags it</b> ({_e(", ".join(v.kinds))})')
        else:
            parts.append('<b class="bad">gradinv vet does not flag it</b>')
    return "<br>".join(parts) or "—"


def _png_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _summary(audit: Audit) -> str:
    header = ["threat model", "best attack", *(_title(m) for m in HEADLINE), "vet flags the crafted model"]
    rows = []
    for t in audit.threats:
        best = t.best
        vet = "—"
        if best is not None and best.vet is not None:
            vet = (
                f'<span class="ok">yes ({_e(", ".join(best.vet.kinds))})</span>'
                if best.vet.flagged
                else '<span class="bad">no</span>'
            )
        name = f"{_e(t.id)} ({_e(t.name)})" + ("" if t.done else ' <span class="note">(not finished)</span>')
        attack = (
            _e(best.title) + (" (stopped by budget)" if best and best.status == "budget" else "")
            if best
            else ('<span class="ok">no attack succeeded in running</span>' if t.done else "—")
        )
        rows.append([name, attack, *(_value(best, m) for m in HEADLINE), vet])
    return _table(header, rows, numeric=tuple(range(2, 2 + len(HEADLINE))))


def _threat_section(t: ThreatReport, images: Mapping[str, bytes]) -> str:
    from gradinv.report.format import format_seconds

    best = t.best
    out = [
        f'<h2 id="tm-{_e(t.id)}">Threat model {_e(t.id)}: {_e(t.name)}</h2>',
        f'<p class="sub">grants: {_e(", ".join(t.grants))}. Time: {_e(format_seconds(t.seconds))} s of a '
        f"{_e(format_seconds(t.budget_seconds))} s share.</p>",
    ]
    if best is not None and best.image and best.image in images:
        out.append(
            f'<figure><img class="grid" src="{_png_uri(images[best.image])}" alt="{_e(best.title)} under '
            f'{_e(t.id)}"><figcaption>best attack: {_e(best.title)}; PSNR {_value(best, "psnr")} dB'
            "</figcaption></figure>"
        )
    ran = [r for r in t.runs if r.scored or r.status == "failed"]
    if ran:
        out.append(
            _table(
                ["attack", "status", *(_title(m) for m in HEADLINE), "seconds", "notes / vet"],
                (
                    [
                        _e(r.title) + f' <span class="note">({_e(r.family)})</span>',
                        _status(r),
                        *(_value(r, m) if r.scored else "—" for m in HEADLINE),
                        _e(format_seconds(r.seconds)) if r.scored else "—",
                        _reasons(r),
                    ]
                    for r in ran
                ),
                numeric=tuple(range(2, 3 + len(HEADLINE))),
            )
        )
    else:
        out.append('<p class="ok">No attack ran under this threat model.</p>')
    rest = [r for r in t.runs if r not in ran]
    if rest:
        out.append(f"<h3>Refused or not run under {_e(t.id)}</h3>")
        out.append(
            _table(
                ["attack", "status", "why"],
                (
                    [_e(r.title) + f' <span class="note">({_e(r.family)})</span>', _status(r), _reasons(r)]
                    for r in rest
                ),
            )
        )
    for r in t.runs:
        if r.vet is not None and r.vet.findings:
            items = "".join(f"<li>{_e(f)}</li>" for f in r.vet.findings)
            out.append(
                f"<details><summary>gradinv vet on the model {_e(r.title)} sent: {len(r.vet.findings)} "
                f"finding(s)</summary><ul>{items}</ul></details>"
            )
    return "\n".join(out)


def _defenses(audit: Audit) -> str:
    out = ["<h2>Defenses: measured trade-offs (not measured on your setup)</h2>"]
    out += [f'<p class="note">{_e(n)}</p>' for n in audit.defense_notes]
    if audit.defenses:
        out.append(
            _table(
                ["defense", "best setting", "leakage", "utility", "verdict", "measured on", "source"],
                (
                    [
                        _e(d.defense),
                        _e(d.setting),
                        _e(d.leakage),
                        _e(d.utility),
                        _e(d.verdict),
                        _e(d.measured_on),
                        _e(d.source),
                    ]
                    for d in audit.defenses
                ),
            )
        )
    configured = audit.setup.get("defenses") or []
    out.append(
        f"<p>Defenses on in the audited setup: {_e(', '.join(configured) or 'none')} "
        "(every attack above ran against them).</p>"
    )
    return "\n".join(out)


def _setup(audit: Audit) -> str:
    s = audit.setup
    tr = s.get("training", {})
    rows = [
        (
            "model",
            f"{s.get('model')} ({s.get('model_class')}, {s.get('model_parameters')} parameters, "
            f"{s.get('num_classes')} classes)",
        ),
        ("checkpoint", s.get("checkpoint") or "none (initial weights)"),
        (
            "data",
            f"{s.get('data')}: {s.get('num_images')} image(s) of "
            f"{'x'.join(map(str, s.get('image_shape', [])))} "
            f"in the victim's batch, normalization {s.get('normalization')}",
        ),
        (
            "local training",
            f"{tr.get('protocol')}, E = {tr.get('epochs')}, B = {tr.get('batch_size') or 'all'}, "
            f"lr = {tr.get('lr')}",
        ),
        ("clients", f"{s.get('clients')} ({s.get('aggregation')})"),
        ("defenses", ", ".join(s.get("defenses") or []) or "none"),
        ("pretraining rounds", str(s.get("pretrain_rounds", 0))),
    ]
    return _table(["item", "value"], ([_e(k), _e(v)] for k, v in rows))


def render_audit_html(audit: Audit, images: Mapping[str, bytes]) -> str:
    """The audit as one self-contained HTML page."""
    from gradinv.report.format import format_seconds
    from gradinv.report.html import html_page

    state = (
        '<p class="bad"><b>Partial audit</b>: interrupted (Ctrl-C); the threat models below marked not '
        "finished did not run to the end.</p>"
        if audit.interrupted
        else '<p class="bad"><b>Partial audit</b>: still running.</p>'
        if audit.partial
        else ""
    )
    refused = sum(r.status == "refused" for t in audit.threats for r in t.runs)
    body = [
        "<h1>gradinv audit: worst-case leakage of your setup</h1>",
        f'<p class="sub">gradinv {_e(audit.version)}, {_e(audit.created)}; '
        f"{_e(format_seconds(audit.seconds))} s of a {_e(format_seconds(audit.budget_seconds))} s budget; "
        f"{refused} attack(s) refused by the threat "
        "models' checks.</p>",
        state,
        "<h2>Your setup</h2>",
        _setup(audit),
        "<h2>Worst case per threat model</h2>",
        '<p class="note">The best attack is the one with the highest PSNR (then the most exact recoveries). '
        "Higher PSNR/SSIM, lower (ST-)LPIPS and more exact recoveries mean more leakage. ST-LPIPS is not "
        "LPIPS.</p>",
        _summary(audit),
        *(_threat_section(t, images) for t in audit.threats),
        _defenses(audit),
        "<h2>Notes</h2>",
        "<ul>" + "".join(f"<li>{_e(n)}</li>" for n in audit.notes) + "</ul>",
    ]
    return html_page("gradinv audit" + (" (partial)" if audit.partial else ""), "\n".join(body))


def _atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_audit(
    audit: Audit, out_dir: str | Path, *, images: Mapping[str, bytes] | None = None
) -> AuditPaths:
    """Write ``audit.json``, ``audit.html`` and ``images/*.png`` into ``out_dir``."""
    from gradinv.report.json_report import dumps

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    imgs = {f"images/{k}.png": v for k, v in (images or {}).items()}
    if imgs:
        (out / "images").mkdir(exist_ok=True)
        for rel, png in imgs.items():
            _atomic(out / rel, png)
    paths = AuditPaths(out)
    _atomic(paths.json, dumps(audit_dict(audit)).encode("utf-8"))
    _atomic(paths.html, render_audit_html(audit, imgs).encode("utf-8"))
    return paths
