"""Headline numbers of finished studies, per attack, defense and label method: what fills the
``measured`` column of ``gradinv catalog`` (:mod:`gradinv.catalog`).

A study's folder (the ``--out`` of ``gradinv study run``) holds its store, and the store the spec it
ran (document, scale, ``--set`` overrides; :meth:`gradinv.studies.spec.StudySpec.to_record`).
:func:`read_study` reads both; :func:`study_headlines` turns the current (non-stale) rows into one
:class:`Headline` per name. The rule, simple and deterministic:

* **cells** are the study's grid points (every axis's label); a cell's number is the mean over its
  ``ok`` repeats that have it (NaN left out, :func:`gradinv.studies.tables.summarize`). Refused and
  failed trials give no number.
* **attacks** (the ``attack.name`` of the trials): the *headline metric* is the first of the study's
  ``metrics`` that is a registered attack metric (not a run scalar such as test accuracy); the
  headline is the attack's best cell by that metric (the registry's direction), ties to the first cell
  in the study's order. Only undefended cells count when the study has any (an attack's headline is
  its number without a defense).
* **defenses** (every ``name`` of the trials' ``defenses``): in a study with a privacy–utility
  frontier (``[study.frontier]``), the defense's best trade-off as the frontier summary ranks it
  (:func:`gradinv.studies.tradeoff.frontier_summary`): utility and leakage of that cell. Otherwise
  (or where the summary has no best point) the defense's most private cell: the lowest leakage, from
  the attacker's side, in the headline metric.
* **label methods** (``attack.labels``): measured only by a study whose axes set ``attack.labels``
  (e.g. ``label-recovery``), by label accuracy at the method's *worst* cell (every method is exact on
  the easiest batches; where it breaks down is what tells them apart), ties to the first cell; such a
  study measures the label methods, not the attack that carries them.
* **refusals**: a name whose every trial was refused (the threat model does not grant what it
  needs) gets the refusal as its headline, with the first sentence of the reason.
* **combining studies**: :func:`catalog_measured` keeps one headline per name: the first in the
  order of the studies given (``gradinv catalog --studies A B``: A's) among those in a registered
  headline metric (PSNR, SSIM, label accuracy …; ``MetricSpec.headline``), else the first in a
  secondary metric (BRR, exact counts), else the first refusal. :func:`headlines_from_dirs` returns
  them all.

Each headline's command reproduces the run: ``gradinv study run NAME --scale SCALE [--set K=V ...]
--out DIR`` (NAME for a built-in study, else the study file's path as it was run).

The numbers shipped with gradinv (:data:`SHIPPED`, ``gradinv/catalog_measured.json``, shown by a
plain ``gradinv catalog``) were written by ``gradinv catalog --studies DIR ... --save-measured FILE``
from quick-scale runs of the built-in studies; the file records their commands and gradinv version.
"""

from __future__ import annotations

import logging
import math
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gradinv.catalog import Measured
from gradinv.errors import ConfigError
from gradinv.studies.rows import RUN_SCALARS, TrialRow, format_value, scalar_title
from gradinv.studies.spec import StudyResult, StudySpec, from_record
from gradinv.studies.store import STORE_NAME, Store
from gradinv.studies.tables import direction, summarize

__all__ = [
    "SHIPPED",
    "CatalogMeasured",
    "Headline",
    "StudyResult",
    "catalog_measured",
    "headlines_from_dirs",
    "load_measured",
    "read_study",
    "study_command",
    "study_headlines",
]

#: the measured numbers shipped with gradinv (package data)
SHIPPED = Path(__file__).resolve().parent.parent / "catalog_measured.json"

logger = logging.getLogger(__name__)

Kind = Literal["attack", "defense", "label"]


@dataclass(frozen=True)
class Headline:
    """One measured headline: which name (``kind`` and ``name``), the study and cell it comes from,
    the number(s) as displayed (``text``) and the command that reproduces the run."""

    kind: Kind
    name: str
    study: str
    metric: str
    mean: float
    cell: Mapping[str, str]
    repeats: int
    text: str
    command: str
    #: the scale the study ran at (``None``: the study file's own settings)
    scale: str | None = None

    @property
    def measured(self) -> Measured:
        return Measured(self.text, self.command)


