"""Study files: a base experiment, the axes it is swept over, repeats, and the table to make.

A study file is an ordinary experiment file (``[data]``, ``[model]``, ``[training]``, ``[attack]`` …,
see :mod:`gradinv.config`) plus three kinds of table::

    [study]
    name = "batch-size"
    title = "Leakage vs batch size"
    paper = "Du et al., SoK: On Gradient Leakage in Federated Learning, USENIX Security 2025, Table 5"
    claim = "BRR and WSRR fall as the batch grows"
    repeats = 3                       # seeds per grid point (repeat r adds r to each `repeat_keys`)
    metrics = ["brr", "wsrr", "psnr"] # the numbers in the table
    rows = ["batch size"]             # row axes; `columns` the column axes

    [[axes]]
    name = "batch size"
    key = "data.num_images"           # any config key, dotted (section.key[.subkey])
    values = [1, 2, 4, 8]

    [[axes]]
    name = "B"                        # moves together with the axis before it
    key = "training.batch_size"
    values = [1, 2, 4, 8]
    zip = true

    [scale.quick]                     # --scale quick: replaces values, repeats, settings
    repeats = 1
    set = { "attack.iterations" = 100 }
    axes = { "batch size" = [1, 2, 4], "B" = [1, 2, 4] }

An axis value is either a plain value for the axis ``key``, or a table ``{label = "no ReLU", set =
{"model.activation" = "identity"}}`` that sets several keys at once (then the axis needs no ``key``).
The grid is the product of the axes (zip groups move together); every grid point × repeat is one
**trial**: the base experiment with the point's settings, an ordinary
:func:`~gradinv.experiment.run_experiment`. Each trial is keyed by a hash of its full resolved
config plus the gradinv version (:func:`trial_key`), so a changed config never reuses an old result.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import gradinv
from gradinv._checks import check_int
from gradinv.config import _ALL_SECTIONS, ExperimentConfig, check_sections, parse_config, read_toml, to_nested
from gradinv.errors import ConfigError, did_you_mean
from gradinv.settings import from_mapping
from gradinv.studies.rows import RUN_SCALARS, TableLayout, TrialRow
from gradinv.studies.tradeoff import FrontierSpec

__all__ = [
    "Axis",
    "AxisValue",
    "ScaleSpec",
    "StudyInfo",
    "StudyResult",
    "StudySpec",
    "Trial",
    "from_record",
    "load_study",
    "parse_study",
    "set_key",
    "trial_key",
]

#: the experiment's own sections (one list: a section added to the experiment schema works in studies)
EXPERIMENT_SECTIONS: tuple[str, ...] = tuple(_ALL_SECTIONS)
STUDY_SECTIONS = ("study", "axes", "scale", *EXPERIMENT_SECTIONS)
#: the config keys a repeat changes by default: which images form the batch, and the model's weights
DEFAULT_REPEAT_KEYS = ("data.seed", "model.seed")


@dataclass(frozen=True)
class StudyInfo:
    """The ``[study]`` table: what the study is, how many repeats, and its table's layout."""

    name: str
    title: str = ""
    paper: str = ""
    claim: str = ""
    description: str = ""
    repeats: int = 1
    repeat_keys: tuple[str, ...] = DEFAULT_REPEAT_KEYS
    metrics: tuple[str, ...] = ("psnr",)
    rows: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()
    plot: str | None = None
    series: str | None = None
    expected_time: str = ""
    #: ``[study.frontier]``: the privacy–utility frontier of a defense axis (:mod:`gradinv.studies.tradeoff`)
    frontier: FrontierSpec | None = None

    def __post_init__(self) -> None:
        check_int("repeats", self.repeats, minimum=1, fix="Use 1 for a single seed per grid point.")
        if not self.metrics:
            raise ConfigError("Expected [study] metrics to name at least one metric, but got none.")
        from gradinv.metrics import METRICS

        extra = set(RUN_SCALARS)
        for m in self.metrics:
            if m not in METRICS and m not in extra:
                valid = sorted({*METRICS, *extra})
                raise ConfigError(
                    f"Unknown metric {m!r} in [study] metrics.{did_you_mean(m, valid)} "
                    f"Valid: {', '.join(valid)}."
                )


@dataclass(frozen=True)
class AxisValue:
    """One value of an axis: its label and the config keys it sets."""

    label: str
    settings: Mapping[str, Any]
    raw: Any


@dataclass(frozen=True)
class Axis:
    name: str
    values: tuple[AxisValue, ...]
    key: str | None = None
    zip: bool = False

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(v.label for v in self.values)


@dataclass(frozen=True)
class _AxisTable:
    name: str
    values: tuple[Any, ...]
    key: str | None = None
    labels: tuple[str, ...] | None = None
    zip: bool = False


