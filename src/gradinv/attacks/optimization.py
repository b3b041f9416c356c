"""Shared machinery of optimisation attacks: the target gradient, the gradient-matching objective
options, candidate initialisation, the first-order optimisation loop, best-so-far tracking, and
Ctrl-C handling.

Configs: :class:`ObjectiveConfig` holds the options every optimisation attack shares and validates
them once; :class:`LabelledConfig` adds the label strategy of attacks that recover labels before
matching, :class:`FirstOrderConfig` the restarts, TV weight and signed steps of the first-order
attacks (Inverting Gradients and its relatives), :class:`~gradinv.attacks.dlg.LBFGSConfig` DLG's
L-BFGS options. An attack's config subclasses them, redeclares the fields whose defaults differ and
adds its own.

Attacks: :class:`OptimizationAttack` holds the shared steps (setup, matcher, candidates, labels-first
recipe :meth:`OptimizationAttack._match_labelled`, result); :class:`FirstOrderAttack` is Inverting
Gradients' recipe, which its relatives reuse with other options.

Target gradient (what the dummy data's gradient is matched against):

* FedSGD: the shared gradient.
* FedAvg with training details: the pseudo-gradient ``-delta / (lr * U)`` with U = E * ceil(N/B)
  local steps (exact for U = 1 without momentum; an approximation otherwise).
* FedAvg without training details: ``-delta``; its scale is unknown, so L2 distances are replaced by
  the scale-fitted L2 (``l2-fitted``) and a note says so. Cosine distance is scale-free.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from gradinv.attacks.base import (
    BASIC_NEEDED,
    LABELS_NEEDED,
    UPDATES_NEEDED,
    Attack,
    AttackConfig,
    ProgressFn,
)
from gradinv.attacks.gradients import Batching, CandidateEvaluator, GradientSimulator, Objective, Probe
from gradinv.attacks.initialization import init_model_input
from gradinv.attacks.labels import LABEL_METHODS, LABEL_STRATEGIES, resolve_labels
from gradinv.attacks.objectives import (
    DistanceName,
    GradientMatcher,
    LayerSpec,
    LayerWeights,
    build_matcher,
    check_objective_options,
)
from gradinv.attacks.regularizers import total_variation
from gradinv.errors import AttackRefused, ConfigError
from gradinv.threat import Requirement
from gradinv.types import AttackerView, AttackResult, Normalization, Reconstruction, UpdateKind

__all__ = [
    "BestTracker",
    "Coupling",
    "FirstOrderAttack",
    "FirstOrderConfig",
    "FirstOrderOptions",
    "InitName",
    "LabelledConfig",
    "MatchOutcome",
    "ObjectiveConfig",
    "ObjectiveFactory",
    "OptimizationAttack",
    "Schedule",
    "Setup",
    "TargetGradient",
    "check_label_strategy",
    "first_order_match",
    "init_candidates",
    "matching_objective",
    "target_gradient",
    "tv_objective",
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


#: The model-input-space initialisations of :func:`init_candidates`.
InitName = Literal["randn", "rand", "zeros", "half"]


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


#: Counts (>= 1) and weights (>= 0) among the shared options, checked on every config declaring them.
_COUNTS = ("iterations", "restarts", "max_iter", "history_size")
_WEIGHTS = ("tv",)


@dataclass(frozen=True)
class ObjectiveConfig(AttackConfig):
    """The options every optimisation attack shares, validated here once.

    ``iterations`` and ``lr`` drive the optimiser; ``init`` and ``seed`` draw the initial dummy data
    (each attack narrows ``init`` to the initialisations it supports); ``batching`` picks how
    candidates are evaluated (:class:`~gradinv.attacks.gradients.CandidateEvaluator`);
    ``distance``, ``layer_weights``, ``layers`` and ``sigma_scale`` define the gradient distance
    (:mod:`gradinv.attacks.objectives`).

    Validation: every number finite (:class:`~gradinv.attacks.base.AttackConfig`); ``lr`` > 0; the
    counts ``iterations``, ``restarts``, ``max_iter`` and ``history_size`` >= 1 and ``tv`` >= 0
    wherever a subclass declares them; the objective options; ``labels`` of a
    :class:`LabelledConfig`. A subclass with options of its own checks them after calling this."""

    iterations: int = 1000
    lr: float = 0.1
    init: str = "randn"
    seed: int = 0
    batching: Batching = "auto"
    distance: DistanceName = "cosine"
    layer_weights: LayerWeights = "equal"
    layers: LayerSpec = ()
    sigma_scale: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        declared = {f.name for f in dataclasses.fields(self)}
        for name in (n for n in _COUNTS if n in declared):
            if getattr(self, name) < 1:
                raise ConfigError(f"Expected `{name}` >= 1, but got {getattr(self, name)}.")
        if not self.lr > 0:
            raise ConfigError(f"Expected `lr` > 0, but got {self.lr}.")
        for name in (n for n in _WEIGHTS if n in declared):
            if getattr(self, name) < 0:
                raise ConfigError(f"Expected `{name}` >= 0, but got {getattr(self, name)}.")
        check_objective_options(self.distance, self.layer_weights, self.layers, self.sigma_scale)
        if isinstance(self, LabelledConfig):
            check_label_strategy(self.labels)


@dataclass(frozen=True)
class LabelledConfig(ObjectiveConfig):
    """Options of an attack that recovers the labels before matching (:mod:`gradinv.attacks.labels`;
    ``known`` where the threat model grants them) instead of optimising them."""

    labels: str = "auto"


@dataclass(frozen=True)
class FirstOrderConfig(LabelledConfig):
    """Options of the first-order attacks that match ``restarts`` candidates with a TV prior
    (``tv``) and (``signed``) Adam steps: Inverting Gradients and its relatives."""

    restarts: int = 1
    tv: float = 1e-4
    signed: bool = True

    def first_order(self, **changes: Any) -> FirstOrderOptions:
        """The :class:`FirstOrderOptions` of this config, with ``changes``."""
        opts = FirstOrderOptions(self.iterations, self.lr, signed=self.signed, batching=self.batching)
        return dataclasses.replace(opts, **changes)


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
    batching = evaluator.chosen if len(x) > 1 else None  # one candidate: plain autograd, nothing batched
    return MatchOutcome(tracker, done, time.perf_counter() - start, interrupted, batching)


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


#: ``factory(matcher, labels) -> objective``: an attack's objective for fixed labels.
ObjectiveFactory = Callable[[GradientMatcher, Tensor], Objective]


def matching_objective(matcher: GradientMatcher, labels: Tensor) -> Objective:
    """The gradient distance alone: ``matcher(grad(x_k, labels))``."""

    def objective(probe: Probe, xk: Tensor) -> Tensor:
        return matcher(probe(xk, labels))

    return objective


def tv_objective(tv: float) -> ObjectiveFactory:
    """The gradient distance plus ``tv`` times total variation (Geiping et al.)."""

    def factory(matcher: GradientMatcher, labels: Tensor) -> Objective:
        def objective(probe: Probe, xk: Tensor) -> Tensor:
            value = matcher(probe(xk, labels))
            return value + tv * total_variation(xk) if tv else value

        return objective

    return factory


class OptimizationAttack(Attack):
    """Base class for attacks that optimise dummy data to match the observed gradient."""

    family = "optimization"
    base_requirements: ClassVar[tuple[Requirement, ...]] = (UPDATES_NEEDED, BASIC_NEEDED)
    config: ObjectiveConfig

    def requirements(self) -> tuple[Requirement, ...]:
        cfg = self.config
        known = isinstance(cfg, LabelledConfig) and cfg.labels == "known"
        return self.base_requirements + ((LABELS_NEEDED,) if known else ())

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
        self, view: AttackerView, device: torch.device, labels: str
    ) -> tuple[Setup, Tensor, str, GradientMatcher, tuple[str, ...]]:
        """The common start of an attack: setup, labels (by the strategy ``labels``) and the method
        that gave them, and the gradient matcher with its notes."""
        setup = self._setup(view, device)
        y, method = resolve_labels(labels, view, setup.target_dict)
        matcher, notes = self._matcher(setup)
        return setup, y.to(device), method, matcher, notes

    def _matcher(
        self, setup: Setup, target: list[Tensor] | None = None, *, distance: str | None = None
    ) -> tuple[GradientMatcher, tuple[str, ...]]:
        """The gradient distance with the config's shared objective options (``distance``,
        ``layer_weights``, ``layers``, ``sigma_scale``) bound to the target."""
        cfg = self.config
        dist, notes = self._distance_name(distance or cfg.distance, setup)
        matcher = build_matcher(
            setup.sim.names,
            setup.target if target is None else target,
            distance=dist,
            layer_weights=cfg.layer_weights,
            layers=tuple(cfg.layers),
            sigma_scale=cfg.sigma_scale,
        )
        if len(matcher.indices) != len(setup.sim.names):
            notes = (*notes, f"matching {len(matcher.indices)} of {len(setup.sim.names)} parameter tensors")
        setup.sim.restrict(matcher.indices)  # only the matched layers' gradients are computed
        return matcher, notes

    def _candidates(self, setup: Setup, count: int, device: torch.device) -> Tensor:
        """``count`` initial candidates ``(count, N, C, H, W)`` in the model's input space, drawn by
        the config's ``init`` from its ``seed`` (:func:`init_candidates`)."""
        shape = (count, setup.num_samples, *setup.input_shape)
        return init_candidates(self.config.init, shape, seed=self.config.seed, device=device)

    def _image_candidates(
        self, setup: Setup, count: int, device: torch.device, *, patch: int = 4, value: float = 0.5
    ) -> Tensor:
        """:meth:`_candidates` drawn in image space by an image initialisation (``init`` of
        :mod:`gradinv.attacks.initialization`: constant ``value``, ``patch``-pixel patterns, ...)."""
        shape = (count, setup.num_samples, *setup.input_shape)
        cfg = self.config
        norm = setup.normalization
        return init_model_input(cfg.init, shape, norm, seed=cfg.seed, device=device, patch=patch, value=value)

    def _match_labelled(
        self,
        view: AttackerView,
        device: torch.device,
        *,
        labels: str,
        restarts: int,
        optimise: Callable[[Setup, Tensor, Objective], MatchOutcome],
        objective: ObjectiveFactory | None = None,
        notes: tuple[str, ...] = (),
    ) -> AttackResult:
        """The recipe of the attacks that fix the labels first (iDLG, CPL, Inverting Gradients and
        its relatives): labels by the strategy ``labels``, ``restarts`` candidates
        (:meth:`_candidates`), ``objective(matcher, labels)`` (default: the gradient distance alone)
        minimised by ``optimise(setup, x, objective)``; the best candidate is the reconstruction."""
        setup, y, method, matcher, m_notes = self._prepare(view, device, labels)
        x = self._candidates(setup, restarts, device)
        out = optimise(setup, x, (objective or matching_objective)(matcher, y))
        images = setup.normalization.invert(out.tracker.best[0]).clamp(0, 1)
        return self._result(
            setup=setup,
            outcome=out,
            images=images[out.tracker.best_index],
            candidates=images,
            labels=y,
            label_method=method,
            notes=(*m_notes, f"labels: {method}", *notes),
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
        """Package an attack's outcome (``images`` (N, C, H, W), ``candidates`` (K, N, ...), both in
        image space)."""
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


class FirstOrderAttack(OptimizationAttack):
    """Inverting Gradients' recipe for a :class:`FirstOrderConfig` (:meth:`_match_labelled`): the
    distance plus ``tv`` times total variation over ``restarts`` candidates, minimised by
    :func:`first_order_match` with the options of :meth:`_options`. Inverting Gradients, mGAN-AI's
    representatives and SAPAG differ only in those options, their initialisation and notes."""

    config: FirstOrderConfig

    def _options(self) -> FirstOrderOptions:
        return self.config.first_order()

    def _notes(self) -> tuple[str, ...]:
        return ()

    def _reconstruct(
        self, view: AttackerView, *, progress: ProgressFn | None, device: torch.device
    ) -> AttackResult:
        cfg, opts = self.config, self._options()

        def optimise(setup: Setup, x: Tensor, objective: Objective) -> MatchOutcome:
            return first_order_match(setup, x, objective, opts, progress=progress)

        return self._match_labelled(
            view,
            device,
            labels=cfg.labels,
            restarts=cfg.restarts,
            optimise=optimise,
            objective=tv_objective(cfg.tv),
            notes=self._notes(),
        )
