"""Top-k sparsification: the client sends only the k entries of largest magnitude.

Top-k sparsification as evaluated by Du et al., "SoK: On Gradient Leakage in Federated Learning",
USENIX Security 2025 (Appx. C-III, citing Foroutan Eghlidi and Jaggi, "Sparse Communication for
Training Deep Networks", arXiv:2009.09271, 2020); the same operator as the gradient sparsification
of Aji and Heafield, "Sparse Communication for Distributed Gradient Descent", EMNLP 2017.

Exactly ``k`` entries are kept (ties broken by ``torch.topk``), the rest set to zero. ``k`` is given
as a count (``k``) or as a fraction of the entries (``ratio``, rounded up); ``scope = "global"``
(default) ranks all parameter tensors together, ``"tensor"`` keeps ``k`` (or ``ceil(ratio * n)``)
entries in every tensor. Buffer deltas (BatchNorm statistics) are sent unchanged.

>>> keep_topk({"w": torch.tensor([0.1, -3.0, 2.0, 0.5])}, k=2)["w"]
tensor([ 0., -3.,  2.,  0.])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch  # noqa: F401  (the doctest uses it)
from torch import Tensor

from gradinv._checks import check_choice, check_int, check_range
from gradinv.defenses._tensors import ceil_count, fraction, keep_largest
from gradinv.defenses.base import DefenseConfig, UpdateDefense, register_defense, with_params
from gradinv.errors import ConfigError
from gradinv.fl.client import UpdateContext
from gradinv.types import ModelUpdate

__all__ = ["TopK", "TopKConfig", "keep_topk"]

Scope = Literal["global", "tensor"]


def keep_topk(
    tensors: Mapping[str, Tensor],
    *,
    k: int | None = None,
    ratio: float | None = None,
    scope: Scope = "global",
) -> dict[str, Tensor]:
    """Keep the ``k`` (or ``ceil(ratio * n)``) entries of largest magnitude, over all tensors
    (``global``) or in each tensor (``tensor``); zero the others."""
    if (k is None) == (ratio is None):
        raise ConfigError("Give exactly one of `k` and `ratio`.")
    if scope == "global":
        n = sum(t.numel() for t in tensors.values())
        return keep_largest(tensors, k if k is not None else ceil_count(float(ratio or 0), n))
    counts = {
        name: (k if k is not None else ceil_count(float(ratio or 0), t.numel()))
        for name, t in tensors.items()
    }
    return keep_largest(tensors, counts)


@dataclass(frozen=True)
class TopKConfig(DefenseConfig):
    """``k`` (a count) or ``ratio`` (fraction kept; default 0.1 when neither is given); ``scope``."""

    k: int | None = None
    ratio: float | None = None
    scope: Scope = "global"

    def __post_init__(self) -> None:
        if self.k is not None and self.ratio is not None:
            raise ConfigError(
                f"Expected one of `k` and `ratio`, but got both (k={self.k}, ratio={self.ratio}). Remove one."
            )
        if self.k is None and self.ratio is None:
            object.__setattr__(self, "ratio", 0.1)
        if self.k is not None:
            check_int("k", self.k)
        if self.ratio is not None:
            check_range("ratio", self.ratio, low=0, high=1, low_open=True, what="the fraction kept")
        check_choice("scope", self.scope, ("global", "tensor"))


@register_defense
class TopK(UpdateDefense[TopKConfig]):
    """Keep exactly the k entries of largest magnitude (globally or per tensor), zero the rest."""

    name = "topk"
    title = "Top-k sparsification"
    paper = (
        "Foroutan Eghlidi, Jaggi, Sparse Communication for Training Deep Networks, arXiv:2009.09271, "
        "2020; as evaluated by Du et al., SoK: On Gradient Leakage in FL, USENIX Security 2025"
    )

    def apply(self, update: ModelUpdate, ctx: UpdateContext) -> tuple[ModelUpdate, dict[str, float]]:
        cfg = self.config
        params = keep_topk(update.params, k=cfg.k, ratio=cfg.ratio, scope=cfg.scope)
        return with_params(update, params), {"kept_fraction": fraction(params, lambda t: t != 0)}
