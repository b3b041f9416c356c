"""GRNN — Generative Regression Neural Network.

Ren, Deng, Xie, "GRNN: Generative Regression Neural Network — A Data Leakage Attack for Federated
Learning", ACM Transactions on Intelligent Systems and Technology 13(4), 2022.

A *trainable, randomly initialised* generator maps a fixed noise vector ``v`` to a fake batch: an
image branch (a DCGAN generator, :func:`gradinv.models.generators.build_generator` ``"dcgan32"`` /
``"dcgan64"`` architecture with ``nz = noise_dim``, ``ngf = width``) and a label branch (a linear
layer on ``v`` whose softmax is the fake soft label). The generator's *parameters* (not the images,
not a latent) are trained so that the fake batch's gradient matches the observed one::

    L(theta) = D(grad(G_x(v; theta), softmax(G_y(v; theta))), target)
               + wd * W2(entries of the fake gradient, entries of the target)
               + tv * TV(G_x(v; theta))

with ``D`` the shared gradient distance (default ``l2``: GRNN's squared Euclidean distance).

No pretrained prior is involved: the generator starts from PyTorch's default initialisation (seeded),
so GRNN needs only the update and basic knowledge — the same knowledge as Inverting Gradients
(threat model B; paper 003, §II-B2 and §III-C2). That is why :class:`GRNN` inherits
:class:`~gradinv.attacks.optimization.OptimizationAttack` (``BASIC_NEEDED``, ``UPDATES_NEEDED``) and
not :class:`~gradinv.attacks._generative.GenerativeAttack`, whose requirement of surrogate data
stands for a generator *trained on the client's distribution*. Its family is still "generative"
(it optimises a generator's parameters, paper 003's "Opti. Gen. Para."). Paper 003 §III-C2 reports
that this kind of attack works on Sigmoid models and fails on ReLU ones (benchmarks/bench_grnn_lti.py
measures both).

Implementation notes and deviations from the paper:

* K restarts (``restarts``) are K generators (seeds ``seed .. seed + K - 1``; the noise ``v`` is
  shared) whose flattened parameters form one ``(K, P)`` tensor, evaluated by one
  :class:`~gradinv.attacks.gradients.CandidateEvaluator` call per step (``torch.func.vmap`` over
  ``functional_call`` of the generator) and optimised by
  :func:`~gradinv.attacks.optimization.first_order_match` — best-so-far tracking, progress and
  Ctrl-C (the best generator so far is kept) come from there.
* Optimiser: Adam (``lr``, default 1e-3) instead of the paper's RMSprop (lr 1e-4, momentum 0.99).
* The paper's "Wasserstein distance" term is, in the authors' code, a monotone function of the L2
  norm of the gradient difference; here ``wd`` weighs the 1-D Wasserstein-2 distance between the
  empirical distributions of the fake and the target gradient entries (sorted entries compared),
  which is what the paper describes.
* TV is gradinv's mean absolute TV on the model input (:func:`~gradinv.attacks.regularizers.total_variation`),
  not the paper's squared TV.
* The generator's BatchNorm layers always normalise with the fake batch's statistics (no running
  statistics), also under ``vmap``.
* ``labels``: ``"generated"`` (default, the paper's label branch) or any label strategy of
  :mod:`gradinv.attacks.labels` (then the label branch is unused and the labels are fixed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call, replace_all_batch_norm_modules_

from gradinv.attacks.base import LABELS_NEEDED, ProgressFn, register_attack
from gradinv.attacks.gradients import Objective, Probe
from gradinv.attacks.labels import resolve_labels
from gradinv.attacks.objectives import DistanceName, GradientMatcher
from gradinv.attacks.optimization import (
    FirstOrderOptions,
    ObjectiveConfig,
    OptimizationAttack,
    Schedule,
    Setup,
    check_label_strategy,
    first_order_match,
)
from gradinv.attacks.regularizers import total_variation
from gradinv.errors import ConfigError
from gradinv.models.generators import Generator, build_generator, to_model_input
from gradinv.models.seeding import seeded
from gradinv.threat import Requirement
from gradinv.types import AttackerView, AttackResult

__all__ = ["GRNN", "GRNNConfig", "GRNNGenerator", "wasserstein_1d"]

logger = logging.getLogger(__name__)

#: the ``labels`` value that trains GRNN's label branch
GENERATED = "generated"


@dataclass(frozen=True)
class GRNNConfig(ObjectiveConfig):
    """GRNN's options. ``iterations``: generator training steps (paper: 1000); ``lr``: Adam's step;
    ``restarts``: generators trained at once; ``noise_dim`` (paper: 128) and ``width`` (the DCGAN's
    base width ``ngf``) size the generator; ``wd`` and ``tv`` weigh the Wasserstein-2 and TV terms
    (paper: 1 and 1e-3 for LeNet); ``schedule``: the learning-rate schedule; ``labels``:
    ``"generated"`` (the label branch) or a label strategy. ``init`` is always ``"random"``: the
    generator's default initialisation drawn from ``seed``."""

    iterations: int = 1000
    lr: float = 1e-3
    init: Literal["random"] = "random"
    distance: DistanceName = "l2"
    restarts: int = 1
    noise_dim: int = 128
    width: int = 32
    wd: float = 1.0
    tv: float = 1e-3
    schedule: Schedule = "none"
    labels: str = GENERATED

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("noise_dim", "width"):
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"Expected `{name}` >= 1, but got {getattr(self, name)}. Use e.g. noise_dim = 128, "
                    "width = 32."
                )
        if self.wd < 0:
            raise ConfigError(f"Expected `wd` >= 0, but got {self.wd}. Use 0 to drop the Wasserstein term.")
        if self.labels != GENERATED:
            check_label_strategy(self.labels)


