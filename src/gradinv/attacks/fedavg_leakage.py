"""FedAvg-aware reconstruction: simulate the client's local training on dummy data.

Dimitrov, Balunović, Konstantinov, Vechev, "Data Leakage in Federated Averaging", TMLR 2022.

A FedAvg client shares ``W_local - W_global`` after E epochs of mini-batch SGD, not a gradient. The
attack simulates that training differentiably on dummy data — every local step's gradient is taken
with ``torch.func.functional_call`` on the parameters carried through the simulated SGD steps
(:meth:`GradientSimulator.local_update`, the step rule of :func:`gradinv.fl.client.sgd_step`) — and
optimises the dummy data so the simulated delta matches the observed one. Because the client
reshuffles every epoch and the order is private, each simulated epoch gets its own copy of the
dummy data; the epoch-order-invariant prior (:func:`gradinv.attacks.regularizers.epoch_agreement`)
requires the copies to be the same set: each epoch's copy is matched to the mean over epochs
(Hungarian, within equal labels) and penalised for disagreeing with it. The result is that mean.

Server modes, as in paper 003 (§III-B, Table III):

* ``strong`` — simulate with the true lr, E, B, momentum and weight decay (needs training details);
* ``weak`` — simulate with assumed hyperparameters (``assumed_lr``, ``assumed_epochs``,
  ``assumed_batch_size``; no training details needed, so usually wrong);
* ``none`` — no simulation: the update is treated as one gradient (``-delta``, or the
  pseudo-gradient ``-delta / (lr U)`` when training details are known) and matched like Inverting
  Gradients.

Deviations: the simulation visits dummy samples in slot order (the true shuffling is unknowable);
labels are one recovered multiset for all epochs (no per-batch label counts): by default the
simulated slots take it in sorted order (``label_assignment = "joint"`` optimises a soft label per
slot instead, which measured worse); the epoch prior is
the squared distance to the matched mean rather than the paper's exact formulation; BatchNorm
buffer deltas, which the client also shares, are not matched; optimisation is (signed) Adam with the
shared schedule.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from gradinv.attacks.base import ProgressFn, register_attack
from gradinv.attacks.dlg import lbfgs_match
from gradinv.attacks.gradients import LocalTraining, Probe
from gradinv.attacks.labels import resolve_labels
from gradinv.attacks.optimization import (
    FirstOrderConfig,
    InitName,
    OptimizationAttack,
    Schedule,
    first_order_match,
    init_candidates,
)
from gradinv.attacks.regularizers import epoch_agreement, epoch_matching, total_variation
from gradinv.errors import ConfigError
from gradinv.threat import Knowledge, Requirement
from gradinv.types import AttackerView, AttackResult, UpdateKind

__all__ = ["FedAvgLeakage", "FedAvgLeakageConfig", "simulation_plan"]


TRAINING_NEEDED = Requirement(
    Knowledge.TRAINING_DETAILS,
    "strong simulation replays the client's local training with its true lr, epochs and batch size",
)

Mode = Literal["strong", "weak", "none"]


@dataclass(frozen=True)
class FedAvgLeakageConfig(FirstOrderConfig):
    """Settings; ``mode`` picks the server's simulation (strong / weak / none)."""

    init: InitName = "randn"
    optimizer: Literal["adam", "lbfgs"] = "adam"
    max_iter: int = 20
    history_size: int = 100
    mode: Mode = "strong"
    assumed_lr: float = 0.01
    assumed_epochs: int = 1
    assumed_batch_size: int | None = None
    epoch_variables: Literal["auto", "per-epoch", "shared"] = "auto"
    epoch_prior: float = 1e-2
    label_assignment: Literal["auto", "fixed", "joint"] = "auto"
    count_prior: float = 0.1
    schedule: Schedule = "multistep"

    def __post_init__(self) -> None:
        super().__post_init__()
        LocalTraining(lr=self.assumed_lr, epochs=self.assumed_epochs, batch_size=self.assumed_batch_size)
        if self.epoch_prior < 0 or self.count_prior < 0:
            raise ConfigError(
                f"Expected `epoch_prior` and `count_prior` >= 0, but got {self.epoch_prior} and "
                f"{self.count_prior}."
            )


