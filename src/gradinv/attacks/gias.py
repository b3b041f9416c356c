"""GIAS — Gradient Inversion in Alternative Spaces.

Jeon, Kim, Lee, Kim, "Gradient Inversion with Generative Image Prior", NeurIPS 2021.

Two stages with a frozen pretrained generator ``G`` (:mod:`gradinv.models.generators`):

1. **Latent search**: ``restarts`` = K latent candidates per sample, ``z`` ``(K, N, latent_dim)``
   drawn from the generator's Gaussian prior, minimise the gradient distance of ``G(z)`` (resized
   and normalised to the model's input, :func:`~gradinv.attacks._generative.latent_objective`) plus
   ``latent_prior`` times ``mean_i (||z_i|| / sqrt(d) - 1)^2``, which keeps every latent near the
   prior's typical set (the sphere of radius ``sqrt(d)``). The K candidates are one tensor under one
   Adam, evaluated by one :class:`~gradinv.attacks.gradients.CandidateEvaluator` per iteration
   (:func:`~gradinv.attacks.optimization.first_order_match`).
2. **Generator fine-tuning**: from the best latent (lowest gradient distance), the latent is fixed
   and a copy of the generator's parameters is optimised — one copy per sample (``per_sample``, as
   in the paper: ``x_i = G(z_i; w_i)``) or one shared copy — minimising the gradient distance plus
   ``param_penalty`` times ``mean_i ||w_i - w_0||^2 / ||w_0||^2`` (the paper's penalty keeping
   the parameters near the pretrained ones ``w_0``; here relative to ``||w_0||^2`` so that one weight
   suits generators of any size). The images of the fine-tuned generator are the reconstruction.

Because stage 2 starts at the stage-1 optimum and keeps its best iterate, its gradient distance is
never worse than stage 1's. Ctrl-C (or a ``progress`` callback raising ``KeyboardInterrupt``) in
either stage returns the best so far; an interrupted stage 1 skips stage 2.

The latent-search step is shared with GIFD (:mod:`gradinv.attacks.gifd`): :class:`LatentSearchConfig`,
:func:`search_latents`, :func:`gradient_distances` and :class:`LatentSearchAttack`.

Deviations from the paper: Adam with a cosine (default) learning-rate schedule for both stages and
the best iterate kept per candidate (the paper keeps the last); the latent regulariser is the
norm-to-typical-set penalty above (the paper's latent prior term, written for a Gaussian latent);
the parameter penalty is relative (see above); stage 2 fine-tunes the best latent candidate only
(the paper's setting), the other K - 1 candidates are reported with their stage-1 images; only the
generator's parameters are fine-tuned, its BatchNorm running statistics stay frozen (eval mode).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor
from torch.func import functional_call

from gradinv.attacks._generative import GenerativeAttack, GenerativeConfig, latent_objective
from gradinv.attacks.base import ProgressFn, register_attack
from gradinv.attacks.gradients import CandidateEvaluator, Objective, Probe
from gradinv.attacks.objectives import GradientMatcher
from gradinv.attacks.optimization import (
    BestTracker,
    FirstOrderOptions,
    MatchOutcome,
    Schedule,
    Setup,
    first_order_match,
    init_candidates,
    matching_objective,
)
from gradinv.errors import ConfigError
from gradinv.models.generators import Generator, to_model_input
from gradinv.types import AttackerView, AttackResult

__all__ = [
    "GIAS",
    "GIASConfig",
    "LatentSearch",
    "LatentSearchAttack",
    "LatentSearchConfig",
    "LatentStart",
    "check_minimum",
    "gradient_distances",
    "latent_prior_penalty",
    "merge_outcomes",
    "search_latents",
    "stage_progress",
]

logger = logging.getLogger(__name__)


def check_minimum(cfg: object, name: str, minimum: float, *, strict: bool = False, fix: str = "") -> None:
    """A config check: ``cfg.name >= minimum`` (``> minimum`` when ``strict``), else a ConfigError
    ending with ``fix``."""
    value = getattr(cfg, name)
    bad = value <= minimum if strict else value < minimum
    if bad:
        op = ">" if strict else ">="
        raise ConfigError(f"Expected `{name}` {op} {minimum}, but got {value}. {fix}".rstrip())


@dataclass(frozen=True)
class LatentSearchConfig(GenerativeConfig):
    """The latent-search options GIAS and GIFD share: ``iterations`` and ``lr`` of the latent Adam,
    ``restarts`` = K latent candidates per sample, ``latent_prior`` (weight of the
    norm-to-typical-set penalty, 0: none), ``schedule`` of the learning rate and ``signed`` steps.
    Latents start from the generator's Gaussian prior (``init = "randn"``, seeded by ``seed``)."""

    iterations: int = 1000
    lr: float = 0.05
    restarts: int = 4
    init: Literal["randn"] = "randn"
    latent_prior: float = 0.01
    schedule: Schedule = "cosine"
    signed: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.init != "randn":
            raise ConfigError(
                f"Expected `init` to be 'randn' (latents start from the generator's Gaussian prior), "
                f"but got {self.init!r}. Remove the option."
            )
        check_minimum(self, "latent_prior", 0.0, fix="Use 0 to switch the latent regulariser off.")
        if self.schedule not in ("multistep", "cosine", "none"):
            raise ConfigError(
                f"Expected `schedule` to be 'multistep', 'cosine' or 'none', but got {self.schedule!r}."
            )


