"""Image priors and candidate-coupling terms used as regularisers by optimisation attacks.

* :func:`total_variation` — the anisotropic TV of Geiping et al. (NeurIPS 2020): the mean absolute
  difference of horizontally and vertically adjacent pixels (Rudin, Osher, Fatemi 1992).
* :func:`l2_prior` — the mean squared value of the dummy data (the ``R_l2`` fidelity prior of Yin
  et al., CVPR 2021; a mean instead of a norm so its weight does not depend on the image size).
* :func:`bn_statistics_prior` — GradInversion's BatchNorm prior (Yin, Mallya, Vahdat, Alvarez,
  Kautz, Molchanov, "See through Gradients: Image Batch Recovery via GradInversion", CVPR 2021):
  ``sum_l ||mu_l(x) - mu_l||_2 + ||var_l(x) - var_l||_2`` over the BN layers, where ``mu_l(x)``,
  ``var_l(x)`` are the candidate batch's statistics of the layer's input and ``mu_l``, ``var_l`` the
  client batch's.
* :func:`group_consistency` — GradInversion's group term ``alpha * mean((x_g - E_g[x])^2)`` for each
  of G candidates against their (fixed) consensus, with its closed-form gradient.
* :func:`epoch_agreement` — the epoch-order-invariant prior of Dimitrov, Balunović, Konstantinov,
  Vechev ("Data Leakage in Federated Averaging", TMLR 2022): the dummy data of every simulated epoch
  is the same set, so each epoch's reconstruction is matched (within equal labels) to the mean of
  the epochs and penalised for disagreeing with it.

>>> import torch
>>> x = torch.zeros(1, 1, 2, 2); x[..., 0, 0] = 1.0
>>> float(total_variation(x))
1.0
>>> loss, grad = group_consistency(torch.tensor([[0.0], [2.0]]), weight=1.0)
>>> loss.tolist(), grad.tolist()
([1.0, 1.0], [[-2.0], [2.0]])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

__all__ = [
    "bn_statistics_prior",
    "epoch_agreement",
    "epoch_matching",
    "group_consistency",
    "l2_prior",
    "total_variation",
]


def total_variation(x: Tensor) -> Tensor:
    """Mean |x[h+1] - x[h]| + mean |x[w+1] - x[w]| over a (..., C, H, W) batch."""
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().mean()
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean()
    return dx + dy


def l2_prior(x: Tensor) -> Tensor:
    """Mean squared entry of the dummy data (model input space)."""
    return x.pow(2).mean()


def bn_statistics_prior(
    means: Sequence[Tensor],
    variances: Sequence[Tensor],
    target_means: Sequence[Tensor],
    target_variances: Sequence[Tensor],
) -> Tensor:
    """``sum_l ||mean_l - target_mean_l||_2 + ||var_l - target_var_l||_2`` (zero at the target).

    The norms are not squared, as in Yin et al.; their gradient at an exact match is taken as 0."""
    terms = [
        torch.linalg.vector_norm(m - tm) + torch.linalg.vector_norm(v - tv)
        for m, v, tm, tv in zip(means, variances, target_means, target_variances)
    ]
    total: Tensor = sum(terms)
    return total


def group_consistency(x: Tensor, *, weight: float) -> tuple[Tensor, Tensor]:
    """Loss ``(G,)`` and gradient of ``weight * mean((x_g - c)^2)`` for each group member ``x_g`` of
    ``x`` ``(G, ...)``, with the consensus ``c = mean_g x_g`` held fixed (it is recomputed from the
    current members at every iteration, as in Yin et al.; their registration-based alignment of the
    members before averaging is not implemented)."""
    c = x.mean(dim=0, keepdim=True)
    diff = x - c
    per = diff[0].numel()
    loss = weight * diff.pow(2).reshape(len(x), -1).mean(dim=1)
    return loss, (2 * weight / per) * diff


def epoch_matching(x: Tensor, labels: Tensor | None = None) -> Tensor:
    """Permutations ``(E, N)`` aligning each epoch's dummy data ``x[e]`` (``(E, N, ...)``) with the
    mean over epochs: slot ``perm[e, i]`` of epoch e is matched to slot i of the mean. With
    ``labels`` (one per slot, shared by all epochs) only slots with equal labels are matched to each
    other (Hungarian algorithm on squared distances)."""
    e, n = x.shape[0], x.shape[1]
    flat = x.detach().reshape(e, n, -1).double().cpu()
    lab = labels.cpu().numpy() if labels is not None else np.zeros(n, dtype=np.int64)
    perms = np.tile(np.arange(n), (e, 1))
    for step in range(2):  # align to epoch 0 first, then to the mean of the aligned epochs
        aligned = torch.stack([flat[ep][torch.as_tensor(perms[ep])] for ep in range(e)])
        ref = aligned[0] if step == 0 else aligned.mean(dim=0)
        for cls in np.unique(lab):
            idx = np.nonzero(lab == cls)[0]
            if len(idx) < 2:
                continue
            for ep in range(e):
                cost = torch.cdist(ref[idx], flat[ep, idx]).pow(2).numpy()
                rows, cols = linear_sum_assignment(cost)
                perms[ep, idx[rows]] = idx[cols]
    return torch.as_tensor(perms, dtype=torch.long, device=x.device)


def epoch_agreement(x: Tensor, perms: Tensor, *, weight: float) -> tuple[Tensor, Tensor, Tensor]:
    """Loss ``()``, gradient and consensus of ``weight * mean_e mean((x[e][perm_e] - c)^2)`` where
    ``c = mean_e x[e][perm_e]`` is held fixed (``x``: ``(E, N, ...)``, ``perms``: ``(E, N)``)."""
    e = x.shape[0]
    aligned = torch.stack([x[i][perms[i]] for i in range(e)])
    c = aligned.mean(dim=0, keepdim=True)
    diff = aligned - c
    loss = weight * diff.pow(2).mean()
    g_aligned = (2 * weight / diff.numel()) * diff
    grad = torch.zeros_like(x)
    for i in range(e):
        grad[i][perms[i]] = g_aligned[i]
    return loss, grad, c[0]
