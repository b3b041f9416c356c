"""The client's side of a round: what a client computes and shares.

* FedSGD (McMahan et al., AISTATS 2017): the gradient of the mean cross-entropy over all the client's
  samples at the global weights.
* FedAvg (McMahan et al., AISTATS 2017): E epochs of mini-batch SGD (lr, momentum, weight decay) over
  the client's N samples; the client shares ``W_local - W_global`` for every parameter and every
  floating-point buffer (BatchNorm running statistics move in train mode, as in a real client that
  sends its state dict).

The global model passed in is never modified: the client trains a deep copy.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradinv.errors import UpdateError
from gradinv.models.seeding import reseed
from gradinv.types import Batch, ClientUpdate, ModelUpdate, TrainingConfig, UpdateKind

logger = logging.getLogger(__name__)

__all__ = [
    "ClientHooks",
    "HookDefaults",
    "StepContext",
    "UpdateContext",
    "client_loss",
    "epoch_orders",
    "fedavg_delta",
    "fedsgd_gradient",
    "local_update",
    "sgd_step",
]


def _trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def _client_copy(model: nn.Module, mode: str) -> nn.Module:
    m = copy.deepcopy(model)
    return m.train() if mode == "train" else m.eval()


def client_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy; ``targets`` are class indices or per-class probabilities (soft labels)."""
    return F.cross_entropy(logits, targets)


@dataclass
class StepContext:
    """What client-side hooks may use during one local step (the client's own view)."""

    model: nn.Module
    params: list[Tensor]
    training: TrainingConfig
    client_id: int
    step: int
    num_samples: int
    generator: torch.Generator


@dataclass(frozen=True)
class UpdateContext:
    """What client-side hooks may use to transform the finished update."""

    model: nn.Module  # the model the client received (never modified)
    batch: Batch
    training: TrainingConfig
    client_id: int
    local_steps: int
    generator: torch.Generator


class HookDefaults:
    """The per-step and per-update hooks with their no-op defaults, shared by :class:`ClientHooks` and
    the stage methods of a :class:`gradinv.defenses.Defense` (which its default hooks forward to)."""

    def on_batch(self, x: Tensor, targets: Tensor, ctx: StepContext) -> tuple[Tensor, Tensor]:
        return x, targets

    def gradients(self, x: Tensor, targets: Tensor, ctx: StepContext) -> list[Tensor] | None:
        """Parameter gradients for this step, or ``None`` for the plain mean-loss gradient."""
        return None

    def on_update(self, update: ModelUpdate, ctx: UpdateContext) -> ModelUpdate:
        return update

    def info(self) -> dict[str, float]:
        return {}


class ClientHooks(HookDefaults):
    """Client-side transformations applied during local training (no-ops here).

    Defenses (``gradinv.defenses``) implement these: data transforms (MixUp, InstaHide) in
    :meth:`on_batch`, training changes (DP-SGD's per-sample clipping and noise) in
    :meth:`gradients`, and update transforms (noise, quantisation, sparsification, Soteria…) in
    :meth:`on_update`. :meth:`info` reports numbers such as a privacy budget after training."""

    def start(self, ctx: UpdateContext) -> None:
        """Called once before local training."""


def _step_gradients(
    m: nn.Module, params: list[Tensor], x: Tensor, targets: Tensor, hooks: ClientHooks, ctx: StepContext
) -> tuple[list[Tensor], float]:
    x, targets = hooks.on_batch(x, targets, ctx)
    custom = hooks.gradients(x, targets, ctx)
    if custom is not None:
        with torch.no_grad():
            loss = client_loss(m(x), targets)
        return custom, float(loss)
    loss = client_loss(m(x), targets)
    value = float(loss.detach())
    if not math.isfinite(value):
        raise UpdateError(
            f"Expected a finite training loss at local step {ctx.step + 1}, but got {value}. "
            f"The client's training diverged; lower `lr` (got {ctx.training.lr})."
        )
    return list(torch.autograd.grad(loss, params)), value


def _seed(training: TrainingConfig, client_id: int, salt: int) -> int:
    return (training.seed or 0) * 1_000_003 + client_id + salt


def _generator(training: TrainingConfig, client_id: int, salt: int) -> torch.Generator:
    return torch.Generator().manual_seed(_seed(training, client_id, salt))


# the client's private seeds (training seed and client id) differ by what they drive:
_ORDER_SALT = 0  # the sample order of its local epochs
_HOOKS_SALT = 17  # the generator of its hooks (defenses' noise, mixing, rounding)
_SAMPLING_SALT = 29  # the sampling layers of its model copy (e.g. PRECODE's bottleneck)


def fedsgd_gradient(
    model: nn.Module,
    batch: Batch,
    *,
    mode: str = "train",
    hooks: ClientHooks | None = None,
    generator: torch.Generator | None = None,
    client_id: int = 0,
    sampling_seed: int | None = None,
) -> tuple[dict[str, Tensor], float]:
    """Gradient of the mean loss over ``batch`` at the model's weights (in ``mode``), and the loss.

    Sampling layers of the client's copy (:class:`~gradinv.models.seeding.SamplingModule`) are
    reseeded with ``sampling_seed`` (default: derived from ``client_id``)."""
    m = _client_copy(model, mode)
    named = _trainable(m)
    params: list[Tensor] = [p for _, p in named]
    training = TrainingConfig(model_mode=mode)  # type: ignore[arg-type]
    reseed(m, _seed(training, client_id, _SAMPLING_SALT) if sampling_seed is None else sampling_seed)
    ctx = StepContext(m, params, training, client_id, 0, batch.size, generator or torch.Generator())
    grads, loss = _step_gradients(m, params, batch.model_input(), batch.labels, hooks or ClientHooks(), ctx)
    return {n: g.detach() for (n, _), g in zip(named, grads)}, loss


