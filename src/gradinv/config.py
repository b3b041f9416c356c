"""Experiment configuration: TOML tables parsed strictly into frozen dataclasses.

Defaults live in the dataclasses; the file only overrides them. Unknown sections or keys are errors
that list the valid ones. Model-specific options (e.g. ``width`` for ``convnet``) and
attack-specific keys (e.g. ``iterations``) are validated against the chosen model and attack when
the file is read, so a typo never surfaces deep inside a run.

A minimal file::

    [data]
    source = "samples"
    num_images = 1
    [model]
    name = "lenet"
    [threat]
    model = "B"
    [attack]
    name = "dlg"
    iterations = 300

An optional ``[pretrain]`` section trains the global model with FedAvg for ``rounds`` rounds before
the attacked round (:class:`PretrainConfig`; default: no training, the model as initialised).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gradinv._checks import check_choice, check_int
from gradinv.errors import ConfigError, did_you_mean
from gradinv.metrics.options import MetricsConfig  # lives with the metrics; re-exported for config users
from gradinv.settings import as_dict, from_mapping
from gradinv.types import TrainingConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "AttackSpec",
    "DataConfig",
    "ExperimentConfig",
    "MetricsConfig",
    "ModelConfig",
    "PretrainConfig",
    "RunConfig",
    "ServerConfig",
    "ThreatConfig",
    "apply_overrides",
    "load_config",
    "parse_config",
]


@dataclass(frozen=True)
class DataConfig:
    """Where the client data comes from and which samples form the victim's batch.

    ``indices`` picks exact rows; otherwise ``num_images`` rows are drawn with ``seed`` and
    ``composition`` (``random``, ``unique`` labels, or ``duplicates`` with ``duplicates`` per class).
    ``normalization`` ``auto`` uses the model's default. ``surrogate_images`` is the size of the
    attacker's surrogate set (drawn from the rest of the source) when the threat model grants it."""

    source: str = "samples"
    indices: tuple[int, ...] | None = None
    num_images: int | None = None
    seed: int = 0
    composition: Literal["random", "unique", "duplicates"] = "random"
    duplicates: int = 2
    image_size: int | None = 32
    channels: int | None = None
    normalization: str = "auto"
    download: bool = False
    surrogate_images: int = 256

    def __post_init__(self) -> None:
        if self.num_images is not None:
            check_int("num_images", self.num_images, minimum=1, fix="Leave it unset for every image.")
        if self.image_size is not None:
            check_int("image_size", self.image_size, minimum=1)
        if self.channels is not None:
            check_int("channels", self.channels, minimum=1, fix="Use 1 (gray) or 3 (RGB).")
        check_int("duplicates", self.duplicates, minimum=1)
        check_int("seed", self.seed, minimum=0, fix="Use a non-negative seed.")
        check_int(
            "surrogate_images",
            self.surrogate_images,
            minimum=0,
            fix="Use 0 for no surrogate data, or the number of surrogate images the attacker holds.",
        )
        check_choice("composition", self.composition, ("random", "unique", "duplicates"))
        if self.indices is not None:
            for i in self.indices:
                check_int("indices", i, minimum=0, fix="Indices are rows of the data source, from 0.")


@dataclass(frozen=True)
class ModelConfig:
    """The global model. Keys other than these are model options (checked by the model)."""

    name: str = "lenet"
    num_classes: int | None = None
    init: str | None = None
    seed: int = 0
    checkpoint: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.num_classes
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 2):
            raise ConfigError(
                f"Expected `num_classes` to be an int >= 2 or unset, but got num_classes = {n!r}. Set "
                "[model] num_classes to the number of classes, or leave it unset to take it from the data."
            )
        check_int("seed", self.seed, minimum=0, fix="Use a non-negative seed.")