class GRNNGenerator(nn.Module):
    """GRNN's two-branch generator: ``image`` (a DCGAN generator, images in [-1, 1]) and ``label`` (a
    linear layer giving label logits), both fed the same noise ``v`` ``(N, noise_dim)``."""

    def __init__(self, image: Generator, *, noise_dim: int, num_classes: int) -> None:
        super().__init__()
        self.image = image
        self.label = nn.Linear(noise_dim, num_classes)

    def forward(self, v: Tensor) -> tuple[Tensor, Tensor]:
        return self.image(v), self.label(v)


def _build(cfg: GRNNConfig, setup: Setup, seed: int, device: torch.device) -> GRNNGenerator:
    side = max(setup.input_shape[1:])
    image = build_generator(
        "dcgan32",
        seed=seed,
        nz=cfg.noise_dim,
        ngf=cfg.width,
        channels=setup.input_shape[0],
        image_size=32 if side <= 32 else 64,
    )
    with seeded(seed + 1):  # the label branch: PyTorch's default init, drawn from the seed
        net = GRNNGenerator(image, noise_dim=cfg.noise_dim, num_classes=setup.num_classes)
    replace_all_batch_norm_modules_(net)  # batch statistics only, vmap-safe
    return net.to(device).train()


def wasserstein_1d(a: Sequence[Tensor], sorted_target: Tensor) -> Tensor:
    """Wasserstein-2 distance between the empirical distributions of the entries of ``a`` (a list of
    tensors, concatenated) and of a target whose entries are given sorted: ``sqrt(mean((sort(a) -
    sorted_target)^2))``."""
    flat = torch.cat([t.reshape(-1) for t in a])
    return (torch.sort(flat).values - sorted_target).pow(2).mean().add(1e-12).sqrt()


def _flatten(net: nn.Module) -> Tensor:
    return torch.cat([p.detach().reshape(-1) for p in net.parameters()])


def _unflattener(net: nn.Module) -> Callable[[Tensor], dict[str, Tensor]]:
    """The inverse of :func:`_flatten` for ``net``: a flat parameter vector as a ``functional_call``
    parameter dict."""
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for p in net.parameters()]
    sizes = [p.numel() for p in net.parameters()]

    def unflatten(theta: Tensor) -> dict[str, Tensor]:
        return {n: t.view(s) for n, t, s in zip(names, theta.split(sizes), shapes)}

    return unflatten


