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

from gradinv.attacks.base import register_attack
from gradinv.attacks.objectives import DistanceName
from gradinv.attacks.optimization import (
    FirstOrderAttack,
    FirstOrderConfig,
    FirstOrderOptions,
    InitName,
    Schedule,
)

__all__ = ["WangRepresentatives", "WangRepresentativesConfig"]


@dataclass(frozen=True)
class WangRepresentativesConfig(FirstOrderConfig):
    """Settings of the representative-computation stage (L2 update matching + TV)."""

    init: InitName = "randn"
    distance: DistanceName = "l2"
    tv: float = 1e-2
    signed: bool = False
    schedule: Schedule = "multistep"


@register_attack
class WangRepresentatives(FirstOrderAttack):
    """mGAN-AI's data representatives: L2 update matching with a TV prior (no GAN)."""

    name = "mgan-representatives"
    title = "mGAN-AI representatives (no GAN)"
    paper = (
        "Wang, Song, Zhang, Song, Wang, Qi. Beyond Inferring Class Representatives: User-Level Privacy "
        "Leakage From Federated Learning. IEEE INFOCOM 2019"
    )
    config_cls = WangRepresentativesConfig
    config: WangRepresentativesConfig

    def _options(self) -> FirstOrderOptions:
        return self.config.first_order(schedule=self.config.schedule)

    def _notes(self) -> tuple[str, ...]:
        return ("representatives only: mGAN-AI's GAN stage is not run",)