@dataclass(frozen=True)
class CatalogMeasured:
    """What ``build_catalog`` takes: per attack or defense name, and per label method."""

    named: Mapping[str, Measured] = field(default_factory=dict)
    labels: Mapping[str, Measured] = field(default_factory=dict)
    commands: tuple[str, ...] = ()
    #: where the numbers come from, for people (e.g. "quick-scale runs of gradinv 0.1.0")
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        def block(found: Mapping[str, Measured]) -> dict[str, dict[str, str]]:
            return {k: {"value": m.value, "command": m.command} for k, m in found.items()}

        return {
            "note": self.note,
            "commands": list(self.commands),
            "attacks_and_defenses": block(self.named),
            "labels": block(self.labels),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CatalogMeasured:
        def block(found: Mapping[str, Any]) -> dict[str, Measured]:
            return {k: Measured(str(m["value"]), str(m["command"])) for k, m in found.items()}

        return cls(
            block(data.get("attacks_and_defenses", {})),
            block(data.get("labels", {})),
            tuple(str(c) for c in data.get("commands", ())),
            str(data.get("note", "")),
        )


# ------------------------------------------------------------------------------------------ reading


def _not_a_study(out: Path, got: str) -> ConfigError:
    return ConfigError(
        f"Expected a study output folder (the --out of `gradinv study run`, holding {STORE_NAME}), but "
        f"{str(out)!r} {got}. Give the --out folder of a finished run, or run a study first: "
        "`gradinv study run NAME --scale quick --out DIR` (`gradinv study list` names the studies)."
    )


def read_study(out_dir: str | Path) -> StudyResult:
    """Read a study's folder: the spec its store recorded and the rows of that spec's trials (stale
    rows of an earlier config are left out). A folder that is not a study's is one clear error."""
    out = Path(out_dir).expanduser()
    if not out.exists():
        raise _not_a_study(out, "does not exist")
    if not out.is_dir():
        raise _not_a_study(out, "is a file")
    path = out / STORE_NAME
    if not path.is_file():
        raise _not_a_study(out, f"holds no {STORE_NAME}")
    try:
        with Store(path) as store:
            record = store.meta("spec")
            if record is None:
                raise _not_a_study(out, "has a store that records no study spec (rerun the study)")
            spec = from_record(record)
            trials = spec.trials()
            by_key = {r.key: r for r in store.rows([t.key for t in trials], images=False)}
    except ConfigError:
        raise
    except Exception as e:  # a corrupt or foreign SQLite file
        raise _not_a_study(out, f"has a {STORE_NAME} that cannot be read ({type(e).__name__}: {e})") from e
    rows = tuple(by_key[t.key] for t in trials if t.key in by_key)
    return StudyResult(spec, out, rows, len(trials))


# ------------------------------------------------------------------------------------------ command


def _toml_value(value: Any) -> str:
    """``value`` as ``--set`` reads it back (a TOML value, or a raw string the CLI keeps as is)."""
    import tomllib

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if math.isfinite(value) else ("nan" if math.isnan(value) else str(value))
    if isinstance(value, str):
        try:
            raw_ok = tomllib.loads(f"v = {value}")["v"] == value
        except tomllib.TOMLDecodeError:
            raw_ok = bool(value.strip()) and value == value.strip()  # the CLI keeps an invalid value raw
        if raw_ok:
            return value
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f'"{k}" = {_toml_value(v)}' for k, v in value.items()) + "}"
    return str(value)


def _study_name(spec: StudySpec) -> str:
    """The built-in study's name when ``spec`` came from a built-in file, else its file's path."""
    from gradinv.studies.library import BUILTIN_DIR, builtin_studies

    src = Path(spec.source) if spec.source else None
    if src is None:
        return spec.info.name
    for s in builtin_studies():
        same_file = src.resolve() == s.path.resolve()
        # a store written from another checkout's copy of the same built-in file
        same_builtin = src.parent.name == BUILTIN_DIR.name and src.name == s.path.name
        if (same_file or same_builtin) and s.name == spec.info.name:
            return s.name
    return str(src)


def study_command(spec: StudySpec, out_dir: str | Path) -> str:
    """The command that reproduces ``spec``'s run into ``out_dir``."""
    parts = ["gradinv", "study", "run", _study_name(spec)]
    if spec.scale:
        parts += ["--scale", spec.scale]
    for key, value in spec.overrides.items():
        parts += ["--set", f"{key}={_toml_value(value)}"]
    parts += ["--out", str(out_dir)]
    return shlex.join(parts)


# ------------------------------------------------------------------------------------------ headlines


def _title(metric: str) -> str:
    from gradinv.metrics import METRICS

    spec = METRICS.get(metric)
    if spec is None:
        return scalar_title(metric) or metric
    return f"{spec.title} ({spec.caveat})" if spec.caveat else spec.title


