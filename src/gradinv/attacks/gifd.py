"""GIFD — generative gradient inversion with feature-domain optimisation.

Fang, Chen, Wang, Xia, "GIFD: A Generative Gradient Inversion Method with Feature Domain
Optimization", ICCV 2023.

First the latent search of GIAS (:func:`gradinv.attacks.gias.search_latents`: K = ``restarts``
latent candidates per sample through the frozen pretrained generator), then the search moves into
the generator's intermediate feature spaces, one stage after another (``feature_stages``; default
every intermediate stage of :meth:`~gradinv.models.generators.Generator.stages`): at stage ``s`` the
start ``h0`` is the output of stages ``< s`` for the previous stage's result, and the feature
``h = h0 + delta`` is optimised (through the remaining stages, :func:`latent_objective` with
``stage = s``) under the paper's l1-ball constraint ``||h_i - h0_i||_1 <= r_i`` per sample, which
keeps the feature near the generator's range. The result of each stage (the best iterate) seeds
the next; every candidate's best over all stages (by gradient distance) is its reconstruction and
the best candidate is returned. All K candidates are optimised together, batched as in the latent
search. Ctrl-C returns the best so far and skips the remaining stages.

Deviations from the paper: (1) the radius is relative, ``r_i = feature_radius * ||h0_i||_1``, so
one value suits stages of any size (the paper tunes an absolute radius per layer); (2) the
constraint is enforced by evaluating ``h0 + l1_ball(delta, r)``, where :func:`l1_ball` rescales a
deviation outside the ball onto its surface (a differentiable map onto the ball), instead of a
Euclidean projection after each step (:func:`~gradinv.attacks.optimization.first_order_match` has
no projection hook); the evaluated and returned features always satisfy the constraint; (3) Adam's
learning rate of a stage is ``feature_lr`` times the RMS of the start feature; (4) the generator is
a DCGAN/BEGAN of :mod:`gradinv.models.generators`, not StyleGAN2, so the stages are its blocks; (5)
the best iterate is kept per stage and candidate.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

import torch
from torch import Tensor

from gradinv.attacks._generative import latent_objective
from gradinv.attacks.base import ProgressFn, register_attack
from gradinv.attacks.gias import (
    LatentSearchAttack,
    LatentSearchConfig,
    check_minimum,
    gradient_distances,
    model_inputs,
    stage_progress,
)
from gradinv.attacks.gradients import Objective, Probe
from gradinv.attacks.objectives import GradientMatcher
from gradinv.attacks.optimization import FirstOrderOptions, MatchOutcome, Setup, first_order_match
from gradinv.errors import ConfigError
from gradinv.models.generators import Generator
from gradinv.types import AttackerView, AttackResult

__all__ = ["GIFD", "FeatureStage", "GIFDConfig", "l1_ball", "search_features"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GIFDConfig(LatentSearchConfig):
    """GIFD: the latent search (:class:`~gradinv.attacks.gias.LatentSearchConfig`), then
    ``feature_iterations`` Adam steps per feature stage of ``feature_stages`` (increasing stage
    indices of the generator, 1 .. stages - 1; empty: all of them) at ``feature_lr`` times the start
    feature's RMS, each under the l1-ball constraint ``||h_i - h0_i||_1 <= feature_radius *
    ||h0_i||_1``."""

    feature_iterations: int = 200
    feature_lr: float = 0.02
    feature_radius: float = 0.5
    feature_stages: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "feature_stages", tuple(self.feature_stages))
        check_minimum(self, "feature_iterations", 1)
        check_minimum(self, "feature_lr", 0.0, strict=True)
        check_minimum(self, "feature_radius", 0.0, strict=True)
        stages = self.feature_stages
        if any(s < 1 for s in stages) or any(b <= a for a, b in itertools.pairwise(stages)):
            raise ConfigError(
                f"Expected `feature_stages` to be increasing stage indices >= 1, but got {list(stages)}. "
                "Stage 0 is the latent; give e.g. feature_stages = [1, 2, 3], or [] for every stage."
            )


def l1_ball(delta: Tensor, radius: Tensor) -> Tensor:
    """``delta`` ``(N, ...)`` with every sample whose l1 norm exceeds its ``radius`` ``(N,)`` rescaled
    onto the ball's surface (``delta * min(1, r / ||delta||_1)``); differentiable."""
    norm = delta.abs().flatten(1).sum(-1)
    scale = torch.clamp(radius / norm.clamp_min(torch.finfo(delta.dtype).tiny), max=1.0)
    return delta * scale.reshape(-1, *([1] * (delta.dim() - 1)))


def _radius(anchor: Tensor, relative: float) -> Tensor:
    return relative * anchor.abs().flatten(1).sum(-1)


def feature_objective(
    generator: Generator, setup: Setup, matcher: GradientMatcher, labels: Tensor, stage: int, relative: float
) -> Objective:
    """``objective(probe, delta, anchor)`` for one candidate: the gradient distance of the images
    made from stage ``stage`` on ``anchor + l1_ball(delta, relative * ||anchor||_1)``. ``anchor`` (the
    start feature) is a per-candidate constant: its gradient is zero, so Adam never moves it."""
    base = latent_objective(generator, setup, matcher, labels, stage=stage)

    def objective(probe: Probe, delta: Tensor, anchor: Tensor) -> Tensor:
        a = anchor.detach() + 0.0 * anchor  # a constant that stays in the graph (zero gradient)
        return base(probe, a + l1_ball(delta, _radius(a, relative).detach()))

    return objective


