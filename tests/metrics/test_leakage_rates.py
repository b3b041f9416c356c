"""BRR and WSRR (Du et al., USENIX Security 2025, App. C-II) against a naive loop: brute-force
matching over permutations, scikit-image PSNR, the indicator written out."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio

from gradinv.errors import ConfigError, DataError, MetricUnavailable
from gradinv.metrics import METRIC_INFO, MetricsConfig, brr, leakage_indicator, leakage_rates, wsrr
from gradinv.metrics.evaluate import MetricResult, evaluate
from gradinv.metrics.functional.lpips import resolve_lpips_backbone
from gradinv.types import Batch, Normalization, Reconstruction


def _images(photos: np.ndarray, n: int) -> torch.Tensor:
    return torch.tensor(photos[:n], dtype=torch.float32).permute(0, 3, 1, 2) / 255


def _candidates(truth: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """K noisy, shuffled reconstructions of ``truth`` at noise levels from faithful to useless."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(k):
        sigma = torch.tensor([0.01, 0.05, 0.12, 0.3])[torch.randint(0, 4, (len(truth),), generator=g)]
        noisy = (truth + sigma.view(-1, 1, 1, 1) * torch.randn(truth.shape, generator=g)).clamp(0, 1)
        out.append(noisy[torch.randperm(len(truth), generator=g)])
    return torch.stack(out)


def _naive_indicator(cand: np.ndarray, truth: np.ndarray, tau: float, dist=None) -> list[float]:
    """Best permutation by total MSE (brute force), then 1[PSNR > tau (and D < 0.1)] per truth image."""
    n = len(truth)
    best = min(
        itertools.permutations(range(n)),
        key=lambda perm: sum(((cand[perm[i]] - truth[i]) ** 2).mean() for i in range(n)),
    )
    out = []
    for i in range(n):
        p = peak_signal_noise_ratio(truth[i], cand[best[i]], data_range=1.0)
        ok = p > tau and (dist is None or dist(cand[best[i]], truth[i]) < 0.1)
        out.append(1.0 if ok else 0.0)
    return out


def test_psnr_only_rates_match_naive_loop(photos):
    truth = _images(photos, 4)
    cands = _candidates(truth, k=6, seed=0)
    for tau in (18.0, 25.0):
        rates = leakage_rates(cands, truth, perceptual="none", psnr_threshold=tau)
        naive = np.array([_naive_indicator(c.double().numpy(), truth.double().numpy(), tau) for c in cands])
        np.testing.assert_array_equal(rates.indicator.numpy(), naive)
        np.testing.assert_allclose(rates.per_sample.numpy(), naive.mean(axis=0))
        np.testing.assert_allclose(rates.brr_per_candidate.numpy(), naive.mean(axis=1))
        assert rates.wsrr == pytest.approx(naive.mean(axis=0).max())
        assert wsrr(cands, truth, perceptual="none", psnr_threshold=tau) == pytest.approx(rates.wsrr)
        assert 0 < rates.wsrr <= 1
    # BRR of matched pairs (reconstruction i belongs to truth i) = mean of the written-out indicator
    g = torch.Generator().manual_seed(3)
    sigma = torch.tensor([0.01, 0.05, 0.12, 0.3]).view(-1, 1, 1, 1)
    pairs = (truth + sigma * torch.randn(truth.shape, generator=g)).clamp(0, 1)
    want = [
        float(peak_signal_noise_ratio(t.double().numpy(), p.double().numpy(), data_range=1.0) > 18.0)
        for p, t in zip(pairs, truth)
    ]
    assert leakage_indicator(pairs, truth, perceptual="none").tolist() == want
    assert brr(pairs, truth, perceptual="none") == pytest.approx(np.mean(want))
    assert 0 < np.mean(want) < 1


