"""Metadata of the metrics gradinv computes (for ``gradinv list`` and reports)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["METRIC_INFO", "MetricInfo"]


@dataclass(frozen=True)
class MetricInfo:
    """What a metric is called, which direction is better, whether it needs weight files, and how
    its per-image values are summarised (``reduction``: ``"mean"``, or ``"max"`` for WSRR)."""

    name: str
    higher_is_better: bool
    description: str
    needs_weights: bool = False
    reduction: str = "mean"


METRIC_INFO: dict[str, MetricInfo] = {
    info.name: info
    for info in (
        MetricInfo("mse", False, "Mean squared error per image in [0, 1] image space."),
        MetricInfo(
            "psnr", True, "Peak signal-to-noise ratio in dB (data range 1); inf for identical images."
        ),
        MetricInfo(
            "ssim",
            True,
            "Structural similarity (Wang et al., IEEE TIP 2004), 11x11 Gaussian window, sigma 1.5.",
        ),
        MetricInfo(
            "lpips",
            False,
            "LPIPS v0.1, AlexNet (Zhang et al., CVPR 2018); needs torchvision's ImageNet AlexNet weights.",
            needs_weights=True,
        ),
        MetricInfo(
            "stlpips",
            False,
            "ST-LPIPS, AlexNet shift-tolerant (Ghildyal & Liu, ECCV 2022); not LPIPS; needs its weight file.",
            needs_weights=True,
        ),
        MetricInfo(
            "label_accuracy",
            True,
            "Fraction of the true labels recovered, compared as multisets (order-free).",
        ),
        MetricInfo(
            "iip",
            True,
            "Image identifiability precision (Yin et al., CVPR 2021): 1 when the reconstruction's nearest "
            "neighbour in pixel MSE among the ground truth and candidate images is its own ground truth; "
            "the mean is the IIP.",
        ),
        MetricInfo(
            "iip_lpips",
            True,
            "IIP with the official LPIPS distance (Yin et al., CVPR 2021); needs the AlexNet weights.",
            needs_weights=True,
        ),
        MetricInfo(
            "iip_stlpips",
            True,
            "IIP with the ST-LPIPS distance (not LPIPS); needs its weight file.",
            needs_weights=True,
        ),
        MetricInfo(
            "brr",
            True,
            "Leak indicator PSNR > tau1 and LPIPS < tau2 (Du et al., USENIX Security 2025, App. C-II; "
            "18 dB, 0.1 by default); the mean is the batch reconstruction rate (BRR).",
            needs_weights=True,
        ),
        MetricInfo(
            "wsrr",
            True,
            "Per sample: the fraction of the attack's initialisations whose reconstruction leaks it "
            "(PSNR > tau1 and LPIPS < tau2); summarised by the maximum, the worst-sample reconstruction "
            "rate (WSRR, Du et al., USENIX Security 2025, App. C-II).",
            needs_weights=True,
            reduction="max",
        ),
        MetricInfo(
            "brr_stlpips",
            True,
            "BRR variant with ST-LPIPS in place of LPIPS (same threshold, not calibrated for it); "
            "not the paper's BRR.",
            needs_weights=True,
        ),
        MetricInfo(
            "wsrr_stlpips",
            True,
            "WSRR variant with ST-LPIPS in place of LPIPS; not the paper's WSRR. Summarised by the maximum.",
            needs_weights=True,
            reduction="max",
        ),
        MetricInfo(
            "brr_psnr",
            True,
            "BRR variant with the PSNR test only (PSNR > tau1); not the paper's BRR.",
        ),
        MetricInfo(
            "wsrr_psnr",
            True,
            "WSRR variant with the PSNR test only; not the paper's WSRR. Summarised by the maximum.",
            reduction="max",
        ),
        MetricInfo(
            "rdlv",
            True,
            "Relative data leakage value (Hatamizadeh et al., IEEE TMI 2023): "
            "(SSIM(recon, x) - SSIM(prior, x)) / SSIM(prior, x); > 0 means the reconstruction reveals "
            "more than the prior image.",
        ),
    )
}
