"""Data representatives of mGAN-AI, without the GAN.

Wang, Song, Zhang, Song, Wang, Qi, "Beyond Inferring Class Representatives: User-Level Privacy
Leakage From Federated Learning", IEEE INFOCOM 2019.

mGAN-AI's malicious server first computes *data representatives* of a client from its update —
dummy inputs whose update matches the observed one (squared L2 distance) under a total-variation
smoothness prior — and then uses them to train a multi-task GAN discriminator that generates the
client's samples. This module implements only the first, optimisation-based stage: the
representatives are returned as the reconstruction.

Deviations: no GAN (the generative stage needs a generator trained on auxiliary data of the
client's distribution and is out of scope here); labels are recovered from the gradient (or known)
instead of taken from the GAN's auxiliary classifier; Adam with the shared schedule instead of
plain gradient descent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from gradinv.attacks.base import AttackConfig, ProgressFn, register_attack
from gradinv.attacks.gradients import Batching
from gradinv.attacks.objectives import DistanceName, LayerSpec, LayerWeights, check_objective_options
from gradinv.attacks.optimization import (
    FirstOrderOptions,
    OptimizationAttack,
    check_first_order,
    check_label_strategy,
)
from gradinv.attacks.optimization import Schedule as _Schedule
from gradinv.types import AttackerView, AttackResult

__all__ = ["WangRepresentatives", "WangRepresentativesConfig"]


@dataclass(frozen=True)
class WangRepresentativesConfig(AttackConfig):
    """Settings of the representative-computation stage (L2 update matching + TV)."""

    iterations: int = 1000
    lr: float = 0.1
    tv: float = 1e-2
    restarts: int = 1
    signed: bool = False
    schedule: _Schedule = "multistep"
    init: Literal["randn", "rand", "zeros", "half"] = "randn"
    distance: DistanceName = "l2"
    layer_weights: LayerWeights = "equal"
    layers: LayerSpec = ()
    sigma_scale: float = 1.0
    labels: str = "auto"
    batching: Batching = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        check_first_order(self)
        check_objective_options(self.distance, self.layer_weights, self.layers, self.sigma_scale)
        check_label_strategy(self.labels)


@register_attack
class WangRepresentatives(OptimizationAttack):
    """mGAN-AI's data representatives: L2 update matching with a TV prior (no GAN)."""

    name = "mgan-representatives"
    title = "mGAN-AI representatives (no GAN)"
    paper = (
        "Wang, Song, Zhang, Song, Wang, Qi. Beyond Inferring Class Representatives: User-Level Privacy "
        "Leakage From Federated Learning. IEEE INFOCOM 2019"
    )
    config_cls = WangRepresentativesConfig
    config: WangRepresentativesConfig

    def _reconstruct(
        self, view: AttackerView, *, progress: ProgressFn | None, device: torch.device
    ) -> AttackResult:
        cfg = self.config
        opts = FirstOrderOptions(
            iterations=cfg.iterations,
            lr=cfg.lr,
            signed=cfg.signed,
            schedule=cfg.schedule,
            batching=cfg.batching,
        )
        return self._match_with_tv(
            view,
            device,
            opts,
            progress=progress,
            extra_notes=("representatives only: mGAN-AI's GAN stage is not run",),
        )
