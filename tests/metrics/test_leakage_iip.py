"""IIP (Yin et al., CVPR 2021) against a hand-built nearest-neighbour case and a naive loop."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from gradinv.errors import ConfigError, DataError, MetricUnavailable
from gradinv.metrics import METRIC_INFO, MetricsConfig, iip, pairwise_distance
from gradinv.metrics.evaluate import evaluate
from gradinv.metrics.functional.lpips import resolve_lpips_backbone
from gradinv.types import Batch, Normalization, Reconstruction


def _images(photos: np.ndarray) -> torch.Tensor:
    return torch.tensor(photos, dtype=torch.float32).permute(0, 3, 1, 2) / 255


def _naive_iip(preds: np.ndarray, target: np.ndarray, candidates: np.ndarray) -> list[float]:
    """Nearest neighbour by pixel MSE over the ground truth plus the candidates not equal to one."""
    pool = list(target) + [c for c in candidates if not any(np.abs(c - t).max() <= 0.5 / 255 for t in target)]
    out = []
    for i, p in enumerate(preds):
        d = [float(((p.astype(np.float64) - q) ** 2).mean()) for q in pool]
        others = min(v for j, v in enumerate(d) if j != i)
        out.append(1.0 if d[i] < others else 0.0)
    return out


def test_iip_hand_built_nearest_neighbours(photos):
    x = _images(photos)
    target, candidates = x[:3], x  # the candidate set holds the ground truth itself: it must be dropped
    # 0: near its truth; 1: 70% of the way to candidate 5 (so nearer 5); 2: exact copy
    preds = torch.stack([(target[0] + 0.02).clamp(0, 1), 0.3 * target[1] + 0.7 * x[5], target[2]])
    got = iip(preds, target, candidates)
    assert got.tolist() == [1.0, 0.0, 1.0]
    assert got.tolist() == _naive_iip(preds.numpy(), target.numpy(), candidates.numpy())
    # a reconstruction closest to ANOTHER ground-truth image of the batch is not identified
    swapped = torch.stack([target[1], target[0], target[2]])
    assert iip(swapped, target, x[3:]).tolist() == [0.0, 0.0, 1.0]


def test_iip_random_cases_match_naive_loop(photos):
    x = _images(photos)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        idx = torch.randperm(8, generator=g)
        target, cands = x[idx[:3]], x[idx[3:]]
        mix = torch.rand(3, 1, 1, 1, generator=g)
        preds = (mix * target + (1 - mix) * cands[torch.randint(0, 5, (3,), generator=g)]).clamp(0, 1)
        assert iip(preds, target, cands).tolist() == _naive_iip(preds.numpy(), target.numpy(), cands.numpy())


def test_pairwise_distance_and_errors(photos):
    x = _images(photos)
    d = pairwise_distance(x[:2], x[2:6])
    want = torch.tensor(
        [[float(((a.double() - b.double()) ** 2).mean()) for b in x[2:6]] for a in x[:2]], dtype=torch.float64
    )
    torch.testing.assert_close(d, want)
    with pytest.raises(ConfigError, match="IIP distance"):
        iip(x[:1], x[:1], x[1:], distance="ssim")
    with pytest.raises(DataError, match="image shape"):
        iip(x[:1], x[:1], x[1:, :1])


def test_iip_lpips_never_substituted(photos, monkeypatch):
    x = _images(photos)
    monkeypatch.delenv("GRADINV_LPIPS_BACKBONE", raising=False)
    try:
        resolve_lpips_backbone()
    except MetricUnavailable:
        with pytest.raises(MetricUnavailable, match="AlexNet"):
            iip(x[:2], x[:2], x[2:], distance="lpips")
        truth = Batch(x[:2], torch.tensor([0, 1]), Normalization.identity(3))
        ev = evaluate(
            Reconstruction(x[:2]),
            truth,
            MetricsConfig(lpips="off", stlpips="off", iip_distance="lpips", leakage=()),
            iip_candidates=x[2:],
        )
        assert "iip_lpips" in ev.unavailable and "iip_lpips" not in ev.metrics
    else:  # pragma: no cover - only where the AlexNet weights are installed
        assert iip(x[:2], x[:2], x[2:], distance="lpips").tolist() == [1.0, 1.0]


@pytest.mark.shared_data
def test_iip_stlpips_matches_naive_loop(photos, shared):
    from gradinv.metrics import stlpips

    w = str(shared / "weights" / "stlpips_alex_shift_tolerant.pth")
    if not os.path.isfile(w):
        pytest.skip("ST-LPIPS weights absent from ../shared")
    x = _images(photos)
    target, cands = x[:2], x[2:6]
    preds = torch.stack([0.6 * target[0] + 0.4 * cands[0], 0.2 * target[1] + 0.8 * cands[1]])
    got = iip(preds, target, cands, distance="stlpips", stlpips_weights=w)
    pool = torch.cat([target, cands])
    want = []
    for i, p in enumerate(preds):
        d = stlpips(p.unsqueeze(0).expand_as(pool), pool, weights=w)
        want.append(1.0 if d[i] < torch.cat([d[:i], d[i + 1 :]]).min() else 0.0)
    assert got.tolist() == want


def test_iip_in_evaluate(photos):
    x = _images(photos)
    truth = Batch(x[:3], torch.tensor([0, 1, 2]), Normalization.identity(3))
    preds = torch.stack([x[1], (x[0] + 0.01).clamp(0, 1), 0.2 * x[2] + 0.8 * x[6]])  # shuffled order
    ev = evaluate(
        Reconstruction(preds), truth, MetricsConfig(lpips="off", stlpips="off"), iip_candidates=x[3:]
    )
    assert ev.metrics["iip"].per_image == (1.0, 1.0, 0.0)
    assert ev.metrics["iip"].mean == pytest.approx(2 / 3)
    assert METRIC_INFO["iip"].higher_is_better
    off = MetricsConfig(lpips="off", stlpips="off")
    assert "iip" not in evaluate(Reconstruction(preds), truth, off).metrics
