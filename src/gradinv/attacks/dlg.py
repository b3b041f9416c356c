"""Deep Leakage from Gradients (DLG).

Zhu, Liu, Han, "Deep Leakage from Gradients", NeurIPS 2019.

Dummy data and dummy label logits, both Gaussian-initialised, are optimised jointly with L-BFGS
(lr 1, no line search, 20 iterations per step) to minimise the squared L2 distance between their
gradient and the observed one; the labels are the argmax of the optimised soft labels.

Deviations: by default 4 restarts run as independent L-BFGS candidates in one batched evaluation
and the one with the lowest final distance is returned (the paper uses one). DLG from a single
Gaussian start stalls on a fraction of images: on 6 CIFAR-10 training images (sigmoid LeNet,
FedSGD, B = 1, 300 steps) 2 of 6 stayed at ~5 dB PSNR with one start, while 4 starts reached
45–55 dB on all 6 (benchmarks/acceptance_foundation.py); on LeNet the 4 candidates cost ~1.6x one.
Set ``restarts = 1`` for the paper's setting. The best iterate seen per candidate is kept, so a
diverging L-BFGS (NaN) cannot destroy a good solution.
``iterations`` counts L-BFGS *steps* as in the authors' code (each up to ``max_iter`` objective
evaluations); the result's ``iterations`` counts evaluations.

Threat model: DLG's attacker sees only the shared gradient and the model (threat model A of
Carletti et al., USENIX Security 2025, whose table lists DLG under A). What it needs beyond that
it reads off the model or assumes, as the paper does (:class:`~gradinv.attacks.base.AssumptionsConfig`):
the label space is the classifier's output width and the input shape is read off the first layers
(:func:`gradinv.threat.read_model`); the batch size is assumed (``assumed_batch_size``, default 1)
and the inputs unnormalised (``assumed_normalization = "none"``, the paper's setting). Granted basic
knowledge (threat model B or stronger) replaces every assumption; the result's notes list what was
inferred or assumed.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol, cast

import torch
from torch import Tensor

from gradinv.attacks.base import (
    UPDATES_NEEDED,
    AssumptionsConfig,
    ProgressFn,
    assume_basics,
    register_attack,
)
from gradinv.attacks.gradients import (
    Batching,
    CandidateEvaluator,
    ForwardAux,
    LocalTraining,
    Objective,
    Probe,
)
from gradinv.attacks.objectives import DistanceName
from gradinv.attacks.optim import BatchedLBFGS
from gradinv.attacks.optimization import (
    BestTracker,
    Coupling,
    MatchOutcome,
    ObjectiveConfig,
    OptimizationAttack,
    Setup,
    init_candidates,
)
from gradinv.threat import Requirement
from gradinv.types import AttackerView, AttackResult

__all__ = [
    "BASICS_ASSUMED",
    "DLG",
    "BasicsAssumingAttack",
    "DLGConfig",
    "Float64Probe",
    "LBFGSConfig",
    "LBFGSSettings",
    "float64_objective",
    "lbfgs_match",
    "lbfgs_optimiser",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LBFGSConfig(ObjectiveConfig):
    """Options of the attacks built on DLG's L-BFGS (DLG, iDLG, CPL): ``iterations`` L-BFGS steps of
    up to ``max_iter`` evaluations each, lr 1, no line search, as in the authors' code."""

    iterations: int = 300
    lr: float = 1.0
    max_iter: int = 20
    history_size: int = 100
    restarts: int = 1
    distance: DistanceName = "l2"


#: What DLG and iDLG assume where the threat model grants no basic knowledge (for ``gradinv list`` and
#: the catalog).
BASICS_ASSUMED = (
    "label space: the classifier's output width (read off the model)",
    "input shape: read off the model's first layers (square images), or assumed_input_shape",
    "number of samples: assumed_batch_size (default 1, the paper's B = 1)",
    "normalisation: assumed_normalization (default none: unnormalised inputs in [0, 1])",
)