def latent_prior_penalty(z: Tensor) -> Tensor:
    """``mean_i (||z_i|| / sqrt(d) - 1)^2`` over the samples ``z`` ``(N, d)``: zero on the sphere
    where a ``d``-dimensional standard Gaussian concentrates."""
    d = z.shape[-1]
    return ((z.norm(dim=-1) / math.sqrt(d) - 1.0) ** 2).mean()


def stage_progress(progress: ProgressFn | None, offset: int, total: int) -> ProgressFn | None:
    """``progress`` for one stage of a multi-stage attack: the stage's step counts from ``offset``
    out of the attack's ``total`` steps."""
    if progress is None:
        return None
    report = progress

    def staged(step: int, _stage_total: int, loss: float) -> None:
        report(offset + step, total, loss)

    return staged


@dataclass(frozen=True)
class LatentSearch:
    """The outcome of :func:`search_latents`: the optimisation ``outcome`` (its ``tracker.best[0]``
    are the best latents ``(K, N, d)``), the images of those latents in the model's input space
    ``(K, N, C, H, W)`` and their pure gradient distances ``(K,)`` (without the latent prior)."""

    outcome: MatchOutcome
    latents: Tensor
    inputs: Tensor
    distances: Tensor


def gradient_distances(setup: Setup, matcher: GradientMatcher, labels: Tensor, inputs: Tensor) -> Tensor:
    """The gradient distance ``(K,)`` of each candidate's model inputs ``inputs`` ``(K, N, C, H, W)``
    — what stages of different objectives are compared by."""
    evaluator = CandidateEvaluator(setup.sim, matching_objective(matcher, labels), batching="loop")
    values, _ = evaluator([inputs.detach()])
    return values


def model_inputs(generator: Generator, setup: Setup, h: Tensor, *, stage: int = 0) -> Tensor:
    """The model inputs ``(K, N, C, H, W)`` of the generator run from ``stage`` on ``h`` ``(K, N, ...)``."""
    with torch.no_grad():
        k, n = h.shape[:2]
        images = generator.run_from(stage, h.reshape(k * n, *h.shape[2:]))
        return to_model_input(images, setup.input_shape, setup.normalization).reshape(
            k, n, *setup.input_shape
        )


def search_latents(
    setup: Setup,
    generator: Generator,
    matcher: GradientMatcher,
    labels: Tensor,
    cfg: LatentSearchConfig,
    *,
    device: torch.device,
    progress: ProgressFn | None = None,
) -> LatentSearch:
    """Stage 1 of GIAS and GIFD: ``cfg.restarts`` latent candidates per sample, from the seeded
    Gaussian prior, optimised through the frozen ``generator`` to match the target gradient (plus
    ``cfg.latent_prior`` times :func:`latent_prior_penalty`), batched by
    :func:`~gradinv.attacks.optimization.first_order_match`."""
    shape = (cfg.restarts, setup.num_samples, generator.latent_dim)
    z = init_candidates("randn", shape, seed=cfg.seed, device=device)
    base = latent_objective(generator, setup, matcher, labels)
    weight = cfg.latent_prior

    def objective(probe: Probe, zk: Tensor) -> Tensor:
        value = base(probe, zk)
        return value + weight * latent_prior_penalty(zk) if weight else value

    opts = FirstOrderOptions(
        cfg.iterations,
        cfg.lr,
        signed=cfg.signed,
        boxed=False,
        schedule=cfg.schedule,
        batching=cfg.batching,
    )
    out = first_order_match(setup, z, objective, opts, progress=progress)
    best = out.tracker.best[0]
    inputs = model_inputs(generator, setup, best)
    return LatentSearch(out, best, inputs, gradient_distances(setup, matcher, labels, inputs))


