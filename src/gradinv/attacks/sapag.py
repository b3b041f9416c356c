"""SAPAG: a self-adaptive privacy attack from gradients.

Wang, Deng, Guo, Wang, Meng, Liu, Ding, Rajasekaran, "SAPAG: A Self-Adaptive Privacy Attack From
Gradients", arXiv:2009.06228, 2020.

Gradient matching with a Gaussian-kernel distance instead of L2 or cosine:
``sum_l w_l (1 - exp(-mean((g_l - t_l)^2) / sigma_l^2))``. Each layer's width ``sigma_l^2`` adapts
to the observed gradient (the variance of the layer's received gradient entries, times
``sigma_scale``), so every layer contributes on its own scale and large-gradient layers cannot
dominate the early iterations; ``layer_weights`` sets ``w_l``. The dummy data starts from a constant
image and is optimised with AdamW.

Deviations: the width rule (variance of the received gradient's entries per layer, with the mean
squared difference inside the kernel) is our reading of the paper's self-adaptive width; the
paper's text was not available to check constants. Restarts with a constant initialisation are
identical, so ``init`` may also be ``uniform``/``gaussian``/``patterned`` to make them differ.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gradinv.attacks.base import register_attack
from gradinv.attacks.initialization import ImageInit
from gradinv.attacks.objectives import DistanceName
from gradinv.attacks.optimization import (
    FirstOrderAttack,
    FirstOrderConfig,
    FirstOrderOptions,
    Schedule,
    Setup,
)
from gradinv.errors import ConfigError

__all__ = ["SAPAG", "SAPAGConfig"]


@dataclass(frozen=True)
class SAPAGConfig(FirstOrderConfig):
    """SAPAG settings: Gaussian-kernel distance, constant initialisation, AdamW."""

    iterations: int = 2000
    init: ImageInit = "constant"
    distance: DistanceName = "gaussian"
    tv: float = 0.0
    signed: bool = False
    weight_decay: float = 1e-2
    init_value: float = 0.5
    schedule: Schedule = "multistep"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.weight_decay < 0:
            raise ConfigError(f"Expected `weight_decay` >= 0, but got {self.weight_decay}.")
        if not 0 <= self.init_value <= 1:
            raise ConfigError(f"Expected `init_value` in [0, 1] (image space), but got {self.init_value}.")


@register_attack
class SAPAG(FirstOrderAttack):
    """Gaussian-kernel gradient matching with per-layer adaptive widths, AdamW, constant start."""

    name = "sapag"
    title = "SAPAG"
    paper = (
        "Wang, Deng, Guo, Wang, Meng, Liu, Ding, Rajasekaran. SAPAG: A Self-Adaptive Privacy Attack From "
        "Gradients. arXiv 2020"
    )
    config_cls = SAPAGConfig
    config: SAPAGConfig

    def _candidates(self, setup: Setup, count: int, device: torch.device) -> Tensor:
        return self._image_candidates(setup, count, device, value=self.config.init_value)

    def _options(self) -> FirstOrderOptions:
        cfg = self.config
        return cfg.first_order(optimizer="adamw", weight_decay=cfg.weight_decay, schedule=cfg.schedule)

    def _notes(self) -> tuple[str, ...]:
        cfg = self.config
        if cfg.init == "constant" and cfg.restarts > 1:
            same = "restarts from a constant image are identical; use another init to vary them"
            return (f"init: {cfg.init}", same)
        return (f"init: {cfg.init}",)
