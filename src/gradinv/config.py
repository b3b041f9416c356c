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
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gradinv.errors import ConfigError, did_you_mean
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
        if self.num_images is not None and self.num_images < 1:
            raise ConfigError(f"Expected `num_images` >= 1, but got {self.num_images}.")
        if self.image_size is not None and self.image_size < 1:
            raise ConfigError(f"Expected `image_size` >= 1, but got {self.image_size}.")
        if self.duplicates < 1:
            raise ConfigError(f"Expected `duplicates` >= 1, but got {self.duplicates}.")


@dataclass(frozen=True)
class ModelConfig:
    """The global model. Keys other than these are model options (checked by the model)."""

    name: str = "lenet"
    num_classes: int | None = None
    init: str | None = None
    seed: int = 0
    checkpoint: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


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
        if self.num_clients < 1:
            raise ConfigError(f"Expected `num_clients` >= 1, but got {self.num_clients}.")
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
class MetricsConfig:
    """Scoring. ``lpips``: ``auto`` computes official LPIPS when its AlexNet weights are present and
    reports it as unavailable (with the reason) otherwise; ``on`` makes missing weights an error.
    ``stlpips`` likewise for ST-LPIPS (a different metric, always labelled ST-LPIPS).

    ``leakage`` lists the BRR/WSRR variants (``lpips`` is the paper's test: PSNR > ``psnr_threshold``
    and LPIPS < ``lpips_threshold``; ``stlpips`` and ``psnr`` are labelled variants). ``iip`` scores
    image identifiability against up to ``iip_candidates`` other images of the data source;
    ``rdlv`` scores the relative data leakage value against the ``rdlv_prior`` image."""

    matching: Literal["mse", "psnr", "ssim"] = "mse"
    lpips: Literal["auto", "on", "off"] = "auto"
    stlpips: Literal["auto", "on", "off"] = "auto"
    lpips_weights: str | None = None
    stlpips_weights: str | None = None
    leakage: tuple[str, ...] = ("lpips",)
    psnr_threshold: float = 18.0
    lpips_threshold: float = 0.1
    iip: bool = False
    iip_distance: Literal["mse", "lpips", "stlpips"] = "mse"
    iip_candidates: int = 1000
    rdlv: bool = False
    rdlv_prior: Literal["mean", "gray"] = "mean"


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

    def to_dict(self) -> dict[str, Any]:
        return as_dict(self)


_SECTIONS = {
    "data": DataConfig,
    "training": TrainingConfig,
    "server": ServerConfig,
    "threat": ThreatConfig,
    "metrics": MetricsConfig,
    "run": RunConfig,
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


def parse_config(data: Mapping[str, Any]) -> ExperimentConfig:
    """Build an :class:`ExperimentConfig` from nested mappings (a parsed TOML document)."""
    for section, value in data.items():
        if section not in _ALL_SECTIONS:
            raise ConfigError(
                f"Unknown section [{section}].{did_you_mean(section, _ALL_SECTIONS)} "
                f"Valid sections: {', '.join(f'[{s}]' for s in _ALL_SECTIONS)}."
            )
        if section != "defenses" and not isinstance(value, Mapping):
            raise ConfigError(f"Expected [{section}] to be a table of keys, but got {value!r}.")
    kwargs: dict[str, Any] = {
        name: from_mapping(cls, data.get(name, {}), section=name) for name, cls in _SECTIONS.items()
    }
    kwargs["model"] = _model_section(data.get("model", {}))
    kwargs["attack"] = _attack_section(data.get("attack", {}))
    kwargs["defenses"] = _defenses_section(data.get("defenses", []))
    return ExperimentConfig(**kwargs)


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate a TOML experiment file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"Expected a TOML config file at {str(p)!r}, but there is none.")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"Expected valid TOML in {str(p)!r}, but parsing failed: {e}.") from None
    return parse_config(data)


def to_nested(cfg: ExperimentConfig) -> dict[str, Any]:
    """The inverse of :func:`parse_config` (model options and attack params flattened back)."""
    d = cfg.to_dict()
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
