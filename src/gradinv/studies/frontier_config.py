"""Configuration of the privacy–utility frontier study (:mod:`gradinv.studies.frontier`): the strict
TOML schema, the points (defense, strength) it spans and their keys.

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

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from gradinv.config import MetricsConfig, ModelConfig, RunConfig, ThreatConfig
from gradinv.errors import ConfigError, did_you_mean
from gradinv.fl.training import FederatedConfig
from gradinv.settings import as_dict, from_mapping
from gradinv.types import TrainingConfig

if TYPE_CHECKING:  # pragma: no cover
    from gradinv.attacks.base import Attack
    from gradinv.defenses.base import Defense

__all__ = [
    "LEAKAGE_METRICS",
    "SECTIONS",
    "AttackEntry",
    "DefenseSweep",
    "FrontierConfig",
    "FrontierDataConfig",
    "FrontierOptions",
    "Point",
    "VictimConfig",
    "jsonable",
    "load_frontier_config",
    "parse_frontier_config",
]


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
        from gradinv.attacks import ATTACKS
        from gradinv.fl import AGGREGATORS

        pooled = [a.label for a in self.attacks if ATTACKS.get(a.name).target != "victim"]
        if not AGGREGATORS.get(self.fl.aggregation).reveals_individual and pooled:
            raise ConfigError(
                f"Expected an aggregation that lets the server read the victim's update, but "
                f"{self.fl.aggregation!r} reveals only the aggregate, and attacks {pooled} would be scored "
                "against every client's images. The frontier measures leakage of one client's update; use "
                "aggregation = 'mean', or attacks that isolate the victim (e.g. inconsistent-models)."
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
    text = json.dumps(jsonable(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=_-]+", "_", text).strip("_")[:60] or "point"


def jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON values (tensors, tuples, dataclasses converted)."""
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
    from gradinv.config import _model_section, check_sections

    check_sections(data, SECTIONS, arrays=("attacks", "defenses"))
    training = {"protocol": "fedavg", **dict(data.get("training", {}))}
    if training["protocol"] == "fedavg":  # FedSGD's batch is the client's whole data
        training.setdefault("batch_size", 32)
    kwargs: dict[str, Any] = {
        "data": from_mapping(FrontierDataConfig, data.get("data"), section="data"),
        "model": _model_section(data.get("model", {})),
        "training": from_mapping(TrainingConfig, training, section="training"),
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
    from gradinv.config import read_toml

    data = read_toml(path)
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
