"""Plain-PyTorch reference loops for the attack benchmarks: the way a paper's code would write one
iteration (autograd with ``create_graph``, a Python sum over layers, no batching, no functorch).

Each returns ``(x, seconds, iterations)``; iterations count objective evaluations. They are baselines
for speed (and, for time-to-quality, for quality), not re-implementations of every attack's prior.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, replace_all_batch_norm_modules_

Snapshot = Callable[[int, Tensor], None]


def _model(model: nn.Module, train_mode: bool) -> nn.Module:
    m = copy.deepcopy(model)
    if train_mode:
        replace_all_batch_norm_modules_(m)
    return m.train(train_mode)


def _tv(x: Tensor) -> Tensor:
    return (x[..., :, :-1] - x[..., :, 1:]).abs().mean() + (x[..., :-1, :] - x[..., 1:, :]).abs().mean()


def _distance(grads: list[Tensor], target: list[Tensor], kind: str) -> Tensor:
    if kind == "l2":
        return sum(((g - t) ** 2).sum() for g, t in zip(grads, target))  # type: ignore[return-value]
    dot = sum((g * t).sum() for g, t in zip(grads, target))
    gn = sum(g.pow(2).sum() for g in grads).sqrt()  # type: ignore[union-attr]
    tn = sum(t.pow(2).sum() for t in target).sqrt()  # type: ignore[union-attr]
    return 1 - dot / (gn * tn)


def reference_adam(
    model: nn.Module,
    target: list[Tensor],
    labels: Tensor,
    x_init: Tensor,
    *,
    iterations: int,
    lo: Tensor,
    hi: Tensor,
    distance: str = "cosine",
    lr: float = 0.1,
    tv: float = 1e-4,
    signed: bool = True,
    train_mode: bool = True,
    snapshot: Snapshot | None = None,
    every: int = 1,
) -> tuple[Tensor, float, int]:
    """Gradient matching with (signed) Adam, MultiStepLR at 3/8, 5/8, 7/8 and a box constraint."""
    m = _model(model, train_mode)
    params = list(m.parameters())
    x = x_init.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(
        opt, milestones=[int(iterations * f) for f in (3 / 8, 5 / 8, 7 / 8)], gamma=0.1
    )
    start = time.perf_counter()
    for it in range(iterations):
        opt.zero_grad()
        loss = F.cross_entropy(m(x), labels)
        grads = list(torch.autograd.grad(loss, params, create_graph=True))
        cost = _distance(grads, target, distance) + tv * _tv(x)
        (gx,) = torch.autograd.grad(cost, x)
        x.grad = gx.sign() if signed else gx
        opt.step()
        sched.step()
        with torch.no_grad():
            x.data = torch.max(torch.min(x, hi), lo)
        if snapshot is not None and (it + 1) % every == 0:
            snapshot(it + 1, x.detach())
    return x.detach(), time.perf_counter() - start, iterations


def reference_lbfgs(
    model: nn.Module,
    target: list[Tensor],
    labels: Tensor,
    x_init: Tensor,
    *,
    steps: int,
    max_iter: int = 20,
    train_mode: bool = True,
) -> tuple[Tensor, float, int]:
    """DLG/iDLG's loop: ``torch.optim.LBFGS`` (lr 1) on the squared L2 gradient distance."""
    m = _model(model, train_mode)
    params = list(m.parameters())
    x = x_init.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([x], lr=1, max_iter=max_iter)
    evals = 0

    def closure() -> Tensor:
        nonlocal evals
        evals += 1
        opt.zero_grad()
        loss = F.cross_entropy(m(x), labels)
        grads = list(torch.autograd.grad(loss, params, create_graph=True))
        cost = _distance(grads, target, "l2")
        cost.backward()
        return cost

    start = time.perf_counter()
    for _ in range(steps):
        opt.step(closure)
    return x.detach(), time.perf_counter() - start, evals


def reference_fedavg(
    model: nn.Module,
    target_delta: list[Tensor],
    labels: Tensor,
    x_init: Tensor,
    *,
    iterations: int,
    lr_client: float,
    epochs: int,
    batch_size: int,
    lo: Tensor,
    hi: Tensor,
    lr: float = 0.1,
    train_mode: bool = True,
) -> tuple[Tensor, float, int]:
    """Dimitrov et al.'s simulation written plainly: unrolled SGD with autograd, cosine on the delta."""
    m = _model(model, train_mode)
    names = [n for n, _ in m.named_parameters()]
    init = [p for p in m.parameters()]
    x = x_init.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    n = x.shape[0]
    start = time.perf_counter()
    for _ in range(iterations):
        opt.zero_grad()
        params = list(init)
        for _e in range(epochs):
            for s in range(0, n, batch_size):
                out = functional_call(m, dict(zip(names, params)), (x[s : s + batch_size],))
                loss = F.cross_entropy(out, labels[s : s + batch_size])
                g = torch.autograd.grad(loss, params, create_graph=True)
                params = [p - lr_client * gi for p, gi in zip(params, g)]
        delta = [p - p0 for p, p0 in zip(params, init)]
        cost = _distance(delta, target_delta, "cosine")
        (gx,) = torch.autograd.grad(cost, x)
        x.grad = gx.sign()
        opt.step()
        with torch.no_grad():
            x.data = torch.max(torch.min(x, hi), lo)
    return x.detach(), time.perf_counter() - start, iterations