def merge_outcomes(outcomes: list[MatchOutcome], distances: Tensor, best: list[Tensor]) -> MatchOutcome:
    """One :class:`MatchOutcome` for a multi-stage attack: iterations and seconds summed, the loss
    histories concatenated, interrupted if any stage was, the first stage's batching, and the final
    per-candidate ``distances`` with the variables ``best`` as the tracker's best."""
    tracker = BestTracker(distances.detach().clone(), best)
    tracker.history = [v for o in outcomes for v in o.tracker.history]
    return MatchOutcome(
        tracker,
        sum(o.iterations for o in outcomes),
        sum(o.seconds for o in outcomes),
        any(o.interrupted for o in outcomes),
        outcomes[0].batching,
    )


def generator_note(cfg: GenerativeConfig, generator: Generator) -> str:
    c, h, w = generator.image_shape
    return f"generator: {cfg.generator} (latent {generator.latent_dim}, images {c}x{h}x{w})"


@dataclass(frozen=True)
class LatentStart:
    """What :meth:`LatentSearchAttack._start` hands to the later stages."""

    setup: Setup
    labels: Tensor
    label_method: str
    matcher: GradientMatcher
    notes: tuple[str, ...]
    generator: Generator
    search: LatentSearch


class LatentSearchAttack(GenerativeAttack):
    """The common start of GIAS and GIFD: setup, labels, matcher, generator and the latent search."""

    config: LatentSearchConfig

    def _total_steps(self, generator: Generator) -> int:
        return self.config.iterations

    def _start(self, view: AttackerView, device: torch.device, progress: ProgressFn | None) -> LatentStart:
        cfg = self.config
        setup, y, method, matcher, m_notes = self._prepare(view, device, cfg.labels)
        generator = self._generator(device)
        total = self._total_steps(generator)
        search = search_latents(
            setup,
            generator,
            matcher,
            y,
            cfg,
            device=device,
            progress=stage_progress(progress, 0, total),
        )
        notes = (
            *m_notes,
            f"labels: {method}",
            generator_note(cfg, generator),
            f"stage 1 latent search: {cfg.restarts} candidates, {search.outcome.iterations} iterations, "
            f"best gradient distance {float(search.distances.min()):.4g}",
        )
        return LatentStart(setup, y, method, matcher, notes, generator, search)

    def _finish(
        self,
        start: LatentStart,
        outcomes: list[MatchOutcome],
        inputs: Tensor,
        distances: Tensor,
        notes: tuple[str, ...],
    ) -> AttackResult:
        """The result of the final candidates' model ``inputs`` ``(K, N, C, H, W)`` with their
        gradient ``distances`` ``(K,)`` after the stages ``outcomes``."""
        setup = start.setup
        outcome = merge_outcomes(outcomes, distances, [start.search.latents])
        images = setup.normalization.invert(inputs).clamp(0, 1)
        return self._result(
            setup=setup,
            outcome=outcome,
            images=images[outcome.tracker.best_index],
            candidates=images,
            labels=start.labels,
            label_method=start.label_method,
            notes=notes,
        )


@dataclass(frozen=True)
class GIASConfig(LatentSearchConfig):
    """GIAS: the latent search (:class:`LatentSearchConfig`; ``iterations``, ``lr``, ``restarts``,
    ``latent_prior``), then ``finetune_iterations`` Adam steps at ``finetune_lr`` on a copy of the
    generator's parameters (``per_sample``: one copy per sample, as in the paper; else one shared
    copy) with ``param_penalty`` times the relative squared distance to the pretrained parameters.
    ``finetune_iterations = 0`` stops after the latent search."""

    finetune_iterations: int = 500
    finetune_lr: float = 1e-4
    param_penalty: float = 1.0
    per_sample: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_minimum(self, "finetune_iterations", 0, fix="Use 0 to skip the generator fine-tuning.")
        check_minimum(self, "finetune_lr", 0.0, strict=True)
        check_minimum(self, "param_penalty", 0.0, fix="Use 0 for no penalty.")


def _flat_parameters(generator: Generator) -> tuple[list[str], list[torch.Size], Tensor]:
    named = list(generator.named_parameters())
    names = [n for n, _ in named]
    shapes = [p.shape for _, p in named]
    flat = torch.cat([p.detach().reshape(-1) for _, p in named])
    return names, shapes, flat


