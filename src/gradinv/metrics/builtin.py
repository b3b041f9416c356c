"""The metrics gradinv computes, one :func:`~gradinv.metrics.registry.register_metric` call each, in
the order :func:`~gradinv.metrics.evaluate` computes them and reports show them.

The maths lives in ``metrics/functional/`` (pure functions); this module only adapts each function
to :class:`~gradinv.metrics.registry.MetricInputs` and describes it. Imported by
:mod:`gradinv.metrics`, so the registry is complete whenever the package is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

from gradinv.errors import MetricUnavailable
from gradinv.metrics.functional.exact import EXACT_PSNR, exact_recovery
from gradinv.metrics.functional.iip import iip
from gradinv.metrics.functional.labels import label_accuracy
from gradinv.metrics.functional.leakage_rates import leakage_rates, reconstruction_indicator
from gradinv.metrics.functional.lpips import lpips
from gradinv.metrics.functional.mae import mae
from gradinv.metrics.functional.mse import mse
from gradinv.metrics.functional.psnr import psnr
from gradinv.metrics.functional.rdlv import rdlv
from gradinv.metrics.functional.ssim import ssim
from gradinv.metrics.functional.stlpips import stlpips
from gradinv.metrics.options import LEAKAGE_VARIANTS, MetricsConfig
from gradinv.metrics.registry import MetricInputs, MetricSpec, Need, Values, pairwise, register_metric

__all__: list[str] = []

#: SSIM's Gaussian window (11x11): smaller images have no SSIM (nor RDLV, which is built on it).
SSIM_MIN_SIZE = 11


def _ssim(inputs: MetricInputs) -> Values:
    h, w = inputs.preds.shape[-2:]
    if min(h, w) < SSIM_MIN_SIZE:
        raise MetricUnavailable(f"images of {h}x{w} are smaller than the 11x11 window")
    return ssim(inputs.preds, inputs.target)


def _lpips(inputs: MetricInputs) -> Values:
    return lpips(
        inputs.preds, inputs.target, backbone_weights=inputs.options.lpips_weights, device=inputs.device
    )


def _stlpips(inputs: MetricInputs) -> Values:
    return stlpips(inputs.preds, inputs.target, weights=inputs.options.stlpips_weights, device=inputs.device)


def _perceptual_spec(
    name: str,
    title: str,
    description: str,
    compute: Callable[[MetricInputs], Values],
    weights: Need,
    *,
    caveat: str = "",
) -> MetricSpec:
    """The spec of a perceptual distance (LPIPS, ST-LPIPS): lower is more similar, it needs its
    ``weights`` and RGB or grayscale images, and the ``[metrics]`` field of its name turns it on or off."""
    return MetricSpec(
        name,
        title,
        description,
        higher_is_better=False,
        compute=compute,
        needs=frozenset({weights, Need.RGB_OR_GRAY}),
        switch=name,
        caveat=caveat,
        fmt=".4f",
        headline=True,
    )


def _perceptual_per_image(inputs: MetricInputs, perceptual: str) -> tuple[float, ...]:
    """The computed LPIPS / ST-LPIPS values BRR and WSRR reuse, or why there are none."""
    if perceptual in inputs.computed:
        return inputs.computed[perceptual]
    name = "LPIPS" if perceptual == "lpips" else "ST-LPIPS"
    mode = getattr(inputs.options, perceptual)
    why = (
        f"{name} is turned off ({perceptual} = 'off')"
        if mode == "off"
        else f"{name} is unavailable: {inputs.unavailable.get(perceptual, 'not computed')}"
    )
    hint = (
        " Nothing is substituted; for an explicitly different variant ask for leakage = "
        "['stlpips'] (brr_stlpips) or ['psnr'] (brr_psnr, PSNR only)."
        if perceptual == "lpips"
        else ""
    )
    raise MetricUnavailable(f"needs {name} per image, but {why}.{hint}")


def _brr(variant: str) -> MetricSpec:
    """BRR of the matched pairs (Du et al., App. C-II), reusing the computed PSNR and perceptual
    distances."""
    perceptual = LEAKAGE_VARIANTS[variant][0]

    def compute(inputs: MetricInputs) -> Values:
        dist = _perceptual_per_image(inputs, perceptual) if perceptual != "none" else None
        return reconstruction_indicator(
            torch.tensor(inputs.computed["psnr"], dtype=torch.float64),
            torch.tensor(dist, dtype=torch.float64) if dist is not None else None,
            psnr_threshold=inputs.options.psnr_threshold,
            perceptual_threshold=inputs.options.lpips_threshold,
        )

    return _leakage_spec("brr", variant, compute)


def _wsrr(variant: str) -> MetricSpec:
    """WSRR from every initialisation's reconstruction (Du et al., App. C-II)."""
    perceptual = LEAKAGE_VARIANTS[variant][0]

    def compute(inputs: MetricInputs) -> Values:
        if perceptual != "none":
            _perceptual_per_image(inputs, perceptual)
        cands = inputs.reconstruction.candidates
        if cands is None:
            raise MetricUnavailable(
                "needs every attack initialisation's reconstruction (Reconstruction.candidates), "
                "which this attack did not keep"
            )
        gt = inputs.truth_images
        if cands.ndim != 5 or cands.shape[2:] != gt.shape[1:]:
            raise MetricUnavailable(f"candidates of shape {tuple(cands.shape)} do not match the images")
        opts = inputs.options
        rates = leakage_rates(
            cands,
            gt,
            matching=opts.matching,
            perceptual=perceptual,
            psnr_threshold=opts.psnr_threshold,
            perceptual_threshold=opts.lpips_threshold,
            lpips_weights=opts.lpips_weights,
            stlpips_weights=opts.stlpips_weights,
            device=inputs.device,
        )
        return rates.per_sample

    return _leakage_spec("wsrr", variant, compute, reduction="max", needs=frozenset({Need.CANDIDATES}))