@dataclass(frozen=True)
class ServerConfig:
    """The round's clients and aggregation. Client ``victim`` holds the selected batch; the others
    hold ``images_per_client`` other images each (default: as many as the victim).
    ``aggregation_options`` are passed to the aggregator (e.g. secure aggregation's parameters)."""

    num_clients: int = 1
    aggregation: str = "mean"
    victim: int = 0
    images_per_client: int | None = None
    aggregation_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_int("num_clients", self.num_clients, minimum=1)
        check_int("victim", self.victim, minimum=0, fix="Client ids start at 0.")
        if self.images_per_client is not None:
            check_int(
                "images_per_client",
                self.images_per_client,
                minimum=1,
                fix="Leave it unset to give every client as many images as the victim.",
            )
        if not 0 <= self.victim < self.num_clients:
            raise ConfigError(
                f"Expected `victim` in [0, {self.num_clients}), but got {self.victim}. Client ids start at 0."
            )


@dataclass(frozen=True)
class ThreatConfig:
    """Threat model A–H, optionally with flags granted or revoked (e.g. grant = ["labels"])."""

    model: str = "B"
    grant: tuple[str, ...] = ()
    revoke: tuple[str, ...] = ()

    def resolve(self) -> Any:
        from gradinv.threat import get_threat_model

        spec = self.model + "".join(f"+{g}" for g in self.grant) + "".join(f"-{r}" for r in self.revoke)
        return get_threat_model(spec)


@dataclass(frozen=True)
class AttackSpec:
    """The attack's registered name and its parameters (validated against its config class)."""

    name: str = "inverting-gradients"
    params: Mapping[str, Any] = field(default_factory=dict)

    def build(self) -> Any:
        from gradinv.attacks import create_attack

        return create_attack(self.name, **dict(self.params))


@dataclass(frozen=True)
class DefenseSpec:
    """One client-side defense: its registered name and parameters (validated by its config)."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def build(self) -> Any:
        from gradinv.defenses import create_defense

        return create_defense(self.name, **dict(self.params))


@dataclass(frozen=True)
class PretrainConfig:
    """FedAvg training of the global model before the attacked round (default: none).

    ``rounds`` = 0 attacks the model as initialised; R > 0 first trains R rounds of FedAvg
    (:func:`gradinv.fl.training.train_federated`), so the attacked round is round R. ``clients``
    training clients hold ``images_per_client`` rows each on average (``split`` ``iid``: exactly;
    ``dirichlet``: label-skewed with ``alpha``), ``clients_per_round`` of them (default: all) train
    in each round with the experiment's ``[training]`` (FedSGD: one gradient over each client's
    samples) through the experiment's honest server. ``test_images`` held-out rows measure the
    test accuracy (0: no test) every ``eval_every`` rounds and after the last. With ``defended``
    the client-side ``[[defenses]]`` run on every training client too (model-stage ones, such as
    PRECODE, shape the model itself and so always apply). Every row comes from ``[data] source``,
    disjoint from the attacked round's clients and from each other; rows, split, clients per round
    and the clients' private randomness derive from ``seed``, so for the same seeds the model after
    R rounds is the model a longer training has after its first R rounds. ``total_rounds`` (default:
    ``rounds``) lets the training run on past the attacked round: the attacked model is still the one
    after ``rounds`` rounds, and the final accuracy (``final_accuracy``) is measured after
    ``total_rounds`` — the utility of a defense that stays on for the whole training, next to the
    leakage of an early round (the privacy–utility frontier)."""

    rounds: int = 0
    clients: int = 10
    clients_per_round: int | None = None
    images_per_client: int = 32
    split: Literal["iid", "dirichlet"] = "iid"
    alpha: float = 0.5
    test_images: int = 0
    defended: bool = True
    seed: int = 0
    eval_every: int = 1
    total_rounds: int | None = None

    def __post_init__(self) -> None:
        check_int("rounds", self.rounds, minimum=0, fix="Use 0 to attack the model as initialised.")
        if self.total_rounds is not None:
            check_int(
                "total_rounds",
                self.total_rounds,
                minimum=self.rounds,
                fix="It counts every training round, the attacked round's `rounds` included; leave it "
                "unset to stop at the attacked round.",
            )
        check_int("clients", self.clients, minimum=1)
        if self.clients_per_round is not None:
            check_int(
                "clients_per_round",
                self.clients_per_round,
                minimum=1,
                maximum=self.clients,
                fix="Leave it unset for every client in every round, or raise `clients`.",
            )
        check_int("images_per_client", self.images_per_client, minimum=1)
        check_choice("split", self.split, ("iid", "dirichlet"))
        if not (isinstance(self.alpha, (int, float)) and math.isfinite(self.alpha) and self.alpha > 0):
            raise ConfigError(
                f"Expected `alpha` to be a finite number > 0, but got {self.alpha!r}. "
                "Smaller values give more label-skewed clients (e.g. 0.5)."
            )
        check_int("test_images", self.test_images, minimum=0, fix="Use 0 for no test set.")
        check_int("seed", self.seed, minimum=0, fix="Use a non-negative seed.")
        check_int("eval_every", self.eval_every, minimum=1)

    @property
    def training_rounds(self) -> int:
        """How many rounds the training runs: ``total_rounds``, else ``rounds``."""
        return self.rounds if self.total_rounds is None else self.total_rounds

    @property
    def train_images(self) -> int:
        """The training clients' rows in all (none without rounds)."""
        return self.clients * self.images_per_client if self.training_rounds > 0 else 0


