"""The options of scoring, :class:`MetricsConfig` (the ``[metrics]`` table of an experiment file).

It lives with the metrics (below the config layer) and is re-exported by :mod:`gradinv.config`.
:func:`gradinv.metrics.evaluate` takes it as one object.

>>> MetricsConfig(lpips="off", leakage=["psnr"]).leakage
('psnr',)
>>> MetricsConfig(leakage=("lpsip",))  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
gradinv.errors.ConfigError: Unknown leakage-rate variant 'lpsip'. Did you mean 'lpips'? ...
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gradinv.errors import ConfigError, unknown_name

__all__ = ["LEAKAGE_VARIANTS", "MetricsConfig"]

#: BRR/WSRR variants: the perceptual test and the metric-name suffix. "lpips" is the paper's.
LEAKAGE_VARIANTS: dict[str, tuple[str, str]] = {
    "lpips": ("lpips", ""),
    "stlpips": ("stlpips", "_stlpips"),
    "psnr": ("none", "_psnr"),
}

_CHOICES: dict[str, tuple[str, ...]] = {
    "matching": ("mse", "psnr", "ssim"),
    "lpips": ("auto", "on", "off"),
    "stlpips": ("auto", "on", "off"),
    "iip_distance": ("mse", "lpips", "stlpips"),
    "rdlv_prior": ("mean", "gray"),
}


@dataclass(frozen=True)
class MetricsConfig:
    """Scoring. ``lpips``: ``auto`` computes official LPIPS when its AlexNet weights are present and
    reports it as unavailable (with the reason) otherwise; ``on`` makes missing weights an error.
    ``stlpips`` likewise for ST-LPIPS (a different metric, always labelled ST-LPIPS).
    ``lpips_weights`` / ``stlpips_weights`` name the weight file (or its folder); when unset it is
    searched for as described in :mod:`gradinv.weights`.

    ``leakage`` lists the BRR/WSRR variants (``lpips`` is the paper's test: PSNR > ``psnr_threshold``
    and LPIPS < ``lpips_threshold``; ``stlpips`` and ``psnr`` are labelled variants). ``iip`` scores
    image identifiability against up to ``iip_candidates`` other images of the data source;
    ``rdlv`` scores the relative data leakage value against the ``rdlv_prior`` image."""

    matching: Literal["mse", "psnr", "ssim"] = "mse"
    lpips: Literal["auto", "on", "off"] = "auto"
    stlpips: Literal["auto", "on", "off"] = "auto"
    lpips_weights: str | None = None
    stlpips_weights: str | None = None
    leakage: tuple[str, ...] = ("lpips",)
    psnr_threshold: float = 18.0
    lpips_threshold: float = 0.1
    iip: bool = False
    iip_distance: Literal["mse", "lpips", "stlpips"] = "mse"
    iip_candidates: int = 1000
    rdlv: bool = False
    rdlv_prior: Literal["mean", "gray"] = "mean"

    def __post_init__(self) -> None:
        object.__setattr__(self, "leakage", tuple(self.leakage))
        for key, valid in _CHOICES.items():
            value = getattr(self, key)
            if value not in valid:
                raise ConfigError(
                    f"Expected `{key}` in [metrics] to be one of {', '.join(map(repr, valid))}, but got "
                    f"{value!r}."
                )
        bad = [v for v in self.leakage if v not in LEAKAGE_VARIANTS]
        if bad:
            raise ConfigError(unknown_name("leakage-rate variant", bad[0], LEAKAGE_VARIANTS))
