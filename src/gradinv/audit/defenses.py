"""Which defenses would bring leakage down, at what accuracy cost — from measured frontier numbers.

Nothing here is measured on the audited setup: the numbers come from the privacy–utility frontier
study (:mod:`gradinv.studies.tradeoff`), either the quick-scale numbers shipped with gradinv
(``gradinv/catalog_measured.json``, :func:`gradinv.studies.headlines.load_measured`) or a study
folder the user ran (``--frontier DIR``: ``gradinv frontier --out DIR`` or any study with a
``[study.frontier]`` table). Each :class:`~gradinv.audit.results.DefenseAdvice` says which data,
model, attack and threat model its numbers were measured on.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gradinv.audit.results import DefenseAdvice
from gradinv.errors import ConfigError

__all__ = ["defense_advice"]

logger = logging.getLogger(__name__)


def _measured_on(base: Mapping[str, Any], scale: str | None = None) -> str:
    data = base.get("data", {}) or {}
    model = base.get("model", {}) or {}
    attack = base.get("attack", {}) or {}
    threat = base.get("threat", {}) or {}
    pre = base.get("pretrain", {}) or {}
    parts = [
        f"data {data.get('source', 'samples')}"
        + (f" at {data['image_size']}x{data['image_size']}" if data.get("image_size") else ""),
        f"model {model.get('name', 'lenet')}",
        f"attack {attack.get('name', 'inverting-gradients')} under threat model {threat.get('model', 'B')}",
    ]
    if pre.get("total_rounds") or pre.get("rounds"):
        parts.append(
            f"utility: test accuracy after {pre.get('total_rounds') or pre.get('rounds')} FedAvg rounds"
        )
    if scale:
        parts.append(f"{scale} scale")
    return ", ".join(parts)


def _study_base(name: str) -> tuple[Mapping[str, Any], str | None]:
    """The base experiment of built-in study ``name`` (for 'measured on'), or empty when unknown."""
    try:
        from gradinv.studies.library import find_study
        from gradinv.studies.spec import load_study

        spec = load_study(find_study(name))
        return spec.base, None
    except Exception as err:  # an unknown or renamed study: say less, never fail the audit
        logger.debug("could not read study %s: %s", name, err)
        return {}, None


def _shipped() -> tuple[list[DefenseAdvice], list[str]]:
    from gradinv import __version__
    from gradinv.defenses import DEFENSES
    from gradinv.studies.headlines import SHIPPED, load_measured

    measured = load_measured()
    out: list[DefenseAdvice] = []
    bases: dict[str, str] = {}
    for name, m in measured.named.items():
        if name not in DEFENSES:
            continue
        study = re.search(r"gradinv study run (\S+)", m.command)
        scale = re.search(r"--scale (\S+)", m.command)
        key = study.group(1) if study else ""
        if key not in bases:
            base, _ = _study_base(key) if key else ({}, None)
            bases[key] = (
                f"study {key!r}: " + _measured_on(base, scale.group(1) if scale else None)
                if base
                else key or "?"
            )
        setting = re.search(r"at defense = ([^(]+?) \(", m.value)
        verdict = re.search(r"best trade-off: (.+?)(?:, \d+ repeats?)?\)", m.value)
        utility = re.search(r"(Final test accuracy \(utility\) [0-9.]+)", m.value)
        leakage = re.search(r"(PSNR [0-9.inf]+ dB)", m.value)
        out.append(
            DefenseAdvice(
                defense=name,
                setting=setting.group(1).strip() if setting else name,
                leakage=leakage.group(1) if leakage else m.value,
                utility=utility.group(1) if utility else "—",
                verdict=verdict.group(1) if verdict else "",
                measured_on=bases[key],
                source=f"shipped with gradinv {__version__} ({SHIPPED.name})",
                command=m.command,
            )
        )
    notes = [
        "These numbers were measured by gradinv's own frontier study, not on your model, data or training: "
        "they rank defenses on that study's setup. Re-measure on yours with `gradinv frontier` on a study "
        "file of your setup, then `gradinv audit --frontier DIR`."
    ]
    for name, m in measured.named.items():
        if "defense = none" in m.value:
            notes.append(f"Undefended baseline of that study: {m.value} ({name}).")
    if measured.note:
        notes.append(measured.note)
    if not out:
        notes.append("No measured defense numbers are shipped with this installation.")
    return out, notes


def _from_study(folder: Path) -> tuple[list[DefenseAdvice], list[str]]:
    from gradinv.studies.headlines import read_study
    from gradinv.studies.rows import format_value
    from gradinv.studies.tradeoff import frontier_points, frontier_summary

    result = read_study(folder)
    spec = result.spec
    fs = spec.info.frontier
    if fs is None:
        raise ConfigError(
            f"Expected --frontier to name the folder of a study with a [study.frontier] table (e.g. "
            f"`gradinv frontier --out DIR`), but the study in {str(folder)!r} ({spec.info.name!r}) has none. "
            "Run the frontier study, or leave --frontier out to use the numbers shipped with gradinv."
        )
    points = frontier_points(result.rows, spec.layout, fs)
    summary = frontier_summary(points, fs)
    on = f"study {spec.info.name!r} in {str(folder)!r}: " + _measured_on(spec.base, spec.scale)
    base = next((p for p in points if p.label == fs.baseline), None)
    out = []
    for s in summary:
        best = s.best
        out.append(
            DefenseAdvice(
                defense=s.group,
                setting=best.label if best else "—",
                leakage=format_value(fs.leakage, best.leakage) + f" ({fs.leakage})" if best else "—",
                utility=format_value(fs.utility, best.utility) + f" ({fs.utility})" if best else "—",
                verdict=s.tier + (f", {s.useful}/{s.points} settings useful" if s.points else ""),
                measured_on=on,
                source=f"study folder {str(folder)!r}",
                command=f"gradinv study report {folder}",
            )
        )
    notes = [
        f"Measured by the study in {str(folder)!r}, on its data and model (see 'measured on'), "
        "not by this audit."
    ]
    if base is not None:
        notes.append(
            f"Undefended baseline of that study: {fs.utility} {format_value(fs.utility, base.utility)}, "
            f"{fs.leakage} {format_value(fs.leakage, base.leakage)}."
        )
    return out, notes


def defense_advice(frontier: str | Path | None = None) -> tuple[tuple[DefenseAdvice, ...], tuple[str, ...]]:
    """The defenses' measured trade-offs and notes on where they come from: from the study folder
    ``frontier`` when given, else the numbers shipped with gradinv."""
    advice, notes = _from_study(Path(frontier).expanduser()) if frontier is not None else _shipped()
    return tuple(advice), tuple(notes)