@dataclass(frozen=True)
class RunConfig:
    device: str = "auto"
    out: str = "gradinv-out"


@dataclass(frozen=True)
class ExperimentConfig:
    """One attack experiment: scenario, threat model, attack, metrics."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    threat: ThreatConfig = field(default_factory=ThreatConfig)
    attack: AttackSpec = field(default_factory=AttackSpec)
    defenses: tuple[DefenseSpec, ...] = ()
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    run: RunConfig = field(default_factory=RunConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return as_dict(self)


_SECTIONS = {
    "data": DataConfig,
    "training": TrainingConfig,
    "server": ServerConfig,
    "threat": ThreatConfig,
    "metrics": MetricsConfig,
    "run": RunConfig,
    "pretrain": PretrainConfig,
}
_ALL_SECTIONS = (*_SECTIONS, "model", "attack", "defenses")


def _model_section(table: Mapping[str, Any]) -> ModelConfig:
    from gradinv.models import MODELS

    known = {f.name for f in dataclasses.fields(ModelConfig)} - {"options"}
    base = {k: v for k, v in table.items() if k in known}
    options = {k: v for k, v in table.items() if k not in known}
    cfg = from_mapping(ModelConfig, {**base, "options": options}, section="model")
    spec = MODELS.get(cfg.name)
    for key in options:
        if key not in spec.options:
            valid = sorted(known | set(spec.options))
            raise ConfigError(
                f"Unknown key {key!r} in [model] for model {cfg.name!r}.{did_you_mean(key, valid)} "
                f"Valid keys: {', '.join(valid)}."
            )
    return cfg


def _attack_section(table: Mapping[str, Any]) -> AttackSpec:
    from gradinv.attacks import ATTACKS

    table = dict(table)
    name = table.pop("name", AttackSpec.name)
    if not isinstance(name, str):
        raise ConfigError(f"Expected `name` in [attack] to be a string, but got {name!r}.")
    cls = ATTACKS.get(name)
    from_mapping(cls.config_cls, table, section="attack", context=f"for attack {cls.name!r}")  # early check
    return AttackSpec(name=cls.name, params=table)


def _defenses_section(items: Any) -> tuple[DefenseSpec, ...]:
    from gradinv.defenses import DEFENSES

    if isinstance(items, Mapping):
        items = [items]
    if not isinstance(items, (list, tuple)):
        raise ConfigError(
            f"Expected [[defenses]] to be an array of tables (each with a `name`), but got {items!r}."
        )
    specs = []
    for i, table in enumerate(items):
        if not isinstance(table, Mapping) or "name" not in table:
            raise ConfigError(
                f"Expected [[defenses]] entry {i} to be a table with a `name`, but got {table!r}."
            )
        params = {k: v for k, v in table.items() if k != "name"}
        cls = DEFENSES.get(str(table["name"]))
        from_mapping(cls.config_cls, params, section="defenses", context=f"for defense {cls.name!r}")
        specs.append(DefenseSpec(cls.name, params))
    return tuple(specs)


def check_sections(data: Mapping[str, Any], sections: Sequence[str], *, arrays: Sequence[str] = ()) -> None:
    """Every top-level key of a config document is a known section; a section is a table, except
    those in ``arrays`` (arrays of tables such as ``[[defenses]]``)."""
    for section, value in data.items():
        if section not in sections:
            raise ConfigError(
                f"Unknown section [{section}].{did_you_mean(section, sections)} "
                f"Valid sections: {', '.join(f'[{s}]' for s in sections)}."
            )
        if section not in arrays and not isinstance(value, Mapping):
            raise ConfigError(f"Expected [{section}] to be a table of keys, but got {value!r}.")


def read_toml(path: str | Path) -> dict[str, Any]:
    """The parsed TOML document at ``path`` (a clear error for a missing file or invalid TOML)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"Expected a TOML config file at {str(p)!r}, but there is none.")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"Expected valid TOML in {str(p)!r}, but parsing failed: {e}.") from None