def _leakage_spec(
    rate: Literal["brr", "wsrr"],
    variant: str,
    compute: Callable[[MetricInputs], Values],
    *,
    reduction: Literal["mean", "max"] = "mean",
    needs: frozenset[Need] = frozenset(),
) -> MetricSpec:
    """The spec of one leakage rate in one variant: named after both (``brr_stlpips``), computed
    when ``[metrics] leakage`` lists the variant."""
    title, description = _LEAKAGE_TEXT[variant][rate]
    return MetricSpec(
        rate + LEAKAGE_VARIANTS[variant][1],
        title,
        description,
        higher_is_better=True,
        compute=compute,
        reduction=reduction,
        needs=_LEAKAGE_NEEDS[variant] | needs,
        enabled=lambda options: variant in options.leakage,
        fmt=".4f",
    )


_LEAKAGE_NEEDS = {
    "lpips": frozenset({Need.LPIPS_WEIGHTS}),
    "stlpips": frozenset({Need.STLPIPS_WEIGHTS}),
    "psnr": frozenset[Need](),
}
#: variant -> leakage rate -> (title, description)
_LEAKAGE_TEXT: dict[str, dict[str, tuple[str, str]]] = {
    "lpips": {
        "brr": (
            "BRR",
            "Leak indicator PSNR > tau1 and LPIPS < tau2 (Du et al., USENIX Security 2025, App. C-II; "
            "18 dB, 0.1 by default); the mean is the batch reconstruction rate (BRR).",
        ),
        "wsrr": (
            "WSRR",
            "Per sample: the fraction of the attack's initialisations whose reconstruction leaks it "
            "(PSNR > tau1 and LPIPS < tau2); summarised by the maximum, the worst-sample reconstruction "
            "rate (WSRR, Du et al., USENIX Security 2025, App. C-II).",
        ),
    },
    "stlpips": {
        "brr": (
            "BRR (ST-LPIPS variant)",
            "BRR variant with ST-LPIPS in place of LPIPS (same threshold, not calibrated for it); "
            "not the paper's BRR.",
        ),
        "wsrr": (
            "WSRR (ST-LPIPS variant)",
            "WSRR variant with ST-LPIPS in place of LPIPS; not the paper's WSRR. Summarised by the maximum.",
        ),
    },
    "psnr": {
        "brr": (
            "BRR (PSNR only)",
            "BRR variant with the PSNR test only (PSNR > tau1); not the paper's BRR.",
        ),
        "wsrr": (
            "WSRR (PSNR only)",
            "WSRR variant with the PSNR test only; not the paper's WSRR. Summarised by the maximum.",
        ),
    },
}


def _iip(distance: str) -> MetricSpec:
    """IIP (Yin et al., CVPR 2021) against the reference images, with one distance."""

    def compute(inputs: MetricInputs) -> Values:
        refs = inputs.reference_images
        if refs is None:  # pragma: no cover - evaluate skips the metric without reference images
            raise MetricUnavailable("needs reference images (iip_candidates)")
        opts = inputs.options
        return iip(
            inputs.preds,
            inputs.target,
            refs.detach().float().cpu(),
            distance=distance,
            lpips_weights=opts.lpips_weights,
            stlpips_weights=opts.stlpips_weights,
            device=inputs.device,
        )

    def enabled(options: MetricsConfig) -> bool:
        return options.iip_distance == distance

    name, title, description, needs = _IIP[distance]
    return MetricSpec(
        name,
        title,
        description,
        higher_is_better=True,
        compute=compute,
        needs=frozenset({Need.REFERENCE_IMAGES, *needs}),
        fmt=".4f",
        enabled=enabled,
    )


