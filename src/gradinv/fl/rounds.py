"""One federated round over several clients (through the server's :class:`~gradinv.fl.server.Server`
behaviour), and applying its aggregate to the global model."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from gradinv.errors import ConfigError
from gradinv.fl.aggregation import Aggregator
from gradinv.fl.client import ClientHooks, local_update
from gradinv.fl.server import RoundPlan, RoundSetup, Server, SybilClient
from gradinv.types import Batch, GroundTruth, ModelUpdate, RoundResult, TrainingConfig, UpdateKind

if TYPE_CHECKING:  # pragma: no cover
    from gradinv.data.dataset import ImageDataset

__all__ = ["apply_update", "run_round", "simulate_round"]


def run_round(
    model: nn.Module | Sequence[nn.Module],
    batches: Sequence[Batch],
    training: TrainingConfig,
    *,
    server: Server | None = None,
    aggregator: str | Aggregator = "mean",
    hooks: ClientHooks | Sequence[ClientHooks] | None = None,
    victim: int = 0,
    round_index: int = 0,
    client_ids: Sequence[int] | None = None,
) -> RoundResult:
    """Every client ``k`` trains on ``batches[k]`` from the model it received; the server aggregates.

    ``server`` (default: an honest :class:`~gradinv.fl.server.Server` with ``aggregator``) chooses the
    model each client receives and the clients it controls (sybils send zero updates), then
    aggregates; ``victim`` and ``round_index`` tell a malicious server whom to target and when. A
    ``model`` sequence sends client ``k`` model ``k`` (the caller's choice: the server's
    :meth:`~gradinv.fl.server.Server.configure_round` is not asked). ``hooks`` are
    client-side defenses, shared or one per client (a sybil follows the server instead).
    ``client_ids`` name the clients (default ``0..K-1``; secure aggregation derives keys from them)."""
    if not batches:
        raise ConfigError("Expected at least one client batch, but got none.")
    srv = server if server is not None else Server(aggregator)
    if isinstance(model, nn.Module):
        plan = srv.configure_round(RoundSetup(model, tuple(batches), training, victim, round_index))
        sent = plan.models
        models = list(sent) if sent is not None else [model] * len(batches)
    else:  # the caller chose each client's model; the server is not asked
        plan, sent = RoundPlan(), tuple(model)
        models = list(model)
    if len(models) != len(batches):
        raise ConfigError(f"Expected one model per client ({len(batches)}), but got {len(models)}.")
    if hooks is None or isinstance(hooks, ClientHooks):
        per_client: list[ClientHooks | None] = [hooks] * len(batches)
    else:
        per_client = list(hooks)
        if len(per_client) != len(batches):
            raise ConfigError(
                f"Expected hooks for each of {len(batches)} clients, but got {len(per_client)}."
            )
    ids = list(range(len(batches))) if client_ids is None else [int(k) for k in client_ids]
    if len(ids) != len(batches):
        raise ConfigError(f"Expected one client id per client ({len(batches)}), but got {len(ids)}.")
    for k in plan.sybils:  # a sybil follows the server, not the protocol's client-side defenses
        per_client[k] = SybilClient()
    updates = tuple(
        local_update(m, b, training, client_id=k, hooks=h)
        for k, m, b, h in zip(ids, models, batches, per_client)
    )
    aggregate, received = srv.aggregate(updates)
    return RoundResult(
        updates=updates,
        aggregate=aggregate,
        total_samples=sum(u.num_samples for u in updates),
        aggregation=srv.name,
        reveals_individual=srv.reveals_individual,
        server_received=received,
        client_models=sent,
    )


def simulate_round(
    model: nn.Module,
    batches: Sequence[Batch],
    training: TrainingConfig,
    *,
    num_classes: int,
    server: Server | None = None,
    hooks: ClientHooks | Sequence[ClientHooks] | None = None,
    victim: int = 0,
    round_index: int = 0,
    surrogate: ImageDataset | None = None,
) -> GroundTruth:
    """One round through ``server`` (:func:`run_round`), kept whole as the ground truth of client
    ``victim``: the global model, every client's batch, the models the server sent, the updates."""
    rnd = run_round(
        model, batches, training, server=server, hooks=hooks, victim=victim, round_index=round_index
    )
    return GroundTruth(
        model=model,
        batches=tuple(batches),
        training=training,
        round=rnd,
        num_classes=num_classes,
        victim=victim,
        surrogate=surrogate,
    )


def apply_update(
    model: nn.Module, update: ModelUpdate, *, server_lr: float = 1.0, inplace: bool = False
) -> nn.Module:
    """The new global model: ``W - server_lr * g`` for gradients, ``W + server_lr * delta`` for deltas
    (buffer deltas are added too). A copy of ``model``, unless ``inplace`` (then ``model`` itself)."""
    new = model if inplace else copy.deepcopy(model)
    sign = -1.0 if update.kind is UpdateKind.GRADIENT else 1.0
    with torch.no_grad():
        for name, p in new.named_parameters():
            if name in update.params:
                p.add_(update.params[name].to(p.device), alpha=sign * server_lr)
        for name, b in new.named_buffers():
            if name in update.buffers:
                b.add_(update.buffers[name].to(b.device))
    return new
