"""The attack protocol and the attack registry.

An attack declares class-level metadata (``name``, ``family``, ``paper``), a frozen config dataclass,
and the threat-model knowledge it needs (:meth:`Attack.requirements`). :meth:`Attack.reconstruct`
refuses to run when the view's threat model does not grant that knowledge, naming what is missing and
the weakest threat model granting it. Active attacks also implement :meth:`Attack.craft` (the model
the server sends).

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

from gradinv.device import resolve_device
from gradinv.errors import AttackRefused, ConfigError
from gradinv.registry import Registry
from gradinv.settings import as_dict, from_mapping
from gradinv.threat import Knowledge, Requirement, ThreatModel, check_requirements
from gradinv.types import AttackerView, AttackResult, CraftView

__all__ = [
    "ATTACKS",
    "Attack",
    "AttackConfig",
    "ProgressFn",
    "create_attack",
    "register_attack",
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

    def check(self, view: AttackerView) -> list[str]:
        """Every reason this attack cannot run on ``view`` (empty: it can)."""
        problems = check_requirements(self.title, self.requirements(), view.threat)
        return problems or self.check_view(view)

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
        (``interrupted=True``)."""
        problems = self.check(view)
        if problems:
            raise AttackRefused(" ".join(problems))
        return self._reconstruct(view, progress=progress, device=resolve_device(device))

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
        }


ATTACKS: Registry[type[Attack]] = Registry("attack")


def register_attack(cls: type[Attack]) -> type[Attack]:
    """Class decorator adding an attack to :data:`ATTACKS` under ``cls.name``."""
    return ATTACKS.register(cls.name)(cls)


def create_attack(name: str, **params: Any) -> Attack:
    """Instantiate a registered attack from keyword parameters (validated against its config)."""
    return ATTACKS.get(name)(**params)
