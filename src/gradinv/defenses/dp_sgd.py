"""DP-SGD: per-sample gradient clipping and Gaussian noise in every local step, with a privacy
accountant reporting (ε, δ) for the client's training.

Abadi, Chu, Goodfellow, McMahan, Mironov, Talwar, Zhang, "Deep Learning with Differential
Privacy", ACM CCS 2016. Per-sample gradients and accounting come from Opacus (Yousefpour et al.,
"Opacus: User-Friendly Differential Privacy Library in PyTorch", 2021): ``GradSampleHooks`` for the
per-sample gradients, ``opacus.accountants`` (RDP by default; Mironov, "Rényi Differential
Privacy", CSF 2017) for ε.

Every local step on a mini-batch of B samples replaces the gradient by::

    g = ( sum_n g_n * min(1, C / (||g_n|| + 1e-6)) + N(0, σ² C² I) ) / B

where ``g_n`` is sample n's gradient of its loss (cross-entropy, plus the model's auxiliary loss
such as PRECODE's KL term), ``||g_n||`` its L2 norm over all trainable parameters, ``C`` =
``max_grad_norm`` and ``σ`` = ``noise_multiplier`` (Opacus' clipping rule; Opacus divides by the
expected batch size, here the step's actual B). Noise comes from the client's private generator.

Accounting: each step is one subsampled Gaussian mechanism with sampling rate ``q = B / N`` (N the
client's samples; FedSGD: q = 1, one step). ``info()`` reports ``epsilon`` for this local training
at ``delta``, and ``epsilon_cumulative`` over every round this defense object saw for the client
(the accountant composes the rounds; a defense rebuilt every round reports one round). Like Opacus
with ``poisson_sampling = False``, the accountant treats the shuffled fixed-size mini-batches as
Poisson-subsampled with rate q, the usual approximation.

BatchNorm mixes the samples of a batch, so per-sample gradients (and DP) are undefined with it;
the defense refuses such models with Opacus' explanation, unless ``replace_batchnorm = true``,
which replaces every BatchNorm by GroupNorm in the global model (a model-stage change every party
sees, via :meth:`DPSGD.transform_model`; Opacus ``ModuleValidator.fix``). The per-sample pass runs
the model in train mode (the only mode in which Opacus records activations); BN-free models behave
the same in both modes unless they use dropout.
"""

from __future__ import annotations

import functools
import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradinv._checks import check_choice, check_range
from gradinv.defenses._tensors import randn_like
from gradinv.defenses.base import Defense, DefenseConfig, DefenseHooks, auxiliary_loss, register_defense
from gradinv.errors import ModelError
from gradinv.fl.client import StepContext, UpdateContext
from gradinv.types import ModelUpdate

__all__ = [
    "DPSGD",
    "DPSGDConfig",
    "check_dp_compatible",
    "clip_and_noise",
    "dp_epsilon",
    "per_sample_gradients",
]

logger = logging.getLogger(__name__)

AccountantName = Literal["rdp", "prv", "gdp"]


def dp_epsilon(
    *,
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
    delta: float,
    accountant: AccountantName = "rdp",
    history: Sequence[tuple[float, float, int]] = (),
) -> float:
    """ε after ``steps`` subsampled Gaussian steps (plus any earlier ``history`` of
    ``(noise_multiplier, sample_rate, steps)``), from Opacus' accountant ``accountant`` at ``delta``.

    ``inf`` without noise. For ``rdp`` this is what ``RDPAccountant.get_epsilon`` computes (the sum of
    ``compute_rdp`` over the history, converted at the best order); the per-step RDP curve of each
    ``(σ, q)`` is cached, since RDP composes linearly in the number of steps."""
    entries = [(float(s), float(q), int(n)) for s, q, n in (*history, (noise_multiplier, sample_rate, steps))]
    entries = [e for e in entries if e[2] > 0]
    if not entries:
        return 0.0
    if any(e[0] <= 0 for e in entries):
        return math.inf
    if accountant == "rdp":
        from opacus.accountants import RDPAccountant
        from opacus.accountants.analysis import rdp as rdp_analysis

        orders = RDPAccountant.DEFAULT_ALPHAS
        curve = [0.0] * len(orders)
        for sigma, q, n in entries:
            curve = [c + n * r for c, r in zip(curve, _rdp_per_step(q, sigma))]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            eps, _ = rdp_analysis.get_privacy_spent(orders=orders, rdp=curve, delta=delta)
        for w in caught:  # e.g. "Optimal order is the smallest alpha": to the log, not the terminal
            logger.info("privacy accountant: %s", w.message)
        return float(eps)
    from opacus.accountants import create_accountant

    acc = create_accountant(accountant)
    acc.history = list(entries)
    return float(acc.get_epsilon(delta=delta))


