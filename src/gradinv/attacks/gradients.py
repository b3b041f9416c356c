"""The attacker's differentiable simulation of the client, and batched candidates.

Optimisation attacks minimise ``objective(x) = D(grad_theta L(model(x), y), target) + R(x)`` over
dummy data ``x``. One evaluation needs a forward, a backward with ``create_graph`` and a second
backward to ``x`` (the "double backward", ~2/3 of the cost).

An objective is a function ``objective(probe, *variables)`` for ONE candidate. The :class:`Probe`
it receives computes, differentiably in the candidate's variables:

* ``probe(x, y)`` — the parameter gradient of the client's mean loss (FedSGD);
* ``probe.with_aux(x, y)`` — the same plus the logits and the per-BatchNorm-call batch statistics
  (mean and biased variance of each BN layer's input, in forward order), for priors such as
  GradInversion's BN-statistics term and CPL's label regulariser;
* ``probe.local_update(x, y, plan)`` — the parameter delta of a simulated FedAvg client: E epochs of
  mini-batch SGD (:class:`LocalTraining`, the semantics of :func:`gradinv.fl.client.sgd_step`), the
  parameters carried through every step with ``torch.func.functional_call`` (Dimitrov et al., TMLR
  2022).

:class:`CandidateEvaluator` evaluates K independent candidates (restarts, group seeds):

* K = 1: plain autograd (``torch.autograd.grad(..., create_graph=True)``), the fastest eager path;
* K > 1: one call of ``torch.func.vmap(torch.func.grad_and_value(objective))`` over the candidate
  axis — every candidate keeps its own BatchNorm batch statistics and its own parameter gradient —
  or, for wide conv nets on a CPU (where vmap is slower), the autograd path per candidate
  (``batching = "auto"``: a fixed rule, :func:`auto_batching`).

In ``train`` mode the simulated model runs with BatchNorm running statistics removed
(``torch.func.replace_all_batch_norm_modules_``): BN normalises with the candidate's batch
statistics, exactly as the client's training forward pass does. In ``eval`` mode BN uses the global
model's running statistics (nothing is updated, so ``vmap`` applies too).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, grad_and_value, replace_all_batch_norm_modules_, vmap

from gradinv.errors import ConfigError

__all__ = [
    "Batching",
    "CandidateEvaluator",
    "ForwardAux",
    "GradFn",
    "GradientSimulator",
    "LocalTraining",
    "Probe",
    "auto_batching",
    "evaluate_candidates",
]

logger = logging.getLogger(__name__)

#: ``grads(x, y) -> per-layer parameter gradients`` of the simulated client loss.
GradFn = Callable[[Tensor, Tensor], list[Tensor]]

_BN = nn.modules.batchnorm._BatchNorm


def soft_cross_entropy(logits: Tensor, label_logits: Tensor) -> Tensor:
    """DLG's loss for optimised soft labels: mean over samples of ``-sum softmax(y) * log_softmax(z)``."""
    return -(F.softmax(label_logits, dim=-1) * F.log_softmax(logits, dim=-1)).sum(-1).mean()


@dataclass(frozen=True)
class ForwardAux:
    """By-products of a candidate's forward pass: logits ``(N, classes)`` and, per BatchNorm call in
    forward order, the batch mean and biased variance of the layer's input (per channel)."""

    logits: Tensor
    bn_mean: tuple[Tensor, ...]
    bn_var: tuple[Tensor, ...]


@dataclass(frozen=True)
class LocalTraining:
    """The client's local SGD as the attacker simulates it: ``epochs`` passes over the N samples in
    consecutive mini-batches of ``batch_size`` (the last one smaller), SGD with ``lr``, ``momentum``
    and ``weight_decay`` as :func:`gradinv.fl.client.sgd_step`.

    >>> LocalTraining(lr=0.1, epochs=2, batch_size=3).steps(4)
    4
    """

    lr: float
    epochs: int = 1
    batch_size: int | None = None
    momentum: float = 0.0
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"Expected a simulated `lr` > 0, but got {self.lr!r}.")
        if self.epochs < 1:
            raise ConfigError(f"Expected simulated `epochs` >= 1, but got {self.epochs!r}.")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"Expected a simulated `batch_size` >= 1, but got {self.batch_size!r}.")
        if not 0 <= self.momentum < 1 or self.weight_decay < 0:
            raise ConfigError(
                f"Expected momentum in [0, 1) and weight_decay >= 0, but got {self.momentum!r} and "
                f"{self.weight_decay!r}."
            )

    def resolved_batch_size(self, n: int) -> int:
        return min(self.batch_size or n, n)

    def steps(self, n: int) -> int:
        """U = E * ceil(N / B)."""
        return self.epochs * math.ceil(n / self.resolved_batch_size(n))


