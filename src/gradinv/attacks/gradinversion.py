"""GradInversion.

Yin, Mallya, Vahdat, Alvarez, Kautz, Molchanov, "See through Gradients: Image Batch Recovery via
GradInversion", CVPR 2021.

Minimises, over G candidate batches started from different seeds,

``grad_weight * D(grad(x_g), target) + R_fidel(x_g) + R_group(x_g)``

* ``D``: the gradient distance (the paper's squared L2; every shared objective option applies);
* ``R_fidel = tv * TV(x) + l2 * mean(x^2) + bn * R_BN(x)``, where ``R_BN`` matches, per BatchNorm
  layer, the mean and variance of the layer's input on the candidate batch to those of the client's
  batch (``view.bn_statistics``; :func:`gradinv.attacks.regularizers.bn_statistics_prior`);
* ``R_group = group * mean((x_g - c)^2)`` pulls each member towards the consensus ``c``, the mean
  of the G members, recomputed every iteration once ``group_start`` of the iterations have passed.

Labels: known when the threat model grants them, else the paper's own recovery (``yin``: the
classes whose classifier-gradient rows have the most negative minima). The result is the consensus
of the members' best iterates; the members are the candidates.

Needs the client data distribution (the batch's BN statistics), so threat model E; refused under D
or weaker.

Deviations: the members are aligned by slot (each slot carries one recovered label) instead of the
paper's image registration before averaging; no random jitter/flip augmentation during the
optimisation and no multi-resolution schedule; the L2 prior is a mean, not a norm; Adam with the
shared step schedule (``multistep`` by default) rather than the paper's exact schedule; the G
members are evaluated as batched candidates (:class:`~gradinv.attacks.gradients.CandidateEvaluator`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from gradinv.attacks.base import ProgressFn, register_attack
from gradinv.attacks.gradients import Probe
from gradinv.attacks.labels import resolve_labels
from gradinv.attacks.optimization import (
    FirstOrderOptions,
    InitName,
    LabelledConfig,
    OptimizationAttack,
    Schedule,
    first_order_match,
)
from gradinv.attacks.regularizers import bn_statistics_prior, group_consistency, l2_prior, total_variation
from gradinv.errors import AttackRefused, ConfigError
from gradinv.threat import Knowledge, Requirement
from gradinv.types import AttackerView, AttackResult

__all__ = ["GradInversion", "GradInversionConfig"]


BN_NEEDED = Requirement(
    Knowledge.CLIENT_DATA_DISTRIBUTION,
    "its BatchNorm prior matches the client batch's per-layer BN statistics",
)


@dataclass(frozen=True)
class GradInversionConfig(LabelledConfig):
    """GradInversion settings. ``group_size`` is the number G of parallel seeds (candidates)."""

    iterations: int = 2000
    init: InitName = "randn"
    group_size: int = 4
    grad_weight: float = 1.0
    bn: float = 1e-2
    tv: float = 1e-4
    l2: float = 1e-6
    group: float = 1e-2
    group_start: float = 0.25
    signed: bool = True
    schedule: Schedule = "multistep"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.group_size < 1:
            raise ConfigError(f"Expected `group_size` >= 1, but got {self.group_size}. The paper uses 4.")
        for name in ("grad_weight", "bn", "l2", "group"):
            if getattr(self, name) < 0:
                raise ConfigError(f"Expected `{name}` >= 0, but got {getattr(self, name)}.")
        if not 0 <= self.group_start <= 1:
            raise ConfigError(
                f"Expected `group_start` (fraction of iterations before the group term) in [0, 1], "
                f"but got {self.group_start}."
            )


@register_attack
class GradInversion(OptimizationAttack):
    """BN-statistics, fidelity and group-consistency priors over G parallel seeds."""

    name = "gradinversion"
    title = "GradInversion"
    paper = (
        "Yin, Mallya, Vahdat, Alvarez, Kautz, Molchanov. See through Gradients: Image Batch Recovery "
        "via GradInversion. CVPR 2021"
    )
    config_cls = GradInversionConfig
    config: GradInversionConfig
    base_requirements: ClassVar[tuple[Requirement, ...]] = (*OptimizationAttack.base_requirements, BN_NEEDED)

    def check_view(self, view: AttackerView) -> list[str]:
        problems = super().check_view(view)
        if self.config.bn > 0 and view.bn_statistics is not None and len(view.bn_statistics) == 0:
            problems.append(
                "GradInversion's BN prior needs a model with BatchNorm layers, but the model has none. "
                "Set bn = 0 to run without it, or use a model with BatchNorm (resnet18, convnet)."
            )
        return problems

    def _labels(self, view: AttackerView, grads: dict[str, Tensor]) -> tuple[Tensor, str]:
        strategy = self.config.labels
        if strategy == "auto":
            strategy = "known" if view.known_labels is not None else "yin"
        return resolve_labels(strategy, view, grads)

    def _reconstruct(
        self, view: AttackerView, *, progress: ProgressFn | None, device: torch.device
    ) -> AttackResult:
        cfg = self.config
        setup = self._setup(view, device)
        labels, method = self._labels(view, dict(setup.target_dict))
        labels = labels.to(device)
        matcher, notes = self._matcher(setup)
        stats = view.bn_statistics or ()
        use_bn = cfg.bn > 0 and len(stats) > 0
        t_mean = tuple(s.mean.to(device) for s in stats)
        t_var = tuple(s.var.to(device) for s in stats)
        if use_bn:
            sim_layers = setup.sim.bn_layers
            if [s.layer for s in stats if s.layer in sim_layers] != [s.layer for s in stats]:
                raise AttackRefused(
                    "GradInversion expected BN statistics for the model's BatchNorm layers "
                    f"({', '.join(sim_layers[:4])}...), but got them for "
                    f"{', '.join(s.layer for s in stats[:4])}.... Were they recorded on this model?"
                )
        g = cfg.group_size
        x = self._candidates(setup, g, device)

        def objective(probe: Probe, xk: Tensor) -> Tensor:
            if use_bn:
                grads, aux = probe.with_aux(xk, labels)
                if len(aux.bn_mean) != len(t_mean):
                    raise AttackRefused(
                        f"GradInversion recorded {len(aux.bn_mean)} BatchNorm calls on the candidate but "
                        f"the view holds statistics of {len(t_mean)}; the model and statistics disagree."
                    )
                value = cfg.grad_weight * matcher(grads) + cfg.bn * bn_statistics_prior(
                    aux.bn_mean, aux.bn_var, t_mean, t_var
                )
            else:
                value = cfg.grad_weight * matcher(probe(xk, labels))
            if cfg.tv:
                value = value + cfg.tv * total_variation(xk)
            if cfg.l2:
                value = value + cfg.l2 * l2_prior(xk)
            return value

        start_at = int(cfg.group_start * cfg.iterations)

        def coupling(xs: Tensor, it: int) -> tuple[Tensor, Tensor]:
            if g == 1 or cfg.group == 0 or it < start_at:
                return xs.new_zeros(len(xs)), torch.zeros_like(xs)
            return group_consistency(xs, weight=cfg.group)

        opts = FirstOrderOptions(
            iterations=cfg.iterations,
            lr=cfg.lr,
            signed=cfg.signed,
            schedule=cfg.schedule,
            batching=cfg.batching,
        )
        out = first_order_match(setup, x, objective, opts, coupling=coupling, progress=progress)
        members = out.tracker.best[0]
        consensus = setup.normalization.invert(members.mean(dim=0)).clamp(0, 1)
        images = setup.normalization.invert(members).clamp(0, 1)
        extra = (
            f"labels: {method}",
            f"BN prior over {len(t_mean)} BatchNorm calls" if use_bn else "BN prior off",
            f"result: consensus (mean) of {g} group members; members aligned by slot (no registration)",
        )
        return self._result(
            setup=setup,
            outcome=out,
            images=consensus,
            candidates=images,
            labels=labels,
            label_method=method,
            notes=(*notes, *extra),
        )
