"""A malicious-server strategy: the server of a Flower app crafts the models it sends.

:class:`MaliciousStrategy` wraps any Flower strategy like :class:`~gradinv.integrations.flower.
audit.AuditStrategy` does, and in the attacked rounds replaces the arrays the wrapped strategy sends
in ``configure_train`` with the models a gradinv active attack crafts (Robbing the Fed, trap
weights, fishing, inconsistent models... — :mod:`gradinv.attacks`), through the same server object
the simulator uses (:class:`gradinv.fl.server.MaliciousServer`: the threat model is checked on
construction, what the attacker knows comes from :func:`gradinv.threat.observe_server`). The
clients' replies are then attacked and scored by the one stage,
:func:`gradinv.pipeline.attack_and_score`, as the auditor does.

Attacks that keep the architecture (trap weights, fishing) work with any ClientApp. Attacks that
change it (Robbing the Fed puts an imprint layer in front of the model) need the clients to run the
crafted architecture — in a Flower deployment the server's operator ships the app bundle the
clients run, so the app's model is :meth:`MaliciousStrategy.client_model` (and the ServerApp's
initial arrays its state dict). A client that vets what it receives
(:class:`~gradinv.integrations.flower.mods.VettingMod`) sees the crafted weights either way.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy
from torch import Tensor, nn

from gradinv.attacks.base import Attack
from gradinv.errors import AttackRefused, ConfigError
from gradinv.fl.server import MaliciousServer, RoundSetup
from gradinv.integrations.flower.audit import _UNKNOWN_TRAINING, AuditStrategy, _as_state
from gradinv.types import Batch, TrainingConfig

__all__ = ["MaliciousStrategy"]

logger = logging.getLogger(__name__)


def _base_state(state: Mapping[str, Tensor], base: nn.Module) -> dict[str, Tensor]:
    """The base model's entries of a global state: ``state`` itself when the keys agree, or the
    entries under the one prefix that holds every base key (the body of a crafted architecture)."""
    keys = list(base.state_dict())
    if set(keys) <= set(state):
        return {k: state[k] for k in keys}
    prefixes = {k[: -len(keys[0])] for k in state if k.endswith(keys[0])}
    for p in sorted(prefixes, key=len):
        if all(p + k in state for k in keys):
            return {k: state[p + k] for k in keys}
    raise ConfigError(
        "Expected the global arrays to hold the model's state dict (or a crafted model around it), but "
        f"{len(keys)} entries such as {keys[0]!r} are missing. Is `model` the app's architecture?"
    )


class MaliciousStrategy(AuditStrategy):
    """Wraps a Flower strategy; in the attacked ``rounds`` the server sends models crafted by
    ``attack`` (an active gradinv attack or its registered name) under ``threat`` (default ``"F"``,
    the malicious server that may modify the model) and attacks the replies.

    ``sample`` is a batch like each client's (size, image shape, normalisation): what the server
    knows of the clients' data, read as the threat model grants (basic knowledge). By default it is
    the first client's scoring batch from ``client_data``. The other arguments are those of
    :class:`~gradinv.integrations.flower.audit.AuditStrategy`. Attacks that take over clients
    (sybils) are refused: a Flower server cannot make a client send what it dictates."""

    def __init__(
        self,
        strategy: Strategy,
        *,
        model: nn.Module,
        attack: Attack | str,
        threat: str = "F",
        sample: Batch | None = None,
        rounds: Collection[int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(strategy, model=model, attack=attack, threat=threat, rounds=rounds, **kwargs)
        if not self.attack.active:
            raise ConfigError(
                f"Expected an active (malicious-server) attack, but {self.attack.name} only reads updates. "
                "Use AuditStrategy for passive attacks."
            )
        if self.observation != "individual":
            raise ConfigError(
                "Expected observation='individual' for a malicious server; under secure aggregation use "
                "an attack that isolates the victim through the aggregate and AuditStrategy."
            )
        self.server = MaliciousServer(self.attack, self.threat, num_classes=self.num_classes)
        self.sample = sample if sample is not None else self._default_sample()
        self._crafted: dict[int, dict[int, nn.Module]] = {}

    def _default_sample(self) -> Batch:
        first: Batch | None = None
        if isinstance(self.client_data, Mapping) and self.client_data:
            first = next(iter(self.client_data.values()))
        elif callable(self.client_data):
            first = self.client_data(0)
        if first is None:
            raise ConfigError(
                "Expected `sample` (a batch like the clients': size, image shape, normalisation) or "
                "`client_data`, but got neither. The server crafts from what it knows of the clients' data."
            )
        return first

    def _craft(
        self, server_round: int, global_model: nn.Module, n: int, training: TrainingConfig | None
    ) -> tuple[nn.Module, ...]:
        training = training or _UNKNOWN_TRAINING
        setup = RoundSetup(global_model, (self.sample,) * n, training, victim=0, round_index=server_round)
        plan = self.server.configure_round(setup)
        if plan.sybils:
            raise AttackRefused(
                f"{self.attack.title} controls clients {sorted(plan.sybils)}; a Flower server cannot make "
                "clients send what it dictates, so sybil attacks are not supported in a Flower run."
            )
        if plan.models is None:
            return (global_model,) * n
        return plan.models

    def client_model(self, training: TrainingConfig | None = None) -> nn.Module:
        """The architecture the clients run: the app's model as the attack crafts it for clients
        running ``training`` (default: the strategy's ``training``) — for an attack that changes the
        architecture, the model the server ships in its app bundle; its weights are replaced by
        what the server sends each round."""
        return self._craft(0, copy.deepcopy(self.model), 1, training or self.training)[0]

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """The wrapped strategy's messages, with crafted models in the attacked rounds."""
        messages = list(super().configure_train(server_round, arrays, config, grid))
        if not self._audits_round(server_round) or not messages:
            return messages
        global_model = copy.deepcopy(self.model)
        global_model.load_state_dict(_base_state(_as_state(arrays), self.model), strict=True)
        models = self._craft(server_round, global_model, len(messages), self._training.get(server_round))
        crafted: dict[int, nn.Module] = {}
        sent: dict[int, dict[str, Tensor]] = {}
        out = []
        for msg, m in zip(messages, models):
            node = int(msg.metadata.dst_node_id)
            state = {k: v.detach().clone() for k, v in m.state_dict().items()}
            records = msg.content.array_records
            key = (
                self.arrayrecord_key
                if self.arrayrecord_key in records
                else next(iter(records), self.arrayrecord_key)
            )
            content = RecordDict(
                {k: v for k, v in msg.content.items() if k != key}
            )  # the strategies share one
            content[key] = ArrayRecord(state)
            out.append(
                Message(
                    content=content,
                    dst_node_id=node,
                    message_type=msg.metadata.message_type,
                    group_id=msg.metadata.group_id,
                )
            )
            crafted[node], sent[node] = m, state
        self._crafted[server_round] = crafted
        self._sent[server_round] = sent
        logger.info(
            "gradinv malicious server, round %d: sent %d models crafted by %s",
            server_round,
            len(messages),
            self.attack.title,
        )
        return out

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        out = super().aggregate_train(server_round, replies)
        self._crafted.pop(server_round, None)
        return out

    def _crafted_model(self, server_round: int, node: int) -> nn.Module | None:
        return self._crafted.get(server_round, {}).get(node)
