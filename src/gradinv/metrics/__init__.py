"""Leakage metrics: image quality of a reconstruction against the ground truth, label recovery.

* Image metrics (``mse``, ``psnr``, ``ssim``, ``lpips``, ``stlpips``) take two ``(N, C, H, W)``
  float batches in ``[0, 1]`` and return float64 ``(N,)`` per-image values (image ``i`` vs image ``i``).
* ``match`` pairs reconstructions with ground-truth images first (Hungarian algorithm).
* ``label_accuracy`` compares recovered and true labels as multisets.
* Leakage metrics: ``iip`` (image identifiability precision, Yin et al., CVPR 2021),
  ``leakage_indicator`` / ``brr`` / ``leakage_rates`` / ``wsrr`` (Du et al., USENIX Security 2025,
  App. C-II), ``rdlv`` / ``rdlv_best`` with ``prior_image`` (Hatamizadeh et al., IEEE TMI 2023).
* ``METRICS`` is the metric registry: one :class:`MetricSpec` per metric (compute function, title,
  unit, direction ``higher_is_better``, ``reduction``, needs), read by :func:`evaluate
  <gradinv.metrics.evaluate.evaluate>`, the reports and ``gradinv list``; :func:`register_metric`
  adds one. ``METRIC_INFO`` / ``MetricInfo`` are the same registry and class under their older names.
* ``MetricsConfig`` holds the scoring options (the ``[metrics]`` table), passed to ``evaluate`` whole.

LPIPS is the official AlexNet v0.1 metric and needs torchvision's ImageNet AlexNet weights; ST-LPIPS
is a different metric (shift-tolerant) whose values are not LPIPS values.
"""

from __future__ import annotations

from gradinv.metrics import builtin as _builtin  # noqa: F401  (registers the built-in metrics)
from gradinv.metrics.functional.iip import iip, pairwise_distance
from gradinv.metrics.functional.labels import LabelScore, label_accuracy
from gradinv.metrics.functional.leakage_rates import (
    LeakageRates,
    brr,
    leakage_indicator,
    leakage_rates,
    reconstruction_indicator,
    wsrr,
)
from gradinv.metrics.functional.lpips import LPIPS, lpips
from gradinv.metrics.functional.matching import Matching, match, pairwise_cost
from gradinv.metrics.functional.mse import mse
from gradinv.metrics.functional.psnr import psnr
from gradinv.metrics.functional.rdlv import prior_image, rdlv, rdlv_best
from gradinv.metrics.functional.ssim import ssim
from gradinv.metrics.functional.stlpips import STLPIPS, stlpips
from gradinv.metrics.options import MetricsConfig
from gradinv.metrics.registry import METRICS, MetricInputs, MetricSpec, Need, pairwise, register_metric

#: The registry under its older name (the same object).
METRIC_INFO = METRICS
#: :class:`MetricSpec` under its older name.
MetricInfo = MetricSpec

__all__ = [
    "LPIPS",
    "METRICS",
    "METRIC_INFO",
    "STLPIPS",
    "LabelScore",
    "LeakageRates",
    "Matching",
    "MetricInfo",
    "MetricInputs",
    "MetricSpec",
    "MetricsConfig",
    "Need",
    "brr",
    "iip",
    "label_accuracy",
    "leakage_indicator",
    "leakage_rates",
    "lpips",
    "match",
    "mse",
    "pairwise",
    "pairwise_cost",
    "pairwise_distance",
    "prior_image",
    "psnr",
    "rdlv",
    "rdlv_best",
    "reconstruction_indicator",
    "register_metric",
    "ssim",
    "stlpips",
    "wsrr",
]
