"""Sybil isolation under distributed differential privacy and secure aggregation.

Boenisch, Dziedzic, Schuster, Shamsabadi, Shumailov, Papernot, "Reconstructing Individual Data Points
in Federated Learning Hardened with Differential Privacy and Secure Aggregation", IEEE EuroS&P 2023.

With distributed DP each of the M clients of a round adds ``N(0, sigma^2 / M)`` to its update so that
the securely aggregated sum carries ``N(0, sigma^2)``: no single client adds enough noise to protect
itself, and the guarantee relies on the other M - 1 being honest. A server that picks the round's
participants fills the M - 1 other seats with its own sybil devices. They run the protocol (their
masks are needed for the victim's to cancel) but send updates the server knows — zeros here — and
add no noise. The aggregate is then the victim's update plus only the victim's own noise share,
``N(0, sigma^2 / M)``: M times less noise variance than the DP analysis assumes, and no other client's
data to mix with. A passive ``inner`` attack then runs on the isolated update (``auto``: the FC bias
trick when the model starts with a biased Linear layer, else inverting-gradients).

Mechanism in gradinv: :meth:`Attack.sybil_clients` names the sybils; ``experiment.simulate`` gives them
:class:`gradinv.fl.secure_aggregation.SybilClient` hooks (zero update, flagged so that secure
aggregation adds no noise for them). ``sybils`` < M - 1 leaves honest clients in the round (their
updates and noise stay in the aggregate).

Deviation: the paper combines the sybils with trap weights sent to the victim to separate the data
points of a batch; here the victim trains the real model and separation is left to the inner attack
(exact for the FC bias trick at B = 1). The measured effect (reconstruction quality against sigma,
with and without sybils) is in ``docs/server_side.md``.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from gradinv.attacks.base import UPDATES_NEEDED, AttackConfig, register_attack
from gradinv.attacks.inconsistent_models import ISOLATION_BASIC, IsolationAttack, IsolationPlan
from gradinv.errors import ConfigError
from gradinv.threat import Knowledge, Requirement
from gradinv.types import AttackerView, CraftView

__all__ = ["SybilDDP", "SybilDDPConfig", "choose_sybils"]

logger = logging.getLogger(__name__)


def choose_sybils(num_clients: int, victim: int, count: int | None = None) -> tuple[int, ...]:
    """The first ``count`` client ids other than ``victim`` (all of them by default).

    >>> choose_sybils(4, 1), choose_sybils(4, 1, 2)
    ((0, 2, 3), (0, 2))
    """
    others = tuple(k for k in range(num_clients) if k != victim)
    return others if count is None else others[:count]


@dataclass(frozen=True)
class SybilDDPConfig(AttackConfig):
    """``sybils``: how many of the victim's co-participants the server controls (default: all M - 1);
    ``inner`` / ``inner_options``: the passive attack run on the isolated update."""

    sybils: int | None = None
    inner: str = "auto"
    inner_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sybils is not None and self.sybils < 0:
            raise ConfigError(
                f"Expected `sybils` >= 0 (or unset for all other clients), but got {self.sybils}."
            )


@register_attack
class SybilDDP(IsolationAttack):
    """Fill the round with sybil devices that send known (zero) updates and no DP noise."""

    name = "sybil-ddp"
    title = "Sybil isolation under DDP"
    paper = (
        "Boenisch, Dziedzic, Schuster, Shamsabadi, Shumailov, Papernot. Reconstructing Individual Data "
        "Points in Federated Learning Hardened with Differential Privacy and Secure Aggregation. "
        "IEEE EuroS&P 2023"
    )
    config_cls = SybilDDPConfig
    config: SybilDDPConfig
    base_requirements = (
        UPDATES_NEEDED,
        Requirement(Knowledge.ACTIVE_MANIPULATION, "its sybil devices send updates the server chose"),
        Requirement(Knowledge.CLIENT_SELECTION, "it fills the victim's round with its own sybil devices"),
        ISOLATION_BASIC,
    )

    def craft(self, knowledge: CraftView) -> tuple[nn.Module, ...]:
        sybils = choose_sybils(knowledge.num_clients, knowledge.victim, self.config.sybils)
        honest = knowledge.num_clients - 1 - len(sybils)
        if honest:
            logger.warning(
                "%d honest clients stay in the round: their updates and noise are not removed", honest
            )
        self._plan = IsolationPlan(
            victim=knowledge.victim,
            num_clients=knowledge.num_clients,
            victim_samples=knowledge.num_samples,
            sybils=sybils,
            method="sybils",
        )
        return tuple(copy.deepcopy(knowledge.model) for _ in range(knowledge.num_clients))

    def sybil_clients(self, knowledge: CraftView) -> tuple[int, ...]:
        return choose_sybils(knowledge.num_clients, knowledge.victim, self.config.sybils)

    def _notes(self, view: AttackerView, plan: IsolationPlan) -> list[str]:
        m = plan.num_clients
        honest = m - 1 - len(plan.sybils)
        return [
            *super()._notes(view, plan),
            f"{len(plan.sybils)} of {m - 1} co-participants are sybils (zero update, no noise): the "
            f"victim's DP noise is its own share sigma^2/{m}"
            + (f"; {honest} honest clients remain mixed in" if honest else ""),
        ]
