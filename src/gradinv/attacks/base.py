"""The attack protocol and the attack registry.

An attack declares class-level metadata (``name``, ``family``, ``paper``), a frozen config dataclass,
and the threat-model knowledge it needs (:meth:`Attack.requirements`). :meth:`Attack.reconstruct`
refuses to run when the view's threat model does not grant that knowledge, naming what is missing and
the weakest threat model granting it. Active attacks also implement :meth:`Attack.craft` (the model
the server sends).

An attack whose paper's attacker assumes a fact instead of knowing it (DLG and iDLG assume the batch
size and unnormalised inputs) declares that in :attr:`Attack.assumptions` and fills the view in
:meth:`Attack.assume` (:class:`AssumptionsConfig` holds the assumed values); the view's ``facts``
then mark those fields *assumed*, and every fact that was not granted is added to the result's notes.

Adding an attack touches its module, one ``@register_attack`` line, one row in the contract test,
and the docs.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from gradinv.data.normalization import NORMALIZATIONS, get_normalization
from gradinv.device import resolve_device
from gradinv.errors import AttackRefused, ConfigError, did_you_mean
from gradinv.registry import Registry
from gradinv.settings import as_dict, from_mapping
from gradinv.threat import Fact, Knowledge, Requirement, Source, ThreatModel, check_requirements
from gradinv.types import AttackerView, AttackResult, CraftView

__all__ = [
    "ATTACKS",
    "AssumptionsConfig",
    "Attack",
    "AttackConfig",
    "ProgressFn",
    "assume_basics",
    "create_attack",
    "register_attack",
    "view_notes",
]


#: ``progress(step, total, best_loss)`` — called by long-running attacks; the CLI draws a bar.
ProgressFn = Callable[[int, int, float], None]

UPDATES_NEEDED = Requirement(Knowledge.MODEL_UPDATES, "it inverts the shared update of the global model")
ACTIVE_NEEDED = Requirement(Knowledge.ACTIVE_MANIPULATION, "it crafts the model the server sends")
BASIC_NEEDED = Requirement(
    Knowledge.BASIC_KNOWLEDGE,
    "it optimises a dummy batch of the client's size and input shape in the model's input space",
)
LABELS_NEEDED = Requirement(Knowledge.LABELS, "the config asks for the true labels (labels = 'known')")


@dataclass(frozen=True)
class AttackConfig:
    """Base class of attack configs (frozen dataclasses validated in ``__post_init__``).

    Every number of a config must be finite: ``inf`` or ``nan`` is refused here, when the config is
    built, rather than turning into a NaN reconstruction later. Subclasses check their ranges in their
    own ``__post_init__`` after calling this one."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            for v in value if isinstance(value, (tuple, list)) else (value,):
                if isinstance(v, float) and not math.isfinite(v):
                    raise ConfigError(
                        f"Expected `{f.name}` to be a finite number, but got {v}. "
                        "Give a finite value; inf and nan are never valid attack options."
                    )

    def to_dict(self) -> dict[str, Any]:
        return as_dict(self)


@dataclass(frozen=True)
class AssumptionsConfig(AttackConfig):
    """What an attack assumes where the threat model does not grant basic knowledge
    (:func:`assume_basics`); a granted value always wins.

    ``assumed_batch_size``: the number of samples behind the update (default 1, DLG's and iDLG's
    B = 1). ``assumed_normalization``: the input normalisation, a preset name of
    :data:`gradinv.data.NORMALIZATIONS` (default ``"none"``: unnormalised inputs in [0, 1], as in DLG
    and iDLG). ``assumed_input_shape``: ``[C, H, W]``, used when the input shape is not granted
    (instead of what the model suggests; needed when the model does not determine it, e.g. under
    global pooling)."""

    assumed_batch_size: int = 1
    assumed_normalization: str = "none"
    assumed_input_shape: tuple[int, int, int] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.assumed_batch_size < 1:
            raise ConfigError(f"Expected `assumed_batch_size` >= 1, but got {self.assumed_batch_size}.")
        name = self.assumed_normalization
        if name.strip().lower() not in NORMALIZATIONS:
            raise ConfigError(
                f"Expected `assumed_normalization` to be one of {', '.join(NORMALIZATIONS)}, but got "
                f"{name!r}.{did_you_mean(name, list(NORMALIZATIONS))}"
            )
        shape = self.assumed_input_shape
        if shape is not None and (len(shape) != 3 or any(v < 1 for v in shape)):
            raise ConfigError(
                f"Expected `assumed_input_shape` as [C, H, W] of positive ints, but got {list(shape)}. "
                "Use e.g. assumed_input_shape = [3, 32, 32]."
            )