@dataclass(frozen=True)
class ScaleSpec:
    """A named scale (``[scale.quick]``): replaced axis values, repeats and extra settings."""

    repeats: int | None = None
    set: Mapping[str, Any] = field(default_factory=dict)
    axes: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    expected_time: str = ""
    description: str = ""


@dataclass(frozen=True)
class Trial:
    """One grid point × repeat, resolved: the full experiment config and its key."""

    key: str
    point: Mapping[str, str]
    values: Mapping[str, Any]
    repeat: int
    config: ExperimentConfig

    def nested(self) -> dict[str, Any]:
        """The config as nested tables (what a worker gets; :func:`gradinv.config.parse_config`)."""
        return to_nested(self.config)


def _label(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return repr(value)
    return str(value) if isinstance(value, (int, float, str)) else json.dumps(value, sort_keys=True)


def _axis_value(axis: _AxisTable, i: int, raw: Any) -> AxisValue:
    given = axis.labels[i] if axis.labels is not None else None
    if isinstance(raw, Mapping) and axis.key is None:
        unknown = set(raw) - {"label", "set"}
        if unknown or "set" not in raw or not isinstance(raw["set"], Mapping):
            raise ConfigError(
                f"Expected each value of axis {axis.name!r} (it has no `key`) to be a table "
                f'{{label = "…", set = {{"section.key" = value, …}}}}, but got {raw!r}. '
                "Give the axis a `key` for plain values."
            )
        label = given or str(raw.get("label") or json.dumps(dict(raw["set"]), sort_keys=True))
        return AxisValue(label, dict(raw["set"]), raw)
    if axis.key is None:
        raise ConfigError(
            f"Expected axis {axis.name!r} to have a `key` (the config key its values set), or values that "
            f"are tables with `set`, but got the value {raw!r}."
        )
    return AxisValue(given or _label(raw), {axis.key: raw}, raw)


def _parse_axis(table: Any, i: int, replaced: Mapping[str, Sequence[Any]]) -> Axis:
    if not isinstance(table, Mapping):
        raise ConfigError(f"Expected [[axes]] entry {i} to be a table, but got {table!r}.")
    t = from_mapping(_AxisTable, table, section="axes")
    values = tuple(replaced.get(t.name, t.values))
    if not values:
        raise ConfigError(f"Expected axis {t.name!r} to have at least one value, but got none.")
    if t.labels is not None and len(t.labels) != len(values):
        raise ConfigError(
            f"Expected axis {t.name!r} to have one label per value ({len(values)}), but got {len(t.labels)} "
            "labels. A scale that replaces the values must replace the labels too, or drop them."
        )
    if t.key is not None:
        _check_key(t.key, f"axis {t.name!r}")
    vals = tuple(_axis_value(t, k, v) for k, v in enumerate(values))
    labels = [v.label for v in vals]
    if len(set(labels)) != len(labels):
        raise ConfigError(
            f"Expected the values of axis {t.name!r} to have distinct labels, but got {labels}."
        )
    return Axis(t.name, vals, t.key, t.zip)


def _check_key(dotted: str, where: str) -> None:
    head = dotted.split(".", 1)[0]
    if head not in EXPERIMENT_SECTIONS or ("." not in dotted and head != "defenses"):
        raise ConfigError(
            f"Expected {where} to name a config key `section.key` "
            f"(sections: {', '.join(EXPERIMENT_SECTIONS)}), "
            f"but got {dotted!r}.{did_you_mean(head, EXPERIMENT_SECTIONS)}"
        )


def set_key(nested: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``section.key[.subkey…]`` in a nested config (a parsed TOML document), in place.

    Setting ``attack.name`` or ``model.name`` to another name drops the old one's own parameters
    (they belong to the old attack or model), as ``gradinv attack --set`` does."""
    _check_key(dotted, "the setting")
    parts = dotted.split(".")
    if parts == ["defenses"]:
        nested["defenses"] = copy.deepcopy(list(value) if isinstance(value, (list, tuple)) else [value])
        return
    section = parts[0]
    if parts[1:] == ["name"] and section in ("attack", "model"):
        old = nested.get(section, {})
        if old.get("name") != value:
            keep = {"num_classes", "seed", "init"} if section == "model" else set()
            nested[section] = {k: v for k, v in old.items() if k in keep}
    node = nested
    for p in parts[:-1]:
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"Expected {p!r} in {dotted!r} to be a table of keys, but it holds {nxt!r}.")
        node = nxt
    node[parts[-1]] = copy.deepcopy(value)


def _get_key(cfg: ExperimentConfig, dotted: str) -> Any:
    node: Any = to_nested(cfg)
    for p in dotted.split("."):
        if not isinstance(node, Mapping) or p not in node:
            return None
        node = node[p]
    return node


def trial_key(cfg: ExperimentConfig) -> str:
    """The hash of everything that changes a trial's result: its full resolved config (but not
    ``run.out``, where it is written) plus the gradinv version."""
    nested = to_nested(cfg)
    nested.get("run", {}).pop("out", None)
    doc = json.dumps({"config": nested, "version": gradinv.__version__}, sort_keys=True, default=str)
    return hashlib.sha256(doc.encode()).hexdigest()[:24]


def _zip_groups(axes: Sequence[Axis]) -> list[list[Axis]]:
    """The axes in groups that move together: an axis with ``zip = true`` joins the group of the
    axis before it, and must have as many values."""
    groups: list[list[Axis]] = []
    for a in axes:
        if not a.zip:
            groups.append([a])
            continue
        if not groups:
            raise ConfigError(
                f"Expected axis {a.name!r} with `zip = true` to follow another axis, but it is first."
            )
        if len(a.values) != len(groups[-1][0].values):
            raise ConfigError(
                f"Expected axis {a.name!r} (zip = true) to have as many values as {groups[-1][0].name!r} "
                f"({len(groups[-1][0].values)}), but it has {len(a.values)}."
            )
        groups[-1].append(a)
    return groups


def _grid(axes: Sequence[Axis]) -> list[tuple[tuple[Axis, AxisValue], ...]]:
    """The grid points: the product over the zip groups (:func:`_zip_groups`)."""
    per_group = [
        [tuple((a, a.values[k]) for a in g) for k in range(len(g[0].values))] for g in _zip_groups(axes)
    ]
    return [tuple(x for part in combo for x in part) for combo in itertools.product(*per_group)]


@dataclass(frozen=True)
class StudySpec:
    """A parsed study: info, axes, the base experiment (nested tables) and where it came from."""

    info: StudyInfo
    axes: tuple[Axis, ...]
    base: Mapping[str, Any]
    scales: Mapping[str, ScaleSpec]
    scale: str | None = None
    source: str = ""
    document: Mapping[str, Any] = field(default_factory=dict, repr=False)
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        """What re-creates this spec (:func:`from_record`): the document, scale and overrides."""
        return {
            "document": dict(self.document),
            "scale": self.scale,
            "overrides": dict(self.overrides),
            "source": self.source,
        }

    @property
    def layout(self) -> TableLayout:
        return TableLayout(
            rows=self.info.rows,
            columns=self.info.columns,
            metrics=self.info.metrics,
            order={a.name: a.labels for a in self.axes},
            plot=self.info.plot,
            series=self.info.series,
        )

    def trials(self) -> list[Trial]:
        """Every grid point × repeat, in grid order (repeats innermost), resolved and validated."""
        return list(self._trials)

    @functools.cached_property
    def _trials(self) -> tuple[Trial, ...]:
        out: list[Trial] = []
        seen: dict[str, str] = {}
        for point in _grid(self.axes):
            nested = copy.deepcopy(dict(self.base))
            for _, value in point:
                for k, v in value.settings.items():
                    set_key(nested, k, v)
            labels = {a.name: v.label for a, v in point}
            where = ", ".join(f"{a}={v}" for a, v in labels.items()) or "the base experiment"
            try:
                cfg = parse_config(nested)
            except ConfigError as e:
                raise ConfigError(f"Study {self.info.name!r} at {where}: {e}") from None
            for r in range(self.info.repeats):
                cfg_r = cfg
                if r:
                    shifted = to_nested(cfg)
                    for k in self.info.repeat_keys:
                        base_v = _get_key(cfg, k)
                        set_key(shifted, k, (base_v or 0) + r)
                    cfg_r = parse_config(shifted)
                key = trial_key(cfg_r)
                if key in seen:
                    raise ConfigError(
                        f"Expected every trial of study {self.info.name!r} to differ, but {where} repeat {r} "
                        f"is the same experiment as {seen[key]}. Check the axes' keys and `repeat_keys`."
                    )
                seen[key] = f"{where} repeat {r}"
                values = {a.name: v.raw for a, v in point}
                out.append(Trial(key=key, point=labels, values=values, repeat=r, config=cfg_r))
        return tuple(out)


@dataclass(frozen=True)
class StudyResult:
    """A study read from its folder: the spec it ran and its current trials' rows (grid order) of the
    spec's ``total`` trials."""

    spec: StudySpec
    out_dir: Path
    rows: tuple[TrialRow, ...]
    total: int

    @property
    def complete(self) -> bool:
        return len(self.rows) == self.total


def _check_layout(info: StudyInfo, axes: Sequence[Axis]) -> None:
    names = [a.name for a in axes]
    if len(set(names)) != len(names):
        raise ConfigError(f"Expected distinct axis names, but got {names}.")
    for what, used in (("rows", info.rows), ("columns", info.columns)):
        for n in used:
            if n not in names:
                raise ConfigError(
                    f"Expected [study] {what} to name axes, but got {n!r}.{did_you_mean(n, names)} "
                    f"Axes: {', '.join(names) or 'none'}."
                )
    frontier_axis = info.frontier.axis if info.frontier is not None else None
    for what, axis in (("plot", info.plot), ("series", info.series), ("frontier axis", frontier_axis)):
        if axis is not None and axis not in names:
            raise ConfigError(
                f"Expected [study] {what} to name an axis, but got {axis!r}. Axes: {', '.join(names)}."
            )
    placed = set(info.rows) | set(info.columns)
    for group in _zip_groups(axes):  # a varying group needs a place in the table (else it is averaged)
        if len(group[0].values) > 1 and not placed & {a.name for a in group}:
            raise ConfigError(
                f"Expected axis {group[0].name!r} (it has {len(group[0].values)} values) in [study] rows "
                "or columns, but it is in neither: the table would average over it. Add it to `rows` or "
                "`columns`."
            )


def parse_study(
    data: Mapping[str, Any],
    *,
    scale: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    source: str = "",
) -> StudySpec:
    """Build a :class:`StudySpec` from a parsed study document; ``scale`` picks a ``[scale.NAME]``,
    ``overrides`` (``section.key`` → value, e.g. from ``--set``) change the base experiment."""
    check_sections(data, STUDY_SECTIONS, arrays=("axes", "defenses"))
    if "study" not in data or "name" not in data["study"]:
        raise ConfigError("Expected a [study] table with a `name`, but the file has none.")
    raw_scales = data.get("scale", {})
    scales = {n: from_mapping(ScaleSpec, t, section=f"scale.{n}") for n, t in raw_scales.items()}
    chosen: ScaleSpec | None = None
    if scale is not None:
        if scale not in scales:
            raise ConfigError(
                f"Unknown scale {scale!r} for study {data['study']['name']!r}.{did_you_mean(scale, scales)} "
                f"Valid scales: {', '.join(scales) or 'none (the file defines no [scale.NAME])'}."
            )
        chosen = scales[scale]
    info_table = dict(data["study"])
    frontier_table = info_table.pop("frontier", None)
    if chosen is not None and chosen.repeats is not None:
        info_table["repeats"] = chosen.repeats
    if chosen is not None and chosen.expected_time:
        info_table["expected_time"] = chosen.expected_time
    info = from_mapping(StudyInfo, info_table, section="study")
    if frontier_table is not None:
        if not isinstance(frontier_table, Mapping):
            raise ConfigError(
                f"Expected [study.frontier] to be a table, but got {frontier_table!r}. "
                'Write e.g. [study.frontier] with axis = "defense".'
            )
        info = replace(info, frontier=from_mapping(FrontierSpec, frontier_table, section="study.frontier"))
    raw_axes = data.get("axes", [])
    if isinstance(raw_axes, Mapping):
        raw_axes = [raw_axes]
    replaced = dict(chosen.axes) if chosen is not None else {}
    axes = tuple(_parse_axis(t, i, replaced) for i, t in enumerate(raw_axes))
    for n in replaced:
        if n not in {a.name for a in axes}:
            raise ConfigError(f"Expected [scale.{scale}] axes to name axes of the study, but got {n!r}.")
    _check_layout(info, axes)
    base: dict[str, Any] = {k: copy.deepcopy(v) for k, v in data.items() if k in EXPERIMENT_SECTIONS}
    for k, v in {**(dict(chosen.set) if chosen else {}), **dict(overrides or {})}.items():
        set_key(base, k, v)
    spec = StudySpec(
        info=info,
        axes=axes,
        base=base,
        scales=scales,
        scale=scale,
        source=source,
        document=copy.deepcopy(dict(data)),
        overrides=dict(overrides or {}),
    )
    spec.trials()  # every trial's config is validated now, before any work
    return spec


def from_record(record: Mapping[str, Any]) -> StudySpec:
    """The spec :meth:`StudySpec.to_record` describes."""
    return parse_study(
        record["document"],
        scale=record.get("scale"),
        overrides=record.get("overrides"),
        source=record.get("source", ""),
    )


def load_study(
    path: str | Path, *, scale: str | None = None, overrides: Mapping[str, Any] | None = None
) -> StudySpec:
    """Read a study TOML file (see the module docstring)."""
    return parse_study(read_toml(path), scale=scale, overrides=overrides, source=str(path))