def _number(metric: str, mean: float, rows: Sequence[TrialRow]) -> str:
    """``PSNR 33.21 dB``; a summed count out of the batch: ``Exact recoveries 62/64``."""
    from gradinv.metrics import METRICS

    spec = METRICS.get(metric)
    text = format_value(metric, mean)
    if spec is not None and spec.reduction == "sum":
        n, _, _, _ = summarize(r.metrics.get("num_images", math.nan) for r in rows)
        if n is not None:
            text += f"/{format_value('num_images', n)}"
    unit = spec.unit if spec is not None and spec.unit else ""
    return f"{_title(metric)} {text}{' ' + unit if unit else ''}"


def _cell_text(cell: Mapping[str, str]) -> str:
    return ", ".join(f"{a} = {v}" for a, v in cell.items()) or "the base experiment"


def _defenses(row: TrialRow) -> list[str]:
    found = row.config.get("defenses") or []
    return [str(d["name"]) for d in found if isinstance(d, Mapping) and "name" in d]


def _attack(row: TrialRow) -> str | None:
    attack = row.config.get("attack") or {}
    name = attack.get("name") if isinstance(attack, Mapping) else None
    return str(name) if name is not None else None


def _labels(row: TrialRow) -> str | None:
    attack = row.config.get("attack") or {}
    labels = attack.get("labels") if isinstance(attack, Mapping) else None
    return labels if isinstance(labels, str) else None


def _cells(rows: Sequence[TrialRow]) -> list[tuple[dict[str, str], list[TrialRow]]]:
    """The grid points of ``rows`` in their order, each with its ok rows."""
    groups: dict[tuple[tuple[str, str], ...], list[TrialRow]] = {}
    for r in rows:
        groups.setdefault(tuple(r.point.items()), [])
        if r.status == "ok":
            groups[tuple(r.point.items())].append(r)
    return [(dict(k), v) for k, v in groups.items() if v]


def _mean(rows: Sequence[TrialRow], metric: str) -> tuple[float | None, int]:
    mean, _, n, _ = summarize(r.metrics[metric] for r in rows if metric in r.metrics)
    return mean, n


def _best_cell(
    rows: Sequence[TrialRow], metric: str, sign: int
) -> tuple[dict[str, str], list[TrialRow], float, int] | None:
    """The cell with the best mean of ``metric`` (``sign`` +1: highest, -1: lowest), first on ties."""
    best: tuple[dict[str, str], list[TrialRow], float, int] | None = None
    for cell, ok in _cells(rows):
        mean, n = _mean(ok, metric)
        if mean is None or math.isnan(mean):
            continue
        if best is None or sign * mean > sign * best[2]:
            best = (cell, ok, mean, n)
    return best


def _repeats(n: int) -> str:
    return f"{n} repeat" + ("s" if n != 1 else "")


def _varies_labels(spec: StudySpec) -> bool:
    return any("attack.labels" in v.settings for a in spec.axes for v in a.values)


def _headline_metric(spec: StudySpec) -> str | None:
    from gradinv.metrics import METRICS

    return next((m for m in spec.info.metrics if m in METRICS and m not in RUN_SCALARS), None)


def _frontier_headlines(result: StudyResult, command: str, names: Sequence[str]) -> dict[str, Headline]:
    from gradinv.studies.tradeoff import TIERS, frontier_points, frontier_summary, panel_axes

    spec = result.spec
    fspec = spec.info.frontier
    if fspec is None:
        return {}
    layout = spec.layout
    panels = panel_axes(layout, fspec)
    summary = frontier_summary(frontier_points(result.rows, layout, fspec), fspec)
    out: dict[str, Headline] = {}
    for name in names:
        mine = [s for s in summary if s.group == name and s.best is not None]
        if not mine:
            continue
        s = min(mine, key=lambda s: TIERS.index(s.tier))  # the best tier; first panel on ties
        best = s.best
        assert best is not None
        cell = {**dict(zip(panels, s.panel)), fspec.axis: best.label}
        text = (
            f"{_title(fspec.utility)} {format_value(fspec.utility, best.utility)}, "
            f"{_number(fspec.leakage, best.leakage, [])} at {_cell_text(cell)} "
            f"({spec.info.name}, best trade-off: {s.tier}, {_repeats(best.repeats)})"
        )
        out[name] = Headline(
            "defense",
            name,
            spec.info.name,
            fspec.leakage,
            best.leakage,
            cell,
            best.repeats,
            text,
            command,
            spec.scale,
        )
    return out


