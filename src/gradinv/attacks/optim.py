"""L-BFGS for K independent candidates at once.

DLG (Zhu et al., NeurIPS 2019) and iDLG optimise with ``torch.optim.LBFGS`` (lr 1, no line search).
Running K restarts as one ``torch.optim.LBFGS`` over a stacked tensor would couple them through a
shared curvature history and step size; :class:`BatchedLBFGS` keeps per-candidate state (direction,
step, history of curvature pairs, stopping conditions) and evaluates all candidates in one batched
call. For each candidate it follows the update rules of ``torch.optim.LBFGS.step`` with
``line_search_fn=None``; the tests check it against ``torch.optim.LBFGS`` step for step.

Objective values are kept in float64, as ``torch.optim.LBFGS`` keeps them (it compares Python floats):
its stopping test on the change of the objective, ``|f_new - f_old| < tolerance_change`` (1e-9,
absolute), only means "no progress" where the values resolve changes that small. A float32 value of
f ~ 1 resolves 6e-8 and one of f ~ 600 resolves 6e-5, so with float32 values the test fires on
every iteration whose decrease falls below the float32 spacing, and each step then ends after one or
two evaluations. Callers should compute the value they return in float64
(:func:`gradinv.attacks.dlg.lbfgs_match` does).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["BatchedLBFGS"]

#: ``closure(z) -> (loss (K,), grad (K, D))`` evaluated at the candidates ``z`` (K, D).
Closure = Callable[[Tensor], tuple[Tensor, Tensor]]


class BatchedLBFGS:
    """Per-candidate L-BFGS over rows of ``z`` (K, D), updated in place."""

    def __init__(
        self,
        z: Tensor,
        *,
        lr: float = 1.0,
        max_iter: int = 20,
        max_eval: int | None = None,
        tolerance_grad: float = 1e-7,
        tolerance_change: float = 1e-9,
        history_size: int = 100,
    ) -> None:
        if z.ndim != 2:
            raise ValueError(f"Expected candidates of shape (K, D), got {tuple(z.shape)}")
        self.z = z
        self.lr = lr
        self.max_iter = max_iter
        self.max_eval = max_eval if max_eval is not None else max_iter * 5 // 4
        self.tolerance_grad = tolerance_grad
        self.tolerance_change = tolerance_change
        self.m = history_size
        k, d = z.shape
        dt, dev = z.dtype, z.device
        self.n_iter = torch.zeros(k, dtype=torch.long, device=z.device)
        self.d = torch.zeros(k, d, dtype=dt, device=dev)
        self.t = torch.zeros(k, dtype=dt, device=dev)
        self.dirs = torch.zeros(k, self.m, d, dtype=dt, device=dev)
        self.stps = torch.zeros(k, self.m, d, dtype=dt, device=dev)
        self.ro = torch.zeros(k, self.m, dtype=dt, device=dev)
        self.count = torch.zeros(k, dtype=torch.long, device=z.device)
        self.h_diag = torch.ones(k, dtype=dt, device=dev)
        self.prev_grad = torch.zeros(k, d, dtype=dt, device=dev)
        self.prev_loss = torch.zeros(k, dtype=torch.float64, device=dev)
        self.func_evals = 0

    # ------------------------------------------------------------------------------------------
    def _push_history(self, mask: Tensor, y: Tensor, s: Tensor, ys: Tensor) -> None:
        if not mask.any():
            return
        full = mask & (self.count == self.m)
        if full.any():  # drop the oldest pair
            self.dirs[full] = torch.roll(self.dirs[full], -1, dims=1)
            self.stps[full] = torch.roll(self.stps[full], -1, dims=1)
            self.ro[full] = torch.roll(self.ro[full], -1, dims=1)
            self.count[full] -= 1
        idx = torch.nonzero(mask).squeeze(1)
        pos = self.count[idx]
        self.dirs[idx, pos] = y[idx]
        self.stps[idx, pos] = s[idx]
        self.ro[idx, pos] = 1.0 / ys[idx]
        self.count[idx] += 1
        self.h_diag[idx] = ys[idx] / (y[idx] * y[idx]).sum(1)

    def _two_loop(self, grad: Tensor, rows: Tensor) -> Tensor:
        """Approximate inverse-Hessian times ``-grad`` for candidates ``rows`` (bool mask)."""
        idx = torch.nonzero(rows).squeeze(1)
        q = -grad[idx]
        cnt = self.count[idx]
        dirs, stps, ro = self.dirs[idx], self.stps[idx], self.ro[idx]
        top = int(cnt.max()) if len(cnt) else 0
        al = torch.zeros(len(idx), max(top, 1), dtype=q.dtype, device=q.device)
        for i in range(top - 1, -1, -1):
            valid = (i < cnt).to(q.dtype)
            a = (stps[:, i] * q).sum(1) * ro[:, i] * valid
            al[:, i] = a
            q = q - a[:, None] * dirs[:, i]
        r = q * self.h_diag[idx][:, None]
        for i in range(top):
            valid = (i < cnt).to(q.dtype)
            be = (dirs[:, i] * r).sum(1) * ro[:, i]
            r = r + stps[:, i] * ((al[:, i] - be) * valid)[:, None]
        out = torch.zeros_like(grad)
        out[idx] = r
        return out

    def _eval(self, closure: Closure) -> tuple[Tensor, Tensor]:
        with torch.enable_grad():
            loss, grad = closure(self.z)
        self.func_evals += 1
        return loss.detach().to(torch.float64), grad.detach()

    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure: Closure) -> Tensor:
        """One ``LBFGS.step``: up to ``max_iter`` iterations per candidate. Returns the loss at entry."""
        loss, grad = self._eval(closure)
        orig_loss = loss.clone()
        active = grad.abs().amax(dim=1) > self.tolerance_grad
        current_evals = 1
        n_local = 0
        while n_local < self.max_iter and bool(active.any()):
            n_local += 1
            self.n_iter[active] += 1
            first = active & (self.n_iter == 1)
            later = active & (self.n_iter > 1)
            if first.any():
                self.d[first] = -grad[first]
                self.count[first] = 0
                self.h_diag[first] = 1.0
            if later.any():
                y = grad - self.prev_grad
                s = self.d * self.t[:, None]
                ys = (y * s).sum(1)
                self._push_history(later & (ys > 1e-10), y, s, ys)
                d_new = self._two_loop(grad, later)
                self.d[later] = d_new[later]
            self.prev_grad[active] = grad[active]
            self.prev_loss[active] = loss[active]
            t_first = torch.clamp(1.0 / grad.abs().sum(1), max=1.0) * self.lr
            self.t[first] = t_first[first]
            self.t[later] = self.lr
            gtd = (grad * self.d).sum(1)
            active = active & ~(gtd > -self.tolerance_change)
            if not active.any():
                break
            self.z[active] += self.t[active, None] * self.d[active]
            if n_local != self.max_iter:
                new_loss, new_grad = self._eval(closure)
                current_evals += 1
                loss = torch.where(active, new_loss, loss)
                grad = torch.where(active[:, None], new_grad, grad)
                opt_cond = grad.abs().amax(dim=1) <= self.tolerance_grad
            else:
                opt_cond = torch.zeros_like(active)
            if n_local == self.max_iter or current_evals >= self.max_eval:
                break
            stop = opt_cond
            stop = stop | ((self.d * self.t[:, None]).abs().amax(dim=1) <= self.tolerance_change)
            stop = stop | ((loss - self.prev_loss).abs() < self.tolerance_change)
            active = active & ~stop
        return orig_loss
