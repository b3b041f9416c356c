"""Scoring a reconstruction against the ground truth: match first, then measure.

Reconstructions come in no particular order, so they are first assigned one-to-one to the
ground-truth images by the Hungarian algorithm (minimum total MSE by default). Every image metric is
then computed per matched pair, in ground-truth order; labels are compared as multisets.

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
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from gradinv.errors import ConfigError, DataError, MetricUnavailable, unknown_name
from gradinv.metrics.functional.iip import IIP_DISTANCES, iip
from gradinv.metrics.functional.info import METRIC_INFO
from gradinv.metrics.functional.labels import label_accuracy
from gradinv.metrics.functional.leakage_rates import (
    LPIPS_THRESHOLD,
    PSNR_THRESHOLD,
    leakage_rates,
    reconstruction_indicator,
)
from gradinv.metrics.functional.lpips import lpips
from gradinv.metrics.functional.matching import Matching, match
from gradinv.metrics.functional.mse import mse
from gradinv.metrics.functional.psnr import psnr
from gradinv.metrics.functional.rdlv import rdlv
from gradinv.metrics.functional.ssim import ssim
from gradinv.metrics.functional.stlpips import stlpips
from gradinv.types import Batch, Reconstruction

__all__ = ["LEAKAGE_VARIANTS", "Evaluation", "MetricResult", "evaluate"]

logger = logging.getLogger(__name__)

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
#: BRR/WSRR variants: the perceptual test and the metric-name suffix. "lpips" is the paper's.
LEAKAGE_VARIANTS: dict[str, tuple[str, str]] = {
    "lpips": ("lpips", ""),
    "stlpips": ("stlpips", "_stlpips"),
    "psnr": ("none", "_psnr"),
}
STLPIPS_FILE = "stlpips_alex_shift_tolerant.pth"
LPIPS_BACKBONE_FILE = "alexnet-owt-7be5be79.pth"


@dataclass(frozen=True)
class MetricResult:
    """Per-image values (ground-truth order) and their summary ``mean``: the mean, or for metrics
    whose :class:`~gradinv.metrics.MetricInfo` has ``reduction = "max"`` (WSRR) the maximum."""

    name: str
    title: str
    per_image: tuple[float, ...]
    mean: float
    higher_is_better: bool

    @classmethod
    def of(cls, name: str, values: Tensor | list[float]) -> MetricResult:
        vals = [float(v) for v in (values.tolist() if isinstance(values, Tensor) else values)]
        finite = [v for v in vals if not math.isnan(v)]
        info = METRIC_INFO[name]
        if not finite:
            mean = math.nan
        elif info.reduction == "max":
            mean = max(finite)
        else:
            mean = sum(finite) / len(finite)
        return cls(name, TITLES.get(name, name), tuple(vals), mean, info.higher_is_better)


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


def _weights_dir_file(name: str) -> str | None:
    d = os.environ.get("GRADINV_WEIGHTS")
    if d and (Path(d) / name).is_file():
        return str(Path(d) / name)
    return None


def _perceptual(
    key: str,
    mode: str,
    fn: object,
    kwargs: dict[str, object],
    pred: Tensor,
    truth: Tensor,
    metrics: dict[str, MetricResult],
    unavailable: dict[str, str],
) -> None:
    if mode == "off":
        return
    if pred.shape[1] not in (1, 3):
        unavailable[key] = f"needs 1- or 3-channel images, got {pred.shape[1]}"
        return
    try:
        metrics[key] = MetricResult.of(key, fn(pred, truth, **kwargs))  # type: ignore[operator]
    except MetricUnavailable as e:
        if mode == "on":
            raise
        unavailable[key] = str(e)
        logger.info("%s unavailable: %s", key, e)


@dataclass(frozen=True)
class _LeakageOptions:
    psnr_threshold: float
    lpips_threshold: float
    lpips_weights: str | None
    stlpips_weights: str | None
    device: str | None
    matching: str


def _leakage_rates(
    variant: str,
    reconstruction: Reconstruction,
    gt: Tensor,
    metrics: dict[str, MetricResult],
    unavailable: dict[str, str],
    opts: _LeakageOptions,
    lpips_mode: str,
    stlpips_mode: str,
) -> None:
    """BRR from the matched pairs (reusing the computed PSNR and perceptual distances) and WSRR from
    every initialisation's reconstruction."""
    perceptual, suffix = LEAKAGE_VARIANTS[variant]
    brr_key, wsrr_key = f"brr{suffix}", f"wsrr{suffix}"
    dist: tuple[float, ...] | None = None
    if perceptual != "none":
        mode = lpips_mode if perceptual == "lpips" else stlpips_mode
        if perceptual not in metrics:
            name = "LPIPS" if perceptual == "lpips" else "ST-LPIPS"
            why = (
                f"{name} is turned off ({perceptual} = 'off')"
                if mode == "off"
                else f"{name} is unavailable: {unavailable.get(perceptual, 'not computed')}"
            )
            hint = (
                " Nothing is substituted; for an explicitly different variant ask for leakage = "
                "['stlpips'] (brr_stlpips) or ['psnr'] (brr_psnr, PSNR only)."
                if perceptual == "lpips"
                else ""
            )
            reason = f"needs {name} per image, but {why}.{hint}"
            unavailable[brr_key] = reason
            unavailable[wsrr_key] = reason
            return
        dist = metrics[perceptual].per_image
    ind = reconstruction_indicator(
        torch.tensor(metrics["psnr"].per_image, dtype=torch.float64),
        torch.tensor(dist, dtype=torch.float64) if dist is not None else None,
        psnr_threshold=opts.psnr_threshold,
        perceptual_threshold=opts.lpips_threshold,
    )
    metrics[brr_key] = MetricResult.of(brr_key, ind)
    cands = reconstruction.candidates
    if cands is None:
        unavailable[wsrr_key] = (
            "needs every attack initialisation's reconstruction (Reconstruction.candidates), "
            "which this attack did not keep"
        )
        return
    if cands.ndim != 5 or cands.shape[2:] != gt.shape[1:]:
        unavailable[wsrr_key] = f"candidates of shape {tuple(cands.shape)} do not match the images"
        return
    try:
        rates = leakage_rates(
            cands,
            gt,
            matching=opts.matching,
            perceptual=perceptual,
            psnr_threshold=opts.psnr_threshold,
            perceptual_threshold=opts.lpips_threshold,
            lpips_weights=opts.lpips_weights,
            stlpips_weights=opts.stlpips_weights,
            device=opts.device,
        )
    except MetricUnavailable as e:  # pragma: no cover - the perceptual metric worked just above
        unavailable[wsrr_key] = str(e)
        return
    metrics[wsrr_key] = MetricResult.of(wsrr_key, rates.per_sample)