def sgd_step(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    momentum_buffers: list[Tensor | None],
    *,
    lr: float,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
) -> None:
    """One in-place SGD step with the semantics of ``torch.optim.SGD`` (no dampening, no Nesterov):
    ``d = g + wd * w``; ``v = d`` on the first step, else ``v = momentum * v + d``; ``w -= lr * v``."""
    with torch.no_grad():
        if not (momentum or weight_decay):  # plain SGD: one multi-tensor step (bit-equal to the loop)
            torch._foreach_sub_(list(params), torch._foreach_mul(list(grads), lr))
            return
        for i, (p, g) in enumerate(zip(params, grads)):
            d = g + weight_decay * p if weight_decay else g
            if momentum:
                buf = momentum_buffers[i]
                buf = d.clone() if buf is None else buf.mul_(momentum).add_(d)
                momentum_buffers[i] = buf
                d = buf
            p.sub_(lr * d)


def epoch_orders(n: int, training: TrainingConfig, client_id: int = 0) -> list[Tensor]:
    """The sample order of every local epoch (seeded by the client's private seed and id)."""
    if not training.shuffle:
        return [torch.arange(n)] * training.epochs
    gen = _generator(training, client_id, _ORDER_SALT)
    return [torch.randperm(n, generator=gen) for _ in range(training.epochs)]


def fedavg_delta(
    model: nn.Module,
    batch: Batch,
    training: TrainingConfig,
    *,
    client_id: int = 0,
    hooks: ClientHooks | None = None,
    generator: torch.Generator | None = None,
) -> tuple[dict[str, Tensor], dict[str, Tensor], int, float]:
    """Run the client's local SGD; return (parameter deltas, buffer deltas, local steps, mean loss).

    Sampling layers of the client's copy are reseeded from the client's private seed."""
    m = _client_copy(model, training.model_mode)
    reseed(m, _seed(training, client_id, _SAMPLING_SALT))
    named = _trainable(m)
    params: list[Tensor] = [p for _, p in named]
    start = {n: p.detach().clone() for n, p in named}
    start_buf = {n: b.detach().clone() for n, b in m.named_buffers() if b.is_floating_point()}
    n = batch.size
    bsz = training.resolved_batch_size(n)
    x_all, y_all = batch.model_input(), batch.labels
    hooks = hooks or ClientHooks()
    gen = generator or _generator(training, client_id, _HOOKS_SALT)
    momentum_buffers: list[Tensor | None] = [None] * len(params)
    losses: list[float] = []
    for order in epoch_orders(n, training, client_id):
        for s in range(0, n, bsz):
            idx = order[s : s + bsz].to(x_all.device)
            ctx = StepContext(m, params, training, client_id, len(losses), n, gen)
            grads, loss = _step_gradients(m, params, x_all[idx], y_all[idx], hooks, ctx)
            sgd_step(
                params,
                grads,
                momentum_buffers,
                lr=training.lr,
                momentum=training.momentum,
                weight_decay=training.weight_decay,
            )
            losses.append(loss)
    steps = len(losses)
    assert steps == training.epochs * math.ceil(n / bsz)
    deltas = {k: p.detach() - start[k] for k, p in named}
    buf_deltas = {k: b.detach() - start_buf[k] for k, b in m.named_buffers() if k in start_buf}
    return deltas, buf_deltas, steps, sum(losses) / steps


def local_update(
    model: nn.Module,
    batch: Batch,
    training: TrainingConfig,
    *,
    client_id: int = 0,
    hooks: ClientHooks | None = None,
) -> ClientUpdate:
    """What the client shares after local training on ``batch`` under ``training``.

    ``hooks`` (client-side defenses) may transform the data of each step, replace the step's
    gradient computation, and transform the finished update. The client's randomness comes from its
    private seed (``training.seed`` and ``client_id``), never from torch's global RNG: one generator
    for the hooks, another seed for the sampling layers of its model copy (e.g. PRECODE's)."""
    if batch.size == 0:
        raise UpdateError("Expected a client with at least one sample, but got an empty batch.")
    hooks = hooks or ClientHooks()
    gen = _generator(training, client_id, _HOOKS_SALT)
    steps = training.local_steps(batch.size)  # validates batch_size
    ctx = UpdateContext(model, batch, training, client_id, steps, gen)
    hooks.start(ctx)
    if training.protocol == "fedsgd":
        grads, loss = fedsgd_gradient(
            model,
            batch,
            mode=training.model_mode,
            hooks=hooks,
            generator=gen,
            client_id=client_id,
            sampling_seed=_seed(training, client_id, _SAMPLING_SALT),
        )
        upd = ModelUpdate(UpdateKind.GRADIENT, grads)
    else:
        deltas, bufs, steps, loss = fedavg_delta(
            model, batch, training, client_id=client_id, hooks=hooks, generator=gen
        )
        upd = ModelUpdate(UpdateKind.DELTA, deltas, bufs)
    upd = hooks.on_update(upd, ctx)
    logger.debug(
        "client %d: %s, %d samples, %d steps, loss %.4f", client_id, upd.kind.value, batch.size, steps, loss
    )
    return ClientUpdate(client_id, upd, batch.size, steps, loss, hooks.info())
