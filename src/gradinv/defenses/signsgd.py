"""signSGD: the client sends only the sign of every entry of its update.

Bernstein, Wang, Azizzadenesheli, Anandkumar, "signSGD: Compressed Optimisation for Non-Convex
Problems", ICML 2018.

Every entry becomes ``+s`` or ``-s`` (a zero entry counts as positive, so one bit per entry suffices).
``scale = "mean"`` (default) uses ``s = mean |v|`` per tensor (``||v||_1 / d``, the scaled sign of
Karimireddy, Rebjock, Stich, Jaggi, "Error Feedback Fixes SignSGD and other Gradient Compression
Schemes", ICML 2019), so the update keeps the tensor's average magnitude and FedAvg deltas stay on
the scale the server expects; ``scale = "none"`` sends ``±1`` as in Bernstein et al., whose step size
is then the server's learning rate. Buffer deltas (BatchNorm statistics) are sent unchanged.

>>> sign_compress(torch.tensor([0.5, -1.5, 0.0]), scale="mean")
tensor([ 0.6667, -0.6667,  0.6667])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from gradinv._checks import check_choice
from gradinv.defenses._tensors import fraction
from gradinv.defenses.base import DefenseConfig, UpdateDefense, map_update, register_defense
from gradinv.fl.client import UpdateContext
from gradinv.types import ModelUpdate

__all__ = ["SignSGD", "SignSGDConfig", "sign_compress"]

Scale = Literal["mean", "none"]


def sign_compress(t: Tensor, *, scale: Scale = "mean") -> Tensor:
    """``s * sign(t)`` with ``sign(0) = +1``; ``s = mean |t|`` or 1."""
    signs = torch.where(t >= 0, torch.ones_like(t), -torch.ones_like(t))
    if scale == "none":
        return signs
    return signs * t.abs().mean()


@dataclass(frozen=True)
class SignSGDConfig(DefenseConfig):
    """``scale``: ``mean`` (s = mean |v| per tensor) or ``none`` (s = 1)."""

    scale: Scale = "mean"

    def __post_init__(self) -> None:
        check_choice("scale", self.scale, ("mean", "none"))


@register_defense
class SignSGD(UpdateDefense[SignSGDConfig]):
    """Send the sign of every entry (times the tensor's mean magnitude, or 1)."""

    name = "signsgd"
    title = "signSGD"
    paper = (
        "Bernstein, Wang, Azizzadenesheli, Anandkumar, signSGD: Compressed Optimisation for "
        "Non-Convex Problems, ICML 2018"
    )

    def apply(self, update: ModelUpdate, ctx: UpdateContext) -> tuple[ModelUpdate, dict[str, float]]:
        out = map_update(update, lambda _, t: sign_compress(t, scale=self.config.scale))
        return out, {"positive_fraction": fraction(update.params, lambda t: t >= 0)}