@functools.lru_cache(maxsize=256)
def _rdp_per_step(sample_rate: float, noise_multiplier: float) -> tuple[float, ...]:
    from opacus.accountants import RDPAccountant
    from opacus.accountants.analysis import rdp as rdp_analysis

    out = rdp_analysis.compute_rdp(
        q=sample_rate, noise_multiplier=noise_multiplier, steps=1, orders=RDPAccountant.DEFAULT_ALPHAS
    )
    return tuple(float(v) for v in out)


def check_dp_compatible(model: nn.Module) -> None:
    """Raise :class:`ModelError` with Opacus' explanation when ``model`` has layers that break
    per-sample gradients (BatchNorm)."""
    from opacus.validators import ModuleValidator
    from opacus.validators.errors import IllegalModuleConfigurationError

    errors = [
        e
        for e in ModuleValidator.validate(model, strict=False)
        if not isinstance(e, IllegalModuleConfigurationError)
    ]
    if errors:
        bn = [n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        where = f" ({', '.join(bn[:4])}{'...' if len(bn) > 4 else ''})" if bn else ""
        raise ModelError(
            f"Expected a model whose layers allow per-sample gradients for DP-SGD, but got "
            f"{type(model).__name__} with unsupported layers{where}. Opacus: {errors[0]} "
            "Fix: set `replace_batchnorm = true` in the dp-sgd defense (BatchNorm -> GroupNorm for every "
            "party), or use a BN-free model such as lenet or mlp."
        )


def per_sample_gradients(
    model: nn.Module, params: Sequence[Tensor], x: Tensor, targets: Tensor
) -> list[Tensor]:
    """Each sample's gradient of its own loss (cross-entropy with int or soft ``targets``, plus the
    model's :func:`~gradinv.defenses.base.auxiliary_loss`) w.r.t. ``params``: tensors of shape
    ``(B, *param.shape)``, from Opacus' per-layer grad samplers."""
    from opacus.grad_sample import GradSampleHooks

    check_dp_compatible(model)
    # Opacus' convolution grad sampler returns wrong per-sample weight gradients for channels-last
    # inputs (e.g. images permuted from HWC): make the batch contiguous first.
    x = x.contiguous()
    was_training = model.training
    model.train()
    hooks = GradSampleHooks(model, batch_first=True, loss_reduction="sum", strict=True)
    try:
        with torch.enable_grad(), warnings.catch_warnings():
            # the first layer's input needs no gradient; Opacus' hook still gets the output gradient
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            logits = model(x)
            per = F.cross_entropy(logits, targets, reduction="none")
            aux = auxiliary_loss(model, per_sample=True)
            if aux is not None:
                per = per + aux
            torch.autograd.grad(per.sum(), list(params), allow_unused=True)
        out = []
        for p in params:
            gs = getattr(p, "grad_sample", None)
            if gs is None:
                gs = torch.zeros(x.shape[0], *p.shape, dtype=p.dtype, device=p.device)
            elif isinstance(gs, list):
                gs = torch.stack(gs).sum(0)
            out.append(gs.detach()[: x.shape[0]])
        return out
    finally:
        hooks.cleanup()
        model.train(was_training)


def clip_and_noise(
    per_sample: Sequence[Tensor],
    *,
    max_grad_norm: float,
    noise_multiplier: float,
    generator: torch.Generator,
) -> tuple[list[Tensor], Tensor]:
    """DP-SGD's step gradient from per-sample gradients ``(B, ...)``: clip each sample's whole
    gradient to L2 norm ``max_grad_norm``, sum, add N(0, (σC)²), divide by B. Also returns the
    per-sample norms before clipping."""
    b = per_sample[0].shape[0]
    norms = torch.stack([g.reshape(b, -1).double().pow(2).sum(1) for g in per_sample]).sum(0).sqrt()
    factor = (max_grad_norm / (norms + 1e-6)).clamp(max=1.0)
    out = []
    for g in per_sample:
        summed = torch.einsum("n,n...->...", factor.to(g.dtype), g)
        if noise_multiplier > 0:
            summed = summed + noise_multiplier * max_grad_norm * randn_like(summed, generator)
        out.append(summed / b)
    return out, norms


@dataclass(frozen=True)
class DPSGDConfig(DefenseConfig):
    """``noise_multiplier`` σ, ``max_grad_norm`` C, ``delta`` δ, ``accountant``, ``replace_batchnorm``."""

    noise_multiplier: float = 1.0
    max_grad_norm: float = 1.0
    delta: float = 1e-5
    accountant: AccountantName = "rdp"
    replace_batchnorm: bool = False

    def __post_init__(self) -> None:
        check_range("noise_multiplier", self.noise_multiplier, low=0, fix="Typical values: 0.5 ... 2.")
        check_range("max_grad_norm", self.max_grad_norm, low=0, low_open=True)
        check_range(
            "delta",
            self.delta,
            low=0,
            high=1,
            low_open=True,
            high_open=True,
            fix="Use less than 1 / (number of samples).",
        )
        check_choice("accountant", self.accountant, ("rdp", "prv", "gdp"))


class _DPSGDHooks(DefenseHooks["DPSGD"]):
    def __init__(self, defense: DPSGD) -> None:
        super().__init__(defense)
        self.cfg = defense.config
        self.client_id = 0
        self.steps = 0
        self.sample_rate = 1.0
        self.clipped = 0
        self.samples = 0

    def start(self, ctx: UpdateContext) -> None:
        self.client_id = ctx.client_id
        self.steps = 0
        n = ctx.batch.size
        self.sample_rate = ctx.training.resolved_batch_size(n) / n

    def gradients(self, x: Tensor, targets: Tensor, ctx: StepContext) -> list[Tensor] | None:
        per_sample = per_sample_gradients(ctx.model, ctx.params, x, targets)
        grads, norms = clip_and_noise(
            per_sample,
            max_grad_norm=self.cfg.max_grad_norm,
            noise_multiplier=self.cfg.noise_multiplier,
            generator=ctx.generator,
        )
        self.steps += 1
        self.clipped += int((norms > self.cfg.max_grad_norm).sum())
        self.samples += norms.numel()
        return grads

    def on_update(self, update: ModelUpdate, ctx: UpdateContext) -> ModelUpdate:
        self.defense.history.setdefault(self.client_id, []).append(
            (self.cfg.noise_multiplier, self.sample_rate, self.steps)
        )
        return update

    def info(self) -> dict[str, float]:
        rounds = len(self.defense.history.get(self.client_id, []))
        eps = dp_epsilon(
            noise_multiplier=self.cfg.noise_multiplier,
            sample_rate=self.sample_rate,
            steps=self.steps,
            delta=self.cfg.delta,
            accountant=self.cfg.accountant,
        )
        return {
            "epsilon": eps,
            "epsilon_cumulative": self.defense.epsilon(self.client_id) if rounds > 1 else eps,
            "delta": self.cfg.delta,
            "noise_multiplier": self.cfg.noise_multiplier,
            "max_grad_norm": self.cfg.max_grad_norm,
            "sample_rate": self.sample_rate,
            "steps": float(self.steps),
            "clipped_fraction": self.clipped / self.samples if self.samples else 0.0,
        }


@register_defense
class DPSGD(Defense[DPSGDConfig]):
    """Per-sample clipping and Gaussian noise in every local step (Opacus), with an ε accountant."""

    name = "dp-sgd"
    title = "DP-SGD"
    stage = "training"
    paper = (
        "Abadi, Chu, Goodfellow, McMahan, Mironov, Talwar, Zhang, Deep Learning with Differential "
        "Privacy, ACM CCS 2016 (per-sample gradients and accounting by Opacus)"
    )
    hooks_cls = _DPSGDHooks

    def __init__(self, config: DefenseConfig | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        self.history: dict[int, list[tuple[float, float, int]]] = {}

    def transform_model(self, model: nn.Module, *, generator: torch.Generator | None = None) -> nn.Module:
        if self.config.replace_batchnorm:
            from opacus.validators import ModuleValidator

            fixed = ModuleValidator.fix(model)
            logger.info("dp-sgd: replaced BatchNorm layers by GroupNorm")
            return fixed
        check_dp_compatible(model)
        return model

    def epsilon(self, client_id: int) -> float:
        """ε of every round recorded for ``client_id`` composed (0 if none)."""
        h = self.history.get(client_id, [])
        if not h:
            return 0.0
        return dp_epsilon(
            noise_multiplier=h[-1][0],
            sample_rate=h[-1][1],
            steps=h[-1][2],
            delta=self.config.delta,
            accountant=self.config.accountant,
            history=h[:-1],
        )
