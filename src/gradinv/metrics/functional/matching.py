"""Match reconstructed images to ground-truth images (Hungarian algorithm on a pairwise cost).

Attacks recover a batch in arbitrary order; before per-image metrics are computed each
reconstruction is paired with one ground-truth image by minimising the total cost with
``scipy.optimize.linear_sum_assignment`` (Kuhn, "The Hungarian method for the assignment problem",
Naval Research Logistics Quarterly, 1955). Costs: ``"mse"`` (default), ``"psnr"`` (negated) or
``"ssim"`` (negated). Rectangular inputs give ``min(n_recon, n_truth)`` pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from gradinv.errors import ConfigError, DataError, unknown_name
from gradinv.metrics.functional.mse import _mse_update
from gradinv.metrics.functional.psnr import _psnr_compute
from gradinv.metrics.functional.ssim import ssim

__all__ = ["CRITERIA", "Matching", "match", "pairwise_cost"]

Criterion = Literal["mse", "psnr", "ssim"]
CRITERIA: tuple[str, ...] = get_args(Criterion)


@dataclass(frozen=True)
class Matching:
    """A one-to-one pairing of reconstructions with ground-truth images.

    ``recon_index[k]`` is paired with ``truth_index[k]``; pairs are sorted by ``truth_index``.
    ``cost`` is the full ``(n_recon, n_truth)`` cost matrix (lower is better) for ``criterion``.
    """

    recon_index: Tensor
    truth_index: Tensor
    cost: Tensor
    criterion: str

    @property
    def pair_cost(self) -> Tensor:
        """The cost of each matched pair, ``(min(n_recon, n_truth),)``."""
        return self.cost[self.recon_index, self.truth_index]

    def __len__(self) -> int:
        return int(self.recon_index.numel())


def _check(recon: Tensor, truth: Tensor) -> None:
    for name, x in (("recon", recon), ("truth", truth)):
        if not isinstance(x, Tensor) or x.ndim != 4 or not x.is_floating_point():
            got = f"shape {tuple(x.shape)}, dtype {x.dtype}" if isinstance(x, Tensor) else type(x).__name__
            raise DataError(f"Expected `{name}` as float images (N, C, H, W) in [0, 1], but got {got}.")
        if x.shape[0] == 0:
            raise DataError(f"Expected at least one image in `{name}`, but got none.")
    if recon.shape[1:] != truth.shape[1:]:
        raise DataError(
            f"Expected reconstructions and ground truth of the same image shape (C, H, W), but got "
            f"{tuple(recon.shape[1:])} and {tuple(truth.shape[1:])}. Reconstruct at the data's input shape."
        )


def pairwise_cost(recon: Tensor, truth: Tensor, *, criterion: str = "mse") -> Tensor:
    """Cost matrix ``(n_recon, n_truth)`` in float64: MSE, ``-PSNR`` or ``-SSIM`` of every pair."""
    if criterion not in CRITERIA:
        raise ConfigError(unknown_name("matching criterion", criterion, CRITERIA))
    _check(recon, truth)
    m = truth.shape[0]
    rows = []
    for r in recon:  # one row at a time keeps memory at O(n_truth) images
        rep = r.unsqueeze(0).expand(m, -1, -1, -1)
        if criterion == "ssim":
            rows.append(-ssim(rep, truth))
        else:
            err = _mse_update(rep, truth)
            rows.append(err if criterion == "mse" else -_psnr_compute(err, data_range=1.0))
    return torch.stack(rows)


def _finite_for_assignment(cost: np.ndarray) -> np.ndarray:
    """Replace ``-inf`` (identical images under ``-PSNR``) by a cost below any finite trade-off."""
    if np.isnan(cost).any() or np.isposinf(cost).any():
        raise DataError(
            "Expected finite reconstructions and ground truth for matching, but the cost matrix has NaN/+inf "
            "entries. Check the reconstruction for NaN values."
        )
    neg = np.isneginf(cost)
    if not neg.any():
        return cost
    finite = cost[~neg]
    lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 0.0)
    out = cost.copy()
    out[neg] = lo - (hi - lo + 1.0) * min(cost.shape)
    return out


def match(recon: Tensor, truth: Tensor, *, criterion: str = "mse") -> Matching:
    """Pair reconstructions with ground-truth images by minimum total cost (Hungarian algorithm).

    Args:
        recon: reconstructed images ``(n, C, H, W)`` in ``[0, 1]``.
        truth: ground-truth images ``(m, C, H, W)``; ``n != m`` is allowed (``min(n, m)`` pairs).
        criterion: ``"mse"`` (default), ``"psnr"`` (maximise the summed PSNR) or ``"ssim"``.

    Returns:
        :class:`Matching` with pairs sorted by ground-truth index.

    >>> truth = torch.rand(3, 1, 4, 4)
    >>> m = match(truth[[2, 0, 1]], truth)
    >>> m.recon_index.tolist(), m.truth_index.tolist()
    ([1, 2, 0], [0, 1, 2])
    """
    cost = pairwise_cost(recon, truth, criterion=criterion)
    rows, cols = linear_sum_assignment(_finite_for_assignment(cost.detach().cpu().numpy()))
    order = np.argsort(cols, kind="stable")
    return Matching(
        recon_index=torch.as_tensor(rows[order], dtype=torch.long),
        truth_index=torch.as_tensor(cols[order], dtype=torch.long),
        cost=cost.detach(),
        criterion=criterion,
    )
