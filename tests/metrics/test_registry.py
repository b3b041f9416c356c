"""The metric registry: every spec is complete, evaluate computes what the registry holds (and only
what the options ask for), the reports' titles and formats come from it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import torch

from gradinv.errors import ConfigError, MetricUnavailable
from gradinv.metrics import METRIC_INFO, METRICS, MetricInputs, MetricsConfig, MetricSpec, Need, pairwise
from gradinv.metrics.evaluate import MetricResult, evaluate
from gradinv.metrics.registry import MetricRegistry
from gradinv.report.html import format_metric, metric_title
from gradinv.studies.tables import direction
from gradinv.types import Batch, Normalization, Reconstruction

#: report.json's "title" of each metric before the registry existed: they must not change.
TITLES = {
    "mse": "MSE",
    "psnr": "PSNR (dB)",
    "ssim": "SSIM",
    "lpips": "LPIPS",
    "stlpips": "ST-LPIPS",
    "label_accuracy": "Label accuracy",
    "iip": "IIP (pixel MSE)",
    "iip_lpips": "IIP (LPIPS)",
    "iip_stlpips": "IIP (ST-LPIPS)",
    "brr": "BRR",
    "wsrr": "WSRR",
    "brr_stlpips": "BRR (ST-LPIPS variant)",
    "wsrr_stlpips": "WSRR (ST-LPIPS variant)",
    "brr_psnr": "BRR (PSNR only)",
    "wsrr_psnr": "WSRR (PSNR only)",
    "rdlv": "RDLV (SSIM)",
}


def _batch(photos: np.ndarray, n: int = 2) -> Batch:
    x = torch.from_numpy(photos[:n]).permute(0, 3, 1, 2).float() / 255.0
    return Batch(x, torch.arange(n), Normalization.identity(3))


def test_every_spec_is_complete() -> None:
    assert METRIC_INFO is METRICS
    assert set(TITLES) <= set(METRICS)
    for name, spec in METRICS.items():
        assert spec.name == name and spec.title and spec.description, name
        assert spec.reduction in ("mean", "max", "sum") and callable(spec.compute), name
        assert all(isinstance(n, Need) for n in spec.needs), name
        if spec.switch is not None:
            assert getattr(MetricsConfig(), spec.switch) in ("auto", "on", "off"), name
        format(1.0, spec.fmt)
    for name, title in TITLES.items():
        assert METRICS[name].heading == title == MetricResult.of(name, [1.0]).title
    assert {n for n, s in METRICS.items() if s.reduction == "max"} == {"wsrr", "wsrr_stlpips", "wsrr_psnr"}
    with pytest.raises(ConfigError, match=r"Unknown metric 'psnrr'\. Did you mean 'psnr'"):
        METRICS.get_spec("psnrr")


def test_reports_read_the_registry() -> None:
    assert metric_title("stlpips") == "ST-LPIPS (not LPIPS)"  # always labelled as not LPIPS
    assert metric_title("psnr") == "PSNR (dB)" and metric_title("other", "Other") == "Other"
    assert format_metric("psnr", 17.1629) == "17.16" and format_metric("ssim", 0.463083) == "0.4631"
    for name, spec in METRICS.items():
        assert direction(name) == (1 if spec.higher_is_better else -1), name


def test_registry_order_and_duplicates() -> None:
    reg = MetricRegistry()
    a = MetricSpec("b", "B", "b.", higher_is_better=True, compute=lambda i: [0.0])
    reg.register(a)
    reg.register(MetricSpec("a", "A", "a.", higher_is_better=True, compute=lambda i: [0.0]))
    assert list(reg) == ["b", "a"] and reg["b"] is a and len(reg) == 2
    reg.register(a)  # the same spec again is fine
    with pytest.raises(ValueError, match="already registered"):
        reg.register(MetricSpec("b", "B2", "b.", higher_is_better=True, compute=lambda i: [0.0]))


def test_evaluate_computes_a_registered_metric(photos, monkeypatch: pytest.MonkeyPatch) -> None:
    """A metric added to the registry is computed, reported and switched by its spec alone."""
    seen: list[MetricInputs] = []

    def max_abs(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (preds.double() - target.double()).abs().flatten(1).amax(dim=1)

    def compute(inputs: MetricInputs) -> torch.Tensor:
        seen.append(inputs)
        return pairwise(max_abs)(inputs)

    spec = MetricSpec(
        "max_abs",
        "Max abs",
        "Largest absolute pixel error.",
        higher_is_better=False,
        compute=compute,
        enabled=lambda options: options.matching == "mse",
    )
    monkeypatch.setitem(METRICS._specs, "max_abs", spec)
    truth = _batch(photos)
    rec = Reconstruction((truth.images * 0.5).flip(0))
    ev = evaluate(rec, truth, MetricsConfig(lpips="off", stlpips="off"))
    want = (0.5 * truth.images.double()).flatten(1).amax(dim=1).tolist()
    assert ev.metrics["max_abs"].per_image == pytest.approx(want)
    assert seen[0].computed.keys() >= {"mse", "psnr"}  # earlier metrics are visible to later ones
    assert list(ev.metrics)[-1] == "max_abs"  # registration order
    off = evaluate(rec, truth, MetricsConfig(matching="psnr", lpips="off", stlpips="off"))
    assert "max_abs" not in off.metrics and "max_abs" not in off.unavailable


def test_unavailable_reasons_and_strict_mode(photos, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    truth = _batch(photos)
    two = Batch(truth.images[:, :2], truth.labels, Normalization.identity(2))
    ev = evaluate(Reconstruction(two.images), two, MetricsConfig(lpips="on", stlpips="off", leakage=()))
    assert ev.unavailable["lpips"] == "needs 1- or 3-channel images, got 2"  # never raised, even if on

    def no_weights(inputs: MetricInputs) -> list[float]:
        raise MetricUnavailable("Expected demo weights, but there are none.")

    monkeypatch.setitem(
        METRICS._specs,
        "demo",
        MetricSpec("demo", "Demo", "d.", higher_is_better=True, compute=no_weights, switch="lpips"),
    )
    ev = evaluate(Reconstruction(truth.images), truth, MetricsConfig(stlpips="off", leakage=()))
    assert ev.unavailable["demo"] == "Expected demo weights, but there are none."
    assert ev.unavailable["label_accuracy"] == "the attack does not infer labels"
    assert "demo" not in evaluate(Reconstruction(truth.images), truth, MetricsConfig(lpips="off")).unavailable
    strict = MetricsConfig(lpips="on", stlpips="off", leakage=())
    monkeypatch.delenv("GRADINV_WEIGHTS", raising=False)
    monkeypatch.delenv("GRADINV_LPIPS_BACKBONE", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(MetricUnavailable, match="AlexNet weights for official LPIPS"):
        evaluate(Reconstruction(truth.images), truth, strict)  # official LPIPS: an error, never replaced
    # without its switch, official LPIPS is only unavailable; the demo metric's switch still raises
    monkeypatch.setitem(METRICS._specs, "lpips", dataclasses.replace(METRICS["lpips"], switch=None))
    with pytest.raises(MetricUnavailable, match="demo weights"):
        evaluate(Reconstruction(truth.images), truth, strict)


def test_default_options_and_validation() -> None:
    as_list: Any = ["psnr"]  # a TOML array
    assert MetricsConfig(leakage=as_list).leakage == ("psnr",)
    with pytest.raises(ConfigError, match="leakage-rate variant"):
        MetricsConfig(leakage=("x",))
    with pytest.raises(ConfigError, match="`lpips` in \\[metrics\\] to be one of 'auto', 'on', 'off'"):
        MetricsConfig(lpips=cast(Any, "yes"))