def assume_basics(view: AttackerView, cfg: AssumptionsConfig, *, attack: str, why_batch: str) -> AttackerView:
    """``view`` with the basic-knowledge fields the threat model does not grant filled in from ``cfg``
    (the number of samples, the normalisation and, where configured, the input shape), each marked
    *assumed* in ``view.facts``; granted fields are kept. ``why_batch`` says where the assumed batch
    size comes from (e.g. "DLG's B = 1"). Raises :class:`AttackRefused` when the input shape is
    neither granted, nor determined by the model, nor configured."""
    granted = view.threat.allows(Knowledge.BASIC_KNOWLEDGE)
    if granted:
        return view
    facts = {f.field: f for f in view.facts}
    changes: dict[str, Any] = {}
    if view.num_samples is None:
        b = cfg.assumed_batch_size
        changes["num_samples"] = b
        default = b == AssumptionsConfig.assumed_batch_size
        why = why_batch if default else f"configured: assumed_batch_size = {b}"
        facts["num_samples"] = Fact("num_samples", Source.ASSUMED, f"B = {b}, {why}")
    shape = view.input_shape
    if cfg.assumed_input_shape is not None:
        fixed = facts.get("input_shape")
        if fixed is not None and fixed.source is Source.MODEL and shape != tuple(cfg.assumed_input_shape):
            raise AttackRefused(
                f"{attack} was configured with assumed_input_shape = {list(cfg.assumed_input_shape)}, but "
                f"the model only accepts {list(shape or ())} ({fixed.detail}). Remove the option or fix it."
            )
        shape = tuple(cfg.assumed_input_shape)  # type: ignore[assignment]
        changes["input_shape"] = shape
        facts["input_shape"] = Fact(
            "input_shape",
            Source.ASSUMED,
            f"configured: assumed_input_shape = {list(cfg.assumed_input_shape)}",
        )
    if shape is None:
        reason = facts["input_shape"].detail if "input_shape" in facts else "not recorded"
        raise AttackRefused(
            f"{attack} requires the input shape, which threat model {view.threat.id} ({view.threat.name}) "
            f"does not grant and the model does not reveal ({reason}). Set the attack option "
            "assumed_input_shape = [C, H, W], or use threat model B (Informed Eavesdropper), which "
            "grants basic knowledge."
        )
    if view.num_classes is None:
        reason = facts["num_classes"].detail if "num_classes" in facts else "not recorded"
        raise AttackRefused(
            f"{attack} requires the label space, which threat model {view.threat.id} ({view.threat.name}) "
            f"does not grant and the model does not reveal ({reason}). Use threat model B (Informed "
            "Eavesdropper), which grants basic knowledge."
        )
    if view.normalization is None:
        name = cfg.assumed_normalization.strip().lower()
        changes["normalization"] = get_normalization(name, channels=shape[0])
        how = (
            "unnormalised inputs in [0, 1]"
            if name == "none"
            else f"configured: assumed_normalization = {name!r}"
        )
        facts["normalization"] = Fact("normalization", Source.ASSUMED, f"{name}: {how}")
    if not changes:
        return view
    return dataclasses.replace(view, facts=tuple(facts.values()), **changes)


def view_notes(view: AttackerView) -> tuple[str, ...]:
    """One note per fact of ``view`` that was not granted (inferred from the model or assumed), for
    the result: what the attack did not know but read or assumed."""
    return tuple(f.describe() for f in view.facts if f.source in (Source.MODEL, Source.ASSUMED))


