"""Gaussian noise on the update, optionally after clipping its global L2 norm (local DP).

The client clips its whole update (all parameter tensors as one vector) to L2 norm at most ``C``
(``clip_norm``; McMahan, Ramage, Talwar, Zhang, "Learning Differentially Private Recurrent Language
Models", ICLR 2018, "flat clipping") and adds i.i.d. Gaussian noise to every entry — the Gaussian
mechanism used as local differential privacy in FL (Naseri, Hayes, De Cristofaro, "Local and Central
Differential Privacy for Robustness and Privacy in Federated Learning", NDSS 2022) and the "noisy
gradients" defense of Zhu, Liu, Han, "Deep Leakage from Gradients", NeurIPS 2019, §5 (Gaussian noise
of variance 1e-4 ... 1e-1, no clipping).

Noise scale: with ``relative = false`` (default) the noise standard deviation is ``sigma`` itself
(N(0, σ²), as in DLG §5 and paper 002's "perturbation"); with ``relative = true`` it is
``sigma * clip_norm`` (N(0, σ²C²): ``sigma`` is the noise multiplier of the Gaussian mechanism,
whose sensitivity is ``C``), which needs ``clip_norm``. Noise is drawn from the client's private
generator (seeded per client). BatchNorm buffer deltas (FedAvg) are sent unchanged: use a BN-free
model when the update must carry a DP guarantee.

>>> from gradinv.types import ModelUpdate, UpdateKind
>>> u = ModelUpdate(UpdateKind.GRADIENT, {"w": torch.tensor([3.0, 4.0])})
>>> clip_global_norm(u.params, 1.0)[0]["w"]
tensor([0.6000, 0.8000])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch  # noqa: F401  (the doctest uses it)
from torch import Tensor

from gradinv._checks import check_range
from gradinv.defenses._tensors import global_norm, randn_like
from gradinv.defenses.base import DefenseConfig, UpdateDefense, register_defense, with_params
from gradinv.errors import ConfigError
from gradinv.fl.client import UpdateContext
from gradinv.types import ModelUpdate

__all__ = ["GaussianNoise", "GaussianNoiseConfig", "clip_global_norm"]


def clip_global_norm(tensors: Mapping[str, Tensor], clip_norm: float) -> tuple[dict[str, Tensor], float]:
    """Scale all tensors by ``min(1, C / ||v||)`` where ``v`` is their concatenation; returns the
    clipped tensors and the norm before clipping."""
    norm = global_norm(tensors)
    factor = min(1.0, clip_norm / norm) if norm > 0 else 1.0
    return {k: v * factor for k, v in tensors.items()}, norm


@dataclass(frozen=True)
class GaussianNoiseConfig(DefenseConfig):
    """``sigma``: noise std (or noise multiplier with ``relative``); ``clip_norm``: C, or none."""

    sigma: float = 0.01
    clip_norm: float | None = None
    relative: bool = False

    def __post_init__(self) -> None:
        check_range("sigma", self.sigma, low=0, fix="Use 0 for clipping only.")
        if self.clip_norm is not None:
            check_range("clip_norm", self.clip_norm, low=0, low_open=True, fix="Or none for no clipping.")
        if self.relative and self.clip_norm is None:
            raise ConfigError(
                "Expected `clip_norm` with `relative = true` (the noise std is sigma * clip_norm), "
                "but got none. Set clip_norm, or relative = false for an absolute std."
            )

    @property
    def std(self) -> float:
        return self.sigma * self.clip_norm if self.relative and self.clip_norm else self.sigma


@register_defense
class GaussianNoise(UpdateDefense[GaussianNoiseConfig]):
    """Clip the update's global L2 norm (optional), then add Gaussian noise to every entry."""

    name = "gaussian-noise"
    title = "Gaussian noise (local DP)"
    paper = (
        "Naseri, Hayes, De Cristofaro, Local and Central Differential Privacy for Robustness and "
        "Privacy in Federated Learning, NDSS 2022; Zhu, Liu, Han, Deep Leakage from Gradients, "
        "NeurIPS 2019 (Sec. 5)"
    )

    def apply(self, update: ModelUpdate, ctx: UpdateContext) -> tuple[ModelUpdate, dict[str, float]]:
        cfg = self.config
        params = dict(update.params)
        norm = global_norm(params)
        if cfg.clip_norm is not None:
            params, norm = clip_global_norm(params, cfg.clip_norm)
        std = cfg.std
        if std > 0:
            params = {k: v + std * randn_like(v, ctx.generator) for k, v in params.items()}
        out = with_params(update, params)
        return out, {"std": std, "norm_before": norm, "norm_after": global_norm(out.params)}
