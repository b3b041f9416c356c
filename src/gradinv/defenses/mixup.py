"""MixUp on the client's mini-batches: train on convex combinations of pairs of samples.

Zhang, Cissé, Dauphin, Lopez-Paz, "mixup: Beyond Empirical Risk Minimization", ICLR 2018.

In every local step the batch is mixed with a random permutation of itself::

    x'_n = λ x_n + (1 - λ) x_{π(n)},    y'_n = λ onehot(y_n) + (1 - λ) onehot(y_{π(n)})

with ``λ ~ Beta(α, α)``: one λ for the whole batch as in the authors' code (``per_sample = false``),
or one per sample. The client trains on the soft labels ``y'`` (cross-entropy with probabilities),
so its gradient leaks only the mixed images. Images are mixed in model-input space (after
normalisation; mixing commutes with the affine normalisation). The randomness comes from the
client's private generator.

>>> x = torch.tensor([[0.0], [1.0]])
>>> y = torch.eye(2)
>>> mix_samples(x, y, torch.tensor([[0, 1], [1, 0]]), torch.tensor([[0.75, 0.25], [0.75, 0.25]]))[1]
tensor([[0.7500, 0.2500],
        [0.2500, 0.7500]])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from gradinv.defenses._targets import as_probabilities, num_classes_of
from gradinv.defenses.base import Defense, DefenseConfig, register_defense
from gradinv.errors import ConfigError
from gradinv.fl.client import ClientHooks, StepContext

__all__ = ["MixUp", "MixUpConfig", "mix_samples", "mixup_plan", "numpy_rng"]


def numpy_rng(generator: torch.Generator) -> np.random.Generator:
    """A NumPy generator seeded from ``generator`` (for distributions torch cannot draw with one)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return np.random.default_rng(seed)


def mix_samples(x: Tensor, probs: Tensor, indices: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """``x'_n = sum_j w_nj x[i_nj]`` and ``y'_n = sum_j w_nj y[i_nj]`` for ``indices`` and ``weights``
    of shape ``(N, k)``."""
    w = weights.to(x.dtype)
    xs = x[indices]  # (N, k, ...)
    mixed_x = (w.view(*w.shape, *([1] * (x.ndim - 1))) * xs).sum(1)
    mixed_y = (weights.to(probs.dtype).unsqueeze(-1) * probs[indices]).sum(1)
    return mixed_x, mixed_y


def mixup_plan(
    n: int, *, alpha: float, per_sample: bool = False, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Indices ``(N, 2)`` = ``[n, π(n)]`` and weights ``(N, 2)`` = ``[λ, 1 - λ]``, λ ~ Beta(α, α)."""
    rng = numpy_rng(generator)
    lam = rng.beta(alpha, alpha, size=n if per_sample else 1)
    lam_t = torch.as_tensor(np.broadcast_to(lam, (n,)).copy(), dtype=torch.float64)
    perm = torch.randperm(n, generator=generator)
    indices = torch.stack([torch.arange(n), perm], dim=1)
    weights = torch.stack([lam_t, 1 - lam_t], dim=1)
    return indices, weights


@dataclass(frozen=True)
class MixUpConfig(DefenseConfig):
    """``alpha``: the Beta(α, α) parameter; ``per_sample``: one λ per sample instead of per batch."""

    alpha: float = 1.0
    per_sample: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.alpha) and self.alpha > 0):
            raise ConfigError(f"Expected `alpha` > 0, but got {self.alpha}. The paper uses 0.1 ... 1.")


@register_defense
class MixUp(Defense):
    """Train on convex combinations of sample pairs and their one-hot labels (λ ~ Beta(α, α))."""

    name = "mixup"
    title = "MixUp"
    stage = "data"
    paper = "Zhang, Cissé, Dauphin, Lopez-Paz, mixup: Beyond Empirical Risk Minimization, ICLR 2018"
    config_cls = MixUpConfig
    config: MixUpConfig

    def client_hooks(self) -> ClientHooks:
        return _MixUpHooks(self.config)


class _MixUpHooks(ClientHooks):
    def __init__(self, cfg: MixUpConfig) -> None:
        self.cfg = cfg
        self.lambdas: list[float] = []

    def on_batch(self, x: Tensor, targets: Tensor, ctx: StepContext) -> tuple[Tensor, Tensor]:
        probs = as_probabilities(targets, num_classes_of(ctx.model), dtype=x.dtype)
        indices, weights = mixup_plan(
            x.shape[0], alpha=self.cfg.alpha, per_sample=self.cfg.per_sample, generator=ctx.generator
        )
        self.lambdas += weights[:, 0].tolist()
        return mix_samples(x, probs, indices.to(x.device), weights.to(x.device))

    def info(self) -> dict[str, float]:
        lam = self.lambdas
        return {"mean_lambda": sum(lam) / len(lam) if lam else 0.0}
