"""The privacy–utility frontier of client-side defenses in multi-round federated training.

A CPU-scaled version of the post-processing study of Du, Hu, Wang, Sun, Gong, Ren, Chen, "SoK: On
Gradient Leakage in Federated Learning", USENIX Security 2025 (§6, Fig. 11, Appx. B-III / C-III):
for every defense and every strength (plus "no defense"),

1. **utility** — train the model with FedAvg for ``[fl] rounds`` rounds with the defense on every
   client (:func:`gradinv.fl.training.train_federated`) and record the final test accuracy;
2. **leakage** — ``[victim] clients`` victim clients, each holding ``[victim] num_images`` training
   images, join round ``[victim] round`` with the same local training and defense; the server
   observes each victim's update under ``[threat]``, runs every configured attack on it, and the
   reconstructions are matched and scored (PSNR, SSIM, LPIPS when its weights are present, ST-LPIPS
   when configured, label accuracy, the BRR variants of ``[metrics] leakage``), then averaged over the
   victims.

Deviations from the paper (scaled for CPUs): a small model and a few rounds instead of ResNet-18 /
Swin over 100 clients; victims join one round as extra clients (the paper keeps one victim with
N = 10 in a pool of 100 clients); leakage is measured by PSNR by default (the paper uses LPIPS,
whose ImageNet backbone is often unavailable offline).

**Resumable.** Every finished point (defense, strength) is written atomically to
``OUT/points/<key>.json`` as soon as it finishes; a rerun loads the finished points and computes only
the missing ones, so Ctrl-C or a crash loses no finished point. The key hashes the point's defense
parameters and every setting that changes results (data, model, training, federation, victim,
threat, attacks, metrics): after such a change old points are ignored (and reported as stale), never
mixed in.

Config (TOML; every key has a default, typos are errors listing the valid keys)::

    [data]      source, test_source (else a held-out test_fraction), train_images, test_images,
                image_size, channels, normalization, seed
    [model]     as in experiment files (name, init, seed, model options)
    [training]  the clients' local training (protocol, epochs, batch_size, lr, momentum, ...)
    [fl]        num_clients, rounds, clients_per_round | fraction, split, alpha, server_lr, seed ...
    [victim]    round, clients, num_images, indices | seed + composition
    [threat]    model (A–H), grant, revoke
    [attack] or [[attacks]]   name, label, and the attack's parameters
    [[defenses]]  name, param, values (the strengths), label, and fixed parameters of the defense
    [metrics]   as in experiment files (matching, lpips, stlpips, weights)
    [frontier]  baseline, leakage (metric of the plot and summary), max_accuracy_drop,
                leakage_threshold, images
    [run]       device, out
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import math
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import Tensor

import gradinv
from gradinv.config import MetricsConfig, ModelConfig, RunConfig, ThreatConfig
from gradinv.errors import ConfigError, DataError, did_you_mean
from gradinv.fl.training import FederatedConfig, RoundLog, VictimClient, train_federated
from gradinv.settings import as_dict, from_mapping
from gradinv.types import Batch, TrainingConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

if TYPE_CHECKING:  # pragma: no cover
    from gradinv.attacks.base import Attack
    from gradinv.data.dataset import ImageDataset
    from gradinv.defenses.base import Defense
    from gradinv.types import GroundTruth

__all__ = [
    "SECTIONS",
    "AttackEntry",
    "DefenseSweep",
    "FrontierConfig",
    "FrontierData",
    "FrontierDataConfig",
    "FrontierEvent",
    "FrontierOptions",
    "FrontierResult",
    "Point",
    "VictimConfig",
    "compute_point",
    "load_finished_points",
    "load_frontier_config",
    "load_frontier_data",
    "parse_frontier_config",
    "run_frontier",
]

logger = logging.getLogger(__name__)

POINTS_DIR = "points"
LEAKAGE_METRICS = (
    "psnr",
    "ssim",
    "mse",
    "lpips",
    "stlpips",
    "label_accuracy",
    "brr",
    "brr_stlpips",
    "brr_psnr",
)

# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrontierDataConfig:
    """Training and test data. Without ``test_source`` a seeded ``test_fraction`` of ``source`` is held
    out. ``train_images`` / ``test_images`` cap the sets (seeded subsets); the victim's images are
    drawn from ``source`` first and never given to a regular client."""

    source: str = "digits"
    test_source: str | None = None
    test_fraction: float = 0.2
    train_images: int | None = None
    test_images: int | None = None
    image_size: int | None = 32
    channels: int | None = None
    normalization: str = "auto"
    seed: int = 0
    download: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.test_fraction < 1:
            raise ConfigError(f"Expected `test_fraction` in (0, 1), but got {self.test_fraction!r}.")
        for name in ("train_images", "test_images", "image_size"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ConfigError(f"Expected `{name}` >= 1 (or unset), but got {v!r}.")


@dataclass(frozen=True)
class VictimConfig:
    """The attacked clients: ``clients`` victims with ``num_images`` training images each (explicit
    ``indices`` into ``[data] source``, consecutive groups of ``num_images``; or drawn with ``seed``
    and ``composition`` over all victims' images), joining round ``round`` (from 0). Leakage is
    averaged over the victims."""

    round: int = 0
    clients: int = 1
    num_images: int | None = None
    indices: tuple[int, ...] | None = None
    seed: int = 0
    composition: Literal["random", "unique", "duplicates"] = "random"
    duplicates: int = 2

    def __post_init__(self) -> None:
        if self.round < 0:
            raise ConfigError(
                f"Expected the victim's `round` >= 0, but got {self.round}. Rounds count from 0."
            )
        if self.clients < 1:
            raise ConfigError(f"Expected `clients` (victims) >= 1, but got {self.clients}.")
        if self.num_images is not None and self.num_images < 1:
            raise ConfigError(f"Expected `num_images` >= 1, but got {self.num_images}.")
        if self.indices is not None and len(self.indices) != self.clients * self.images_per_victim:
            raise ConfigError(
                f"Expected {self.clients * self.images_per_victim} `indices` ({self.clients} victim(s) x "
                f"{self.images_per_victim} image(s)), but got {len(self.indices)}. Give `num_images` per "
                "victim and one index per image."
            )

    @property
    def images_per_victim(self) -> int:
        if self.num_images is not None:
            return self.num_images
        if self.indices is not None and len(self.indices) % self.clients == 0:
            return len(self.indices) // self.clients
        return 1


@dataclass(frozen=True)
class AttackEntry:
    """One attack run on the victim's update: its registered name, parameters, and a label that
    names it in tables (defaults to the name; give labels to run one attack twice)."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""

    def build(self) -> Attack:
        from gradinv.attacks import create_attack

        return create_attack(self.name, **dict(self.params))


@dataclass(frozen=True)
class DefenseSweep:
    """One ``[[defenses]]`` entry: defense ``name`` with fixed ``params``, swept over ``values`` of
    parameter ``param`` (one point per value; a single point when no sweep is given)."""

    name: str
    param: str | None = None
    values: tuple[Any, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""

    def settings(self) -> list[tuple[Any, dict[str, Any]]]:
        """``(value, all parameters)`` of every point of the sweep."""
        if self.param is None:
            return [(None, dict(self.params))]
        return [(v, {**self.params, self.param: v}) for v in self.values]


@dataclass(frozen=True)
class FrontierOptions:
    """How points are summarised: the ``leakage`` metric on the plot's x-axis and in the ranking, the
    largest relative accuracy drop still counted as useful (``max_accuracy_drop``; the paper's blue
    line is 30 %), an optional leakage threshold below which a point counts as protected (the paper's
    red line), whether to run the undefended ``baseline``, and whether point files keep reconstruction
    thumbnails (``images``)."""

    baseline: bool = True
    leakage: str = "psnr"
    max_accuracy_drop: float = 0.3
    leakage_threshold: float | None = None
    images: bool = True

    def __post_init__(self) -> None:
        if self.leakage not in LEAKAGE_METRICS:
            raise ConfigError(
                f"Expected `leakage` to be one of {', '.join(LEAKAGE_METRICS)}, but got {self.leakage!r}."
                + did_you_mean(self.leakage, LEAKAGE_METRICS)
            )
        if not 0 <= self.max_accuracy_drop <= 1:
            raise ConfigError(f"Expected `max_accuracy_drop` in [0, 1], but got {self.max_accuracy_drop!r}.")


@dataclass(frozen=True)
class Point:
    """One point of the frontier: a defense at one strength (``defense`` None: no defense)."""

    order: int
    key: str
    label: str
    defense: str | None
    param: str | None
    value: Any
    params: Mapping[str, Any]

    def build_defenses(self) -> tuple[Defense, ...]:
        if self.defense is None:
            return ()
        from gradinv.defenses import create_defense

        return (create_defense(self.defense, **dict(self.params)),)

    def describe(self) -> str:
        if self.defense is None:
            return "no defense"
        if self.param is None:
            return self.label
        return f"{self.label} ({self.param} = {self.value})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "order": self.order,
            "key": self.key,
            "label": self.label,
            "defense": self.defense,
            "param": self.param,
            "value": self.value,
            "params": dict(self.params),
        }


@dataclass(frozen=True)
class FrontierConfig:
    """A frontier study (see the module docstring for the sections)."""

    data: FrontierDataConfig = field(default_factory=FrontierDataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=lambda: TrainingConfig("fedavg", batch_size=32))
    fl: FederatedConfig = field(default_factory=FederatedConfig)
    victim: VictimConfig = field(default_factory=VictimConfig)
    threat: ThreatConfig = field(default_factory=lambda: ThreatConfig(model="C"))
    attacks: tuple[AttackEntry, ...] = (AttackEntry("idlg", {}, "idlg"),)
    defenses: tuple[DefenseSweep, ...] = ()
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    frontier: FrontierOptions = field(default_factory=FrontierOptions)
    run: RunConfig = field(default_factory=lambda: RunConfig(out="gradinv-out/frontier"))

    def __post_init__(self) -> None:
        if self.victim.round >= self.fl.rounds:
            raise ConfigError(
                f"Expected [victim] round in [0, {self.fl.rounds}) (the rounds of [fl]), but got "
                f"{self.victim.round}. Rounds count from 0."
            )
        from gradinv.fl import AGGREGATORS

        if not AGGREGATORS.get(self.fl.aggregation).reveals_individual:
            raise ConfigError(
                f"Expected an aggregation that lets the server read the victim's update, but "
                f"{self.fl.aggregation!r} reveals only the aggregate. The frontier measures leakage of one "
                "client's update; use aggregation = 'mean'."
            )
        labels = [a.label for a in self.attacks]
        if len(set(labels)) != len(labels):
            raise ConfigError(
                f"Expected distinct attack labels, but got {labels}. Give each [[attacks]] entry a `label`."
            )
        if not self.attacks:
            raise ConfigError("Expected at least one attack ([attack] or [[attacks]]), but got none.")

    def results_dict(self) -> dict[str, Any]:
        """Every setting that changes a point's numbers (not the output folder, device or plot)."""
        return {
            "data": as_dict(self.data),
            "model": as_dict(self.model),
            "training": as_dict(self.training),
            "fl": self.fl.to_dict(),
            "victim": as_dict(self.victim),
            "threat": as_dict(self.threat),
            "attacks": [as_dict(a) for a in self.attacks],
            "metrics": as_dict(self.metrics),
        }

    def fingerprint(self) -> str:
        return _digest(self.results_dict())

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.results_dict(),
            "defenses": [as_dict(d) for d in self.defenses],
            "frontier": as_dict(self.frontier),
            "run": as_dict(self.run),
        }

    def points(self) -> tuple[Point, ...]:
        """Every point in computing order: the baseline, then each sweep's values in order."""
        fp = self.fingerprint()
        out: list[Point] = []
        if self.frontier.baseline:
            out.append(
                Point(0, f"none-{_digest({'fp': fp, 'defense': None})[:10]}", "none", None, None, None, {})
            )
        for sweep in self.defenses:
            for value, params in sweep.settings():
                digest = _digest({"fp": fp, "defense": sweep.name, "params": params})[:10]
                stem = sweep.label if value is None else f"{sweep.label}-{sweep.param}={value}"
                key = f"{_slug(stem)}-{digest}"
                out.append(Point(len(out), key, sweep.label, sweep.name, sweep.param, value, params))
        keys = [p.key for p in out]
        if len(set(keys)) != len(keys):
            dup = sorted({k for k in keys if keys.count(k) > 1})
            raise ConfigError(
                f"Expected every (defense, strength) once, but got repeats: {', '.join(dup)}. "
                "Remove the duplicate [[defenses]] entries or values."
            )
        return tuple(out)


