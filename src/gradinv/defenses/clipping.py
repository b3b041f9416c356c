"""Flat clipping of the update: bound every value, or the whole update's L2 norm.

Paper 002 (Du et al., "SoK: On Gradient Leakage in Federated Learning", USENIX Security 2025,
Appx. C-III) evaluates "flat clipping" (citing McMahan, Ramage, Talwar, Zhang, "Learning
Differentially Private Recurrent Language Models", ICLR 2018) described as bounding the gradient's
values, with bounds 0.5 ... 0.01. Two readings exist, so both are offered:

* ``mode = "value"`` (default, paper 002's description): every entry is clamped to ``[-bound, bound]``;
* ``mode = "norm"`` (McMahan et al.'s flat clipping): the update, all parameter tensors
  concatenated, is scaled to L2 norm at most ``bound``.

Buffer deltas (BatchNorm statistics, FedAvg) are not clipped.

>>> clip_values({"w": torch.tensor([-2.0, 0.1, 3.0])}, 0.5)["w"]
tensor([-0.5000,  0.1000,  0.5000])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch  # noqa: F401  (the doctest uses it)
from torch import Tensor

from gradinv._checks import check_choice, check_range
from gradinv.defenses._tensors import fraction, global_norm
from gradinv.defenses.base import DefenseConfig, UpdateDefense, register_defense, with_params
from gradinv.defenses.noise import clip_global_norm
from gradinv.fl.client import UpdateContext
from gradinv.types import ModelUpdate

__all__ = ["Clipping", "ClippingConfig", "clip_values"]


def clip_values(tensors: Mapping[str, Tensor], bound: float) -> dict[str, Tensor]:
    """Every entry clamped to ``[-bound, bound]``."""
    return {k: v.clamp(-bound, bound) for k, v in tensors.items()}


@dataclass(frozen=True)
class ClippingConfig(DefenseConfig):
    """``bound``: the value bound (``value``) or the L2 norm bound (``norm``)."""

    bound: float = 0.1
    mode: Literal["value", "norm"] = "value"

    def __post_init__(self) -> None:
        check_range("bound", self.bound, low=0, low_open=True, fix="Paper 002 uses 0.01 ... 0.5.")
        check_choice("mode", self.mode, ("value", "norm"))


@register_defense
class Clipping(UpdateDefense[ClippingConfig]):
    """Flat clipping: clamp every value of the update (or its global L2 norm) to a bound."""

    name = "clipping"
    title = "Flat clipping"
    paper = (
        "McMahan, Ramage, Talwar, Zhang, Learning Differentially Private Recurrent Language Models, "
        "ICLR 2018; as evaluated by Du et al., SoK: On Gradient Leakage in FL, USENIX Security 2025"
    )

    def apply(self, update: ModelUpdate, ctx: UpdateContext) -> tuple[ModelUpdate, dict[str, float]]:
        cfg = self.config
        norm = global_norm(update.params)
        if cfg.mode == "value":
            params = clip_values(update.params, cfg.bound)
            stats = {"clipped_fraction": fraction(update.params, lambda v: v.abs() > cfg.bound)}
        else:
            params, _ = clip_global_norm(update.params, cfg.bound)
            stats = {"clipped_fraction": float(norm > cfg.bound)}
        out = with_params(update, params)
        return out, {**stats, "norm_before": norm, "norm_after": global_norm(out.params)}
