"""Gradient pruning: the entries of smallest magnitude are set to zero.

Zhu, Liu, Han, "Deep Leakage from Gradients", NeurIPS 2019, §5 ("gradient compression and
sparsification"): pruning the ``p`` fraction of gradient entries with the smallest magnitudes; DLG
still recovers images at 20% pruning and fails beyond ~20–30%.

``ratio`` is the fraction ``p`` pruned: ``floor(p * n)`` entries of smallest magnitude become zero
and the other ``n - floor(p * n)`` are kept unchanged, in every tensor (``scope = "tensor"``,
default, a per-layer threshold as in Deep Gradient Compression) or over all tensors together
(``"global"``). Buffer deltas (BatchNorm statistics) are sent unchanged.

>>> prune_smallest({"w": torch.tensor([0.1, -3.0, 2.0, 0.5])}, ratio=0.5)["w"]
tensor([ 0., -3.,  2.,  0.])
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch  # noqa: F401  (the doctest uses it)
from torch import Tensor

from gradinv._checks import check_choice, check_range
from gradinv.defenses._tensors import fraction, keep_largest
from gradinv.defenses.base import DefenseConfig, UpdateDefense, register_defense, with_params
from gradinv.fl.client import UpdateContext
from gradinv.types import ModelUpdate

__all__ = ["GradientPruning", "GradientPruningConfig", "prune_smallest"]

Scope = Literal["tensor", "global"]


def _pruned(fraction: float, n: int) -> int:
    return min(n, math.floor(round(fraction * n, 9)))


def prune_smallest(
    tensors: Mapping[str, Tensor], *, ratio: float, scope: Scope = "tensor"
) -> dict[str, Tensor]:
    """Zero the ``floor(ratio * n)`` entries of smallest magnitude (per tensor or globally)."""
    if scope == "global":
        n = sum(t.numel() for t in tensors.values())
        return keep_largest(tensors, n - _pruned(ratio, n))
    return keep_largest(tensors, {k: t.numel() - _pruned(ratio, t.numel()) for k, t in tensors.items()})


@dataclass(frozen=True)
class GradientPruningConfig(DefenseConfig):
    """``ratio``: the fraction of entries pruned, in [0, 1); ``scope``: per tensor or global."""

    ratio: float = 0.2
    scope: Scope = "tensor"

    def __post_init__(self) -> None:
        check_range(
            "ratio",
            self.ratio,
            low=0,
            high=1,
            high_open=True,
            what="the fraction pruned",
            fix="DLG uses 0.01 ... 0.7.",
        )
        check_choice("scope", self.scope, ("tensor", "global"))


@register_defense
class GradientPruning(UpdateDefense[GradientPruningConfig]):
    """Set the p% entries of smallest magnitude to zero (per tensor or globally)."""

    name = "pruning"
    title = "Gradient pruning"
    paper = "Zhu, Liu, Han, Deep Leakage from Gradients, NeurIPS 2019 (Sec. 5)"

    def apply(self, update: ModelUpdate, ctx: UpdateContext) -> tuple[ModelUpdate, dict[str, float]]:
        params = prune_smallest(update.params, ratio=self.config.ratio, scope=self.config.scope)
        return with_params(update, params), {"kept_fraction": fraction(params, lambda t: t != 0)}
