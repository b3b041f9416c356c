"""Soteria: prune the gradient of the representation layer where the representation reveals the
most about the input.

Sun, Li, Wang, Yang, Li, Chen, "Soteria: Provable Defense against Privacy Leakage in Federated
Learning from Representation Perspective", CVPR 2021.

The representation ``r`` is the input of the defended fully connected layer (default: the
classifier, the last ``nn.Linear``). The weight gradient of that layer is ``dL/dz ⊗ r``, so it
reveals ``r`` and, through it, the input ``X``. Soteria perturbs ``r`` so that the input
reconstructed from it is far from ``X`` while ``r`` changes little: it removes the elements ``r_f``
with the smallest ``||∂r_f/∂X|| / |r_f|`` (approximating the largest ``||r_f (∂r_f/∂X)^{-1}||``),
which amounts to zeroing the corresponding columns of the defended layer's weight gradient. No other
tensor of the update changes. As in the authors' code, the score of element ``f`` is summed over the
client's samples, ``score_f = sum_n ||∂r_{n,f}/∂X_n||_2 / |r_{n,f}|``, computed with the model the
client received in eval mode, and the ``floor(ratio * F)`` elements with the smallest scores are
pruned.

Deviations: samples with ``r_{n,f} = 0`` (e.g. an inactive ReLU unit, whose weight-gradient column
is zero for that sample anyway) are left out of the sum instead of producing ``0/0`` (the authors
divide by ``r`` for DLG and by ``r + 0.1`` otherwise); an element zero for every sample is never
pruned. For FedAvg updates the mask is computed once from the received model and the client's whole
batch and applied to the weight delta of the defended layer.

Cost: one backward pass per representation element (``F`` of them, e.g. 768 for LeNet on 32x32
images), done as forward/backward passes over ``chunk_size`` copies of the batch at a time; memory
grows with ``chunk_size`` times the batch size.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gradinv._checks import check_int, check_range
from gradinv.defenses.base import DefenseConfig, UpdateDefense, register_defense, with_params
from gradinv.errors import ModelError, UpdateError
from gradinv.fl.client import UpdateContext
from gradinv.models.inspect import linear_layer as defended_layer
from gradinv.types import ModelUpdate

__all__ = ["Soteria", "SoteriaConfig", "defended_layer", "soteria_mask", "soteria_scores"]

logger = logging.getLogger(__name__)


def _representation(m: nn.Module, name: str, x: Tensor) -> Tensor:
    captured: list[Tensor] = []

    def hook(_module: nn.Module, args: tuple[Tensor, ...]) -> None:
        captured.append(args[0])

    handle = m.get_submodule(name).register_forward_pre_hook(hook)
    try:
        with torch.enable_grad():
            m(x)
    finally:
        handle.remove()
    if not captured:
        raise ModelError(f"The defended layer {name!r} was not called in the model's forward pass.")
    r = captured[-1]
    if r.ndim != 2:
        raise ModelError(
            f"Expected the defended layer's input to be (N, features), but got shape {tuple(r.shape)}."
        )
    return r


def soteria_scores(model: nn.Module, x: Tensor, *, layer: str | None = None, chunk_size: int = 32) -> Tensor:
    """Per-element scores ``sum_n ||∂r_{n,f}/∂X_n|| / |r_{n,f}|`` of the defended layer's input ``r``
    (shape ``(F,)``), computed on a deep copy of ``model`` in eval mode.

    In eval mode the samples are independent, so ``chunk_size`` elements are handled by one ordinary
    forward/backward pass over ``chunk_size`` copies of the batch: copy ``j`` back-propagates the unit
    vector of element ``f_j``, and its input gradient is ``∂r_{n,f_j}/∂X_n``."""
    name = defended_layer(model, layer)
    m = copy.deepcopy(model).eval()
    for p in m.parameters():
        p.requires_grad_(False)
    x = x.detach()
    with torch.no_grad():
        r0 = _representation(m, name, x)
    n, f = r0.shape
    jac_norms = torch.zeros(n, f, dtype=torch.float64, device=x.device)
    for start in range(0, f, chunk_size):
        idx = torch.arange(start, min(f, start + chunk_size), device=x.device)
        c = len(idx)
        xr = x.repeat(c, *([1] * (x.ndim - 1))).requires_grad_(True)  # copy j = rows j*n ... j*n + n - 1
        r = _representation(m, name, xr)
        sel = torch.zeros_like(r)
        sel[torch.arange(c * n, device=x.device), idx.repeat_interleave(n)] = 1.0
        (g,) = torch.autograd.grad(r, xr, grad_outputs=sel)
        jac_norms[:, idx] = g.reshape(c, n, -1).double().norm(dim=2).T
    rabs = r0.detach().double().abs()
    alive = rabs > 0
    terms = torch.where(
        alive, jac_norms / torch.where(alive, rabs, torch.ones_like(rabs)), torch.zeros_like(rabs)
    )
    scores = terms.sum(0)
    return torch.where(alive.any(0), scores, torch.full_like(scores, math.inf))


def soteria_mask(scores: Tensor, ratio: float) -> Tensor:
    """A boolean mask over representation elements: ``False`` for the ``floor(ratio * F)`` elements
    with the smallest scores (pruned), ``True`` elsewhere."""
    f = scores.numel()
    k = min(f, math.floor(round(ratio * f, 9)))
    keep = torch.ones(f, dtype=torch.bool, device=scores.device)
    if k:
        keep[torch.topk(scores, k, largest=False).indices] = False
    return keep


@dataclass(frozen=True)
class SoteriaConfig(DefenseConfig):
    """``ratio``: fraction of representation elements pruned; ``layer``: the defended nn.Linear."""

    ratio: float = 0.8
    layer: str | None = None
    chunk_size: int = 32

    def __post_init__(self) -> None:
        check_range("ratio", self.ratio, low=0, high=1, what="the fraction pruned")
        check_int("chunk_size", self.chunk_size)


@register_defense
class Soteria(UpdateDefense[SoteriaConfig]):
    """Zero the defended layer's weight-gradient columns of the most revealing representation elements."""

    name = "soteria"
    title = "Soteria"
    paper = (
        "Sun, Li, Wang, Yang, Li, Chen, Soteria: Provable Defense against Privacy Leakage in Federated "
        "Learning from Representation Perspective, CVPR 2021"
    )
    uses_batch = True  # the representation's sensitivity is measured on the client's own inputs

    def apply(self, update: ModelUpdate, ctx: UpdateContext) -> tuple[ModelUpdate, dict[str, float]]:
        cfg = self.config
        name = defended_layer(ctx.model, cfg.layer)
        key = f"{name}.weight" if name else "weight"
        if key not in update.params:
            raise UpdateError(
                f"Expected the update to hold the defended layer's weight {key!r}, but it does not. "
                "Is that layer frozen? Choose another `layer`."
            )
        device = next(ctx.model.parameters()).device
        scores = soteria_scores(
            ctx.model, ctx.batch.model_input().to(device), layer=name, chunk_size=cfg.chunk_size
        )
        keep = soteria_mask(scores, cfg.ratio)
        params = dict(update.params)
        w = params[key]
        if w.ndim != 2 or w.shape[1] != keep.numel():
            raise UpdateError(
                f"Expected the update of {key!r} to have {keep.numel()} columns, "
                f"but got shape {tuple(w.shape)}."
            )
        params[key] = w * keep.to(w.device, w.dtype)
        logger.debug(
            "soteria: pruned %d of %d representation elements of %s", int((~keep).sum()), keep.numel(), name
        )
        return with_params(update, params), {
            "pruned_fraction": float((~keep).sum()) / keep.numel(),
            "features": float(keep.numel()),
        }
