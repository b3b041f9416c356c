"""MAE per image against a numpy oracle, and its registration (evaluate reports it)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradinv.errors import DataError
from gradinv.metrics import METRICS, MetricsConfig
from gradinv.metrics.evaluate import evaluate
from gradinv.metrics.functional.mae import mae
from gradinv.types import Batch, Normalization, Reconstruction


def _images(photos: np.ndarray, n: int = 4) -> torch.Tensor:
    return torch.from_numpy(photos[:n]).permute(0, 3, 1, 2).float() / 255.0


def test_mae_matches_numpy(photos: np.ndarray) -> None:
    x = _images(photos)
    noisy = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    want = np.abs(noisy.double().numpy() - x.double().numpy()).reshape(len(x), -1).mean(axis=1)
    got = mae(noisy, x)
    assert got.dtype == torch.float64 and got.shape == (len(x),)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-15)
    assert mae(x, x).tolist() == [0.0] * len(x)


def test_mae_errors() -> None:
    with pytest.raises(DataError, match="same shape"):
        mae(torch.zeros(1, 3, 4, 4), torch.zeros(2, 3, 4, 4))


def test_mae_is_registered_and_evaluated(photos: np.ndarray) -> None:
    spec = METRICS["mae"]
    assert not spec.higher_is_better and spec.reduction == "mean" and spec.heading == "MAE"
    x = _images(photos, 3)
    truth = Batch(x, torch.tensor([0, 1, 2]), Normalization.identity(3))
    rec = (x * 0.8).flip(0)  # shuffled: matching puts image i against truth i
    ev = evaluate(Reconstruction(rec), truth, MetricsConfig(lpips="off", stlpips="off"))
    want = np.abs(0.8 * x.double().numpy() - x.double().numpy()).reshape(3, -1).mean(axis=1)
    np.testing.assert_allclose(ev.metrics["mae"].per_image, want, rtol=1e-6)
    assert ev.metrics["mae"].mean == pytest.approx(float(want.mean()), rel=1e-6)
