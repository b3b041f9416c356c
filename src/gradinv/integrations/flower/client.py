"""gradinv's client training as a Flower ``ClientApp`` train handler.

:func:`train_handler` returns the function a ``ClientApp`` registers with ``@app.train()``: it
loads the arrays the server sent into the client's model, trains with gradinv's one client
(:func:`gradinv.fl.client.local_update`: FedSGD or FedAvg as the server's config states it,
through every client-side defense of every stage — data, training and update) and replies with the
new model (``ArrayRecord``) and ``num-examples`` / ``train_loss`` (``MetricRecord``), as Flower's
``app-pytorch`` template does. A ClientApp with its own training loop keeps it and uses the
update-stage defenses as a mod instead (:class:`~gradinv.integrations.flower.mods.DefenseMod`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.client import Client, NumPyClient
from flwr.common import Scalar
from torch import Tensor, nn

from gradinv.errors import ConfigError, UpdateError
from gradinv.fl.client import local_update
from gradinv.fl.hooks import ClientDefense, DefenseChain
from gradinv.fl.rounds import apply_update
from gradinv.integrations.flower.convert import training_from_config
from gradinv.integrations.flower.mods import PARTITION_KEY, array_record, build_model, client_id
from gradinv.types import Batch, TrainingConfig

__all__ = ["TrainHandler", "numpy_client_fn", "train_handler"]

FitReturn = tuple[list[np.ndarray], int, dict[str, Scalar]]

logger = logging.getLogger(__name__)

TrainHandler = Callable[[Message, Context], Message]


def train_handler(
    model_fn: Callable[[], nn.Module],
    data_fn: Callable[[Context], Batch],
    *,
    training: TrainingConfig | None = None,
    defenses: Sequence[ClientDefense] = (),
    arrayrecord_key: str = "arrays",
    configrecord_key: str = "config",
) -> TrainHandler:
    """A ``ClientApp`` train handler that trains ``model_fn()`` on ``data_fn(context)`` with gradinv.

    The local training is ``training`` (default :class:`~gradinv.types.TrainingConfig`) with what the
    server's train config states over it (:data:`~gradinv.integrations.flower.convert.CONFIG_KEYS`);
    the client keeps its private shuffle seed (``training.seed``). ``defenses`` run on every update
    (a fresh hook chain per message). A model-stage defense (PRECODE) changes the architecture of
    every party: build ``model_fn`` (and the server's model) with ``defense.transform_model``
    instead; passing one here is an error.

    The reply carries the model after training: ``W - lr * g`` under FedSGD (one step on the whole
    batch, as the server reads it back in
    :func:`~gradinv.integrations.flower.convert.update_from_states`), ``W + delta`` under FedAvg."""
    train = _trainer(model_fn, training, defenses)

    def handle(msg: Message, context: Context) -> Message:
        record = array_record(msg, arrayrecord_key)
        config = msg.content.config_records.get(configrecord_key)
        cid = client_id(context)
        trained, metrics = train(record.to_torch_state_dict(), config or {}, data_fn(context), cid)
        reply: dict[str, int | float | list[int] | list[float]] = dict(metrics)
        content = RecordDict({arrayrecord_key: ArrayRecord(trained), "metrics": MetricRecord(reply)})
        return Message(content=content, reply_to=msg)

    return handle


def numpy_client_fn(
    model_fn: Callable[[], nn.Module],
    data_fn: Callable[[Context], Batch],
    *,
    training: TrainingConfig | None = None,
    defenses: Sequence[ClientDefense] = (),
) -> Callable[[Context], Client]:
    """The same client as :func:`train_handler` for Flower's legacy ``ClientApp(client_fn=...)``,
    which Flower 1.42's secure aggregation needs (``mods=[secaggplus_mod]`` with the server's
    ``SecAggPlusWorkflow``): a ``NumPyClient`` whose ``fit`` trains with gradinv and returns the
    model's state (in ``state_dict`` order), the sample count and ``train_loss`` plus the node's
    ``partition-id`` (for the auditor's scoring; a simulation's node config holds it)."""
    train = _trainer(model_fn, training, defenses)
    keys = list(build_model(model_fn).state_dict())

    class GradinvNumPyClient(NumPyClient):
        def __init__(self, context: Context) -> None:
            self.context = context

        def fit(self, parameters: list[np.ndarray], config: dict[str, Scalar]) -> FitReturn:
            if len(parameters) != len(keys):
                raise UpdateError(
                    f"Expected {len(keys)} arrays (the model's state_dict), but the server sent "
                    f"{len(parameters)}. Give the server the same model as the clients."
                )
            state = {k: torch.from_numpy(np.array(a)) for k, a in zip(keys, parameters)}
            cid = client_id(self.context)
            trained, metrics = train(state, config, data_fn(self.context), cid)
            arrays = [v.detach().cpu().numpy() for v in trained.values()]
            n = int(metrics.pop("num-examples"))
            reply: dict[str, Scalar] = {**metrics, PARTITION_KEY: cid}
            return arrays, n, reply

    def client_fn(context: Context) -> Client:
        return GradinvNumPyClient(context).to_client()

    return client_fn


#: ``train(state, config, batch, client) -> (trained state, reply metrics)``
_Trainer = Callable[
    [Mapping[str, Tensor], Mapping[str, Any], Batch, int], tuple[dict[str, Tensor], dict[str, int | float]]
]


def _trainer(
    model_fn: Callable[[], nn.Module], training: TrainingConfig | None, defenses: Sequence[ClientDefense]
) -> _Trainer:
    """The one client step of both client flavours: load the state the server sent into
    ``model_fn()``, train on the batch with gradinv (the server's config over ``training``, the
    client's own shuffle seed, a fresh defense chain) and return the trained state and the reply
    metrics (``num-examples``, ``train_loss`` and the update's info)."""
    model_stage = [d.name for d in defenses if d.stage == "model"]
    if model_stage:
        raise ConfigError(
            f"Expected client-side defenses of the data, training or update stage, but got model-stage "
            f"defense(s) {model_stage}, which change the architecture of every party. Build the "
            "ClientApp's and the ServerApp's model with defense.transform_model(model) instead."
        )
    base = training if training is not None else TrainingConfig()

    def train(
        state: Mapping[str, Tensor], config: Mapping[str, Any], batch: Batch, cid: int
    ) -> tuple[dict[str, Tensor], dict[str, int | float]]:
        model = build_model(model_fn)
        model.load_state_dict(dict(state), strict=True)
        told = training_from_config(dict(config), base)
        local = replace(told, seed=base.seed) if told is not None else base
        hooks = DefenseChain.of(list(defenses)) if defenses else None
        update = local_update(model, batch, local, client_id=cid, hooks=hooks)
        lr = local.lr if local.protocol == "fedsgd" else 1.0
        trained = apply_update(model, update.update, server_lr=lr, inplace=True)
        metrics: dict[str, int | float] = {
            "num-examples": update.num_samples,
            "train_loss": float(update.train_loss),
        }
        metrics.update({k: float(v) for k, v in update.info.items()})
        logger.debug("client %d: %d samples, loss %.4f", cid, batch.size, update.train_loss)
        return trained.state_dict(), metrics

    return train