def _iip(
    distance: str,
    pred: Tensor,
    target: Tensor,
    candidates: Tensor,
    metrics: dict[str, MetricResult],
    unavailable: dict[str, str],
    opts: _LeakageOptions,
) -> None:
    key = "iip" if distance == "mse" else f"iip_{distance}"
    if distance != "mse" and pred.shape[1] not in (1, 3):
        unavailable[key] = f"needs 1- or 3-channel images, got {pred.shape[1]}"
        return
    try:
        values = iip(
            pred,
            target,
            candidates.detach().float().cpu(),
            distance=distance,
            lpips_weights=opts.lpips_weights,
            stlpips_weights=opts.stlpips_weights,
            device=opts.device,
        )
    except MetricUnavailable as e:
        unavailable[key] = str(e)
        logger.info("%s unavailable: %s", key, e)
        return
    metrics[key] = MetricResult.of(key, values)


def evaluate(
    reconstruction: Reconstruction,
    truth: Batch,
    *,
    matching: str = "mse",
    lpips_mode: str = "auto",
    stlpips_mode: str = "auto",
    lpips_weights: str | None = None,
    stlpips_weights: str | None = None,
    device: torch.device | str | None = None,
    leakage: tuple[str, ...] = ("lpips",),
    psnr_threshold: float = PSNR_THRESHOLD,
    lpips_threshold: float = LPIPS_THRESHOLD,
    iip_candidates: Tensor | None = None,
    iip_distance: str = "mse",
    rdlv_prior: Tensor | None = None,
) -> Evaluation:
    """Match ``reconstruction`` to ``truth`` and compute MSE, PSNR, SSIM, (ST-)LPIPS, labels and
    the leakage metrics whose inputs exist.

    Args:
        leakage: BRR/WSRR variants — ``"lpips"`` (the paper's test; default), ``"stlpips"``,
            ``"psnr"``; ``()`` turns them off.
        psnr_threshold, lpips_threshold: BRR/WSRR's ``tau_1`` (dB) and ``tau_2`` (applied to
            ST-LPIPS in the ``"stlpips"`` variant).
        iip_candidates: other dataset images ``(M, C, H, W)`` in ``[0, 1]`` for IIP (off when ``None``).
        iip_distance: ``"mse"`` (default), ``"lpips"`` or ``"stlpips"``.
        rdlv_prior: the prior image ``(C, H, W)`` for RDLV (off when ``None``; see
            :func:`gradinv.metrics.prior_image`).
    """
    bad = [v for v in leakage if v not in LEAKAGE_VARIANTS]
    if bad:
        raise ConfigError(unknown_name("leakage-rate variant", bad[0], LEAKAGE_VARIANTS))
    if iip_distance not in IIP_DISTANCES:
        raise ConfigError(unknown_name("IIP distance", iip_distance, IIP_DISTANCES))
    rec = reconstruction.images.detach().float().cpu().clamp(0, 1)
    gt = truth.images.detach().float().cpu()
    if rec.shape[1:] != gt.shape[1:]:
        raise DataError(
            f"Expected reconstructions of shape (*, {', '.join(map(str, gt.shape[1:]))}) like the ground "
            f"truth, but got {tuple(rec.shape)}."
        )
    m = match(rec, gt, criterion=matching)
    pred = rec[m.recon_index]
    target = gt[m.truth_index]
    metrics: dict[str, MetricResult] = {
        "mse": MetricResult.of("mse", mse(pred, target)),
        "psnr": MetricResult.of("psnr", psnr(pred, target)),
    }
    unavailable: dict[str, str] = {}
    if min(pred.shape[-2:]) >= 11:
        metrics["ssim"] = MetricResult.of("ssim", ssim(pred, target))
    else:
        unavailable["ssim"] = f"images of {pred.shape[-2]}x{pred.shape[-1]} are smaller than the 11x11 window"
    dev = str(device) if device is not None else None
    _perceptual(
        "lpips",
        lpips_mode,
        lpips,
        {"backbone_weights": lpips_weights or _weights_dir_file(LPIPS_BACKBONE_FILE), "device": dev},
        pred,
        target,
        metrics,
        unavailable,
    )
    _perceptual(
        "stlpips",
        stlpips_mode,
        stlpips,
        {"weights": stlpips_weights or _weights_dir_file(STLPIPS_FILE), "device": dev},
        pred,
        target,
        metrics,
        unavailable,
    )
    opts = _LeakageOptions(
        psnr_threshold,
        lpips_threshold,
        lpips_weights or _weights_dir_file(LPIPS_BACKBONE_FILE),
        stlpips_weights or _weights_dir_file(STLPIPS_FILE),
        dev,
        matching,
    )
    for variant in leakage:
        _leakage_rates(variant, reconstruction, gt, metrics, unavailable, opts, lpips_mode, stlpips_mode)
    if iip_candidates is not None:
        _iip(iip_distance, pred, target, iip_candidates, metrics, unavailable, opts)
    if rdlv_prior is not None:
        if min(pred.shape[-2:]) >= 11:
            metrics["rdlv"] = MetricResult.of("rdlv", rdlv(pred, target, rdlv_prior.detach().float().cpu()))
        else:
            unavailable["rdlv"] = (
                f"SSIM needs images of at least 11x11, got {pred.shape[-2]}x{pred.shape[-1]}"
            )
    matched_labels = None
    if reconstruction.labels is not None:
        score = label_accuracy(reconstruction.labels.cpu(), truth.labels.cpu())
        metrics["label_accuracy"] = MetricResult.of(
            "label_accuracy", [float(v) for v in score.per_sample.tolist()]
        )
        if len(reconstruction.labels) == len(rec):
            matched_labels = reconstruction.labels.cpu()[m.recon_index]
    else:
        unavailable["label_accuracy"] = "the attack does not infer labels"
    return Evaluation(
        matching=m,
        metrics=metrics,
        unavailable=unavailable,
        matched_images=pred,
        matched_labels=matched_labels,
        unmatched_truth=len(gt) - len(m.truth_index),
    )