def _digest(obj: Any) -> str:
    text = json.dumps(_jsonable(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=_-]+", "_", text).strip("_")[:60] or "point"


def _jsonable(obj: Any) -> Any:
    from gradinv.report.json_report import to_jsonable

    return to_jsonable(obj)


#: TOML sections of a frontier config.
SECTIONS = (
    "data",
    "model",
    "training",
    "fl",
    "victim",
    "threat",
    "attack",
    "attacks",
    "defenses",
    "metrics",
    "frontier",
    "run",
)
_RESERVED_DEFENSE_KEYS = ("name", "param", "values", "label")


def _attack_entries(data: Mapping[str, Any]) -> tuple[AttackEntry, ...]:
    from gradinv.attacks import ATTACKS

    if "attack" in data and "attacks" in data:
        raise ConfigError("Expected either [attack] or [[attacks]], but got both. Keep one of them.")
    raw = data.get("attacks", data.get("attack", {"name": "idlg"}))
    tables = [raw] if isinstance(raw, Mapping) else raw
    if not isinstance(tables, (list, tuple)) or not tables:
        raise ConfigError(f"Expected [[attacks]] to be a non-empty array of tables, but got {raw!r}.")
    out = []
    for i, table in enumerate(tables):
        if not isinstance(table, Mapping) or "name" not in table:
            raise ConfigError(f"Expected attack entry {i} to be a table with a `name`, but got {table!r}.")
        params = {k: v for k, v in table.items() if k not in ("name", "label")}
        cls = ATTACKS.get(str(table["name"]))
        from_mapping(cls.config_cls, params, section="attacks", context=f"for attack {cls.name!r}")
        label = table.get("label", cls.name)
        if not isinstance(label, str) or not label:
            raise ConfigError(
                f"Expected `label` of attack entry {i} to be a non-empty string, but got {label!r}."
            )
        out.append(AttackEntry(cls.name, params, label))
    return tuple(out)


def _defense_sweeps(raw: Any) -> tuple[DefenseSweep, ...]:
    from gradinv.defenses import DEFENSES, create_defense

    tables = [raw] if isinstance(raw, Mapping) else raw
    if not isinstance(tables, (list, tuple)):
        raise ConfigError(f"Expected [[defenses]] to be an array of tables, but got {raw!r}.")
    out = []
    for i, table in enumerate(tables):
        if not isinstance(table, Mapping) or "name" not in table:
            raise ConfigError(
                f"Expected [[defenses]] entry {i} to be a table with a `name`, but got {table!r}."
            )
        cls = DEFENSES.get(str(table["name"]))
        param, values = table.get("param"), table.get("values")
        if (param is None) != (values is None):
            raise ConfigError(
                f"Expected [[defenses]] entry {i} ({cls.name}) to give both `param` (the swept parameter) "
                f"and `values` (its strengths), but got param={param!r}, values={values!r}."
            )
        if param is not None and not isinstance(param, str):
            raise ConfigError(f"Expected `param` of defense {cls.name!r} to be a string, but got {param!r}.")
        if values is not None and (not isinstance(values, (list, tuple)) or not values):
            raise ConfigError(
                f"Expected `values` of defense {cls.name!r} to be a non-empty list of strengths, "
                f"but got {values!r}."
            )
        label = table.get("label", cls.name)
        if not isinstance(label, str) or not label:
            raise ConfigError(
                f"Expected `label` of defense {cls.name!r} to be a non-empty string, but got {label!r}."
            )
        fixed = {k: v for k, v in table.items() if k not in _RESERVED_DEFENSE_KEYS}
        if param is not None and param in fixed:
            raise ConfigError(
                f"Expected the swept parameter {param!r} of defense {cls.name!r} not to be fixed as well, "
                "but it is. Remove the fixed value."
            )
        sweep = DefenseSweep(cls.name, param, tuple(values or ()), fixed, label)
        for _, params in sweep.settings():  # validate every strength now, not after hours of training
            create_defense(cls.name, **params)
        out.append(sweep)
    return tuple(out)


def parse_frontier_config(data: Mapping[str, Any]) -> FrontierConfig:
    """Build a :class:`FrontierConfig` from nested mappings (a parsed TOML document)."""
    from gradinv.config import _model_section

    for section, value in data.items():
        if section not in SECTIONS:
            raise ConfigError(
                f"Unknown section [{section}].{did_you_mean(section, SECTIONS)} "
                f"Valid sections: {', '.join(f'[{s}]' for s in SECTIONS)}."
            )
        if section not in ("attacks", "defenses") and not isinstance(value, Mapping):
            raise ConfigError(f"Expected [{section}] to be a table of keys, but got {value!r}.")
    training = dict(data.get("training", {}))
    kwargs: dict[str, Any] = {
        "data": from_mapping(FrontierDataConfig, data.get("data"), section="data"),
        "model": _model_section(data.get("model", {})),
        "training": from_mapping(
            TrainingConfig, {"protocol": "fedavg", "batch_size": 32, **training}, section="training"
        ),
        "fl": from_mapping(FederatedConfig, data.get("fl"), section="fl"),
        "victim": from_mapping(VictimConfig, data.get("victim"), section="victim"),
        "threat": from_mapping(
            ThreatConfig, {"model": "C", **dict(data.get("threat", {}))}, section="threat"
        ),
        "attacks": _attack_entries(data),
        "defenses": _defense_sweeps(data.get("defenses", [])),
        "metrics": from_mapping(MetricsConfig, data.get("metrics"), section="metrics"),
        "frontier": from_mapping(FrontierOptions, data.get("frontier"), section="frontier"),
        "run": from_mapping(
            RunConfig, {"out": "gradinv-out/frontier", **dict(data.get("run", {}))}, section="run"
        ),
    }
    kwargs["threat"].resolve()  # unknown threat models fail now
    unsupported = [k for k in ("iip", "rdlv") if getattr(kwargs["metrics"], k)]
    if unsupported:
        got = ", ".join(f"{k} = true" for k in unsupported)
        raise ConfigError(
            f"Expected the frontier's [metrics] without {' and '.join(unsupported)} (they need reference "
            f"images that the frontier does not draw), but got {got}. "
            "Remove them, or score single runs with `gradinv attack`."
        )
    return FrontierConfig(**kwargs)


def load_frontier_config(path: str | Path, *, overrides: Mapping[str, Any] | None = None) -> FrontierConfig:
    """Read and validate a frontier TOML file; ``overrides`` set ``section.key`` values first."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"Expected a TOML config file at {str(p)!r}, but there is none.")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"Expected valid TOML in {str(p)!r}, but parsing failed: {e}.") from None
    for dotted, value in (overrides or {}).items():
        section, dot, key = dotted.partition(".")
        if not dot and section in SECTIONS:  # a whole section, e.g. attacks=[{name="dlg"}]
            data.pop(
                "attack" if section == "attacks" else "attacks" if section == "attack" else section, None
            )
            data[section] = value
            continue
        if not dot or not key:
            raise ConfigError(
                f"Expected an override of the form section.key=value or section=value, but got {dotted!r}."
            )
        table = data.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(
                f"Expected [{section}] to be a table to override {dotted!r}, but it is an array."
            )
        table[key] = value
    return parse_frontier_config(data)


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrontierData:
    """The materialised data of a study: the regular clients' pool, the test set, the victims' batches."""

    train: Batch
    test: Batch
    victims: tuple[Batch, ...]
    num_classes: int
    dataset: str
    victim_indices: tuple[tuple[int, ...], ...]
    normalization: str

    def describe(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "train_images": self.train.size,
            "test_images": self.test.size,
            "victim_indices": [list(v) for v in self.victim_indices],
            "victim_labels": [v.labels.tolist() for v in self.victims],
            "image_shape": list(self.train.input_shape),
            "num_classes": self.num_classes,
            "normalization": self.normalization,
        }


def _seeded_subset(n: int, cap: int | None, seed: int) -> np.ndarray:
    if cap is None or cap >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=cap, replace=False))


def load_frontier_data(cfg: FrontierConfig) -> FrontierData:
    """Load ``[data]``, pick the victims' images, hold out or load the test set, cap the sizes."""
    from gradinv.data import check_labels, get_normalization, load_source, select_indices
    from gradinv.models import MODELS

    d, v = cfg.data, cfg.victim
    spec = MODELS.get(cfg.model.name)
    ds = load_source(d.source, download=d.download)
    channels = d.channels or ds.channels
    norm_name = spec.default_normalization if d.normalization == "auto" else d.normalization
    norm = get_normalization(norm_name, channels)
    num_classes = cfg.model.num_classes or ds.num_classes
    per = v.images_per_victim
    victim_idx = select_indices(
        ds.labels,
        num_images=None if v.indices is not None else v.clients * per,
        indices=v.indices,
        seed=v.seed,
        composition=v.composition,
        duplicates=v.duplicates,
    )
    rest = np.setdiff1d(np.arange(len(ds)), np.asarray(victim_idx))
    if d.test_source is not None:
        test_ds: ImageDataset = load_source(d.test_source, download=d.download)
        train_rows = rest
    else:
        perm = np.random.default_rng(d.seed + 1).permutation(rest)
        n_test = max(1, round(d.test_fraction * len(rest)))
        test_ds, train_rows = ds.subset(np.sort(perm[:n_test])), np.sort(perm[n_test:])
    train_rows = train_rows[_seeded_subset(len(train_rows), d.train_images, d.seed)]
    test_rows = _seeded_subset(len(test_ds), d.test_images, d.seed + 2)
    if len(train_rows) == 0:
        raise DataError(f"Expected training images besides the victim's, but {d.source!r} has none left.")
    for labels in (ds.labels[train_rows], test_ds.labels[test_rows], ds.labels[np.asarray(victim_idx)]):
        check_labels(labels, num_classes)

    groups = [victim_idx[k * per : (k + 1) * per] for k in range(v.clients)]

    def batch(source: ImageDataset, rows: Sequence[int] | np.ndarray) -> Batch:
        return source.to_batch(rows, image_size=d.image_size, channels=channels, normalization=norm)

    return FrontierData(
        train=batch(ds, train_rows),
        test=batch(test_ds, test_rows),
        victims=tuple(batch(ds, group) for group in groups),
        num_classes=num_classes,
        dataset=ds.name,
        victim_indices=tuple(tuple(int(i) for i in g) for g in groups),
        normalization=norm.name,
    )


# --------------------------------------------------------------------------------------------------
# One point
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrontierEvent:
    """Progress of :func:`run_frontier`. ``kind``: ``skip`` (point already finished), ``start``,
    ``round`` (a training round finished: ``round_log``), ``attack`` (``step`` of ``steps`` of attack
    ``attack``), ``point`` (the point finished and was written: ``record``)."""

    kind: Literal["skip", "start", "round", "attack", "point"]
    index: int
    total: int
    point: Point
    round_log: RoundLog | None = None
    attack: str = ""
    step: int = 0
    steps: int = 0
    record: Mapping[str, Any] | None = None


ProgressFn = Callable[[FrontierEvent], None]


def _build_model(cfg: FrontierConfig, data: FrontierData) -> torch.nn.Module:
    from gradinv.models import build_model

    c, h, w = data.train.input_shape
    return build_model(
        cfg.model.name,
        num_classes=data.num_classes,
        in_channels=c,
        image_size=(h, w),
        init=cfg.model.init,
        seed=cfg.model.seed,
        checkpoint=cfg.model.checkpoint,
        **dict(cfg.model.options),
    )


def _thumbnail(truth: Tensor, recon: Tensor) -> str:
    from gradinv.report.grid import image_grid

    img = image_grid([truth.cpu(), recon.cpu()], scale=2, max_cols=8)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


@dataclass(frozen=True)
class _VictimAttack:
    """One attack on one victim's update, evaluated."""

    metrics: dict[str, float]
    per_image: dict[str, list[float]]
    unavailable: dict[str, str]
    true_labels: list[int]
    recovered_labels: list[int] | None
    label_method: str
    iterations: int
    seconds: float
    notes: list[str]
    truth_images: Tensor
    matched_images: Tensor


def _attack_victim(
    attack: Attack,
    truth: GroundTruth,
    cfg: FrontierConfig,
    *,
    device: torch.device,
    progress: Callable[[int, int, float], None] | None,
) -> _VictimAttack | str:
    """The evaluated attack on ``truth``'s victim, or the refusal's reason."""
    from gradinv.metrics.evaluate import evaluate
    from gradinv.threat import observe

    view = observe(truth, cfg.threat.resolve())
    problems = attack.check(view)
    if problems:
        return " ".join(problems)
    result = attack.reconstruct(view, progress=progress, device=device)
    if result.interrupted:  # a truncated attack is not a finished point
        raise KeyboardInterrupt
    target = truth.observed_batch()
    ev = evaluate(
        result.reconstruction,
        target,
        matching=cfg.metrics.matching,
        lpips_mode=cfg.metrics.lpips,
        stlpips_mode=cfg.metrics.stlpips,
        lpips_weights=cfg.metrics.lpips_weights,
        stlpips_weights=cfg.metrics.stlpips_weights,
        device=device,
        leakage=tuple(cfg.metrics.leakage),
        psnr_threshold=cfg.metrics.psnr_threshold,
        lpips_threshold=cfg.metrics.lpips_threshold,
    )
    truth_images = target.images.detach().float().cpu()
    metrics = {k: float(m.mean) for k, m in ev.metrics.items()}
    unavailable = dict(ev.unavailable)
    rec = result.reconstruction
    return _VictimAttack(
        metrics=metrics,
        per_image={k: [float(v) for v in m.per_image] for k, m in ev.metrics.items()},
        unavailable=unavailable,
        true_labels=target.labels.cpu().tolist(),
        recovered_labels=rec.labels.cpu().tolist() if rec.labels is not None else None,
        label_method=rec.label_method,
        iterations=result.iterations,
        seconds=result.seconds,
        notes=list(result.notes),
        truth_images=truth_images[ev.matching.truth_index],
        matched_images=ev.matched_images,
    )


def _mean_metrics(runs: Sequence[_VictimAttack]) -> dict[str, float]:
    """Each metric's mean over the victims that have it (NaN values ignored; +inf stays +inf)."""
    names = sorted({k for r in runs for k in r.metrics})
    out = {}
    for k in names:
        vals = [r.metrics[k] for r in runs if k in r.metrics and not math.isnan(r.metrics[k])]
        out[k] = sum(vals) / len(vals) if vals else math.nan
    return out


def _attack_record(
    entry: AttackEntry,
    truths: Sequence[GroundTruth],
    cfg: FrontierConfig,
    *,
    device: torch.device,
    progress: Callable[[int, int, float], None] | None,
) -> dict[str, Any]:
    """Run attack ``entry`` on every victim; metrics are averaged over the victims."""
    attack = entry.build()
    base: dict[str, Any] = {"label": entry.label, "attack": entry.name, "title": attack.title}
    runs: list[_VictimAttack] = []
    for truth in truths:
        run = _attack_victim(attack, truth, cfg, device=device, progress=progress)
        if isinstance(run, str):
            return {**base, "status": "refused", "reason": run}
        runs.append(run)
    unavailable: dict[str, str] = {}
    for r in runs:
        unavailable.update({k: v for k, v in r.unavailable.items() if k not in unavailable})
    out: dict[str, Any] = {
        **base,
        "status": "ok",
        "metrics": _mean_metrics(runs),
        "unavailable": unavailable,
        "victims": [
            {
                "metrics": r.metrics,
                "per_image": r.per_image,
                "true_labels": r.true_labels,
                "recovered_labels": r.recovered_labels,
                "label_method": r.label_method,
                "iterations": r.iterations,
                "seconds": r.seconds,
            }
            for r in runs
        ],
        "seconds": sum(r.seconds for r in runs),
        "notes": runs[0].notes,
        "parameters": attack.config.to_dict(),
    }
    if cfg.frontier.images:
        out["image_png"] = _thumbnail(
            torch.cat([r.truth_images for r in runs]), torch.cat([r.matched_images for r in runs])
        )
    return out


def compute_point(
    cfg: FrontierConfig,
    point: Point,
    data: FrontierData,
    *,
    device: str | torch.device | None = "cpu",
    progress: ProgressFn | None = None,
    index: int = 0,
    total: int = 1,
) -> dict[str, Any]:
    """Train with the point's defense and attack every victim's defended update; the point's record.

    Raises ``KeyboardInterrupt`` when interrupted (also inside an attack), so a half-computed point
    is never recorded."""
    from gradinv.device import resolve_device

    dev = resolve_device(device)
    defenses = point.build_defenses()
    model = _build_model(cfg, data)

    def on_round(log: RoundLog) -> None:
        if progress is not None:
            progress(FrontierEvent("round", index, total, point, round_log=log))

    t0 = time.perf_counter()
    fed = train_federated(
        model,
        data.train,
        data.test,
        cfg.training,
        cfg.fl,
        defenses=defenses,
        victims=[VictimClient(b, round=cfg.victim.round) for b in data.victims],
        progress=on_round,
        device=dev,
    )
    t1 = time.perf_counter()
    truths = fed.victim_truths
    attacks = []
    devices = [dev] if dev.type == "cuda" else []
    for entry in cfg.attacks:

        def on_step(step: int, steps: int, loss: float, _label: str = entry.label) -> None:
            if progress is not None:
                progress(FrontierEvent("attack", index, total, point, attack=_label, step=step, steps=steps))

        with torch.random.fork_rng(devices=devices):  # models that sample (PRECODE) stay reproducible
            torch.manual_seed(cfg.victim.seed)
            attacks.append(_attack_record(entry, truths, cfg, device=dev, progress=on_step))
    t2 = time.perf_counter()
    updates = [t.victim_update for t in truths]
    last = fed.history[-1]
    return {
        "schema": 1,
        "key": point.key,
        "point": point.to_dict(),
        "defense": _defense_info(defenses),
        "accuracy": fed.final_accuracy,
        "accuracy_curve": [[r, a] for r, a in fed.accuracy_curve],
        "train_loss_curve": [h.train_loss for h in fed.history],
        "client_info": dict(last.info),
        "victim": {
            "round": cfg.victim.round,
            "clients": len(updates),
            "num_samples": [u.num_samples for u in updates],
            "local_steps": [u.local_steps for u in updates],
            "update_norm": sum(u.update.norm() for u in updates) / len(updates),
            "info": [dict(u.info) for u in updates],
        },
        "attacks": attacks,
        "seconds": {"training": t1 - t0, "attacks": t2 - t1},
        "data": data.describe(),
        "fingerprint": cfg.fingerprint(),
        "gradinv_version": gradinv.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _defense_info(defenses: Sequence[Defense]) -> dict[str, Any] | None:
    if not defenses:
        return None
    d = defenses[0]
    return {
        "name": d.name,
        "title": d.title,
        "stage": d.stage,
        "paper": d.paper,
        "config": d.config.to_dict(),
    }


# --------------------------------------------------------------------------------------------------
# Storage and the study loop
# --------------------------------------------------------------------------------------------------


def _write_point(points_dir: Path, record: Mapping[str, Any]) -> Path:
    """Write ``record`` to ``points_dir/<key>.json`` atomically (temp file, fsync, rename)."""
    path = points_dir / f"{record['key']}.json"
    tmp = points_dir / f".{record['key']}.{os.getpid()}.tmp"
    text = json.dumps(_jsonable(record), indent=1, allow_nan=False)
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def load_finished_points(out_dir: str | Path, cfg: FrontierConfig) -> tuple[dict[str, dict[str, Any]], int]:
    """The finished points of ``cfg`` found in ``out_dir/points`` (by key), and how many other point
    files (another configuration, or unreadable) were ignored."""
    points_dir = Path(out_dir) / POINTS_DIR
    wanted = {p.key for p in cfg.points()}
    fp = cfg.fingerprint()
    found: dict[str, dict[str, Any]] = {}
    ignored = 0
    if not points_dir.is_dir():
        return found, 0
    for path in sorted(points_dir.glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            logger.warning("ignoring unreadable point file %s: %s", path, e)
            ignored += 1
            continue
        key = record.get("key") if isinstance(record, dict) else None
        if key in wanted and record.get("fingerprint") == fp and path.stem == key:
            found[key] = record
        else:
            ignored += 1
    return found, ignored


@dataclass(frozen=True)
class FrontierResult:
    """The records of every point (in config order), which were computed now, and the outputs."""

    config: FrontierConfig
    records: tuple[Mapping[str, Any], ...]
    computed: tuple[str, ...]
    skipped: tuple[str, ...]
    missing: tuple[str, ...]
    stale: int
    outputs: Mapping[str, Path]

    @property
    def complete(self) -> bool:
        return not self.missing


def run_frontier(
    cfg: FrontierConfig,
    out_dir: str | Path | None = None,
    *,
    progress: ProgressFn | None = None,
    device: str | torch.device | None = None,
    compute: bool = True,
) -> FrontierResult:
    """Compute every missing point of ``cfg`` (each written to ``OUT/points`` as soon as it finishes),
    then write the table (CSV, JSON), the plot (PNG) and the HTML report from all finished points.

    ``compute=False`` only writes the outputs from the points already finished."""
    from gradinv.studies.frontier_report import write_outputs

    out = Path(out_dir or cfg.run.out)
    points_dir = out / POINTS_DIR
    points_dir.mkdir(parents=True, exist_ok=True)
    points = cfg.points()
    finished, stale = load_finished_points(out, cfg)
    if stale:
        logger.warning("%d point file(s) in %s belong to another configuration; ignored", stale, points_dir)
    todo = [p for p in points if p.key not in finished]
    computed: list[str] = []
    if compute and todo:
        data = load_frontier_data(cfg)
        dev = device or cfg.run.device
        for p in points:
            if p.key in finished:
                if progress is not None:
                    progress(FrontierEvent("skip", p.order, len(points), p, record=finished[p.key]))
                continue
            if progress is not None:
                progress(FrontierEvent("start", p.order, len(points), p))
            logger.info("frontier point %d/%d: %s", p.order + 1, len(points), p.describe())
            # module-level lookup on purpose: tests count computations by replacing compute_point
            record = compute_point(
                cfg, p, data, device=dev, progress=progress, index=p.order, total=len(points)
            )
            _write_point(points_dir, record)
            finished[p.key] = record
            computed.append(p.key)
            if progress is not None:
                progress(FrontierEvent("point", p.order, len(points), p, record=record))
    elif progress is not None:
        for p in points:
            if p.key in finished:
                progress(FrontierEvent("skip", p.order, len(points), p, record=finished[p.key]))
    records = tuple(finished[p.key] for p in points if p.key in finished)
    missing = tuple(p.key for p in points if p.key not in finished)
    outputs = write_outputs(cfg, points, records, out) if records else {}
    return FrontierResult(
        config=cfg,
        records=records,
        computed=tuple(computed),
        skipped=tuple(p.key for p in points if p.key in finished and p.key not in computed),
        missing=missing,
        stale=stale,
        outputs=outputs,
    )