def grnn_objective(
    net: GRNNGenerator,
    setup: Setup,
    matcher: GradientMatcher,
    *,
    noise: Tensor,
    labels: Tensor | None,
    wd: float,
    tv: float,
) -> Objective:
    """``objective(probe, theta_k)``: the GRNN loss of the generator with flattened parameters
    ``theta_k`` (``labels`` ``None``: the label branch's soft labels)."""
    unflatten = _unflattener(net)
    sorted_target = torch.sort(torch.cat([setup.target[i].reshape(-1) for i in matcher.indices])).values

    def objective(probe: Probe, theta: Tensor) -> Tensor:
        images, logits = functional_call(net, unflatten(theta), (noise,))
        x = to_model_input(images, setup.input_shape, setup.normalization)
        grads = probe(x, logits if labels is None else labels)
        value = matcher(grads)
        if wd:
            value = value + wd * wasserstein_1d(grads, sorted_target)
        if tv:
            value = value + tv * total_variation(x)
        return value

    return objective


@register_attack
class GRNN(OptimizationAttack):
    """Train a randomly initialised two-branch generator so its fake batch's gradient matches."""

    name = "grnn"
    title = "GRNN"
    family = "generative"
    paper = (
        "Ren, Deng, Xie. GRNN: Generative Regression Neural Network - A Data Leakage Attack for "
        "Federated Learning. ACM TIST 2022"
    )
    config_cls = GRNNConfig
    config: GRNNConfig

    def requirements(self) -> tuple[Requirement, ...]:
        known = self.config.labels == "known"
        return self.base_requirements + ((LABELS_NEEDED,) if known else ())

    def _reconstruct(
        self, view: AttackerView, *, progress: ProgressFn | None, device: torch.device
    ) -> AttackResult:
        cfg = self.config
        setup = self._setup(view, device)
        matcher, m_notes = self._matcher(setup)
        fixed: Tensor | None = None
        if cfg.labels == GENERATED:
            method = "generated (GRNN's label branch)"
        else:
            y, method = resolve_labels(cfg.labels, view, setup.target_dict)
            fixed = y.to(device)
        nets = [_build(cfg, setup, cfg.seed + k, device) for k in range(cfg.restarts)]
        net = nets[0]
        theta = torch.stack([_flatten(n) for n in nets])
        noise = torch.randn(
            setup.num_samples, cfg.noise_dim, generator=torch.Generator().manual_seed(cfg.seed)
        )
        noise = noise.to(device)
        objective = grnn_objective(net, setup, matcher, noise=noise, labels=fixed, wd=cfg.wd, tv=cfg.tv)
        opts = FirstOrderOptions(
            cfg.iterations, cfg.lr, signed=False, boxed=False, schedule=cfg.schedule, batching=cfg.batching
        )
        out = first_order_match(setup, theta, objective, opts, progress=progress)
        images, logits = self._generate(net, out.tracker.best[0], noise, setup)
        best = out.tracker.best_index
        labels = fixed if fixed is not None else logits[best].argmax(-1)
        n_params = theta.shape[1]
        if cfg.wd and not setup.scale_known:
            m_notes = (*m_notes, "the Wasserstein term compares entries with -delta of unknown scale")
        return self._result(
            setup=setup,
            outcome=out,
            images=images[best],
            candidates=images,
            labels=labels,
            label_method=method,
            notes=(
                *m_notes,
                f"labels: {method}",
                f"generator: DCGAN (nz={cfg.noise_dim}, ngf={cfg.width}) + linear label branch, "
                f"{n_params} parameters, random init (no pretrained prior)",
            ),
        )

    @staticmethod
    @torch.no_grad()
    def _generate(net: GRNNGenerator, thetas: Tensor, noise: Tensor, setup: Setup) -> tuple[Tensor, Tensor]:
        """Images ``(K, N, C, H, W)`` in [0, 1] and label logits ``(K, N, classes)`` of each
        candidate's generator parameters."""
        unflatten = _unflattener(net)
        images, logits = [], []
        for theta in thetas:
            img, lg = functional_call(net, unflatten(theta), (noise,))
            x = to_model_input(img, setup.input_shape, setup.normalization)
            images.append(setup.normalization.invert(x).clamp(0, 1))
            logits.append(lg)
        return torch.stack(images), torch.stack(logits)
