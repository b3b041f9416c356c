"""The server's behaviour in a round, as one object (the shape of a Flower ``Strategy``).

A :class:`Server` decides, before the clients train, which model each client receives and which
clients it controls (:meth:`Server.configure_round`), and after, how their updates are combined
(:meth:`Server.aggregate`). :func:`gradinv.fl.run_round` (one round) and
:func:`gradinv.fl.training.train_federated` (many) both run every round through it, so an honest
server, secure aggregation and a malicious server plug into the same loop:

* :class:`Server` — honest: every client gets the global model; updates are aggregated by its
  :class:`~gradinv.fl.aggregation.Aggregator` (sample-weighted mean, or secure aggregation, which
  reveals only the sum).
* :class:`MaliciousServer` — an active attacker (threat models F–H): in the rounds it acts, it
  crafts the models it sends from what the threat model lets it know
  (:func:`gradinv.threat.observe_server`), and may control sybil clients (Boenisch et al.,
  "Reconstructing Individual Data Points in Federated Learning Hardened with Differential Privacy and
  Secure Aggregation", EuroS&P 2023) that send zero updates and add no distributed-DP noise.

The attack is anything with :class:`ModelCrafter`'s methods (every active
:class:`~gradinv.attacks.base.Attack`); this module does not import the attacks.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import nn

from gradinv.errors import AttackRefused, ConfigError
from gradinv.fl.aggregation import AGGREGATORS, Aggregator
from gradinv.fl.client import ClientHooks, UpdateContext
from gradinv.threat import ThreatModel, get_threat_model, observe_server
from gradinv.types import Batch, ClientUpdate, CraftView, ModelUpdate, TrainingConfig

if TYPE_CHECKING:  # pragma: no cover
    from gradinv.data.dataset import ImageDataset

__all__ = [
    "SYBIL_INFO_KEY",
    "MaliciousServer",
    "ModelCrafter",
    "RoundPlan",
    "RoundSetup",
    "Server",
    "SybilClient",
    "build_aggregator",
]

#: ``ClientUpdate.info`` key flagging a sybil's update (secure aggregation adds no DP noise for it)
SYBIL_INFO_KEY = "sybil"


def build_aggregator(name: str | Aggregator = "mean", options: Mapping[str, Any] | None = None) -> Aggregator:
    """The registered aggregator ``name`` built with ``options`` (an instance passes through)."""
    if not isinstance(name, str):
        if options:
            raise ConfigError("Expected `aggregation_options` only with an aggregator name, not an instance.")
        return name
    cls = AGGREGATORS.get(name)
    try:
        return cls(**dict(options or {}))
    except TypeError as e:
        raise ConfigError(f"Invalid `aggregation_options` for aggregation {name!r}: {e}.") from None


class SybilClient(ClientHooks):
    """Client hooks of a device the server controls (a sybil; Boenisch et al., EuroS&P 2023).

    It takes part in the protocol (its masks are needed for the others' to cancel) but sends an
    update the server chose: zeros of the right kind and shape. It adds no distributed-DP noise
    (:class:`~gradinv.fl.secure_aggregation.SecureAggregator` reads ``info()["sybil"]``)."""

    def on_update(self, update: ModelUpdate, ctx: UpdateContext) -> ModelUpdate:
        return ModelUpdate(
            update.kind,
            {k: torch.zeros_like(v) for k, v in update.params.items()},
            {k: torch.zeros_like(v) for k, v in update.buffers.items()},
        )

    def info(self) -> dict[str, float]:
        return {SYBIL_INFO_KEY: 1.0}


@dataclass(frozen=True)
class RoundSetup:
    """What the server knows of a round before it starts: the global model, the participating
    clients' batches (the simulation holds them; a malicious server reads only what its threat
    model grants, through :func:`~gradinv.threat.observe_server`), their local training, the client
    it targets and the round's index."""

    model: nn.Module
    batches: tuple[Batch, ...]
    training: TrainingConfig
    victim: int = 0
    round_index: int = 0


@dataclass(frozen=True)
class RoundPlan:
    """What the server does before the clients train: ``models`` (one per client, or ``None`` when
    every client receives the global model) and the ids of the clients it controls."""

    models: tuple[nn.Module, ...] | None = None
    sybils: frozenset[int] = frozenset()


class Server:
    """An honest server: sends the global model to everyone and aggregates with ``aggregator``."""

    def __init__(
        self, aggregator: str | Aggregator = "mean", options: Mapping[str, Any] | None = None
    ) -> None:
        self.aggregator = build_aggregator(aggregator, options)

    @property
    def name(self) -> str:
        return self.aggregator.name

    @property
    def reveals_individual(self) -> bool:
        return self.aggregator.reveals_individual

    def configure_round(self, setup: RoundSetup) -> RoundPlan:
        """The models sent and the clients controlled in the round ``setup`` describes (honest: none)."""
        return RoundPlan()

    def aggregate(self, updates: Sequence[ClientUpdate]) -> tuple[ModelUpdate, tuple[ModelUpdate, ...]]:
        """(aggregate, what the server received)."""
        return self.aggregator.aggregate(updates)


class ModelCrafter(Protocol):
    """What a malicious server needs of an active attack."""

    @property
    def title(self) -> str: ...

    def check_threat(self, threat: ThreatModel) -> list[str]: ...

    def craft(self, knowledge: CraftView) -> tuple[nn.Module, ...]: ...

    def sybil_clients(self, knowledge: CraftView) -> tuple[int, ...]: ...


class MaliciousServer(Server):
    """A server run by an active attacker.

    In the rounds listed in ``rounds`` (every round when ``None``) it crafts one model per client with
    ``attacker.craft`` from what ``threat`` lets it know, and controls the clients
    ``attacker.sybil_clients`` names (never the victim). ``num_classes`` and ``surrogate`` are the
    server's own knowledge of the task (the surrogate set reaches the attacker only when the threat
    model grants surrogate data). The threat model is checked on construction, before any work."""

    def __init__(
        self,
        attacker: ModelCrafter,
        threat: ThreatModel | str,
        *,
        num_classes: int,
        aggregator: str | Aggregator = "mean",
        options: Mapping[str, Any] | None = None,
        surrogate: ImageDataset | None = None,
        rounds: Collection[int] | None = None,
    ) -> None:
        super().__init__(aggregator, options)
        self.attacker = attacker
        self.threat = get_threat_model(threat)
        problems = attacker.check_threat(self.threat)
        if problems:
            raise AttackRefused(" ".join(problems))
        self.num_classes = num_classes
        self.surrogate = surrogate
        self.rounds = None if rounds is None else frozenset(rounds)

    def configure_round(self, setup: RoundSetup) -> RoundPlan:
        if self.rounds is not None and setup.round_index not in self.rounds:
            return RoundPlan()
        title, n, victim = self.attacker.title, len(setup.batches), setup.victim
        knowledge = observe_server(
            setup.model,
            self.threat,
            batches=setup.batches,
            training=setup.training,
            num_classes=self.num_classes,
            victim=victim,
            surrogate=self.surrogate,
        )
        models = tuple(self.attacker.craft(knowledge))
        if len(models) != n:
            raise AttackRefused(f"{title} crafted {len(models)} models for {n} clients.")
        sybils = frozenset(self.attacker.sybil_clients(knowledge))
        if not sybils <= set(range(n)) - {victim}:
            raise AttackRefused(
                f"{title} chose sybil clients {sorted(sybils)}, but expected ids among the "
                f"{n} clients other than the victim ({victim})."
            )
        return RoundPlan(models, sybils)
