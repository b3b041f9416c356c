"""Flower traffic -> gradinv's typed core, as pure functions on torch state dicts.

A Flower client replies with its *model* (an ``ArrayRecord`` of the state dict after local
training; see Flower's ``app-pytorch`` template and
https://flower.ai/docs/framework/how-to-use-strategies.html). The server knows the model it sent,
so the update is their difference:

* FedAvg (``protocol = "fedavg"``): ``Δ = W_client − W_global`` as a
  :class:`~gradinv.types.UpdateKind.DELTA` update, floating-point buffers (BatchNorm running
  statistics) included;
* FedSGD (``protocol = "fedsgd"``: one SGD step of learning rate η on the client's whole batch):
  the gradient ``g = −Δ / η`` as a :class:`~gradinv.types.UpdateKind.GRADIENT` update.

What the server knows of the clients' training comes from the configuration it sends them (the
``ConfigRecord`` of ``configure_train``; :func:`training_from_config` reads the keys of
:data:`CONFIG_KEYS`) or from an explicit :class:`~gradinv.types.TrainingConfig`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import fields, replace
from typing import Any

import torch
from torch import Tensor, nn

from gradinv.errors import ConfigError, UpdateError
from gradinv.types import ModelUpdate, TrainingConfig, UpdateKind

__all__ = ["CONFIG_KEYS", "training_from_config", "update_from_states"]

logger = logging.getLogger(__name__)

#: config key (as a Flower app sends it, kebab-case like Flower's own ``local-epochs``) -> field
#: of :class:`~gradinv.types.TrainingConfig`
CONFIG_KEYS: Mapping[str, str] = {
    "protocol": "protocol",
    "lr": "lr",
    "local-epochs": "epochs",
    "batch-size": "batch_size",
    "momentum": "momentum",
    "weight-decay": "weight_decay",
    "shuffle": "shuffle",
    "model-mode": "model_mode",
}

_INT_FIELDS = {"epochs", "batch_size"}


def training_from_config(
    config: Mapping[str, Any], base: TrainingConfig | None = None
) -> TrainingConfig | None:
    """The clients' training as the server's config states it, over ``base``; ``None`` when the
    config names none of :data:`CONFIG_KEYS` and no ``base`` is given.

    The shuffle seed is never known to the server (``seed = None``).

    >>> t = training_from_config({"protocol": "fedsgd", "lr": 0.05, "server-round": 1})
    >>> t.protocol, t.lr, t.epochs, t.seed
    ('fedsgd', 0.05, 1, None)
    >>> training_from_config({"server-round": 1}) is None
    True
    """
    known = {f.name for f in fields(TrainingConfig)}
    changes: dict[str, Any] = {}
    for key, name in CONFIG_KEYS.items():
        if key not in config:
            continue
        value = config[key]
        if name in _INT_FIELDS:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
                raise ConfigError(f"Expected the train config's {key!r} to be an int, but got {value!r}.")
            value = int(value)
        elif name in ("lr", "momentum", "weight_decay"):
            value = float(value)
        assert name in known
        changes[name] = value
    if not changes and base is None:
        return None
    start = base if base is not None else TrainingConfig()
    if "protocol" in changes and changes["protocol"] == "fedsgd" and "epochs" not in changes:
        changes["epochs"] = 1
    return replace(start, **changes, seed=None)


def update_from_states(
    model: nn.Module,
    sent: Mapping[str, Tensor],
    received: Mapping[str, Tensor],
    training: TrainingConfig | None,
) -> ModelUpdate:
    """The update a client's reply carries: ``received − sent`` (FedAvg delta) or ``−(received −
    sent) / lr`` (FedSGD gradient), keyed by ``model``'s parameter and buffer names.

    ``training = None`` (the server does not know the protocol) reads the reply as a FedAvg delta,
    which is what travels. Differences are taken in float64 and returned in the parameters' dtype.

    >>> m = nn.Linear(2, 1)
    >>> sent = {k: v.clone() for k, v in m.state_dict().items()}
    >>> got = {k: v - 0.1 * torch.ones_like(v) for k, v in sent.items()}
    >>> u = update_from_states(m, sent, got, TrainingConfig(protocol="fedsgd", lr=0.1))
    >>> u.kind.value, [round(x, 4) for x in u.params["bias"].tolist()]
    ('gradient', [1.0])
    """
    missing = [k for k in model.state_dict() if k not in received or k not in sent]
    if missing:
        raise UpdateError(
            f"Expected the reply to hold every entry of the model's state dict, but {len(missing)} are "
            f"missing ({', '.join(missing[:4])}{'...' if len(missing) > 4 else ''}). Does the ClientApp "
            "send ArrayRecord(model.state_dict()) of the same architecture?"
        )

    def delta(name: str) -> Tensor:
        a, b = received[name], sent[name]
        if tuple(a.shape) != tuple(b.shape):
            raise UpdateError(
                f"Expected reply entry {name!r} of shape {tuple(b.shape)}, but got {tuple(a.shape)}."
            )
        return a.detach().to(torch.float64) - b.detach().to(torch.float64)

    names = [n for n, p in model.named_parameters() if p.requires_grad]
    dtypes = dict(model.state_dict().items())
    if training is not None and training.protocol == "fedsgd":
        lr = training.lr
        if not (math.isfinite(lr) and lr > 0):
            raise ConfigError(f"Expected a positive FedSGD learning rate, but got {lr!r}.")
        params = {n: (-delta(n) / lr).to(dtypes[n].dtype) for n in names}
        return ModelUpdate(UpdateKind.GRADIENT, params)
    params = {n: delta(n).to(dtypes[n].dtype) for n in names}
    buffers = {
        n: delta(n).to(b.dtype) for n, b in model.named_buffers() if b.is_floating_point() and n in received
    }
    return ModelUpdate(UpdateKind.DELTA, params, buffers)