_IIP: dict[str, tuple[str, str, str, tuple[Need, ...]]] = {
    "mse": (
        "iip",
        "IIP (pixel MSE)",
        "Image identifiability precision (Yin et al., CVPR 2021): 1 when the reconstruction's nearest "
        "neighbour in pixel MSE among the ground truth and candidate images is its own ground truth; "
        "the mean is the IIP.",
        (),
    ),
    "lpips": (
        "iip_lpips",
        "IIP (LPIPS)",
        "IIP with the official LPIPS distance (Yin et al., CVPR 2021); needs the AlexNet weights.",
        (Need.LPIPS_WEIGHTS, Need.RGB_OR_GRAY),
    ),
    "stlpips": (
        "iip_stlpips",
        "IIP (ST-LPIPS)",
        "IIP with the ST-LPIPS distance (not LPIPS); needs its weight file.",
        (Need.STLPIPS_WEIGHTS, Need.RGB_OR_GRAY),
    ),
}


def _rdlv(inputs: MetricInputs) -> Values:
    h, w = inputs.preds.shape[-2:]
    if min(h, w) < SSIM_MIN_SIZE:
        raise MetricUnavailable(f"SSIM needs images of at least 11x11, got {h}x{w}")
    if inputs.prior is None:  # pragma: no cover - evaluate skips the metric without a prior image
        raise MetricUnavailable("needs a prior image (rdlv_prior)")
    return rdlv(inputs.preds, inputs.target, inputs.prior.detach().float().cpu())


def _label_accuracy(inputs: MetricInputs) -> Values:
    labels = inputs.reconstruction.labels
    if labels is None:  # pragma: no cover - evaluate checks Need.LABELS first
        raise MetricUnavailable("the attack does not infer labels")
    score = label_accuracy(labels.cpu(), inputs.truth.labels.cpu())
    return [float(v) for v in score.per_sample.tolist()]


register_metric(
    MetricSpec(
        "mse",
        "MSE",
        "Mean squared error per image in [0, 1] image space.",
        higher_is_better=False,
        compute=pairwise(mse),
        fmt=".2e",
    )
)
register_metric(
    MetricSpec(
        "mae",
        "MAE",
        "Mean absolute error per image in [0, 1] image space.",
        higher_is_better=False,
        compute=pairwise(mae),
        fmt=".2e",
    )
)
register_metric(
    MetricSpec(
        "psnr",
        "PSNR",
        "Peak signal-to-noise ratio in dB (data range 1); inf for identical images.",
        higher_is_better=True,
        compute=pairwise(psnr),
        unit="dB",
        fmt=".2f",
        headline=True,
    )
)
register_metric(
    MetricSpec(
        "exact",
        "Exact recoveries",
        f"Ground-truth images recovered exactly (PSNR >= {EXACT_PSNR:g} dB or maximum pixel error < 1/255), "
        "counted under their own maximum-cardinality matching (each reconstruction counts for one image; "
        "Hopcroft-Karp on the 'is exact' graph), not the minimum-MSE (Hungarian) matching of the other "
        "metrics, which can show fewer; per image 1 or 0, summarised by the sum (the count of "
        "count_exact, the same function).",
        higher_is_better=True,
        compute=lambda inputs: exact_recovery(inputs.reconstruction.images, inputs.truth_images),
        reduction="sum",
        fmt=".0f",
    )
)
register_metric(
    MetricSpec(
        "ssim",
        "SSIM",
        "Structural similarity (Wang et al., IEEE TIP 2004), 11x11 Gaussian window, sigma 1.5.",
        higher_is_better=True,
        compute=_ssim,
        fmt=".4f",
        headline=True,
    )
)
register_metric(
    _perceptual_spec(
        "lpips",
        "LPIPS",
        "LPIPS v0.1, AlexNet (Zhang et al., CVPR 2018); needs torchvision's ImageNet AlexNet weights.",
        _lpips,
        Need.LPIPS_WEIGHTS,
    )
)
register_metric(
    _perceptual_spec(
        "stlpips",
        "ST-LPIPS",
        "ST-LPIPS, AlexNet shift-tolerant (Ghildyal & Liu, ECCV 2022); not LPIPS; needs its weight file.",
        _stlpips,
        Need.STLPIPS_WEIGHTS,
        caveat="not LPIPS",
    )
)
for _variant in LEAKAGE_VARIANTS:
    register_metric(_brr(_variant))
    register_metric(_wsrr(_variant))
for _distance in ("mse", "lpips", "stlpips"):
    register_metric(_iip(_distance))
register_metric(
    MetricSpec(
        "rdlv",
        "RDLV (SSIM)",
        "Relative data leakage value (Hatamizadeh et al., IEEE TMI 2023): "
        "(SSIM(recon, x) - SSIM(prior, x)) / SSIM(prior, x); > 0 means the reconstruction reveals "
        "more than the prior image.",
        higher_is_better=True,
        compute=_rdlv,
        needs=frozenset({Need.PRIOR_IMAGE}),
        fmt=".4f",
    )
)
register_metric(
    MetricSpec(
        "label_accuracy",
        "Label accuracy",
        "Fraction of the true labels recovered, compared as multisets (order-free).",
        higher_is_better=True,
        compute=_label_accuracy,
        fmt=".4f",
        needs=frozenset({Need.LABELS}),
        headline=True,
    )
)
