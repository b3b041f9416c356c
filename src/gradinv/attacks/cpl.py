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

from gradinv.attacks.base import AttackConfig, ProgressFn, register_attack
from gradinv.attacks.dlg import _check_lbfgs, lbfgs_match
from gradinv.attacks.gradients import Batching, Probe
from gradinv.attacks.initialization import ImageInit, init_model_input
from gradinv.attacks.objectives import DistanceName, LayerSpec, LayerWeights, check_objective_options
from gradinv.attacks.optimization import MatchOutcome, OptimizationAttack, check_label_strategy
from gradinv.errors import ConfigError
from gradinv.types import AttackerView, AttackResult

__all__ = ["CPL", "CPLConfig", "label_regularizer"]


def label_regularizer(logits: Tensor, labels: Tensor) -> Tensor:
    """``mean_i ||softmax(logits_i) - onehot(labels_i)||^2``."""
    onehot = F.one_hot(labels, logits.shape[-1]).to(logits.dtype)
    return (F.softmax(logits, dim=-1) - onehot).pow(2).sum(-1).mean()


@dataclass(frozen=True)
class CPLConfig(AttackConfig):
    """CPL settings: DLG's L-BFGS, patterned/geometric initialisation, label regulariser."""

    iterations: int = 300
    max_iter: int = 20
    lr: float = 1.0
    history_size: int = 100
    restarts: int = 1
    init: ImageInit = "patterned"
    patch: int = 4
    label_reg: float = 1e-2
    distance: DistanceName = "l2"
    layer_weights: LayerWeights = "equal"
    layers: LayerSpec = ()
    sigma_scale: float = 1.0
    labels: str = "auto"
    batching: Batching = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        _check_lbfgs(self)
        check_objective_options(self.distance, self.layer_weights, self.layers, self.sigma_scale)
        check_label_strategy(self.labels)
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

    def _reconstruct(
        self, view: AttackerView, *, progress: ProgressFn | None, device: torch.device
    ) -> AttackResult:
        cfg = self.config
        setup, labels, method, matcher, notes = self._prepare(view, device)
        n, (c, h, w) = setup.num_samples, setup.input_shape
        x = init_model_input(
            cfg.init,
            (cfg.restarts, n, c, h, w),
            setup.normalization,
            seed=cfg.seed,
            device=device,
            patch=cfg.patch,
        )
        reg = cfg.label_reg

        def objective(probe: Probe, xk: Tensor) -> Tensor:
            if not reg:
                return matcher(probe(xk, labels))
            grads, aux = probe.with_aux(xk, labels)
            return matcher(grads) + reg * label_regularizer(aux.logits, labels)

        out = lbfgs_match(setup, [x], objective, cfg, progress=progress)
        images = setup.normalization.invert(out.tracker.best[0]).clamp(0, 1)
        outcome = MatchOutcome(out.tracker, out.evaluations, out.seconds, out.interrupted, None)
        return self._result(
            setup=setup,
            outcome=outcome,
            images=images[out.tracker.best_index],
            candidates=images,
            labels=labels,
            label_method=method,
            notes=(
                *notes,
                f"labels: {method}",
                f"init: {cfg.init}",
                f"{cfg.iterations} L-BFGS steps requested",
            ),
        )