def parse_config(data: Mapping[str, Any]) -> ExperimentConfig:
    """Build an :class:`ExperimentConfig` from nested mappings (a parsed TOML document)."""
    check_sections(data, _ALL_SECTIONS, arrays=("defenses",))
    kwargs: dict[str, Any] = {
        name: from_mapping(cls, data.get(name, {}), section=name) for name, cls in _SECTIONS.items()
    }
    kwargs["model"] = _model_section(data.get("model", {}))
    kwargs["attack"] = _attack_section(data.get("attack", {}))
    kwargs["defenses"] = _defenses_section(data.get("defenses", []))
    return ExperimentConfig(**kwargs)


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate a TOML experiment file."""
    return parse_config(read_toml(path))


def to_nested(cfg: ExperimentConfig) -> dict[str, Any]:
    """The inverse of :func:`parse_config` (model options and attack params flattened back).

    ``[pretrain]`` is left out while it is the default (no pretraining), so a config without it
    nests (and hashes, e.g. a study trial's key) as it did before the section existed."""
    d = cfg.to_dict()
    if cfg.pretrain == PretrainConfig():
        d.pop("pretrain")
    model = d["model"]
    model.update(model.pop("options"))
    attack = d["attack"]
    attack.update(attack.pop("params"))
    defenses = [{"name": x["name"], **x["params"]} for x in d.pop("defenses")]
    out: dict[str, Any] = {k: {kk: vv for kk, vv in v.items() if vv is not None} for k, v in d.items()}
    if defenses:
        out["defenses"] = defenses
    return out


def apply_overrides(cfg: ExperimentConfig, overrides: Mapping[str, Any]) -> ExperimentConfig:
    """Set ``section.key`` values (from CLI flags) and re-validate the whole config."""
    nested = to_nested(cfg)
    for dotted, value in overrides.items():
        if value is None:
            continue
        if dotted == "defenses":
            nested["defenses"] = value
            continue
        if "." not in dotted:
            raise ConfigError(f"Expected an override of the form section.key=value, but got {dotted!r}.")
        section, key = dotted.split(".", 1)
        if section == "attack" and key == "name" and value != nested["attack"].get("name"):
            nested["attack"] = {"name": value}  # another attack: drop the old attack's parameters
            continue
        if section == "model" and key == "name" and value != nested["model"].get("name"):
            keep = {"num_classes", "seed", "init"}
            nested["model"] = {k: v for k, v in nested["model"].items() if k in keep}
        nested.setdefault(section, {})[key] = value
    return parse_config(nested)
