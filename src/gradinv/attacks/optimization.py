"""Shared machinery of optimisation attacks: the target gradient, the gradient-matching objective
options, candidate initialisation, the first-order optimisation loop, best-so-far tracking, and
Ctrl-C handling.

Target gradient (what the dummy data's gradient is matched against):

* FedSGD: the shared gradient.
* FedAvg with training details: the pseudo-gradient ``-delta / (lr * U)`` with U = E * ceil(N/B)
  local steps (exact for U = 1 without momentum; an approximation otherwise).
* FedAvg without training details: ``-delta``; its scale is unknown, so L2 distances are replaced by
  the scale-fitted L2 (``l2-fitted``) and a note says so. Cosine distance is scale-free.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from gradinv.attacks.base import BASIC_NEEDED, LABELS_NEEDED, UPDATES_NEEDED, Attack, ProgressFn
from gradinv.attacks.gradients import Batching, CandidateEvaluator, GradientSimulator, Objective, Probe
from gradinv.attacks.labels import LABEL_METHODS, LABEL_STRATEGIES, resolve_labels
from gradinv.attacks.objectives import GradientMatcher, build_matcher
from gradinv.errors import AttackRefused, ConfigError
from gradinv.threat import Requirement
from gradinv.types import AttackerView, AttackResult, Normalization, Reconstruction, UpdateKind

__all__ = [
    "BestTracker",
    "Coupling",
    "FirstOrderOptions",
    "MatchOutcome",
    "OptimizationAttack",
    "Setup",
    "TargetGradient",
    "check_first_order",
    "check_label_strategy",
    "first_order_match",
    "init_candidates",
    "target_gradient",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TargetGradient:
    """The observed update turned into gradient form."""

    grads: Mapping[str, Tensor]
    scale_known: bool
    description: str


def target_gradient(view: AttackerView) -> TargetGradient:
    upd = view.update
    if upd.kind is UpdateKind.GRADIENT:
        return TargetGradient(dict(upd.params), True, "shared gradient (FedSGD)")
    if view.training is not None and view.num_samples is not None:
        per_client = max(1, round(view.num_samples / max(1, view.aggregated_over)))
        steps = view.training.local_steps(per_client)
        scale = -1.0 / (view.training.lr * steps)
        return TargetGradient(
            {k: v * scale for k, v in upd.params.items()},
            True,
            f"pseudo-gradient -delta/(lr*U) with lr={view.training.lr:g}, U={steps} "
            "(FedAvg, training details known)",
        )
    return TargetGradient(
        {k: -v for k, v in upd.params.items()},
        False,
        "-delta with unknown scale (FedAvg; the threat model does not grant training details)",
    )


def check_label_strategy(labels: str) -> None:
    if labels not in LABEL_STRATEGIES and labels not in LABEL_METHODS:
        valid = [*LABEL_STRATEGIES, *LABEL_METHODS.names()]
        raise ConfigError(f"Expected `labels` to be one of {', '.join(valid)}, but got {labels!r}.")


def init_candidates(kind: str, shape: tuple[int, ...], *, seed: int, device: torch.device) -> Tensor:
    """Seeded initial dummy data: ``randn`` (Gaussian), ``rand`` (uniform [0,1)), ``zeros``, ``half``
    (model input space). Image-space initialisations (CPL's patterned and geometric, constants)
    are in :mod:`gradinv.attacks.initialization`."""
    gen = torch.Generator().manual_seed(seed)
    if kind == "randn":
        x = torch.randn(shape, generator=gen)
    elif kind == "rand":
        x = torch.rand(shape, generator=gen)
    elif kind == "zeros":
        x = torch.zeros(shape)
    elif kind == "half":
        x = torch.full(shape, 0.5)
    else:
        raise ConfigError(f"Expected `init` to be 'randn', 'rand', 'zeros' or 'half', but got {kind!r}.")
    return x.to(device)


# --------------------------------------------------------------------------------------------------
# First-order optimisation loop shared by Inverting Gradients, GradInversion, SAPAG, FedAvg, ...
# --------------------------------------------------------------------------------------------------

#: ``coupling(x, iteration) -> (loss (K,), grad like x)``: a term coupling candidates or variables
#: (group consistency, epoch agreement) with a closed-form gradient, evaluated on the detached
#: candidates and added to the objective.
Coupling = Callable[[Tensor, int], tuple[Tensor, Tensor]]
Schedule = Literal["multistep", "cosine", "none"]


@dataclass(frozen=True)
class FirstOrderOptions:
    """How :func:`first_order_match` optimises: ``optimizer`` (Adam, AdamW with ``weight_decay``,
    SGD), ``signed`` gradients (Geiping et al.), the learning-rate ``schedule`` (``multistep``:
    divide by 10 at 3/8, 5/8, 7/8 of the iterations; ``cosine``: cosine annealing to 0) and the box
    constraint (``boxed``: keep the images in [0, 1])."""

    iterations: int
    lr: float
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    weight_decay: float = 0.0
    signed: bool = False
    boxed: bool = True
    schedule: Schedule = "multistep"
    batching: Batching = "auto"


def check_first_order(cfg: Any) -> None:
    """Validate the first-order fields of an attack config (``iterations``, ``restarts``, ``lr``)."""
    if cfg.iterations < 1 or getattr(cfg, "restarts", 1) < 1:
        raise ConfigError(
            f"Expected `iterations` and `restarts` >= 1, but got {cfg.iterations} and "
            f"{getattr(cfg, 'restarts', 1)}."
        )
    if not (cfg.lr > 0 and math.isfinite(cfg.lr)):
        raise ConfigError(f"Expected `lr` > 0, but got {cfg.lr}.")
    if getattr(cfg, "tv", 0.0) < 0:
        raise ConfigError(f"Expected `tv` >= 0, but got {cfg.tv}.")


def _milestones(iterations: int) -> list[int]:
    return [int(iterations * f) for f in (3 / 8, 5 / 8, 7 / 8)]


@dataclass(frozen=True)
class MatchOutcome:
    tracker: BestTracker
    iterations: int
    seconds: float
    interrupted: bool
    batching: str | None


def first_order_match(
    setup: Setup,
    x: Tensor,
    objective: Objective,
    opts: FirstOrderOptions,
    *,
    extra: Sequence[Tensor] = (),
    coupling: Coupling | None = None,
    progress: ProgressFn | None = None,
) -> MatchOutcome:
    """Minimise ``objective(probe, x_k, *extra_k)`` (per candidate) plus ``coupling`` over the
    images ``x`` ``(K, ...)`` and the ``extra`` variables (e.g. label logits, ``(K, ...)`` each, not
    boxed), in place.

    The K candidates are one tensor per variable under one optimiser (Adam and SGD are
    element-wise, so these are K independent optimisers) evaluated by one
    :class:`CandidateEvaluator` call per iteration. The best iterate per candidate is kept
    (``tracker.best`` lists ``x`` then the extra variables); Ctrl-C returns it (``interrupted``)."""
    variables = [x, *extra]
    for v in variables:
        v.requires_grad_(True)
    lo, hi = setup.normalization.bounds(x.new_zeros(setup.input_shape))
    opt: torch.optim.Optimizer
    if opts.optimizer == "adam":
        opt = torch.optim.Adam(variables, lr=opts.lr)
    elif opts.optimizer == "adamw":
        opt = torch.optim.AdamW(variables, lr=opts.lr, weight_decay=opts.weight_decay)
    else:
        opt = torch.optim.SGD(variables, lr=opts.lr, momentum=0.0)
    sched: torch.optim.lr_scheduler.LRScheduler | None = None
    if opts.schedule == "multistep":
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=_milestones(opts.iterations), gamma=0.1)
    elif opts.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=opts.iterations)
    evaluator = CandidateEvaluator(setup.sim, objective, batching=opts.batching)
    tracker = BestTracker.like(*variables)

    def evaluate(it: int) -> tuple[Tensor, tuple[Tensor, ...]]:
        loss, grads = evaluator(variables)
        if coupling is not None:
            c_loss, c_grad = coupling(x.detach(), it)
            loss, grads = loss + c_loss, (grads[0] + c_grad, *grads[1:])
        return loss, grads

    every = max(1, opts.iterations // 200)
    done = 0
    interrupted = False
    start = time.perf_counter()
    try:
        for it in range(opts.iterations):
            loss, grads = evaluate(it)
            tracker.update(loss, *variables)
            for v, g in zip(variables, grads):
                g = torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0)
                v.grad = g.sign() if opts.signed else g
            opt.step()
            if sched is not None:
                sched.step()
            if opts.boxed:
                with torch.no_grad():
                    x.data = torch.maximum(torch.minimum(x.data, hi), lo)
            done = it + 1
            if done % every == 0 or done == opts.iterations:
                tracker.record()
                if progress is not None:
                    progress(done, opts.iterations, tracker.history[-1])
        loss, _ = evaluate(opts.iterations)
        tracker.update(loss, *variables)
    except KeyboardInterrupt:
        interrupted = True
        logger.warning("interrupted after %d iterations: returning the best so far", done)
    return MatchOutcome(tracker, done, time.perf_counter() - start, interrupted, evaluator.chosen)


@dataclass
class BestTracker:
    """Lowest objective seen per candidate and the variables that achieved it."""

    best_loss: Tensor
    best: list[Tensor]
    history: list[float] = field(default_factory=list)

    @classmethod
    def like(cls, *variables: Tensor) -> BestTracker:
        k = variables[0].shape[0]
        inf = torch.full((k,), math.inf, device=variables[0].device)
        return cls(inf, [v.detach().clone() for v in variables])

    def update(self, loss: Tensor, *variables: Tensor) -> None:
        better = torch.isfinite(loss) & (loss < self.best_loss)
        if better.any():
            self.best_loss = torch.where(better, loss, self.best_loss)
            for b, v in zip(self.best, variables):
                b[better] = v.detach()[better]

    def record(self) -> None:
        self.history.append(float(self.best_loss.min()))

    @property
    def best_index(self) -> int:
        return int(torch.argmin(torch.nan_to_num(self.best_loss, nan=math.inf)))

    @property
    def found(self) -> bool:
        return bool(torch.isfinite(self.best_loss).any())


@dataclass(frozen=True)
class Setup:
    """Everything an optimisation attack derives from the view before optimising."""

    sim: GradientSimulator
    target: list[Tensor]
    target_dict: Mapping[str, Tensor]
    scale_known: bool
    num_samples: int
    input_shape: tuple[int, int, int]
    normalization: Normalization
    num_classes: int
    notes: tuple[str, ...]


class OptimizationAttack(Attack):
    """Base class for attacks that optimise dummy data to match the observed gradient."""

    family = "optimization"
    base_requirements: ClassVar[tuple[Requirement, ...]] = (UPDATES_NEEDED, BASIC_NEEDED)

    def requirements(self) -> tuple[Requirement, ...]:
        extra = (LABELS_NEEDED,) if getattr(self.config, "labels", None) == "known" else ()
        return self.base_requirements + extra

    def check_view(self, view: AttackerView) -> list[str]:
        if view.aggregated_over > 1:
            logger.warning(
                "%s inverts an aggregate of %d clients as if it were one client's update of %s samples",
                self.title,
                view.aggregated_over,
                view.num_samples,
            )
        return []

    def _setup(self, view: AttackerView, device: torch.device) -> Setup:
        assert view.num_samples is not None and view.input_shape is not None  # checked by requirements
        mode = view.training.model_mode if view.training is not None else "train"
        sim = GradientSimulator(view.model, device=device, mode=mode)
        tg = target_gradient(view)
        norm = view.normalization or Normalization.identity(view.input_shape[0])
        num_classes = view.num_classes
        if num_classes is None:
            raise AttackRefused(f"{self.title} needs the label space (basic knowledge).")
        notes = [f"target: {tg.description}"]
        if view.training is None:
            notes.append("client forward mode unknown (no training details): assumed 'train'")
        logger.info("%s: %s", self.title, tg.description)
        return Setup(
            sim=sim,
            target=sim.order(dict(tg.grads)),
            target_dict=tg.grads,
            scale_known=tg.scale_known,
            num_samples=view.num_samples,
            input_shape=view.input_shape,
            normalization=norm,
            num_classes=num_classes,
            notes=tuple(notes),
        )

    @staticmethod
    def _distance_name(requested: str, setup: Setup) -> tuple[str, tuple[str, ...]]:
        if requested == "l2" and not setup.scale_known:
            return "l2-fitted", (
                "distance l2 replaced by l2-fitted: the update's scale is unknown without training details",
            )
        if requested == "gaussian" and not setup.scale_known:
            return requested, (
                "gaussian kernel widths adapt to -delta, whose scale differs from a gradient's "
                "(no training details)",
            )
        return requested, ()

    def _prepare(
        self, view: AttackerView, device: torch.device
    ) -> tuple[Setup, Tensor, str, GradientMatcher, tuple[str, ...]]:
        """The common start of an attack: setup, labels (by the config's ``labels`` strategy) and
        the method that gave them, and the gradient matcher with its notes."""
        setup = self._setup(view, device)
        labels, method = resolve_labels(self.config.labels, view, setup.target_dict)  # type: ignore[attr-defined]
        matcher, notes = self._matcher(setup)
        return setup, labels.to(device), method, matcher, notes

    def _matcher(
        self, setup: Setup, target: list[Tensor] | None = None, *, distance: str | None = None
    ) -> tuple[GradientMatcher, tuple[str, ...]]:
        """The gradient distance with the config's shared objective options (``distance``,
        ``layer_weights``, ``layers``, ``sigma_scale``) bound to the target."""
        cfg = self.config
        dist, notes = self._distance_name(distance or cfg.distance, setup)  # type: ignore[attr-defined]
        matcher = build_matcher(
            setup.sim.names,
            setup.target if target is None else target,
            distance=dist,
            layer_weights=getattr(cfg, "layer_weights", "equal"),
            layers=tuple(getattr(cfg, "layers", ())),
            sigma_scale=getattr(cfg, "sigma_scale", 1.0),
        )
        if len(matcher.indices) != len(setup.sim.names):
            notes = (*notes, f"matching {len(matcher.indices)} of {len(setup.sim.names)} parameter tensors")
        setup.sim.restrict(matcher.indices)  # only the matched layers' gradients are computed
        return matcher, notes

    def _match_with_tv(
        self,
        view: AttackerView,
        device: torch.device,
        opts: FirstOrderOptions,
        *,
        progress: ProgressFn | None,
        extra_notes: tuple[str, ...] = (),
    ) -> AttackResult:
        """The gradient-matching recipe of Inverting Gradients and its relatives: candidates from the
        config's ``init`` (``restarts`` of them), the config's distance plus ``tv`` times total
        variation, minimised with ``opts``; the best candidate is the reconstruction."""
        from gradinv.attacks.regularizers import total_variation

        cfg = self.config
        setup, labels, method, matcher, notes = self._prepare(view, device)
        n, (c, h, w) = setup.num_samples, setup.input_shape
        x = init_candidates(cfg.init, (cfg.restarts, n, c, h, w), seed=cfg.seed, device=device)  # type: ignore[attr-defined]
        tv = cfg.tv  # type: ignore[attr-defined]

        def objective(probe: Probe, xk: Tensor) -> Tensor:
            value = matcher(probe(xk, labels))
            return value + tv * total_variation(xk) if tv else value

        out = first_order_match(setup, x, objective, opts, progress=progress)
        images = setup.normalization.invert(out.tracker.best[0]).clamp(0, 1)
        return self._result(
            setup=setup,
            outcome=out,
            images=images[out.tracker.best_index],
            candidates=images,
            labels=labels,
            label_method=method,
            notes=(*notes, f"labels: {method}", *extra_notes),
        )

    def _result(
        self,
        *,
        setup: Setup,
        outcome: MatchOutcome,
        images: Tensor,
        candidates: Tensor,
        labels: Tensor | None,
        label_method: str,
        notes: tuple[str, ...],
    ) -> AttackResult:
        """Package a first-order attack's outcome (``images`` (N, C, H, W), ``candidates`` (K, N, ...),
        both in image space)."""
        tr = outcome.tracker
        rec = Reconstruction(
            images=images.detach().cpu(),
            labels=labels.cpu() if labels is not None else None,
            label_method=label_method,
            candidates=candidates.detach().cpu(),
            candidate_losses=tuple(float(v) for v in tr.best_loss),
        )
        batching = () if outcome.batching is None else (f"candidate batching: {outcome.batching}",)
        return AttackResult(
            attack=self.name,
            reconstruction=rec,
            parameters=self.config.to_dict(),
            iterations=outcome.iterations,
            seconds=outcome.seconds,
            interrupted=outcome.interrupted,
            loss_history=tuple(tr.history),
            best_candidate=tr.best_index,
            notes=(*setup.notes, *notes, *batching),
        )
