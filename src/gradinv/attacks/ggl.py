"""Generative Gradient Leakage (GGL).

Li, Han, Ren, Zhang, "Auditing Privacy Defenses in Federated Learning via Generative Gradient
Leakage", CVPR 2022.

GGL searches the latent space of a frozen pretrained generator ``G`` for the latent whose image's
gradient matches the observed update, with a gradient-free optimiser (CMA-ES):

``min_z  D(T(grad(to_model_input(G(z)), y)), observed) + kl_weight * KL(z)``

where ``y`` are the labels recovered first (iDLG-style, :mod:`gradinv.attacks.labels`), ``D`` the
gradient distance (cosine by default; the authors' code uses squared L2, see the deviations),
``KL(z)`` the latent regulariser of the authors' code (per latent ``z_i`` of the batch:
``0.5 * (mu^2 + s^2 - 1 - log s^2)`` with ``mu`` and ``s^2`` the mean and variance of its entries:
the KL divergence of ``N(mu, s^2)`` from the prior ``N(0, 1)``; summed over the batch), and ``T``
the **adaptive** simulation of the client's defense (``adaptive``):

* ``topk``: the dummy gradient is masked with the support of the observed update (the exact zeros
  that top-k sparsification and pruning leave), so only the coordinates the client sent are matched;
* ``sign``: the dummy gradient is sign-compressed like the client's update
  (:func:`gradinv.defenses.signsgd.sign_compress`, scale ``mean`` or ``none`` read off the update);
* ``noise``: Gaussian noise of std ``noise_sigma`` is added to the dummy gradient (one draw per
  generation shared by the whole population, common random numbers); for the squared L2 distance
  this leaves the expected objective unchanged (``E||g + n - t||^2 = ||g - t||^2 + const``);
* ``auto``: the attacker view carries no declaration of the client's defenses (gradinv's
  :class:`~gradinv.types.AttackerView` has none), so the defense is inferred from the observed
  update: every tensor two-valued ``+-s`` -> ``sign``; at least ``25%`` exact zeros -> ``topk``;
  otherwise ``off``. Noise cannot be detected: ask for ``noise`` explicitly. A note says what was
  inferred.

Implementation notes and deviations:

* CMA-ES is the ``cma`` package's (Hansen), not nevergrad's as in the authors' code; each generation
  evaluates its ``population`` latents in one batched, value-only call (``torch.func.vmap`` of the
  functional parameter gradient, no double backward; ``batching = "loop"``: one candidate at a
  time). The authors run a budget of 500 generations of 50 samples; those are the defaults
  (``iterations`` counts generations).
* Distance: cosine (``distance``), not the authors' squared L2. On an untrained ConvNet the L2
  optimum within the generator's range is a near-black image (small activations, small gradient:
  ``||g - t||^2 -> ||t||^2``), which the KL term does not prevent: measured on a held-out CelebA face
  (ConvNet width 16, digiface DCGAN, 15 generations of 30), PSNR 4.0 dB with L2 (kl_weight 0.1 to
  1e5) against 9.9 dB with cosine. ``distance = "l2"`` restores the paper's.
* The search starts at ``z = 0`` (``init = "zeros"``, the authors' code) or a seeded ``N(0, I)``
  draw (``randn``) with step size ``sigma0``.
* The paper returns the CMA-ES optimum, with no gradient-based refinement; ``polish`` (Adam
  iterations on the best latents afterwards, learning rate ``lr``) is an optional extension, off by
  default. In ``noise`` mode the polish matches without noise.
* The ``keep`` latents of lowest objective seen over the whole run are returned as candidates (the
  best is the reconstruction); Ctrl-C returns them as they are.
* The paper also applies the Bayesian-optimisation variant and a BigGAN for ImageNet; only CMA-ES
  over the registered generators is implemented. The adaptive ``clipping``/``representation``
  simulations of the authors' code are not.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import cma
import numpy as np
import torch
from torch import Tensor
from torch.func import vmap

from gradinv._checks import check_choice, check_int, check_range
from gradinv.attacks._generative import GenerativeAttack, GenerativeConfig, latent_objective
from gradinv.attacks._update_form import read_update_form
from gradinv.attacks.base import ProgressFn, register_attack
from gradinv.attacks.gradients import Objective, Probe
from gradinv.attacks.objectives import DistanceName
from gradinv.attacks.optimization import (
    BestTracker,
    FirstOrderOptions,
    MatchOutcome,
    Setup,
    first_order_match,
)
from gradinv.defenses._tensors import randn_like
from gradinv.defenses.signsgd import sign_compress
from gradinv.errors import ConfigError
from gradinv.models.generators import Generator, to_model_input
from gradinv.types import AttackerView, AttackResult

__all__ = [
    "GGL",
    "AdaptiveMode",
    "DefenseSimulation",
    "GGLConfig",
    "infer_defense",
    "latent_kl",
    "population_values",
]

logger = logging.getLogger(__name__)

AdaptiveMode = Literal["auto", "off", "topk", "noise", "sign"]
ADAPTIVE_MODES: tuple[str, ...] = ("auto", "off", "topk", "noise", "sign")

#: ``auto`` takes the observed update as sparsified when at least this fraction of it is exactly zero
#: (lower than :data:`gradinv.attacks._update_form.SPARSE_FRACTION`: a support mask read off a dense
#: update with dead units costs GGL little, while LTI would train on wrongly sparsified updates)
SPARSE_FRACTION = 0.25


@dataclass(frozen=True)
class GGLConfig(GenerativeConfig):
    """GGL's options (defaults: the authors' CelebA settings).

    ``iterations``: CMA-ES generations; ``population``: latents per generation; ``sigma0``: the
    initial CMA-ES step size; ``init``: the initial mean (``zeros`` or a seeded ``randn`` draw);
    ``kl_weight``: weight of the latent KL regulariser; ``adaptive``: the simulated defense (module
    docstring); ``noise_sigma``: the noise std of ``adaptive = "noise"``; ``keep``: the best latents
    returned as candidates; ``polish``: Adam iterations on them afterwards (0: off, as in the
    paper), with learning rate ``lr``."""

    iterations: int = 500
    population: int = 50
    sigma0: float = 1.0
    init: Literal["zeros", "randn"] = "zeros"
    kl_weight: float = 0.1
    adaptive: AdaptiveMode = "auto"
    noise_sigma: float = 0.0
    keep: int = 4
    polish: int = 0
    lr: float = 0.01
    distance: DistanceName = "cosine"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("population", self.population, minimum=2, fix="CMA-ES needs at least two samples.")
        check_int("keep", self.keep)
        check_int("polish", self.polish, minimum=0, fix="Use 0 to skip the Adam refinement.")
        check_range("sigma0", self.sigma0, low=0, low_open=True, what="the initial CMA-ES step size")
        check_range("kl_weight", self.kl_weight, low=0)
        check_range("noise_sigma", self.noise_sigma, low=0)
        check_choice("init", self.init, ("zeros", "randn"))
        check_choice("adaptive", self.adaptive, ADAPTIVE_MODES)
        if self.adaptive == "noise" and self.noise_sigma <= 0:
            raise ConfigError(
                "Expected `noise_sigma` > 0 with adaptive = 'noise', but got "
                f"{self.noise_sigma}. Set it to the std of the client's Gaussian noise."
            )


# --------------------------------------------------------------------------------------------------
# The simulated defense (adaptive attack)
# --------------------------------------------------------------------------------------------------


@dataclass
class DefenseSimulation:
    """What the attacker applies to every dummy gradient before the distance: ``mode`` ``off``,
    ``topk`` (``masks``: the observed update's support, per matched tensor), ``sign``
    (``sign_scale``) or ``noise`` (``noise``: the current draw, per matched tensor, or ``None``;
    :meth:`draw` draws it shaped like ``like``, the matched tensors of the update)."""

    mode: str = "off"
    masks: tuple[Tensor, ...] = ()
    sign_scale: Literal["mean", "none"] = "mean"
    like: tuple[Tensor, ...] = ()
    noise: list[Tensor] | None = None

    def draw(self, sigma: float, rng: torch.Generator) -> None:
        """A new draw of the client's Gaussian noise, std ``sigma``, from the CPU generator ``rng``."""
        self.noise = [sigma * randn_like(t, rng) for t in self.like]

    def __call__(self, grads: Sequence[Tensor]) -> list[Tensor]:
        if self.mode == "topk":
            return [torch.where(m, g, torch.zeros_like(g)) for g, m in zip(grads, self.masks)]
        if self.mode == "sign":
            return [sign_compress(g, scale=self.sign_scale) for g in grads]
        if self.mode == "noise" and self.noise is not None:
            return [g + n for g, n in zip(grads, self.noise)]
        return list(grads)


def infer_defense(target: Sequence[Tensor]) -> tuple[str, str]:
    """``(mode, note)``: the defense ``auto`` reads off the observed update ``target``
    (:func:`~gradinv.attacks._update_form.read_update_form`, sparse from :data:`SPARSE_FRACTION`
    zeros): ``sign``, ``topk`` or ``off``."""
    form = read_update_form(target, sparse_fraction=SPARSE_FRACTION)
    if form.kind == "sign":
        return "sign", "adaptive auto: every update tensor is +-s (sign compression): dummy gradients signed"
    if form.kind == "sparse":
        return "topk", (
            f"adaptive auto: {form.zeros:.1%} of the update is exactly zero (top-k / pruning): dummy "
            "gradients masked with the update's support"
        )
    return "off", f"adaptive auto: no sparsification or sign compression detected ({form.zeros:.1%} zeros)"


def _simulation(cfg: GGLConfig, setup: Setup, indices: Sequence[int]) -> tuple[DefenseSimulation, str]:
    target = [setup.target[i] for i in indices]  # the matched tensors, in the probe's order
    mode, note = (
        (cfg.adaptive, f"adaptive {cfg.adaptive}") if cfg.adaptive != "auto" else infer_defense(target)
    )
    if mode == "topk":
        masks = tuple(t != 0 for t in target)
        kept = sum(int(m.sum()) for m in masks) / max(1, sum(m.numel() for m in masks))
        return DefenseSimulation("topk", masks=masks), f"{note}; {kept:.1%} of the coordinates matched"
    if mode == "sign":
        scale = read_update_form(target).sign_scale
        return DefenseSimulation("sign", sign_scale=scale), f"{note} (scale {scale})"
    if mode == "noise":
        return DefenseSimulation(
            "noise", like=tuple(target)
        ), f"{note}: N(0, {cfg.noise_sigma:g}^2) added to dummy gradients"
    return DefenseSimulation("off"), note


class _DefendedProbe(Probe):
    """``inner``'s FedSGD gradient passed through the simulated defense."""

    def __init__(self, inner: Probe, simulate: DefenseSimulation) -> None:
        super().__init__(inner.sim, functional=inner.functional)
        self.simulate = simulate

    def __call__(self, x: Tensor, y: Tensor) -> list[Tensor]:
        return self.simulate(super().__call__(x, y))


# --------------------------------------------------------------------------------------------------
# Objective and value-only population evaluation
# --------------------------------------------------------------------------------------------------


def latent_kl(z: Tensor) -> Tensor:
    """GGL's latent regulariser for a batch of latents ``z`` ``(N, d)``: the sum over the batch of
    ``KL(N(mu_i, s_i^2) || N(0, 1)) = 0.5 * (mu_i^2 + s_i^2 - 1 - log s_i^2)``, ``mu_i`` and ``s_i^2``
    the mean and (biased) variance of latent ``i``'s entries.

    >>> float(latent_kl(torch.tensor([[1.0, -1.0]])))
    0.0
    """
    var, mean = torch.var_mean(z, dim=-1, correction=0)
    return (0.5 * (mean**2 + var - 1 - torch.log(var + 1e-10))).sum()


def population_values(
    objective: Objective, probe: Probe, latents: Tensor, *, batching: Literal["vmap", "loop"]
) -> Tensor:
    """``objective(probe, z_k)`` for every candidate ``z_k`` of ``latents`` ``(K, ...)``, values only:
    one ``vmap`` call (``probe`` must be functional) or a loop over the candidates. No gradient with
    respect to the candidates is computed (the parameter gradient inside is ``torch.func.grad``)."""
    with torch.no_grad():
        if batching == "vmap":
            return vmap(lambda z: objective(probe, z), randomness="different")(latents).detach()
        return torch.stack([objective(probe, z).detach() for z in latents])


def _generated_images(generator: Generator, setup: Setup, latents: Tensor) -> Tensor:
    """Images in ``[0, 1]`` at the model's input size for latents ``(K, N, d)``: ``(K, N, C, H, W)``."""
    k, n = latents.shape[:2]
    with torch.no_grad():
        x = to_model_input(generator(latents.reshape(k * n, -1)), setup.input_shape, setup.normalization)
        images = setup.normalization.invert(x).clamp(0, 1)
    return images.reshape(k, n, *images.shape[1:])


@register_attack
class GGL(GenerativeAttack):
    """CMA-ES latent search through a frozen generator, optionally simulating the client's defense."""

    name = "ggl"
    title = "GGL"
    paper = (
        "Li, Han, Ren, Zhang. Auditing Privacy Defenses in Federated Learning via Generative Gradient "
        "Leakage. CVPR 2022"
    )
    config_cls = GGLConfig
    config: GGLConfig

    def _reconstruct(
        self, view: AttackerView, *, progress: ProgressFn | None, device: torch.device
    ) -> AttackResult:
        cfg = self.config
        generator = self._generator(device)
        setup, y, method, matcher, m_notes = self._prepare(view, device, cfg.labels)
        simulate, adaptive_note = _simulation(cfg, setup, matcher.indices)
        base = latent_objective(generator, setup, matcher, y)

        def objective(probe: Probe, z: Tensor) -> Tensor:
            value = base(_DefendedProbe(probe, simulate), z)
            return value + cfg.kl_weight * latent_kl(z) if cfg.kl_weight else value

        n, d = setup.num_samples, generator.latent_dim
        search = _search(cfg, setup, objective, simulate, (n, d), device, progress)
        notes = [*m_notes, f"labels: {method}", adaptive_note, *search.notes]
        outcome = search.outcome
        if cfg.polish and not outcome.interrupted:
            outcome = self._polish(setup, objective, simulate, outcome, progress)
            notes.append(f"Adam polish: {cfg.polish} iterations on the {cfg.keep} best latents")
        tracker = outcome.tracker
        candidates = _generated_images(generator, setup, tracker.best[0])
        return self._result(
            setup=setup,
            outcome=outcome,
            images=candidates[tracker.best_index],
            candidates=candidates,
            labels=y,
            label_method=method,
            notes=tuple(notes),
        )

    def _polish(
        self,
        setup: Setup,
        objective: Objective,
        simulate: DefenseSimulation,
        found: MatchOutcome,
        progress: ProgressFn | None,
    ) -> MatchOutcome:
        cfg = self.config
        simulate.noise = None  # the polish matches the expected objective (no noise draw)
        opts = FirstOrderOptions(
            cfg.polish, cfg.lr, optimizer="adam", boxed=False, schedule="none", batching=cfg.batching
        )
        shifted: ProgressFn | None = None
        if progress is not None:
            report = progress

            def shifted(step: int, total: int, loss: float) -> None:
                report(found.iterations + step, found.iterations + total, loss)

        z = found.tracker.best[0].clone()
        out = first_order_match(setup, z, objective, opts, progress=shifted)
        tr = out.tracker  # its first evaluation is the CMA-ES optimum, so it never gets worse
        history = [*found.tracker.history, *tr.history]
        tracker = BestTracker(tr.best_loss, tr.best, history)
        return MatchOutcome(
            tracker,
            found.iterations + out.iterations,
            found.seconds + out.seconds,
            out.interrupted,
            found.batching,
        )


@dataclass(frozen=True)
class _Search:
    outcome: MatchOutcome
    notes: tuple[str, ...]


def _search(
    cfg: GGLConfig,
    setup: Setup,
    objective: Objective,
    simulate: DefenseSimulation,
    shape: tuple[int, int],
    device: torch.device,
    progress: ProgressFn | None,
) -> _Search:
    """CMA-ES over the flattened latents ``shape = (N, d)``: ``cfg.iterations`` generations of
    ``cfg.population`` samples, each generation one batched evaluation; the ``cfg.keep`` best latents
    seen are tracked. Ctrl-C stops with them."""
    dim = shape[0] * shape[1]
    if cfg.init == "randn":
        x0 = torch.randn(dim, generator=torch.Generator().manual_seed(cfg.seed)).double().numpy()
    else:
        x0 = np.zeros(dim)
    # cma draws from numpy's global generator, which its ``seed`` option seeds (0 would mean "time");
    # the caller's global state is restored when the search ends
    numpy_state = np.random.get_state()
    es = cma.CMAEvolutionStrategy(
        x0,
        cfg.sigma0,
        {"popsize": cfg.population, "seed": cfg.seed + 1, "verbose": -9, "maxiter": cfg.iterations},
    )
    # values only (no double backward): vmap beat the per-candidate loop even for the ConvNet of
    # width 16 that auto_batching calls wide (14.5 vs 27.7 ms a candidate, 2-core CPU), so ``auto``
    # means vmap here
    batching: Literal["vmap", "loop"] = "loop" if cfg.batching == "loop" else "vmap"
    probe = Probe(setup.sim, functional=True)
    noise_rng = torch.Generator().manual_seed(cfg.seed)
    best_z = torch.zeros(0, *shape, device=device)
    best_loss = torch.zeros(0, device=device)
    history: list[float] = []
    done, interrupted, stop = 0, False, ""
    start = time.perf_counter()
    try:
        for gen in range(cfg.iterations):
            solutions = es.ask()
            z = torch.as_tensor(np.stack(solutions), dtype=torch.float32, device=device).reshape(-1, *shape)
            if simulate.mode == "noise":
                simulate.draw(cfg.noise_sigma, noise_rng)
            values = population_values(objective, probe, z, batching=batching)
            finite = torch.nan_to_num(values, nan=math.inf)
            worst = float(finite[torch.isfinite(finite)].max()) if bool(torch.isfinite(finite).any()) else 1.0
            es.tell(solutions, [v if math.isfinite(v) else 10 * abs(worst) + 1e30 for v in finite.tolist()])
            best_z, best_loss = _keep_best(best_z, best_loss, z, finite, cfg.keep)
            history.append(float(best_loss[0]))
            done = gen + 1
            if progress is not None:
                progress(done, cfg.iterations, history[-1])
            reasons = {k: v for k, v in es.stop().items() if k != "maxiter"}
            if reasons:
                stop = ", ".join(reasons)
                break
    except KeyboardInterrupt:
        interrupted = True
        logger.warning("GGL interrupted after %d generations: returning the best latents so far", done)
    finally:
        np.random.set_state(numpy_state)
    if not len(best_loss):  # interrupted before the first generation: the start point
        best_z = torch.as_tensor(x0, dtype=torch.float32, device=device).reshape(1, *shape)
        best_loss = torch.full((1,), math.inf, device=device)
    tracker = BestTracker(best_loss, [best_z], history)
    notes = [f"CMA-ES (cma {cma.__version__}): {done} generations of {cfg.population} latents, {batching}"]
    if stop:
        notes.append(f"CMA-ES stopped early: {stop}")
    seconds = time.perf_counter() - start
    return _Search(MatchOutcome(tracker, done, seconds, interrupted, batching), tuple(notes))


def _keep_best(
    best_z: Tensor, best_loss: Tensor, z: Tensor, loss: Tensor, keep: int
) -> tuple[Tensor, Tensor]:
    """The ``keep`` lowest-loss latents among the archive and a new generation, best first."""
    all_z, all_loss = torch.cat([best_z, z]), torch.cat([best_loss, loss])
    order = torch.argsort(all_loss)[:keep]
    return all_z[order].clone(), all_loss[order].clone()