class Attack(ABC):
    """Base class of all attacks."""

    name: ClassVar[str]
    title: ClassVar[str]
    family: ClassVar[str]  # "optimization", "analytic", "malicious-server", "generative"
    paper: ClassVar[str]
    config_cls: ClassVar[type[AttackConfig]]
    base_requirements: ClassVar[tuple[Requirement, ...]] = (UPDATES_NEEDED,)
    active: ClassVar[bool] = False
    #: what the reconstruction is scored against: the samples behind what the server observes
    #: ("observed": the victim's batch, or every client's under secure aggregation) or only the
    #: victim's batch ("victim": attacks that isolate one client's update from an aggregate)
    target: ClassVar[str] = "observed"
    #: what the attack assumes in place of knowledge its threat model may not grant (for ``gradinv
    #: list`` and the catalog); :meth:`assume` applies it
    assumptions: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: AttackConfig | None = None, **params: Any) -> None:
        if config is not None and params:
            raise ConfigError("Pass either a config object or keyword parameters, not both.")
        if config is None:
            config = from_mapping(self.config_cls, params, section="attack")
        elif not isinstance(config, self.config_cls):
            raise ConfigError(
                f"Expected a {self.config_cls.__name__} for attack {self.name!r}, "
                f"but got {type(config).__name__}."
            )
        self.config = config

    # -- threat model ------------------------------------------------------------------------------
    def requirements(self) -> tuple[Requirement, ...]:
        """What the attack needs from the threat model (may depend on the config)."""
        return self.base_requirements

    def check_view(self, view: AttackerView) -> list[str]:
        """Structural problems beyond the threat model (e.g. a missing layer). Empty if fine."""
        return []

    def assume(self, view: AttackerView) -> AttackerView:
        """``view`` completed with what the attack assumes (:attr:`assumptions`), the assumed fields
        marked in ``view.facts``; :class:`AttackRefused` when an assumption cannot be made. Default:
        the view unchanged."""
        return view

    def check(self, view: AttackerView) -> list[str]:
        """Every reason this attack cannot run on ``view`` (empty: it can)."""
        problems = check_requirements(self.title, self.requirements(), view.threat)
        if problems:
            return problems
        try:
            view = self.assume(view)
        except AttackRefused as err:
            return [str(err)]
        return self.check_view(view)

    # -- active attacks ----------------------------------------------------------------------------
    def craft(self, knowledge: CraftView) -> tuple[nn.Module, ...]:
        """The models a malicious server sends, one per client (active attacks only). Called before
        the round with what the threat model lets the server know; the victim's model is the one
        the attack later sees in ``AttackerView.model``."""
        raise AttackRefused(f"{self.title} is a passive attack; it does not craft models.")

    def sybil_clients(self, knowledge: CraftView) -> tuple[int, ...]:
        """Client ids the server controls in this round (sybil devices; Boenisch et al., "Reconstructing
        Individual Data Points in Federated Learning Hardened with Differential Privacy and Secure
        Aggregation", EuroS&P 2023). Called right after :meth:`craft`. Each such client takes part in
        the protocol but sends a zero update the server knows and adds no distributed-DP noise
        (:class:`gradinv.fl.secure_aggregation.SybilClient`). Default: none."""
        return ()

    def check_threat(self, threat: ThreatModel) -> list[str]:
        """Threat-model problems alone (used before crafting, when no view exists yet)."""
        return check_requirements(self.title, self.requirements(), threat)

    # -- running -----------------------------------------------------------------------------------
    def reconstruct(
        self,
        view: AttackerView,
        *,
        progress: ProgressFn | None = None,
        device: str | torch.device | None = "auto",
    ) -> AttackResult:
        """Reconstruct the client's data from ``view``. Ctrl-C returns the best result so far
        (``interrupted=True``). The result's notes end with every fact of the view the threat model
        did not grant but the attack read off the model or assumed (:func:`view_notes`)."""
        problems = check_requirements(self.title, self.requirements(), view.threat)
        if problems:
            raise AttackRefused(" ".join(problems))
        view = self.assume(view)
        problems = self.check_view(view)
        if problems:
            raise AttackRefused(" ".join(problems))
        result = self._reconstruct(view, progress=progress, device=resolve_device(device))
        notes = tuple(n for n in view_notes(view) if n not in result.notes)
        return dataclasses.replace(result, notes=(*result.notes, *notes)) if notes else result

    @abstractmethod
    def _reconstruct(
        self, view: AttackerView, *, progress: ProgressFn | None, device: torch.device
    ) -> AttackResult: ...

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """Metadata for ``gradinv list`` and reports."""
        return {
            "name": cls.name,
            "title": cls.title,
            "family": cls.family,
            "paper": cls.paper,
            "active": cls.active,
            "requires": [r.knowledge.value for r in cls.base_requirements],
            "assumes": list(cls.assumptions),
        }


ATTACKS: Registry[type[Attack]] = Registry("attack")


def register_attack(cls: type[Attack]) -> type[Attack]:
    """Class decorator adding an attack to :data:`ATTACKS` under ``cls.name``."""
    return ATTACKS.register(cls.name)(cls)


def create_attack(name: str, **params: Any) -> Attack:
    """Instantiate a registered attack from keyword parameters (validated against its config)."""
    return ATTACKS.get(name)(**params)
