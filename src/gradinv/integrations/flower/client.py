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
from collections.abc import Callable, Sequence
from dataclasses import replace

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from torch import nn

from gradinv.errors import ConfigError
from gradinv.fl.client import local_update
from gradinv.fl.hooks import ClientDefense, DefenseChain
from gradinv.fl.rounds import apply_update
from gradinv.integrations.flower.convert import training_from_config
from gradinv.integrations.flower.mods import array_record, build_model, client_id
from gradinv.types import Batch, TrainingConfig

__all__ = ["TrainHandler", "train_handler"]

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
    model_stage = [d.name for d in defenses if d.stage == "model"]
    if model_stage:
        raise ConfigError(
            f"Expected client-side defenses of the data, training or update stage, but got model-stage "
            f"defense(s) {model_stage}, which change the architecture of every party. Build the "
            "ClientApp's and the ServerApp's model with defense.transform_model(model) instead."
        )
    base = training if training is not None else TrainingConfig()

    def handle(msg: Message, context: Context) -> Message:
        record = array_record(msg, arrayrecord_key)
        model = build_model(model_fn)
        model.load_state_dict(record.to_torch_state_dict(), strict=True)
        config = msg.content.config_records.get(configrecord_key)
        told = training_from_config(dict(config) if config is not None else {}, base)
        local = replace(told, seed=base.seed) if told is not None else base
        batch = data_fn(context)
        cid = client_id(context)
        hooks = DefenseChain.of(list(defenses)) if defenses else None
        update = local_update(model, batch, local, client_id=cid, hooks=hooks)
        lr = local.lr if local.protocol == "fedsgd" else 1.0
        trained = apply_update(model, update.update, server_lr=lr, inplace=True)
        metrics: dict[str, int | float | list[int] | list[float]] = {
            "num-examples": update.num_samples,
            "train_loss": float(update.train_loss),
        }
        metrics.update({k: float(v) for k, v in update.info.items()})
        logger.debug("client %d: %d samples, loss %.4f", cid, batch.size, update.train_loss)
        content = RecordDict(
            {arrayrecord_key: ArrayRecord(trained.state_dict()), "metrics": MetricRecord(metrics)}
        )
        return Message(content=content, reply_to=msg)

    return handle
