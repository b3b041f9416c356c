"""Scoring a reconstruction against the ground truth: match first, then measure.

Reconstructions come in no particular order, so they are first assigned one-to-one to the
ground-truth images by the Hungarian algorithm (minimum total MSE by default). Every registered
metric (:mod:`gradinv.metrics.registry`, in registration order) is then computed per matched pair,
in ground-truth order; labels are compared as multisets. The options are one
:class:`~gradinv.metrics.MetricsConfig`.

Leakage metrics, computed when their inputs exist:

* ``brr`` / ``wsrr`` (Du et al., USENIX Security 2025, App. C-II) — on by default (``leakage =
  ("lpips",)``); they need official LPIPS, and ``wsrr`` every initialisation's reconstruction
  (``Reconstruction.candidates``). Explicit variants on request: ``"stlpips"`` (``brr_stlpips``,
  ``wsrr_stlpips``) and ``"psnr"`` (``brr_psnr``, ``wsrr_psnr``, PSNR test only).
* ``iip`` (Yin et al., CVPR 2021) — when ``iip_candidates`` are given (pixel MSE; ``iip_lpips`` /
  ``iip_stlpips`` with ``iip_distance``).
* ``rdlv`` (Hatamizadeh et al., IEEE TMI 2023) — when ``rdlv_prior`` is given.

A metric that cannot be computed here (LPIPS without its AlexNet weights, labels from an attack that
infers none, WSRR without candidates) is listed in ``Evaluation.unavailable`` with the reason, never
replaced by another.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from gradinv.errors import DataError, MetricUnavailable
from gradinv.metrics import builtin as _builtin  # noqa: F401  (fills the registry)
from gradinv.metrics.functional.lpips import resolve_lpips_backbone
from gradinv.metrics.functional.matching import Matching, match
from gradinv.metrics.functional.stlpips import resolve_stlpips_weights
from gradinv.metrics.options import LEAKAGE_VARIANTS, MetricsConfig
from gradinv.metrics.registry import METRICS, MetricInputs, MetricSpec, Need
from gradinv.types import Batch, Reconstruction

__all__ = ["LEAKAGE_VARIANTS", "Evaluation", "MetricResult", "check_required", "evaluate"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MetricResult:
    """Per-image values (ground-truth order) and their summary ``mean``: the mean, or for metrics
    whose :class:`~gradinv.metrics.MetricSpec` has ``reduction = "max"`` (WSRR) the maximum and
    ``"sum"`` (``exact``, a count) the sum."""

    name: str
    title: str
    per_image: tuple[float, ...]
    mean: float
    higher_is_better: bool

    @classmethod
    def of(cls, name: str, values: Tensor | Sequence[float]) -> MetricResult:
        """The result of registered metric ``name`` from its per-image ``values`` (NaN ignored)."""
        vals = [float(v) for v in (values.tolist() if isinstance(values, Tensor) else values)]
        finite = [v for v in vals if not math.isnan(v)]
        spec = METRICS.get_spec(name)
        if not finite:
            mean = math.nan
        elif spec.reduction == "max":
            mean = max(finite)
        elif spec.reduction == "sum":
            mean = sum(finite)
        else:
            mean = sum(finite) / len(finite)
        return cls(name, spec.heading, tuple(vals), mean, spec.higher_is_better)


@dataclass(frozen=True)
class Evaluation:
    """Matched metrics of one reconstruction."""

    matching: Matching
    metrics: Mapping[str, MetricResult]
    unavailable: Mapping[str, str]
    matched_images: Tensor
    matched_labels: Tensor | None
    unmatched_truth: int

    def mean(self, name: str) -> float:
        return self.metrics[name].mean


def _skipped(spec: MetricSpec, options: MetricsConfig, inputs: MetricInputs) -> bool:
    """Not asked for: turned off, or an input it needs was not passed."""
    if spec.switch is not None and getattr(options, spec.switch) == "off":
        return True
    if not spec.enabled(options):
        return True
    if Need.REFERENCE_IMAGES in spec.needs and inputs.reference_images is None:
        return True
    return Need.PRIOR_IMAGE in spec.needs and inputs.prior is None


def _missing(spec: MetricSpec, inputs: MetricInputs) -> str | None:
    """Why a need checked before computing is not met, or ``None``."""
    if Need.LABELS in spec.needs and inputs.reconstruction.labels is None:
        return "the attack does not infer labels"
    channels = inputs.preds.shape[1]
    if Need.RGB_OR_GRAY in spec.needs and channels not in (1, 3):
        return f"needs 1- or 3-channel images, got {channels}"
    return None


#: how to find the weight file a metric needs (each raises MetricUnavailable naming where it looked)
_WEIGHTS: dict[Need, Callable[[MetricsConfig], object]] = {
    Need.LPIPS_WEIGHTS: lambda o: resolve_lpips_backbone(o.lpips_weights),
    Need.STLPIPS_WEIGHTS: lambda o: resolve_stlpips_weights(o.stlpips_weights),
}


def check_required(options: MetricsConfig | None = None) -> None:
    """Fail now, before an attack runs, when a metric switched ``"on"`` (``lpips = "on"``) lacks the
    weight file it needs; :func:`evaluate` would otherwise raise only after the attack.

    Raises:
        MetricUnavailable: with every place the weights were looked for and how to fix it.
    """
    opts = options if options is not None else MetricsConfig()
    for spec in METRICS.values():
        if spec.switch is None or getattr(opts, spec.switch) != "on" or not spec.enabled(opts):
            continue
        for need in spec.needs & _WEIGHTS.keys():
            _WEIGHTS[need](opts)


def evaluate(
    reconstruction: Reconstruction,
    target: Batch,
    options: MetricsConfig | None = None,
    *,
    device: torch.device | str | None = None,
    iip_candidates: Tensor | None = None,
    rdlv_prior: Tensor | None = None,
) -> Evaluation:
    """Match ``reconstruction`` to ``target`` and compute every registered metric
    (:data:`~gradinv.metrics.METRICS`) that ``options`` asks for and whose inputs exist.

    Args:
        reconstruction: the attack's output (``labels`` and ``candidates`` are used when present).
        target: the ground truth it is scored against.
        options: matching criterion, LPIPS/ST-LPIPS modes and weight files, BRR/WSRR variants and
            thresholds, IIP distance (:class:`~gradinv.metrics.MetricsConfig`; defaults when ``None``).
        device: where the perceptual networks run (default: the CPU).
        iip_candidates: other dataset images ``(M, C, H, W)`` in ``[0, 1]`` for IIP (off when ``None``).
        rdlv_prior: the prior image ``(C, H, W)`` for RDLV (off when ``None``; see
            :func:`gradinv.metrics.prior_image`).

    Raises:
        MetricUnavailable: a metric switched ``"on"`` (``lpips = "on"``) cannot be computed.
    """
    opts = options if options is not None else MetricsConfig()
    rec = reconstruction.images.detach().float().cpu().clamp(0, 1)
    gt = target.images.detach().float().cpu()
    if rec.shape[1:] != gt.shape[1:]:
        raise DataError(
            f"Expected reconstructions of shape (*, {', '.join(map(str, gt.shape[1:]))}) like the ground "
            f"truth, but got {tuple(rec.shape)}."
        )
    m = match(rec, gt, criterion=opts.matching)
    pred = rec[m.recon_index]
    computed: dict[str, tuple[float, ...]] = {}
    metrics: dict[str, MetricResult] = {}
    unavailable: dict[str, str] = {}
    inputs = MetricInputs(
        preds=pred,
        target=gt[m.truth_index],
        truth_images=gt,
        reconstruction=reconstruction,
        truth=target,
        options=opts,
        device=str(device) if device is not None else None,
        reference_images=iip_candidates,
        prior=rdlv_prior,
        computed=computed,
        unavailable=unavailable,
    )
    for name, spec in METRICS.items():
        if _skipped(spec, opts, inputs):
            continue
        reason = _missing(spec, inputs)
        if reason is None:
            try:
                metrics[name] = MetricResult.of(name, spec.compute(inputs))
                computed[name] = metrics[name].per_image
                continue
            except MetricUnavailable as e:
                if spec.switch is not None and getattr(opts, spec.switch) == "on":
                    raise
                reason = str(e)
        unavailable[name] = reason
        logger.info("%s unavailable: %s", name, reason)
    matched_labels = None
    if reconstruction.labels is not None and len(reconstruction.labels) == len(rec):
        matched_labels = reconstruction.labels.cpu()[m.recon_index]
    return Evaluation(
        matching=m,
        metrics=metrics,
        unavailable=unavailable,
        matched_images=pred,
        matched_labels=matched_labels,
        unmatched_truth=len(gt) - len(m.truth_index),
    )