def _refused_text(rows: Sequence[TrialRow], study: str) -> str:
    message = next((r.message for r in rows if r.message), "")
    first = message.split(". ")[0].rstrip(".")
    return f"refused in all {len(rows)} trials ({study})" + (f": {first}" if first else "")


def study_headlines(result: StudyResult) -> list[Headline]:
    """The headlines of one finished study (see the module docstring for the rule): attacks, then
    defenses, then label methods, each in the order they first occur in the study. A name whose every
    trial was refused by the threat model gets the refusal as its headline."""
    spec, rows = result.spec, result.rows
    command = study_command(spec, result.out_dir)
    study = spec.info.name
    out: list[Headline] = []
    metric = _headline_metric(spec)

    def make(kind: Kind, name: str, mine: Sequence[TrialRow], metric: str, sign: int, how: str) -> None:
        found = _best_cell(mine, metric, sign)
        if found is None:
            if mine and all(r.status == "refused" for r in mine):
                text = _refused_text(mine, study)
                out.append(Headline(kind, name, study, metric, math.nan, {}, 0, text, command, spec.scale))
            return
        cell, cell_rows, mean, n = found
        text = f"{_number(metric, mean, cell_rows)} at {_cell_text(cell)} ({study}, {how}{_repeats(n)})"
        out.append(Headline(kind, name, study, metric, mean, cell, n, text, command, spec.scale))

    if _varies_labels(spec):
        if "label_accuracy" in spec.info.metrics:
            for name in dict.fromkeys(n for n in map(_labels, rows) if n is not None):
                mine = [r for r in rows if _labels(r) == name]
                make("label", name, mine, "label_accuracy", -1, "worst cell, ")
        return out
    if metric is not None:
        sign = direction(metric) or 1
        undefended = [r for r in rows if not _defenses(r)]
        some = bool(undefended) and len(undefended) < len(rows)
        for name in dict.fromkeys(n for n in map(_attack, rows) if n is not None):
            mine = [r for r in (undefended or rows) if _attack(r) == name]
            make("attack", name, mine, metric, sign, "undefended, " if some else "")
    ok = [r for r in rows if r.status == "ok"]
    defense_names = list(dict.fromkeys(d for r in rows for d in _defenses(r)))
    frontier = _frontier_headlines(result, command, defense_names) if ok else {}
    for name in defense_names:
        if name in frontier:
            out.append(frontier[name])
        elif metric is not None:
            mine = [r for r in rows if name in _defenses(r)]
            make("defense", name, mine, metric, -(direction(metric) or 1), "most private cell, ")
    return out


def headlines_from_dirs(dirs: Sequence[str | Path]) -> list[Headline]:
    """Every headline of the studies in ``dirs``, in the order given (each folder read by
    :func:`read_study`; an incomplete study is used as far as it got, with a warning)."""
    out: list[Headline] = []
    for d in dirs:
        result = read_study(d)
        if len(result.rows) < result.total:
            logger.warning(
                "%s: %d of %d trials finished; headlines from those", d, len(result.rows), result.total
            )
        out += study_headlines(result)
    return out


def _is_headline_metric(metric: str) -> bool:
    from gradinv.metrics import METRICS

    return metric in METRICS and METRICS[metric].headline


def catalog_measured(headlines: Sequence[Headline]) -> CatalogMeasured:
    """Per name, one headline: the first in the order given (the studies' order) among those in a
    registered headline metric (PSNR, SSIM, label accuracy …), else the first in a secondary metric
    (BRR, exact counts), else the first refusal. Label methods are kept apart, since a label method
    may share an attack's name (``idlg``)."""
    named: dict[str, Measured] = {}
    labels: dict[str, Measured] = {}
    for h in sorted(headlines, key=lambda h: (not _is_headline_metric(h.metric), math.isnan(h.mean))):
        target = labels if h.kind == "label" else named
        if h.name in target:
            logger.info("%s %r: keeping the first study's headline, not %s's", h.kind, h.name, h.study)
            continue
        target[h.name] = h.measured
    return CatalogMeasured(named, labels, tuple(dict.fromkeys(h.command for h in headlines)))


def load_measured(path: str | Path = SHIPPED) -> CatalogMeasured:
    """The measured numbers a ``--save-measured`` file holds (default: those shipped with gradinv);
    none when the file does not exist."""
    import json

    p = Path(path)
    if not p.is_file():
        return CatalogMeasured()
    try:
        return CatalogMeasured.from_dict(json.loads(p.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ConfigError(
            f"Expected {str(p)!r} to hold measured numbers as `gradinv catalog --save-measured` writes "
            f"them, but it cannot be read ({type(e).__name__}: {e}). Write it again."
        ) from e
