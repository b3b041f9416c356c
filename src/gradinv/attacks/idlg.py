"""Improved Deep Leakage from Gradients (iDLG).

Zhao, Mopuri, Bilen, "iDLG: Improved Deep Leakage from Gradients", arXiv:2001.02610, 2020.

The label is extracted analytically first (the classifier-weight gradient row with a negative sum,
see :mod:`gradinv.attacks.labels`), then only the dummy data is optimised with DLG's L-BFGS against
the cross-entropy gradient with that fixed label. Uniform initialisation as in the authors' code.

Deviations: ``labels`` selects another recovery method (or known labels, where the threat model
grants them) so the attack also runs for B > 1, where iDLG's own rule is undefined; restarts are
batched candidates as in :mod:`gradinv.attacks.dlg`.

Threat model: as DLG, A (model updates only; Carletti et al. list iDLG under A). The label space and
input shape are read off the model, the batch size is assumed (``assumed_batch_size``, default 1:
iDLG's label rule is defined for one sample) and the inputs unnormalised; granted basic knowledge
replaces the assumptions. ``labels = "known"`` needs the labels (e.g. ``A+labels``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from gradinv.attacks.base import AssumptionsConfig, ProgressFn, register_attack
from gradinv.attacks.dlg import BasicsAssumingAttack, LBFGSConfig, lbfgs_optimiser
from gradinv.attacks.optimization import LabelledConfig
from gradinv.types import AttackerView, AttackResult

__all__ = ["IDLG", "IDLGConfig"]


@dataclass(frozen=True)
class IDLGConfig(LBFGSConfig, LabelledConfig, AssumptionsConfig):
    """iDLG settings: DLG's L-BFGS plus a label strategy (``idlg`` is the paper's); the ``assumed_*``
    options are used only where the threat model does not grant basic knowledge."""

    init: Literal["randn", "rand"] = "rand"
    labels: str = "idlg"


@register_attack
class IDLG(BasicsAssumingAttack):
    """iDLG: analytic label first, then L-BFGS gradient matching on the data."""

    name = "idlg"
    title = "iDLG"
    paper = "Zhao, Mopuri, Bilen. iDLG: Improved Deep Leakage from Gradients. arXiv 2020"
    config_cls = IDLGConfig
    config: IDLGConfig
    why_batch = "iDLG's label rule is defined for one sample"

    def _reconstruct(
        self, view: AttackerView, *, progress: ProgressFn | None, device: torch.device
    ) -> AttackResult:
        cfg = self.config
        return self._match_labelled(
            view, device, labels=cfg.labels, restarts=cfg.restarts, optimise=lbfgs_optimiser(cfg, progress)
        )
