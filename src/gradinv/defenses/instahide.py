"""InstaHide: train on mixtures of k samples with a random pixel-wise sign flip.

Huang, Song, Li, Arora, "InstaHide: Instance-hiding Schemes for Private Distributed Learning",
ICML 2020.

In every local step each sample ``x_n`` is mixed with ``k - 1`` other samples of the client's own
batch (the paper's "inside-dataset" InstaHide; the cross-dataset variant also mixes public
images, which this client does not hold) and the mixture is multiplied by a fresh random sign mask
``σ ∈ {-1, +1}`` per pixel and channel::

    x'_n = σ_n ⊙ sum_j λ_nj x_{i_nj},   y'_n = sum_j λ_nj onehot(y_{i_nj})

with ``i_n1 = n`` and ``i_nj`` (j ≥ 2) from ``k - 1`` random permutations of the batch. As in the
authors' code the coefficients are ``|N(0, 1)|`` draws normalised to sum 1, redrawn until none
exceeds ``upper`` (default 0.65, k = 4). Images are mixed and flipped in model-input space (the
paper flips normalised images, centred on zero). Only the labels are mixed, not flipped. The
randomness comes from the client's private generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from gradinv._checks import check_int
from gradinv.defenses.base import DefenseConfig, register_defense
from gradinv.defenses.mixup import MixingDefense
from gradinv.errors import ConfigError

__all__ = ["InstaHide", "InstaHideConfig", "instahide_plan", "instahide_signs"]

_MAX_DRAWS = 10_000


def instahide_plan(n: int, *, k: int, upper: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Indices ``(N, k)`` (first column the sample itself) and coefficients ``(N, k)`` summing to 1,
    each at most ``upper`` (for k > 1)."""
    perms = [torch.arange(n)] + [torch.randperm(n, generator=generator) for _ in range(k - 1)]
    indices = torch.stack(perms, dim=1)
    if k == 1:  # the only coefficient is 1, whatever `upper`
        return indices, torch.ones(n, 1, dtype=torch.float64)
    lam = torch.empty(n, k, dtype=torch.float64)
    todo = torch.ones(n, dtype=torch.bool)
    for _ in range(_MAX_DRAWS):
        m = int(todo.sum())
        if m == 0:
            break
        draw = torch.randn(m, k, generator=generator, dtype=torch.float64).abs()
        lam[todo] = draw / draw.sum(1, keepdim=True)
        todo = lam.amax(1) > upper
    else:
        raise ConfigError(f"Could not draw InstaHide coefficients with max <= {upper}; raise `upper`.")
    return indices, lam


def instahide_signs(shape: torch.Size | tuple[int, ...], *, generator: torch.Generator) -> Tensor:
    """A random ``±1`` mask of ``shape`` (fair coin per entry)."""
    return torch.randint(0, 2, tuple(shape), generator=generator).to(torch.float32) * 2 - 1


@dataclass(frozen=True)
class InstaHideConfig(DefenseConfig):
    """``k`` samples per mixture, ``upper`` bound on a coefficient, ``sign_flip``."""

    k: int = 4
    upper: float = 0.65
    sign_flip: bool = True

    def __post_init__(self) -> None:
        check_int("k", self.k, fix="The paper uses 4.")
        if not (math.isfinite(self.upper) and self.upper <= 1 and (self.upper > 1 / self.k or self.k == 1)):
            raise ConfigError(
                f"Expected `upper` in (1/k, 1] = ({1 / self.k:.3g}, 1], but got {self.upper}. "
                "The coefficients sum to 1, so one of them is at least 1/k."
            )


@register_defense
class InstaHide(MixingDefense[InstaHideConfig]):
    """Mix every sample with k - 1 others of the batch and flip pixel signs at random."""

    name = "instahide"
    title = "InstaHide"
    paper = (
        "Huang, Song, Li, Arora, InstaHide: Instance-hiding Schemes for Private Distributed Learning, "
        "ICML 2020"
    )

    def plan(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        return instahide_plan(n, k=self.config.k, upper=self.config.upper, generator=generator)

    def summary(self, weights: Tensor) -> Tensor:
        return weights.amax(1)  # the largest coefficient of each mixture

    def finish(self, mixed_x: Tensor, generator: torch.Generator) -> Tensor:
        if not self.config.sign_flip:
            return mixed_x
        return mixed_x * instahide_signs(mixed_x.shape, generator=generator).to(mixed_x.device, mixed_x.dtype)

    def report(self, mean: float) -> dict[str, float]:
        return {"k": float(self.config.k), "mean_max_coefficient": mean}