class GradientSimulator:
    """A private copy of the global model that computes client gradients for dummy data.

    ``y`` is either integer labels ``(N,)`` (cross-entropy) or float label logits ``(N, classes)``
    (soft cross-entropy, as DLG optimises them)."""

    def __init__(self, model: nn.Module, *, device: torch.device | str = "cpu", mode: str = "train") -> None:
        m = copy.deepcopy(model).to(device)
        if mode == "train":
            replace_all_batch_norm_modules_(m)
            m.train()
        else:
            m.eval()
        self.mode = mode
        self.model = m
        self.names = [n for n, p in m.named_parameters() if p.requires_grad]
        self._trainable = [p for _, p in m.named_parameters() if p.requires_grad]
        for p in self._trainable:
            p.requires_grad_(True)
        self._params = {n: p.detach() for n, p in m.named_parameters()}
        self._frozen = {n: p for n, p in self._params.items() if n not in set(self.names)}
        self._buffers = {n: b for n, b in m.named_buffers()}
        self.bn_layers = [n for n, mod in m.named_modules() if isinstance(mod, _BN)]
        self.device = torch.device(device)
        self.restrict(None)

    @staticmethod
    def loss_of(logits: Tensor, y: Tensor) -> Tensor:
        if y.is_floating_point():
            return soft_cross_entropy(logits, y)
        return F.cross_entropy(logits, y)

    # -- one gradient ------------------------------------------------------------------------------
    def restrict(self, indices: Sequence[int] | None) -> None:
        """Compute only the gradients of the parameters ``indices`` (simulator order) in the
        gradient methods below, which then return those alone, in that order (``None``: all).

        An objective that matches a subset of layers needs no other weight gradient; skipping them
        removes their share of the first backward and of the double backward. Simulated local
        training (:meth:`local_update`) always differentiates every parameter."""
        if indices is None or list(indices) == list(range(len(self.names))):
            self._wanted = list(self.names)
        else:
            self._wanted = [self.names[i] for i in indices]
        wanted = set(self._wanted)
        self._wanted_params = [p for n, p in zip(self.names, self._trainable) if n in wanted]
        self._fixed = {
            **self._frozen,
            **{n: p for n, p in self._params.items() if n in self.names and n not in wanted},
        }

    def grads_autograd(self, x: Tensor, y: Tensor) -> list[Tensor]:
        """Parameter gradients with a graph back to ``x`` (and ``y``), via autograd."""
        loss = self.loss_of(self.model(x), y)
        return list(torch.autograd.grad(loss, self._wanted_params, create_graph=True))

    def grads_functional(self, x: Tensor, y: Tensor) -> list[Tensor]:
        """The same gradients via ``torch.func.grad`` (composable with ``vmap``)."""

        def loss_fn(trainable: dict[str, Tensor]) -> Tensor:
            out = functional_call(self.model, ({**self._fixed, **trainable}, self._buffers), (x,))
            return self.loss_of(out, y)

        g = grad(loss_fn)({n: self._params[n] for n in self._wanted})
        return [g[n] for n in self._wanted]

    @contextlib.contextmanager
    def _record_bn(self) -> Iterator[tuple[list[Tensor], list[Tensor]]]:
        means: list[Tensor] = []
        variances: list[Tensor] = []

        def hook(_module: nn.Module, args: tuple[Tensor, ...]) -> None:
            inp = args[0]
            var, mean = torch.var_mean(inp, dim=(0, *range(2, inp.ndim)), correction=0)
            means.append(mean)
            variances.append(var)

        handles = [
            mod.register_forward_pre_hook(hook) for mod in self.model.modules() if isinstance(mod, _BN)
        ]
        try:
            yield means, variances
        finally:
            for h in handles:
                h.remove()

    def grads_aux_autograd(self, x: Tensor, y: Tensor) -> tuple[list[Tensor], ForwardAux]:
        """Gradients (with graph) plus the forward pass's logits and BN batch statistics."""
        with self._record_bn() as (means, variances):
            logits = self.model(x)
        loss = self.loss_of(logits, y)
        grads = list(torch.autograd.grad(loss, self._wanted_params, create_graph=True))
        return grads, ForwardAux(logits, tuple(means), tuple(variances))

    def grads_aux_functional(self, x: Tensor, y: Tensor) -> tuple[list[Tensor], ForwardAux]:
        def loss_fn(trainable: dict[str, Tensor]) -> tuple[Tensor, tuple[Tensor, list[Tensor], list[Tensor]]]:
            with self._record_bn() as (means, variances):
                out = functional_call(self.model, ({**self._fixed, **trainable}, self._buffers), (x,))
            return self.loss_of(out, y), (out, means, variances)

        g, (logits, means, variances) = grad(loss_fn, has_aux=True)(
            {n: self._params[n] for n in self._wanted}
        )
        return [g[n] for n in self._wanted], ForwardAux(logits, tuple(means), tuple(variances))

    # -- simulated local training (FedAvg) ---------------------------------------------------------
    def local_update(self, x: Tensor, y: Tensor, plan: LocalTraining, *, functional: bool) -> list[Tensor]:
        """Parameter deltas ``W_local - W_global`` after simulated local SGD on ``x``.

        ``x`` is ``(N, C, H, W)`` (the same data every epoch) or ``(E, N, C, H, W)`` (one set of dummy
        data per epoch); each epoch visits the samples in slot order in consecutive mini-batches.
        ``y`` holds integer labels ``(N,)``, label logits ``(N, classes)``, or label logits per epoch
        ``(E, N, classes)``. ``functional`` selects ``torch.func.grad`` (vmap-able) over autograd
        with ``create_graph``."""
        n = int(x.shape[-4])
        per_epoch = x.ndim == 5
        if per_epoch and x.shape[0] != plan.epochs:
            raise ConfigError(f"Expected dummy data for {plan.epochs} epochs, but got {x.shape[0]}.")
        y_per_epoch = y.is_floating_point() and y.ndim == 3
        if y_per_epoch and y.shape[0] != plan.epochs:
            raise ConfigError(f"Expected label logits for {plan.epochs} epochs, but got {y.shape[0]}.")
        bsz = plan.resolved_batch_size(n)
        start = {k: self._params[k] for k in self.names}
        params: dict[str, Tensor] = dict(start) if functional else dict(zip(self.names, self._trainable))
        bufs: dict[str, Tensor] = {}
        for e in range(plan.epochs):
            xe = x[e] if per_epoch else x
            ye = y[e] if y_per_epoch else y
            for s in range(0, n, bsz):
                xb, yb = xe[s : s + bsz], ye[s : s + bsz]
                g = self._step_grads(params, xb, yb, functional=functional)
                params = self._sgd(params, g, bufs, plan)
        init = start if functional else dict(zip(self.names, self._trainable))
        return [params[k] - init[k] for k in self.names]

    def _step_grads(
        self, params: dict[str, Tensor], x: Tensor, y: Tensor, *, functional: bool
    ) -> dict[str, Tensor]:
        def loss_fn(p: dict[str, Tensor]) -> Tensor:
            out = functional_call(self.model, ({**self._frozen, **p}, self._buffers), (x,))
            return self.loss_of(out, y)

        if functional:
            out: dict[str, Tensor] = grad(loss_fn)(params)
            return out
        gs = torch.autograd.grad(loss_fn(params), [params[k] for k in self.names], create_graph=True)
        return dict(zip(self.names, gs))

    def _sgd(
        self,
        params: dict[str, Tensor],
        grads: dict[str, Tensor],
        bufs: dict[str, Tensor],
        plan: LocalTraining,
    ) -> dict[str, Tensor]:
        new = {}
        for k in self.names:
            d = grads[k] + plan.weight_decay * params[k] if plan.weight_decay else grads[k]
            if plan.momentum:
                d = d if k not in bufs else plan.momentum * bufs[k] + d
                bufs[k] = d
            new[k] = params[k] - plan.lr * d
        return new

    # -- without a graph ---------------------------------------------------------------------------
    def gradient(self, x: Tensor, y: Tensor) -> list[Tensor]:
        """Detached parameter gradients (no graph), e.g. to compute a target."""
        loss = self.loss_of(self.model(x), y)
        return [g.detach() for g in torch.autograd.grad(loss, self._trainable)]

    def order(self, tensors: dict[str, Tensor]) -> list[Tensor]:
        """Per-layer tensors in the simulator's parameter order."""
        return [tensors[n].to(self.device) for n in self.names]


