"""Exact recovery: which ground-truth images a reconstruction recovers exactly.

An image counts as recovered exactly when some reconstruction (clamped to ``[0, 1]``) is within
PSNR >= 60 dB of it or within a maximum absolute pixel error below 1/255 (the criterion of Fowl et
al., "Robbing the Fed", ICLR 2022, for analytic attacks). Each reconstruction may count for one
ground-truth image only, so the count is the size of a *maximum-cardinality matching* on the
bipartite "is exact" graph (Hopcroft & Karp, SIAM J. Comput. 1973, through
``scipy.sparse.csgraph.maximum_bipartite_matching``) — not the minimum-total-MSE (Hungarian) matching
the other per-image metrics use, which may pair an exact reconstruction with another image to lower
the total MSE and so show fewer exact recoveries.

:func:`exact_recovery` is the metric; :func:`exact_matrix` and :func:`exact_matching` are the pieces
:func:`gradinv.attacks.robbing_the_fed.count_exact` shares, so the two cannot drift apart.

>>> truth = torch.rand(3, 1, 4, 4)
>>> rec = torch.cat([truth[[2, 0]] + 1e-4, torch.rand(1, 1, 4, 4)])
>>> exact_recovery(rec, truth).tolist()
[1.0, 0.0, 1.0]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from gradinv.errors import DataError

__all__ = [
    "EXACT_MAX_ERROR",
    "EXACT_PSNR",
    "ExactMatrix",
    "exact_matching",
    "exact_matrix",
    "exact_recovery",
]

#: PSNR (dB) at or above which a recovered image counts as exact.
EXACT_PSNR = 60.0
#: Maximum absolute pixel error below which a recovered image counts as exact.
EXACT_MAX_ERROR = 1.0 / 255.0


@dataclass(frozen=True)
class ExactMatrix:
    """Every (reconstruction, ground-truth image) pair, float64, shape ``(R, T)``: ``mse``, ``psnr``
    (dB, data range 1; ``inf`` for identical images), ``max_error`` and ``exact``
    (``psnr >= EXACT_PSNR`` or ``max_error < EXACT_MAX_ERROR``)."""

    mse: Tensor
    psnr: Tensor
    max_error: Tensor
    exact: Tensor


def exact_matrix(reconstruction: Tensor, truth: Tensor) -> ExactMatrix:
    """Pairwise errors and the "is exact" relation of reconstructions ``(R, C, H, W)`` (clamped to
    ``[0, 1]``) against ground-truth images ``(T, C, H, W)`` in ``[0, 1]``."""
    for name, x in (("reconstruction", reconstruction), ("truth", truth)):
        if not isinstance(x, Tensor) or x.ndim != 4 or not x.is_floating_point():
            got = f"shape {tuple(x.shape)}, dtype {x.dtype}" if isinstance(x, Tensor) else type(x).__name__
            raise DataError(f"Expected `{name}` as float images (N, C, H, W) in [0, 1], but got {got}.")
    if reconstruction.shape[1:] != truth.shape[1:]:
        raise DataError(
            f"Expected reconstructions shaped like the truth (*, {', '.join(map(str, truth.shape[1:]))}), "
            f"but got {tuple(reconstruction.shape)}. Reconstruct at the data's input shape."
        )
    rec = reconstruction.detach().double().cpu().clamp(0, 1).flatten(1)
    gt = truth.detach().double().cpu().flatten(1)
    r, t = len(rec), len(gt)
    mse = torch.zeros(r, t, dtype=torch.float64)
    max_err = torch.zeros(r, t, dtype=torch.float64)
    for i in range(r):  # one reconstruction at a time keeps memory at O(T) images
        diff = (gt - rec[i]).abs()
        mse[i] = (diff**2).mean(dim=1)
        max_err[i] = diff.amax(dim=1)
    with np.errstate(divide="ignore"):
        psnr = torch.from_numpy(10 * np.log10(1.0 / mse.numpy()))
    exact = (psnr >= EXACT_PSNR) | (max_err < EXACT_MAX_ERROR)
    return ExactMatrix(mse, psnr, max_err, exact)


def exact_matching(exact: Tensor) -> list[tuple[int, int]]:
    """A maximum-cardinality matching of the bipartite graph ``exact`` ``(R, T)`` (bool): the most
    (reconstruction, truth) pairs that are exact with every reconstruction and every truth image in at
    most one pair (Hopcroft–Karp). Pairs sorted by truth index."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_bipartite_matching

    e = exact.detach().cpu().bool()
    if e.ndim != 2:
        raise DataError(f"Expected an (R, T) boolean matrix, but got shape {tuple(e.shape)}.")
    if not e.numel() or not bool(e.any()):
        return []
    graph = csr_matrix(e.numpy().astype(np.int8))
    rec_of_truth = maximum_bipartite_matching(graph, perm_type="row")  # (T,): matched row or -1
    return [(int(r), c) for c, r in enumerate(rec_of_truth.tolist()) if r >= 0]


def exact_recovery(reconstruction: Tensor, truth: Tensor) -> Tensor:
    """Per ground-truth image (``(T,)`` float64, truth order): 1 when it is recovered exactly under
    the maximum-cardinality matching of :func:`exact_matching`, else 0. The sum is the number of
    images recovered exactly; an empty reconstruction recovers none."""
    out = torch.zeros(len(truth), dtype=torch.float64)
    if not len(reconstruction) or not len(truth):
        return out
    for _, c in exact_matching(exact_matrix(reconstruction, truth).exact):
        out[c] = 1.0
    return out
