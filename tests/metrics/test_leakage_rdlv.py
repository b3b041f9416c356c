"""RDLV (Hatamizadeh et al., IEEE TMI 2023) against its formula evaluated with scikit-image's SSIM."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from gradinv.errors import DataError
from gradinv.metrics import MetricsConfig, prior_image, rdlv, rdlv_best
from gradinv.metrics.evaluate import evaluate
from gradinv.types import Batch, Normalization, Reconstruction


def _images(photos: np.ndarray) -> torch.Tensor:
    return torch.tensor(photos, dtype=torch.float64).permute(0, 3, 1, 2) / 255


def _ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    return structural_similarity(
        a.permute(1, 2, 0).numpy(),
        b.permute(1, 2, 0).numpy(),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
        channel_axis=-1,
    )


def _rdlv_by_hand(rec: torch.Tensor, x: torch.Tensor, prior: torch.Tensor) -> float:
    s_prior = _ssim(prior, x)
    return (_ssim(rec, x) - s_prior) / s_prior


def test_rdlv_matches_formula(photos):
    x = _images(photos)
    truth = x[:4]
    prior = prior_image("mean", images=x)  # mean image of the "dataset"
    g = torch.Generator().manual_seed(0)
    recs = (truth + 0.1 * torch.randn(truth.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    got = rdlv(recs, truth, prior.double())
    want = [_rdlv_by_hand(recs[i], truth[i], prior.double()) for i in range(4)]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-9)
    # the prior itself gains nothing; the original gains the most
    np.testing.assert_allclose(
        rdlv(prior.double().expand_as(truth), truth, prior.double()).numpy(), 0, atol=1e-12
    )
    assert (rdlv(truth, truth, prior.double()) > got).all()


def test_rdlv_undefined_prior_and_best_reduction(photos):
    x = _images(photos)
    truth = x[:3]
    inverted = 1 - truth  # negatively correlated prior: SSIM <= 0, RDLV undefined
    vals = rdlv(truth, truth, inverted)
    s = [_ssim(inverted[i], truth[i]) for i in range(3)]
    for v, si in zip(vals.tolist(), s):
        assert np.isnan(v) == (si <= 0)
    prior = prior_image("gray", shape=(3, 32, 32)).double()
    recs = torch.stack([x[5], (truth[0] + 0.05).clamp(0, 1), x[6], truth[2]])
    best = rdlv_best(recs, truth, prior)
    naive = [max(_rdlv_by_hand(r, t, prior) for r in recs) for t in truth]
    np.testing.assert_allclose(best.numpy(), naive, rtol=1e-6)
    with pytest.raises(DataError, match="prior image"):
        rdlv(truth, truth, prior[:, :8])
    with pytest.raises(DataError, match="mean prior"):
        prior_image("mean")


def test_rdlv_in_evaluate(photos):
    x = _images(photos).float()
    truth = Batch(x[:2], torch.tensor([0, 1]), Normalization.identity(3))
    prior = prior_image("mean", images=x[2:])
    rec = Reconstruction(torch.stack([x[1], (x[0] * 0.9).clamp(0, 1)]))  # shuffled order
    ev = evaluate(rec, truth, MetricsConfig(lpips="off", stlpips="off", leakage=()), rdlv_prior=prior)
    want = _rdlv_by_hand((x[0] * 0.9).clamp(0, 1).double(), x[0].double(), prior.double())
    assert ev.metrics["rdlv"].per_image[0] == pytest.approx(want, rel=1e-4)
    assert ev.metrics["rdlv"].per_image[1] == pytest.approx(
        _rdlv_by_hand(x[1].double(), x[1].double(), prior.double()), rel=1e-4
    )
    assert "rdlv" not in evaluate(rec, truth, MetricsConfig(lpips="off", stlpips="off")).metrics