class Probe:
    """What an objective may ask of the simulated client for ONE candidate (see the module
    docstring). Calling it returns the FedSGD gradient; ``functional`` probes are used under
    ``vmap``, autograd probes otherwise."""

    def __init__(self, sim: GradientSimulator, *, functional: bool) -> None:
        self.sim = sim
        self.functional = functional

    def __call__(self, x: Tensor, y: Tensor) -> list[Tensor]:
        return self.sim.grads_functional(x, y) if self.functional else self.sim.grads_autograd(x, y)

    def with_aux(self, x: Tensor, y: Tensor) -> tuple[list[Tensor], ForwardAux]:
        if self.functional:
            return self.sim.grads_aux_functional(x, y)
        return self.sim.grads_aux_autograd(x, y)

    def local_update(self, x: Tensor, y: Tensor, plan: LocalTraining) -> list[Tensor]:
        return self.sim.local_update(x, y, plan, functional=self.functional)


#: ``objective(probe, *variables) -> scalar`` for ONE candidate.
Objective = Callable[..., Tensor]
Batching = Literal["auto", "vmap", "loop"]


def _autograd_one(probe: Probe, objective: Objective, vs: Sequence[Tensor]) -> tuple[Tensor, ...]:
    leaves = [v.detach().requires_grad_(True) for v in vs]
    value = objective(probe, *leaves)
    grads = torch.autograd.grad(value, leaves)
    return (value.detach(), *(g.detach() for g in grads))


