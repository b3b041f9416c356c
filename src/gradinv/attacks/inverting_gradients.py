"""Inverting Gradients.

Geiping, Bauermeister, Dröge, Moeller, "Inverting Gradients — How easy is it to break privacy in
federated learning?", NeurIPS 2020.

Minimises ``1 - cos(grad(x), target) + tv * TV(x)`` over dummy data in the model's input space with
Adam on the *signed* gradient, learning rate divided by 10 at 3/8, 5/8 and 7/8 of the iterations,
and a box constraint that keeps ``x`` inside the image range. Restarts are scored by their final
objective and the best is returned.

Implementation notes: the K restarts are one ``(K, N, C, H, W)`` tensor optimised by one Adam
(element-wise, hence K independent optimisers) and evaluated in one ``torch.func.vmap`` call, not a
Python loop. The best iterate seen per restart is kept (the paper keeps the last), so Ctrl-C and
oscillations late in the schedule never lose a better reconstruction. Labels come from the threat
model when granted and are recovered from the gradient otherwise (``labels``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gradinv.attacks.base import register_attack
from gradinv.attacks.optimization import FirstOrderAttack, FirstOrderConfig, FirstOrderOptions, InitName

__all__ = ["InvertingGradients", "InvertingGradientsConfig"]


@dataclass(frozen=True)
class InvertingGradientsConfig(FirstOrderConfig):
    """Defaults follow the authors' CIFAR-10 settings (inversefed: lr 0.1, TV 1e-4, 4800 steps)."""

    iterations: int = 4800
    init: InitName = "randn"
    optimizer: Literal["adam", "sgd"] = "adam"
    boxed: bool = True
    lr_decay: bool = True


@register_attack
class InvertingGradients(FirstOrderAttack):
    """Cosine gradient matching with TV prior, signed Adam, box constraint and batched restarts."""

    name = "inverting-gradients"
    title = "Inverting Gradients"
    paper = "Geiping, Bauermeister, Dröge, Moeller. Inverting Gradients. NeurIPS 2020"
    config_cls = InvertingGradientsConfig
    config: InvertingGradientsConfig

    def _options(self) -> FirstOrderOptions:
        cfg = self.config
        schedule = "multistep" if cfg.lr_decay else "none"
        return cfg.first_order(optimizer=cfg.optimizer, boxed=cfg.boxed, schedule=schedule)