def simulation_plan(cfg: FedAvgLeakageConfig, view: AttackerView) -> LocalTraining | None:
    """The local training the attacker simulates (``None`` for mode ``none``)."""
    if cfg.mode == "none":
        return None
    if cfg.mode == "strong":
        tr = view.training
        assert tr is not None and view.num_samples is not None  # checked by requirements
        return LocalTraining(
            lr=tr.lr,
            epochs=tr.epochs,
            batch_size=tr.resolved_batch_size(view.num_samples),
            momentum=tr.momentum,
            weight_decay=tr.weight_decay,
        )
    return LocalTraining(lr=cfg.assumed_lr, epochs=cfg.assumed_epochs, batch_size=cfg.assumed_batch_size)


@register_attack
class FedAvgLeakage(OptimizationAttack):
    """Dummy data through a simulated FedAvg client, matched on the weight delta."""

    name = "fedavg-leakage"
    title = "FedAvg leakage"
    paper = "Dimitrov, Balunović, Konstantinov, Vechev. Data Leakage in Federated Averaging. TMLR 2022"
    config_cls = FedAvgLeakageConfig
    config: FedAvgLeakageConfig
    #: the default mode (strong) needs training details; weak and none do not
    base_requirements: ClassVar[tuple[Requirement, ...]] = (
        *OptimizationAttack.base_requirements,
        TRAINING_NEEDED,
    )

    def requirements(self) -> tuple[Requirement, ...]:
        reqs = super().requirements()
        return reqs if self.config.mode == "strong" else tuple(r for r in reqs if r is not TRAINING_NEEDED)

    def check_view(self, view: AttackerView) -> list[str]:
        problems = super().check_view(view)
        if self.config.mode != "none" and view.update.kind is not UpdateKind.DELTA:
            problems.append(
                f"FedAvg leakage with mode = {self.config.mode!r} simulates local training, but the client "
                "shared a FedSGD gradient, not a weight delta. Use mode = 'none' or inverting-gradients."
            )
        return problems

    def _per_epoch(self, view: AttackerView, plan: LocalTraining | None, n: int) -> bool:
        choice = self.config.epoch_variables
        if plan is None or plan.epochs == 1:
            return False
        if choice != "auto":
            return choice == "per-epoch"
        shuffled = view.training.shuffle if (self.config.mode == "strong" and view.training) else True
        return shuffled and plan.resolved_batch_size(n) < n

    def _joint_labels(self, plan: LocalTraining | None) -> bool:
        # ``auto`` = ``fixed``: slots take the multiset in sorted order. Optimising every slot's label
        # jointly (``joint``) lost 2-8 dB PSNR against it on shuffling clients in
        # benchmarks/acceptance_optimization.py (docs/attacks_optimization.md), so it is opt-in.
        return plan is not None and self.config.label_assignment == "joint"

    def _reconstruct(
        self, view: AttackerView, *, progress: ProgressFn | None, device: torch.device
    ) -> AttackResult:
        cfg = self.config
        base = self._setup(view, device)
        labels, method = resolve_labels(cfg.labels, view, base.target_dict)
        labels = labels.to(device)
        plan = simulation_plan(cfg, view)
        n = base.num_samples
        if plan is None:
            setup = base
            sim_note = f"mode none: the update is matched as one gradient ({base.notes[0]})"
        else:
            delta = base.sim.order(dict(view.update.params))
            setup = dataclasses.replace(base, target=delta, scale_known=cfg.mode == "strong")
            sim_note = (
                f"mode {cfg.mode}: simulated lr={plan.lr:g}, E={plan.epochs}, "
                f"B={plan.resolved_batch_size(n)}, "
                f"momentum={plan.momentum:g}, weight decay={plan.weight_decay:g} "
                f"({plan.steps(n)} local steps)"
            )
        matcher, notes = self._matcher(setup)
        per_epoch = self._per_epoch(view, plan, n)
        joint = self._joint_labels(plan)
        k, classes = cfg.restarts, setup.num_classes
        x = self._candidates(setup, k, device)
        epochs = plan.epochs if (plan is not None and per_epoch) else 0
        if epochs:  # every epoch's copy starts from the same dummy data
            x = x.unsqueeze(1).repeat(1, epochs, 1, 1, 1, 1).contiguous()
        counts = torch.bincount(labels, minlength=classes).to(x.dtype)
        extra: list[Tensor] = []
        if joint:  # label logits per slot (per epoch): start from the multiset's label frequencies
            prior = torch.log(counts / n + 1e-3)
            noise = init_candidates(
                "randn", (k, max(epochs, 1), n, classes), seed=cfg.seed + 1, device=device
            )
            y0 = prior + 0.1 * noise
            extra = [y0 if epochs else y0[:, 0].contiguous()]
        tv, cp = cfg.tv, cfg.count_prior

        def simulated(probe: Probe, xk: Tensor, yk: Tensor) -> Tensor:
            value = matcher(probe(xk, yk) if plan is None else probe.local_update(xk, yk, plan))
            return value + tv * total_variation(xk) if tv else value

        def objective(probe: Probe, xk: Tensor, *yk: Tensor) -> Tensor:
            if not yk:
                return simulated(probe, xk, labels)
            value = simulated(probe, xk, yk[0])
            if cp:  # each epoch's soft labels should add up to the recovered label counts
                value = value + cp * (F.softmax(yk[0], dim=-1).sum(dim=-2) - counts).pow(2).sum(-1).mean()
            return value

        def coupling(xs: Tensor, it: int) -> tuple[Tensor, Tensor]:
            if not per_epoch or cfg.epoch_prior == 0:
                return xs.new_zeros(len(xs)), torch.zeros_like(xs)
            losses, grads = [], []
            for xk in xs:
                perms = epoch_matching(xk, None if joint else labels)
                loss, grad, _ = epoch_agreement(xk, perms, weight=cfg.epoch_prior)
                losses.append(loss)
                grads.append(grad)
            return torch.stack(losses), torch.stack(grads)

        if cfg.optimizer == "lbfgs":
            out = lbfgs_match(setup, [x, *extra], objective, cfg, progress=progress, coupling=coupling)
        else:
            opts = cfg.first_order(schedule=cfg.schedule)
            out = first_order_match(
                setup, x, objective, opts, extra=extra, coupling=coupling, progress=progress
            )
        best_x = out.tracker.best[0]
        best_y = out.tracker.best[1] if joint else None
        results, slot_labels = [], []
        for i in range(k):
            xi = best_x[i]
            probs = F.softmax(best_y[i], dim=-1) if best_y is not None else None
            if per_epoch:
                perms = epoch_matching(xi, None if joint else labels)
                xi = epoch_agreement(xi, perms, weight=0.0)[2]
                if probs is not None:
                    probs = torch.stack([probs[e][perms[e]] for e in range(len(perms))]).mean(dim=0)
            results.append(xi)
            slot_labels.append(probs.argmax(dim=-1) if probs is not None else labels)
        images = setup.normalization.invert(torch.stack(results)).clamp(0, 1)
        best = out.tracker.best_index
        extra_notes = [sim_note, f"labels: {method}"]
        if joint:
            extra_notes.append(
                "label of each simulated slot optimised jointly (soft labels; the order is private)"
            )
        if per_epoch:
            extra_notes.append(
                "one dummy set per epoch with the epoch-order-invariant prior; result = matched mean"
            )
        return self._result(
            setup=setup,
            outcome=out,
            images=images[best],
            candidates=images,
            labels=slot_labels[best],
            label_method=f"{method} + joint slot assignment" if joint else method,
            notes=(*notes, *extra_notes),
        )