#: a conv layer with at least this many weights makes a model "wide": its candidate evaluations are
#: compute-bound on a CPU, where vmap does not beat the per-candidate loop (docs/attacks_optimization.md)
WIDE_CONV_WEIGHTS = 32_768


def auto_batching(model: nn.Module, device: torch.device) -> Literal["vmap", "loop"]:
    """The ``batching = "auto"`` choice, a fixed rule so that a seed fixes the numbers: ``vmap`` on
    accelerators and for small models; ``loop`` for wide conv nets on the CPU."""
    if device.type != "cpu":
        return "vmap"
    wide = any(isinstance(m, nn.Conv2d) and m.weight.numel() >= WIDE_CONV_WEIGHTS for m in model.modules())
    return "loop" if wide else "vmap"


class CandidateEvaluator:
    """Objective values ``(K,)`` and gradients w.r.t. each variable for K independent candidates.

    ``batching``: ``vmap`` evaluates all candidates in one ``torch.func.vmap`` call; ``loop`` runs the
    autograd path per candidate; ``auto`` picks by :func:`auto_batching` (on CPUs ``vmap`` wins for
    small models such as LeNet and loses for wide conv nets, whose cost is compute-bound; on GPUs it
    wins broadly) — a rule, not a timing, so the same seed gives the same numbers. K = 1 always uses
    plain autograd."""

    def __init__(self, sim: GradientSimulator, objective: Objective, *, batching: Batching = "auto") -> None:
        self.sim = sim
        self.objective = objective
        self.batching: Batching = batching
        self.chosen: str = auto_batching(sim.model, sim.device) if batching == "auto" else batching
        self._autograd = Probe(sim, functional=False)
        self._functional = Probe(sim, functional=True)

    def _loop(self, variables: Sequence[Tensor]) -> tuple[Tensor, tuple[Tensor, ...]]:
        outs = [
            _autograd_one(self._autograd, self.objective, [v[i] for v in variables])
            for i in range(len(variables[0]))
        ]
        values = torch.stack([o[0] for o in outs])
        grads = tuple(torch.stack([o[j + 1] for o in outs]) for j in range(len(variables)))
        return values, grads

    def _vmap(self, variables: Sequence[Tensor]) -> tuple[Tensor, tuple[Tensor, ...]]:
        probe = self._functional

        def single(*v: Tensor) -> Tensor:
            return self.objective(probe, *v)

        # randomness="different": stochastic layers (e.g. PRECODE's bottleneck) draw per candidate
        fn = vmap(grad_and_value(single, argnums=tuple(range(len(variables)))), randomness="different")
        gs, values = fn(*[v.detach() for v in variables])
        return values.detach(), tuple(g.detach() for g in gs)

    def __call__(self, variables: Sequence[Tensor]) -> tuple[Tensor, tuple[Tensor, ...]]:
        if variables[0].shape[0] == 1:
            value, *grads = _autograd_one(self._autograd, self.objective, [v[0] for v in variables])
            return value.reshape(1), tuple(g.unsqueeze(0) for g in grads)
        return self._vmap(variables) if self.chosen == "vmap" else self._loop(variables)

    def describe(self) -> dict[str, Any]:
        return {"batching": self.batching, "chosen": self.chosen}


def evaluate_candidates(
    sim: GradientSimulator, objective: Objective, variables: Sequence[Tensor], *, batching: Batching = "vmap"
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """One-shot :class:`CandidateEvaluator` call (``vmap`` for K > 1 unless told otherwise)."""
    return CandidateEvaluator(sim, objective, batching=batching)(variables)
