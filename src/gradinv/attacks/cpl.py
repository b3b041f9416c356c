"""CPL, the client privacy leakage attack.

Wei, Liu, Loper, Chow, Gursoy, Truex, Wu, "A Framework for Evaluating Gradient Leakage Attacks in
Federated Learning", ESORICS 2020.

DLG's L-BFGS gradient matching (squared L2, lr 1, no line search) with two changes:

* initialisation: *patterned* randomisation — a small random patch tiled over the image
  (``init = "patterned"``, ``patch`` pixels) — or the *geometric* initialisation
  (:mod:`gradinv.attacks.initialization`), instead of i.i.d. Gaussian noise;
* a label-based regulariser: labels are recovered from the gradient first (or known, where the
  threat model grants them) and ``label_reg * mean_i ||softmax(f(x_i)) - onehot(y_i)||^2``
  pushes the model's prediction on each dummy image towards its label.

Deviations: the geometric initialisation is our reading (see the initialisation module); restarts
run as independent batched L-BFGS candidates (the best final objective wins); the best iterate per
candidate is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from gradinv.attacks.base import ProgressFn, register_attack
from gradinv.attacks.dlg import LBFGSConfig, lbfgs_optimiser
from gradinv.attacks.gradients import Objective, Probe
from gradinv.attacks.initialization import ImageInit
from gradinv.attacks.objectives import GradientMatcher
from gradinv.attacks.optimization import LabelledConfig, OptimizationAttack, Setup, matching_objective
from gradinv.errors import ConfigError
from gradinv.types import AttackerView, AttackResult

__all__ = ["CPL", "CPLConfig", "label_regularizer"]


def label_regularizer(logits: Tensor, labels: Tensor) -> Tensor:
    """``mean_i ||softmax(logits_i) - onehot(labels_i)||^2``."""
    onehot = F.one_hot(labels, logits.shape[-1]).to(logits.dtype)
    return (F.softmax(logits, dim=-1) - onehot).pow(2).sum(-1).mean()


@dataclass(frozen=True)
class CPLConfig(LBFGSConfig, LabelledConfig):
    """CPL settings: DLG's L-BFGS, patterned/geometric initialisation, label regulariser."""

    init: ImageInit = "patterned"
    patch: int = 4
    label_reg: float = 1e-2

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.patch < 1:
            raise ConfigError(
                f"Expected `patch` >= 1 pixel, but got {self.patch}. CPL uses small patches (4)."
            )
        if self.label_reg < 0:
            raise ConfigError(f"Expected `label_reg` >= 0, but got {self.label_reg}.")


@register_attack
class CPL(OptimizationAttack):
    """L-BFGS gradient matching from a patterned/geometric start with a label regulariser."""

    name = "cpl"
    title = "CPL"
    paper = (
        "Wei, Liu, Loper, Chow, Gursoy, Truex, Wu. A Framework for Evaluating Gradient Leakage Attacks "
        "in Federated Learning. ESORICS 2020"
    )
    config_cls = CPLConfig
    config: CPLConfig

    def _candidates(self, setup: Setup, count: int, device: torch.device) -> Tensor:
        return self._image_candidates(setup, count, device, patch=self.config.patch)

    def _objective(self, matcher: GradientMatcher, labels: Tensor) -> Objective:
        reg = self.config.label_reg
        if not reg:
            return matching_objective(matcher, labels)

        def objective(probe: Probe, xk: Tensor) -> Tensor:
            grads, aux = probe.with_aux(xk, labels)
            return matcher(grads) + reg * label_regularizer(aux.logits, labels)

        return objective

    def _reconstruct(
        self, view: AttackerView, *, progress: ProgressFn | None, device: torch.device
    ) -> AttackResult:
        cfg = self.config
        return self._match_labelled(
            view,
            device,
            labels=cfg.labels,
            restarts=cfg.restarts,
            optimise=lbfgs_optimiser(cfg, progress),
            objective=self._objective,
            notes=(f"init: {cfg.init}", f"{cfg.iterations} L-BFGS steps requested"),
        )
