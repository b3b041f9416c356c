"""Label accuracy as multisets, against a naive Counter oracle; metric metadata and public API."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

import gradinv.metrics as metrics
from gradinv.errors import DataError
from gradinv.metrics import METRIC_INFO, label_accuracy, mse, psnr, ssim


def _oracle(pred: list[int], true: list[int]) -> list[bool]:
    left = Counter(pred)
    out = []
    for label in true:
        out.append(left[label] > 0)
        left[label] -= 1
    return out


@pytest.mark.parametrize("trial", range(30))
def test_matches_counter_oracle(trial: int) -> None:
    g = torch.Generator().manual_seed(trial)
    classes = int(torch.randint(1, 5, (1,), generator=g))  # few classes: many duplicates
    true = torch.randint(0, classes, (int(torch.randint(1, 9, (1,), generator=g)),), generator=g)
    pred = torch.randint(0, classes + 1, (int(torch.randint(0, 9, (1,), generator=g)),), generator=g)
    score = label_accuracy(pred, true)
    expected = _oracle(pred.tolist(), true.tolist())
    assert score.per_sample.dtype == torch.bool
    assert score.per_sample.tolist() == expected
    assert score.value == pytest.approx(sum(expected) / len(expected))
    shuffled = label_accuracy(pred[torch.randperm(len(pred), generator=g)], true)
    assert shuffled.per_sample.tolist() == expected  # order of the prediction is irrelevant


def test_examples() -> None:
    true = torch.tensor([5, 5, 2, 5])
    assert label_accuracy(torch.tensor([5, 2, 5, 5]), true).value == 1.0
    assert label_accuracy(torch.tensor([5, 9]), true).per_sample.tolist() == [True, False, False, False]
    assert label_accuracy(torch.tensor([], dtype=torch.long), true).value == 0.0


def test_errors() -> None:
    with pytest.raises(DataError, match="1-D integer tensor"):
        label_accuracy(torch.tensor([0.5]), torch.tensor([0]))
    with pytest.raises(DataError, match="1-D integer tensor"):
        label_accuracy(torch.tensor([0]), torch.tensor([[0]]))
    with pytest.raises(DataError, match="at least one true label"):
        label_accuracy(torch.tensor([0]), torch.tensor([], dtype=torch.long))


def test_metric_info_directions() -> None:
    base = {"mse", "psnr", "ssim", "lpips", "stlpips", "label_accuracy"}
    assert base <= set(METRIC_INFO)  # leakage metrics (iip, brr, ...) are checked in test_leakage_*.py
    assert all(name == info.name and info.description for name, info in METRIC_INFO.items())
    assert {n for n in base if METRIC_INFO[n].needs_weights} == {"lpips", "stlpips"}
    # direction: a mildly degraded image must score better than a strongly degraded one
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 16, 16, generator=g)
    noise = torch.randn(x.shape, generator=g)
    mild, strong = (x + 0.05 * noise).clamp(0, 1), (x + 0.5 * noise).clamp(0, 1)
    for name, fn in (("mse", mse), ("psnr", psnr), ("ssim", ssim)):
        mild_is_higher = bool(fn(mild, x) > fn(strong, x))
        assert METRIC_INFO[name].higher_is_better == mild_is_higher, name
    assert METRIC_INFO["label_accuracy"].higher_is_better


def test_public_api() -> None:
    expected = {"mse", "psnr", "ssim", "lpips", "stlpips", "LPIPS", "STLPIPS", "match", "Matching"}
    expected |= {"label_accuracy", "LabelScore", "METRIC_INFO", "MetricInfo"}
    assert expected <= set(metrics.__all__)
    assert all(hasattr(metrics, name) for name in metrics.__all__)
