"""Improved Deep Leakage from Gradients (iDLG).

Zhao, Mopuri, Bilen, "iDLG: Improved Deep Leakage from Gradients", arXiv:2001.02610, 2020.

The label is extracted analytically first (the classifier-weight gradient row with a negative sum,
see :mod:`gradinv.attacks.labels`), then only the dummy data is optimised with DLG's L-BFGS against
the cross-entropy gradient with that fixed label. Uniform initialisation as in the authors' code.

Deviations: ``labels`` selects another recovery method (or known labels, where the threat model
grants them) so the attack also runs for B > 1, where iDLG's own rule is undefined; restarts are
batched candidates as in :mod:`gradinv.attacks.dlg`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from gradinv.attacks.base import AttackConfig, ProgressFn, register_attack
from gradinv.attacks.dlg import DLGConfig, _check_lbfgs, lbfgs_match
from gradinv.attacks.gradients import Batching, Probe
from gradinv.attacks.objectives import DistanceName, LayerSpec, LayerWeights, check_objective_options
from gradinv.attacks.optimization import OptimizationAttack, check_label_strategy, init_candidates
from gradinv.types import AttackerView, AttackResult, Reconstruction

__all__ = ["IDLG", "IDLGConfig"]


@dataclass(frozen=True)
class IDLGConfig(AttackConfig):
    """iDLG settings: DLG's L-BFGS plus a label strategy (``idlg`` is the paper's)."""

    iterations: int = 300
    max_iter: int = 20
    lr: float = 1.0
    history_size: int = 100
    restarts: int = 1
    init: Literal["randn", "rand"] = "rand"
    distance: DistanceName = "l2"
    layer_weights: LayerWeights = "equal"
    layers: LayerSpec = ()
    sigma_scale: float = 1.0
    labels: str = "idlg"
    batching: Batching = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        _check_lbfgs(self)
        check_objective_options(self.distance, self.layer_weights, self.layers, self.sigma_scale)
        check_label_strategy(self.labels)

    def lbfgs(self) -> DLGConfig:
        return DLGConfig(
            iterations=self.iterations,
            max_iter=self.max_iter,
            lr=self.lr,
            history_size=self.history_size,
            restarts=self.restarts,
            init=self.init,
            distance=self.distance,
            layer_weights=self.layer_weights,
            layers=self.layers,
            sigma_scale=self.sigma_scale,
            batching=self.batching,
            seed=self.seed,
        )


@register_attack
class IDLG(OptimizationAttack):
    """iDLG: analytic label first, then L-BFGS gradient matching on the data."""

    name = "idlg"
    title = "iDLG"
    paper = "Zhao, Mopuri, Bilen. iDLG: Improved Deep Leakage from Gradients. arXiv 2020"
    config_cls = IDLGConfig
    config: IDLGConfig

    def _reconstruct(
        self, view: AttackerView, *, progress: ProgressFn | None, device: torch.device
    ) -> AttackResult:
        cfg = self.config
        setup, labels, method, matcher, notes = self._prepare(view, device)
        n, (c, h, w) = setup.num_samples, setup.input_shape
        x = init_candidates(cfg.init, (cfg.restarts, n, c, h, w), seed=cfg.seed, device=device)

        def objective(probe: Probe, xk: Tensor) -> Tensor:
            return matcher(probe(xk, labels))

        out = lbfgs_match(setup, [x], objective, cfg.lbfgs(), progress=progress)
        best = out.tracker.best_index
        images = setup.normalization.invert(out.tracker.best[0]).clamp(0, 1)
        rec = Reconstruction(
            images=images[best].cpu(),
            labels=labels.cpu(),
            label_method=method,
            candidates=images.cpu(),
            candidate_losses=tuple(float(v) for v in out.tracker.best_loss),
        )
        return AttackResult(
            attack=self.name,
            reconstruction=rec,
            parameters=cfg.to_dict(),
            iterations=out.evaluations,
            seconds=out.seconds,
            interrupted=out.interrupted,
            loss_history=tuple(out.tracker.history),
            best_candidate=best,
            notes=(*setup.notes, *notes, f"labels: {method}"),
        )
