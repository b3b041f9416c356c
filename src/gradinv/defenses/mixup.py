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

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from gradinv._checks import check_range
from gradinv.defenses._targets import as_probabilities, num_classes_of
from gradinv.defenses.base import ConfigT, Defense, DefenseConfig, DefenseHooks, Stage, register_defense
from gradinv.fl.client import StepContext

__all__ = ["MixUp", "MixUpConfig", "MixingDefense", "mix_samples", "mixup_plan", "numpy_rng"]


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


class _MixingHooks(DefenseHooks["MixingDefense[Any]"]):
    def __init__(self, defense: MixingDefense[Any]) -> None:
        super().__init__(defense)
        self.values: list[float] = []

    def on_batch(self, x: Tensor, targets: Tensor, ctx: StepContext) -> tuple[Tensor, Tensor]:
        probs = as_probabilities(targets, num_classes_of(ctx.model), dtype=x.dtype)
        indices, weights = self.defense.plan(x.shape[0], ctx.generator)
        self.values += self.defense.summary(weights).tolist()
        mixed_x, mixed_y = mix_samples(x, probs, indices.to(x.device), weights.to(x.device))
        return self.defense.finish(mixed_x, ctx.generator), mixed_y

    def info(self) -> dict[str, float]:
        return self.defense.report(sum(self.values) / len(self.values) if self.values else 0.0)


class MixingDefense(Defense[ConfigT]):
    """Base of the mixing defenses: every local batch is replaced by mixtures of its samples (and of
    their one-hot labels) that :meth:`plan` draws from the client's generator; :meth:`finish` may
    transform the mixed images. :meth:`summary` gives one number per mixture; each client's hooks
    report the mean over its training through :meth:`report`."""

    stage: ClassVar[Stage] = "data"
    hooks_cls = _MixingHooks

    def plan(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Indices ``(N, k)`` into the batch and their weights ``(N, k)``."""
        raise NotImplementedError

    def summary(self, weights: Tensor) -> Tensor:
        raise NotImplementedError

    def finish(self, mixed_x: Tensor, generator: torch.Generator) -> Tensor:
        return mixed_x

    def report(self, mean: float) -> dict[str, float]:
        raise NotImplementedError


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
        check_range("alpha", self.alpha, low=0, low_open=True, fix="The paper uses 0.1 ... 1.")


@register_defense
class MixUp(MixingDefense[MixUpConfig]):
    """Train on convex combinations of sample pairs and their one-hot labels (λ ~ Beta(α, α))."""

    name = "mixup"
    title = "MixUp"
    paper = "Zhang, Cissé, Dauphin, Lopez-Paz, mixup: Beyond Empirical Risk Minimization, ICLR 2018"

    def plan(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        return mixup_plan(n, alpha=self.config.alpha, per_sample=self.config.per_sample, generator=generator)

    def summary(self, weights: Tensor) -> Tensor:
        return weights[:, 0]  # λ

    def report(self, mean: float) -> dict[str, float]:
        return {"mean_lambda": mean}