@pytest.mark.shared_data
def test_stlpips_variant_matches_naive_loop(photos, shared):
    from gradinv.metrics import stlpips

    w = str(shared / "weights" / "stlpips_alex_shift_tolerant.pth")
    if not os.path.isfile(w):
        pytest.skip("ST-LPIPS weights absent from ../shared")
    truth = _images(photos, 3)
    cands = _candidates(truth, k=3, seed=1)

    def dist(a: np.ndarray, b: np.ndarray) -> float:
        return float(stlpips(torch.from_numpy(a)[None].float(), torch.from_numpy(b)[None].float(), weights=w))

    rates = leakage_rates(cands, truth, perceptual="stlpips", stlpips_weights=w)
    naive = np.array(
        [_naive_indicator(c.double().numpy(), truth.double().numpy(), 18.0, dist) for c in cands]
    )
    np.testing.assert_array_equal(rates.indicator.numpy(), naive)
    # the perceptual test can only remove leaks
    assert (rates.indicator <= leakage_rates(cands, truth, perceptual="none").indicator).all()


def test_lpips_is_never_substituted(photos, monkeypatch):
    truth = _images(photos, 2)
    monkeypatch.delenv("GRADINV_LPIPS_BACKBONE", raising=False)
    monkeypatch.delenv("GRADINV_WEIGHTS", raising=False)
    try:
        resolve_lpips_backbone()
    except MetricUnavailable:
        pass
    else:  # pragma: no cover - only where the AlexNet weights are installed
        pytest.skip("official LPIPS weights are installed here")
    with pytest.raises(MetricUnavailable, match="AlexNet"):
        leakage_indicator(truth, truth)
    batch = Batch(truth, torch.tensor([0, 1]), Normalization.identity(3))
    rec = Reconstruction(truth.flip(0), candidates=_candidates(truth, 3, 2))
    ev = evaluate(rec, batch, MetricsConfig(stlpips="off"))
    assert "brr" not in ev.metrics and "wsrr" not in ev.metrics
    assert (
        "LPIPS" in ev.unavailable["brr"] and "brr_psnr" in ev.unavailable["brr"]
    )  # says so, offers variants
    ev = evaluate(rec, batch, MetricsConfig(lpips="off", stlpips="off", leakage=("psnr",), psnr_threshold=30))
    naive = [_naive_indicator(c.double().numpy(), truth.double().numpy(), 30.0) for c in rec.candidates]
    assert ev.metrics["brr_psnr"].per_image == (1.0, 1.0)  # exact copies (flipped order)
    assert ev.metrics["wsrr_psnr"].per_image == tuple(np.mean(naive, axis=0))
    assert ev.metrics["wsrr_psnr"].mean == max(np.mean(naive, axis=0))  # summarised by the max


def test_wsrr_needs_candidates_and_reduction_is_max(photos):
    truth = _images(photos, 2)
    batch = Batch(truth, torch.tensor([0, 1]), Normalization.identity(3))
    ev = evaluate(Reconstruction(truth), batch, MetricsConfig(lpips="off", stlpips="off", leakage=("psnr",)))
    assert ev.metrics["brr_psnr"].mean == 1.0
    assert "candidates" in ev.unavailable["wsrr_psnr"]
    assert METRIC_INFO["wsrr"].reduction == "max" and METRIC_INFO["brr"].reduction == "mean"
    assert MetricResult.of("wsrr", [0.2, 0.9, 0.5]).mean == 0.9
    assert MetricResult.of("brr", [0.0, 1.0]).mean == 0.5
    for name in ("brr", "wsrr", "brr_stlpips", "wsrr_stlpips", "brr_psnr", "wsrr_psnr"):
        assert METRIC_INFO[name].higher_is_better and METRIC_INFO[name].description


def test_errors(photos):
    truth = _images(photos, 2)
    with pytest.raises(ConfigError, match="perceptual test"):
        leakage_indicator(truth, truth, perceptual="ssim")
    with pytest.raises(DataError, match=r"\(K, N, C, H, W\)"):
        leakage_rates(truth, truth, perceptual="none")
    with pytest.raises(ConfigError, match="leakage-rate variant"):
        evaluate(
            Reconstruction(truth),
            Batch(truth, torch.tensor([0, 1]), Normalization.identity(3)),
            MetricsConfig(leakage=("x",)),
        )
