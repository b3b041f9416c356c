"""The ``exact`` metric against oracles: a brute-force maximum matching on tiny "is exact" graphs, and
a case where the minimum-MSE matching of the other metrics shows fewer exact recoveries."""

from __future__ import annotations

import itertools

import pytest
import torch

from gradinv.attacks._imprint import count_exact
from gradinv.errors import DataError
from gradinv.metrics import METRICS
from gradinv.metrics.evaluate import evaluate
from gradinv.metrics.functional.exact import EXACT_PSNR, exact_matching, exact_matrix, exact_recovery
from gradinv.types import Batch, Normalization, Reconstruction


def _brute_force(exact: torch.Tensor) -> int:
    """The largest number of disjoint exact (reconstruction, truth) pairs, by trying every injection
    of truth images into reconstructions (``None``: left unmatched)."""
    r, t = exact.shape
    best = 0
    for choice in itertools.product([None, *range(r)], repeat=t):
        used = [x for x in choice if x is not None]
        if len(used) == len(set(used)):
            best = max(best, sum(1 for c, x in enumerate(choice) if x is not None and bool(exact[x, c])))
    return best


@pytest.mark.parametrize("seed", range(40))
def test_matching_is_maximum_like_brute_force(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    r, t = (int(v) for v in torch.randint(1, 5, (2,), generator=gen))
    exact = torch.rand(r, t, generator=gen) < 0.45
    pairs = exact_matching(exact)
    assert len(pairs) == _brute_force(exact)
    assert all(bool(exact[a, b]) for a, b in pairs)
    assert len({a for a, _ in pairs}) == len({b for _, b in pairs}) == len(pairs)


def _images(*values: float, size: int = 4) -> torch.Tensor:
    return torch.stack([torch.full((1, size, size), v) for v in values])


def test_exact_counts_what_mse_matching_hides() -> None:
    """r0 is exactly t0, r1 is far from both; the minimum total MSE pairs r0 with t1 (0.01 + 0.25 <
    0.36 + 0), so no MSE-matched pair is exact, while one image is recovered exactly."""
    truth = _images(0.5, 0.6)
    rec = _images(0.5, 0.0)
    batch = Batch(truth, torch.tensor([0, 1]), Normalization.identity(1), ("a", "b"), (0, 1), "test")
    ev = evaluate(Reconstruction(images=rec), batch)
    assert sum(p >= EXACT_PSNR for p in ev.metrics["psnr"].per_image) == 0
    assert ev.metrics["exact"].per_image == (1.0, 0.0)
    assert ev.metrics["exact"].mean == 1 == count_exact(rec, truth).count
    spec = METRICS["exact"]
    assert spec.reduction == "sum" and "maximum-cardinality" in spec.description
    assert "Hungarian" in spec.description


def test_exact_criterion_psnr_or_max_error() -> None:
    truth = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.9 + 0.05
    rec = truth.clone()
    rec[0] += 0.5 / 255  # max error below 1/255: exact (PSNR about 54 dB)
    rec[1, 0, 0, 0] += 0.05  # one pixel off by 0.05: PSNR about 44 dB, max error above: not exact
    rec[2] += 0.0009  # PSNR about 61 dB: exact
    m = exact_matrix(rec, truth)
    assert m.exact.diagonal().tolist() == [True, False, True]
    assert exact_recovery(rec, truth).tolist() == [1.0, 0.0, 1.0]


def test_one_reconstruction_counts_once() -> None:
    truth = _images(0.5, 0.5, 0.9)
    assert exact_recovery(_images(0.5), truth).sum() == 1
    assert exact_recovery(_images(0.5, 0.5, 0.5), truth).sum() == 2
    assert exact_recovery(torch.zeros(0, 1, 4, 4), truth).tolist() == [0.0, 0.0, 0.0]


def test_shape_mismatch_is_one_clear_error() -> None:
    with pytest.raises(DataError, match=r"Expected reconstructions shaped like the truth"):
        exact_recovery(torch.zeros(1, 3, 4, 4), torch.zeros(1, 1, 4, 4))