@dataclass(frozen=True)
class FeatureStage:
    """One feature stage of :func:`search_features`: its ``stage`` index, the ``start`` features
    ``(K, N, ...)``, the optimised ``feature`` (inside the l1 ball of ``radius`` ``(K, N)`` around
    ``start``), their model ``inputs`` ``(K, N, C, H, W)``, gradient ``distances`` ``(K,)`` and the
    optimisation ``outcome``."""

    stage: int
    start: Tensor
    feature: Tensor
    radius: Tensor
    inputs: Tensor
    distances: Tensor
    outcome: MatchOutcome


def _advance(generator: Generator, h: Tensor, start: int, stop: int) -> Tensor:
    """Stages ``start .. stop - 1`` applied to ``h`` ``(K, N, ...)``."""
    k, n = h.shape[:2]
    out = h.reshape(k * n, *h.shape[2:])
    with torch.no_grad():
        for s in generator.stages()[start:stop]:
            out = s(out)
    return out.reshape(k, n, *out.shape[1:])


def feature_stages(cfg: GIFDConfig, generator: Generator) -> tuple[int, ...]:
    """The stages GIFD searches: ``cfg.feature_stages`` checked against ``generator``, or all
    intermediate ones."""
    last = len(generator.stages()) - 1
    stages = cfg.feature_stages or tuple(range(1, last + 1))
    if stages[-1] > last:
        raise ConfigError(
            f"Expected `feature_stages` within 1 .. {last} (the generator's intermediate stages), but got "
            f"{list(stages)}. Give stages of this generator, or [] for all of them."
        )
    return stages


def search_features(
    setup: Setup,
    generator: Generator,
    matcher: GradientMatcher,
    labels: Tensor,
    latents: Tensor,
    cfg: GIFDConfig,
    *,
    progress: ProgressFn | None = None,
    offset: int = 0,
    total: int | None = None,
) -> list[FeatureStage]:
    """GIFD's feature-domain stages from the latents ``(K, N, d)``: one :class:`FeatureStage` per
    stage of :func:`feature_stages`, each started from the previous one's result; stops after a
    stage that was interrupted."""
    stages = feature_stages(cfg, generator)
    total = total if total is not None else offset + len(stages) * cfg.feature_iterations
    h, at = latents.detach(), 0
    done: list[FeatureStage] = []
    for i, stage in enumerate(stages):
        anchor = _advance(generator, h, at, stage)
        delta = torch.zeros_like(anchor)
        rms = float(anchor.pow(2).mean().sqrt().clamp_min(1e-8))
        opts = FirstOrderOptions(
            cfg.feature_iterations,
            cfg.feature_lr * rms,
            signed=cfg.signed,
            boxed=False,
            schedule=cfg.schedule,
            batching=cfg.batching,
        )
        objective = feature_objective(generator, setup, matcher, labels, stage, cfg.feature_radius)
        staged = stage_progress(progress, offset + i * cfg.feature_iterations, total)
        out = first_order_match(setup, delta, objective, opts, extra=[anchor.clone()], progress=staged)
        radius = _radius(anchor.flatten(0, 1), cfg.feature_radius).reshape(anchor.shape[:2])
        dev = l1_ball(out.tracker.best[0].flatten(0, 1), radius.flatten()).reshape(anchor.shape)
        feature = anchor + dev
        inputs = model_inputs(generator, setup, feature, stage=stage)
        distances = gradient_distances(setup, matcher, labels, inputs)
        done.append(FeatureStage(stage, anchor, feature, radius, inputs, distances, out))
        logger.info("GIFD stage %d: best gradient distance %.4g", stage, float(distances.min()))
        if out.interrupted:
            break
        h, at = feature, stage
    return done


@register_attack
class GIFD(LatentSearchAttack):
    """Latent search, then l1-constrained search in the generator's intermediate feature spaces."""

    name = "gifd"
    title = "GIFD"
    paper = (
        "Fang, Chen, Wang, Xia. GIFD: A Generative Gradient Inversion Method with Feature Domain "
        "Optimization. ICCV 2023"
    )
    config_cls = GIFDConfig
    config: GIFDConfig

    def _total_steps(self, generator: Generator) -> int:
        cfg = self.config
        return cfg.iterations + len(feature_stages(cfg, generator)) * cfg.feature_iterations

    def _reconstruct(
        self, view: AttackerView, *, progress: ProgressFn | None, device: torch.device
    ) -> AttackResult:
        cfg = self.config
        start = self._start(view, device, progress)
        search, notes = start.search, start.notes
        inputs, distances = search.inputs.clone(), search.distances.clone()
        from_stage = torch.zeros_like(distances, dtype=torch.long)
        outcomes = [search.outcome]
        stages = feature_stages(cfg, start.generator)
        if not search.outcome.interrupted:
            results = search_features(
                start.setup,
                start.generator,
                start.matcher,
                start.labels,
                search.latents,
                cfg,
                progress=progress,
                offset=cfg.iterations,
                total=self._total_steps(start.generator),
            )
            for r in results:
                outcomes.append(r.outcome)
                better = r.distances < distances
                inputs[better], distances[better] = r.inputs[better], r.distances[better]
                from_stage[better] = r.stage
            searched = ", ".join(f"{r.stage} ({float(r.distances.min()):.4g})" for r in results)
            notes = (
                *notes,
                f"feature stages (best gradient distance): {searched}; l1 radius {cfg.feature_radius:g} x "
                f"||h0||_1, {cfg.feature_iterations} iterations each",
            )
            if len(results) < len(stages):
                notes = (*notes, "interrupted: the remaining feature stages were skipped")
        else:
            notes = (*notes, "feature stages skipped: interrupted during the latent search")
        best = int(torch.argmin(distances))
        notes = (*notes, f"best candidate {best} from stage {int(from_stage[best])} (0: the latent)")
        return self._finish(start, outcomes, inputs, distances, notes)