@dataclass(frozen=True)
class DLGConfig(LBFGSConfig, AssumptionsConfig):
    """DLG settings; defaults follow the authors' code (4 restarts: see the module docstring). The
    ``assumed_*`` options are used only where the threat model does not grant basic knowledge."""

    restarts: int = 4
    init: Literal["randn", "rand"] = "randn"


class LBFGSSettings(Protocol):
    """What :func:`lbfgs_match` reads from a config."""

    @property
    def iterations(self) -> int: ...
    @property
    def max_iter(self) -> int: ...
    @property
    def lr(self) -> float: ...
    @property
    def history_size(self) -> int: ...
    @property
    def batching(self) -> Batching: ...


class Float64Probe:
    """A :class:`~gradinv.attacks.gradients.Probe` whose parameter gradients come back in float64, so
    that a gradient distance summed over them is a float64 value (:func:`lbfgs_match`). The
    gradients themselves are computed as before (float32 model); only the distance's arithmetic,
    and the backward through it, is float64."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.sim = probe.sim
        self.functional = probe.functional

    def __call__(self, x: Tensor, y: Tensor) -> list[Tensor]:
        return [g.to(torch.float64) for g in self.probe(x, y)]

    def with_aux(self, x: Tensor, y: Tensor) -> tuple[list[Tensor], ForwardAux]:
        grads, aux = self.probe.with_aux(x, y)
        return [g.to(torch.float64) for g in grads], aux

    def local_update(self, x: Tensor, y: Tensor, plan: LocalTraining) -> list[Tensor]:
        return [g.to(torch.float64) for g in self.probe.local_update(x, y, plan)]


def float64_objective(objective: Objective) -> Objective:
    """``objective`` evaluated on a :class:`Float64Probe`: its value is float64 (see
    :func:`lbfgs_match`)."""

    def wrapped(probe: Probe, *variables: Tensor) -> Tensor:
        return objective(cast(Probe, Float64Probe(probe)), *variables)

    return wrapped


def lbfgs_match(
    setup: Setup,
    variables: list[Tensor],
    objective: Callable[..., Tensor],
    cfg: LBFGSSettings,
    *,
    progress: ProgressFn | None,
    coupling: Coupling | None = None,
) -> MatchOutcome:
    """Minimise ``objective`` over ``variables`` (each (K, ...)) with per-candidate L-BFGS.

    ``cfg`` provides ``iterations``, ``max_iter``, ``lr``, ``history_size`` and ``batching``.
    ``coupling`` (on the first variable; its iteration argument counts objective evaluations) adds
    a closed-form term, as in :func:`gradinv.attacks.optimization.first_order_match`. The outcome's
    ``iterations`` counts objective evaluations.

    The objective's value is computed in float64 (the gradient distance summed over float64 copies
    of the candidate's parameter gradients, :class:`Float64Probe`). L-BFGS ends a step when the value
    changes by less than ``tolerance_change`` = 1e-9 (absolute, ``torch.optim.LBFGS``'s default,
    which DLG's code keeps); a float32 sum cannot show changes below ~6e-8 times its value, so with a
    float32 objective far from a solution (value >> 1e-2) every iteration that improves it by less
    than that spacing ended the step after one or two evaluations, and the attack used a fraction
    of its evaluation budget while the gradient was far above ``tolerance_grad``."""
    k = variables[0].shape[0]
    shapes = [v.shape[1:] for v in variables]
    sizes = [math.prod(s) for s in shapes]
    z = torch.cat([v.reshape(k, -1) for v in variables], dim=1)

    def split(flat: Tensor) -> list[Tensor]:
        return [p.reshape(k, *s) for p, s in zip(torch.split(flat, sizes, dim=1), shapes)]

    tracker = BestTracker.like(*variables)
    evaluator = CandidateEvaluator(setup.sim, float64_objective(objective), batching=cfg.batching)

    def closure(flat: Tensor) -> tuple[Tensor, Tensor]:
        parts = split(flat)
        loss, grads = evaluator(parts)
        if coupling is not None:
            c_loss, c_grad = coupling(parts[0].detach(), opt.func_evals)
            loss, grads = loss + c_loss, (grads[0] + c_grad, *grads[1:])
        tracker.update(loss, *parts)
        grad = torch.cat([g.reshape(k, -1) for g in grads], dim=1)
        return loss, torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)

    opt = BatchedLBFGS(z, lr=cfg.lr, max_iter=cfg.max_iter, history_size=cfg.history_size)
    start = time.perf_counter()
    interrupted = False
    try:
        for step in range(cfg.iterations):
            opt.step(closure)
            tracker.record()
            if progress is not None:
                progress(step + 1, cfg.iterations, tracker.history[-1])
            if not torch.isfinite(opt.z).all(dim=1).any():
                logger.warning("every L-BFGS candidate diverged at step %d; stopping", step + 1)
                break
    except KeyboardInterrupt:
        interrupted = True
        logger.warning("interrupted: returning the best reconstruction so far")
    return MatchOutcome(tracker, opt.func_evals, time.perf_counter() - start, interrupted, None)


def lbfgs_optimiser(
    cfg: LBFGSSettings, progress: ProgressFn | None
) -> Callable[[Setup, Tensor, Objective], MatchOutcome]:
    """``optimise(setup, x, objective)``: :func:`lbfgs_match` over the images alone."""

    def optimise(setup: Setup, x: Tensor, objective: Objective) -> MatchOutcome:
        return lbfgs_match(setup, [x], objective, cfg, progress=progress)

    return optimise


class BasicsAssumingAttack(OptimizationAttack):
    """Base of DLG and iDLG: they need only the update (threat model A) and, where the threat model
    does not grant basic knowledge, assume it (:data:`BASICS_ASSUMED`, :func:`assume_basics`) from
    their config, an :class:`AssumptionsConfig`; :attr:`why_batch` says where the default assumed
    batch size comes from."""

    base_requirements: ClassVar[tuple[Requirement, ...]] = (UPDATES_NEEDED,)
    assumptions = BASICS_ASSUMED
    why_batch: ClassVar[str]

    def assume(self, view: AttackerView) -> AttackerView:
        cfg = cast(AssumptionsConfig, self.config)  # DLGConfig / IDLGConfig
        return assume_basics(view, cfg, attack=self.title, why_batch=self.why_batch)


@register_attack
class DLG(BasicsAssumingAttack):
    """Deep Leakage from Gradients: joint L-BFGS over dummy data and soft labels."""

    name = "dlg"
    title = "DLG"
    paper = "Zhu, Liu, Han. Deep Leakage from Gradients. NeurIPS 2019"
    config_cls = DLGConfig
    config: DLGConfig
    why_batch = "DLG's default: one image per update"

    def _reconstruct(
        self, view: AttackerView, *, progress: ProgressFn | None, device: torch.device
    ) -> AttackResult:
        cfg = self.config
        setup = self._setup(view, device)
        matcher, notes = self._matcher(setup)
        x = self._candidates(setup, cfg.restarts, device)
        shape = (cfg.restarts, setup.num_samples, setup.num_classes)
        y = init_candidates("randn", shape, seed=cfg.seed + 1, device=device)

        def objective(probe: Probe, xk: Tensor, yk: Tensor) -> Tensor:
            return matcher(probe(xk, yk))

        out = lbfgs_match(setup, [x, y], objective, cfg, progress=progress)
        best = out.tracker.best_index
        if not out.tracker.found:
            logger.warning("DLG found no finite objective value; returning the initialisation")
        x_best, y_best = out.tracker.best
        images = setup.normalization.invert(x_best).clamp(0, 1)
        return self._result(
            setup=setup,
            outcome=out,
            images=images[best],
            candidates=images,
            labels=y_best[best].argmax(dim=-1),  # one label per image slot
            label_method="dlg-joint",
            notes=(*notes, f"{cfg.iterations} L-BFGS steps requested"),
        )