def tuned_images(generator: Generator, w: Tensor, z: Tensor) -> Tensor:
    """The images ``(N, C, H, W)`` of flat generator parameters ``w`` ``(M, P)`` on latents ``z``
    ``(N, d)``: sample ``i`` made by ``w_i`` (``M = N``) or all by ``w_0`` (``M = 1``)."""
    names, shapes, _ = _flat_parameters(generator)
    sizes = [s.numel() for s in shapes]
    groups = [(w[0], z)] if w.shape[0] == 1 else [(w[i], z[i : i + 1]) for i in range(z.shape[0])]
    out = []
    for wi, zi in groups:
        params = {k: t.view(s) for k, t, s in zip(names, torch.split(wi, sizes), shapes)}
        out.append(functional_call(generator, params, (zi,)))
    return torch.cat(out)


def finetune_objective(
    generator: Generator,
    setup: Setup,
    matcher: GradientMatcher,
    labels: Tensor,
    z: Tensor,
    theta0: Tensor,
    penalty: float,
) -> Objective:
    """``objective(probe, w) = D(grad(G(z; w))) + penalty * mean_m ||w_m - w_0||^2 / ||w_0||^2`` for
    flat generator parameters ``w`` ``(M, P)``: ``M = N`` (one copy per sample, sample ``i`` made by
    ``w_i``) or ``M = 1`` (shared). ``z`` ``(N, d)`` is the fixed latent."""
    scale = float(theta0.pow(2).sum())

    def objective(probe: Probe, w: Tensor) -> Tensor:
        x = to_model_input(tuned_images(generator, w, z), setup.input_shape, setup.normalization)
        value = matcher(probe(x, labels))
        if penalty:
            value = value + penalty * (w - theta0).pow(2).sum(-1).mean() / scale
        return value

    return objective


@register_attack
class GIAS(LatentSearchAttack):
    """Latent search through a pretrained generator, then per-sample generator fine-tuning."""

    name = "gias"
    title = "GIAS"
    paper = "Jeon, Kim, Lee, Kim. Gradient Inversion with Generative Image Prior. NeurIPS 2021"
    config_cls = GIASConfig
    config: GIASConfig

    def _total_steps(self, generator: Generator) -> int:
        return self.config.iterations + self.config.finetune_iterations

    def _reconstruct(
        self, view: AttackerView, *, progress: ProgressFn | None, device: torch.device
    ) -> AttackResult:
        cfg = self.config
        start = self._start(view, device, progress)
        setup, y, matcher, generator, search = (
            start.setup,
            start.labels,
            start.matcher,
            start.generator,
            start.search,
        )
        notes = start.notes
        inputs, distances = search.inputs.clone(), search.distances.clone()
        outcomes = [search.outcome]
        best = int(torch.argmin(distances))
        if cfg.finetune_iterations and not search.outcome.interrupted:
            z = search.latents[best]
            _, _, theta0 = _flat_parameters(generator)
            copies = setup.num_samples if cfg.per_sample else 1
            w = theta0.expand(1, copies, -1).clone()
            objective = finetune_objective(generator, setup, matcher, y, z, theta0, cfg.param_penalty)
            opts = FirstOrderOptions(
                cfg.finetune_iterations, cfg.finetune_lr, boxed=False, schedule=cfg.schedule, batching="loop"
            )
            staged = stage_progress(progress, cfg.iterations, self._total_steps(generator))
            out = first_order_match(setup, w, objective, opts, progress=staged)
            outcomes.append(out)
            w_best = out.tracker.best[0][0]
            with torch.no_grad():
                images = tuned_images(generator, w_best, z)
                tuned = to_model_input(images, setup.input_shape, setup.normalization)
            d2 = gradient_distances(setup, matcher, y, tuned.unsqueeze(0))[0]
            rel = float((w_best - theta0).norm(dim=-1).max() / theta0.norm())
            copy = "one copy per sample" if cfg.per_sample else "shared copy"
            notes = (
                *notes,
                f"stage 2 generator fine-tuning: {copy}, "
                f"{out.iterations} iterations, gradient distance {float(distances[best]):.4g} -> "
                f"{float(d2):.4g}, largest relative parameter change {rel:.3g}",
            )
            if d2 <= distances[best]:  # never worse than the latent search
                inputs[best], distances[best] = tuned, d2
        elif cfg.finetune_iterations:
            notes = (*notes, "stage 2 generator fine-tuning skipped: interrupted during the latent search")
        return self._finish(start, outcomes, inputs, distances, notes)
