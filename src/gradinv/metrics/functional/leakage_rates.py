"""Sample-level leakage rates of Du, Hu, Wang, Sun, Gong, Ren and Chen, "SoK: On Gradient Leakage in
Federated Learning", USENIX Security 2025, Appendix C-II.

A reconstructed sample ``x'`` *leaks* its ground truth ``x`` when
``PSNR(x, x') > tau_1  and  LPIPS(x, x') < tau_2`` (the paper uses ``tau_1 = 18`` dB and
``tau_2 = 0.1`` on CIFAR-10).

* **BRR** (batch reconstruction rate): the fraction of a batch's samples that leak.
* **WSRR** (worst-sample reconstruction rate): the likelihood that the most vulnerable sample is
  reconstructed, over several independent attack initialisations (the paper uses 10): with
  ``L[k, i]`` the indicator of sample ``i`` under initialisation ``k``, ``WSRR = max_i mean_k L[k, i]``.
  (Read literally from the paper's wording; the paper gives no formula.)

The perceptual test needs official LPIPS. Without its weights :class:`~gradinv.errors.MetricUnavailable`
is raised — nothing is substituted. Two clearly different variants are offered on request:
``perceptual = "stlpips"`` (ST-LPIPS, Ghildyal & Liu, ECCV 2022, with the same threshold, which was
not calibrated for it) and ``perceptual = "none"`` (PSNR only).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor

from gradinv.errors import ConfigError, DataError, unknown_name
from gradinv.metrics.functional._checks import check_image_pair
from gradinv.metrics.functional.lpips import lpips
from gradinv.metrics.functional.matching import match
from gradinv.metrics.functional.psnr import psnr
from gradinv.metrics.functional.stlpips import stlpips

__all__ = [
    "LPIPS_THRESHOLD",
    "PERCEPTUAL_TESTS",
    "PSNR_THRESHOLD",
    "LeakageRates",
    "brr",
    "leakage_indicator",
    "leakage_rates",
    "reconstruction_indicator",
    "wsrr",
]

#: Thresholds of Du et al. (CIFAR-10): PSNR above 18 dB and LPIPS below 0.1.
PSNR_THRESHOLD = 18.0
LPIPS_THRESHOLD = 0.1
Perceptual = Literal["lpips", "stlpips", "none"]
PERCEPTUAL_TESTS: tuple[str, ...] = get_args(Perceptual)


def reconstruction_indicator(
    psnr_values: Tensor,
    perceptual_values: Tensor | None,
    *,
    psnr_threshold: float = PSNR_THRESHOLD,
    perceptual_threshold: float = LPIPS_THRESHOLD,
) -> Tensor:
    """``1[PSNR > tau_1 and D < tau_2]`` per sample (float64 0/1); ``D`` omitted (PSNR only) when ``None``.

    >>> reconstruction_indicator(torch.tensor([25.0, 25.0, 12.0]), torch.tensor([0.05, 0.3, 0.01])).tolist()
    [1.0, 0.0, 0.0]
    """
    ok = psnr_values.double() > psnr_threshold
    if perceptual_values is not None:
        if perceptual_values.shape != psnr_values.shape:
            raise DataError(
                f"Expected one perceptual distance per PSNR value ({tuple(psnr_values.shape)}), "
                f"but got {tuple(perceptual_values.shape)}."
            )
        ok = ok & (perceptual_values.double() < perceptual_threshold)
    return ok.double()


def _check(perceptual: str, psnr_threshold: float, perceptual_threshold: float) -> None:
    if perceptual not in PERCEPTUAL_TESTS:
        raise ConfigError(unknown_name("perceptual test", perceptual, PERCEPTUAL_TESTS))
    if not perceptual_threshold > 0:
        raise ConfigError(f"Expected a positive perceptual threshold, but got {perceptual_threshold!r}.")
    if psnr_threshold != psnr_threshold:  # NaN
        raise ConfigError("Expected a PSNR threshold in dB, but got NaN.")


def leakage_indicator(
    preds: Tensor,
    target: Tensor,
    *,
    perceptual: str = "lpips",
    psnr_threshold: float = PSNR_THRESHOLD,
    perceptual_threshold: float = LPIPS_THRESHOLD,
    lpips_weights: str | os.PathLike[str] | None = None,
    stlpips_weights: str | os.PathLike[str] | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Per matched pair, 1.0 when reconstruction ``preds[i]`` leaks ``target[i]`` (float64 ``(N,)``).

    ``perceptual`` picks the second test: ``"lpips"`` (the paper), ``"stlpips"`` or ``"none"``.
    Its mean is the BRR.

    >>> x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    >>> leakage_indicator(torch.stack([x[0], 1 - x[1]]), x, perceptual="none").tolist()
    [1.0, 0.0]
    """
    _check(perceptual, psnr_threshold, perceptual_threshold)
    check_image_pair(preds, target, metric="BRR")
    p = psnr(preds, target)
    d: Tensor | None = None
    if perceptual == "lpips":
        d = lpips(preds, target, backbone_weights=lpips_weights, device=device)
    elif perceptual == "stlpips":
        d = stlpips(preds, target, weights=stlpips_weights, device=device)
    return reconstruction_indicator(
        p, d, psnr_threshold=psnr_threshold, perceptual_threshold=perceptual_threshold
    ).cpu()


def brr(preds: Tensor, target: Tensor, **kwargs: object) -> float:
    """Batch reconstruction rate: the mean of :func:`leakage_indicator` (same keyword arguments)."""
    return float(leakage_indicator(preds, target, **kwargs).mean())  # type: ignore[arg-type]


@dataclass(frozen=True)
class LeakageRates:
    """Leakage of every ground-truth sample under every attack initialisation.

    ``indicator[k, i]`` is 1.0 when initialisation ``k``'s reconstruction matched to ground-truth
    sample ``i`` leaks it (0.0 when unmatched). ``per_sample[i]`` is sample ``i``'s rate over the
    initialisations; ``wsrr`` its maximum; ``brr_per_candidate[k]`` each initialisation's BRR."""

    indicator: Tensor
    per_sample: Tensor
    brr_per_candidate: Tensor
    wsrr: float


def leakage_rates(
    candidates: Tensor,
    target: Tensor,
    *,
    matching: str = "mse",
    perceptual: str = "lpips",
    psnr_threshold: float = PSNR_THRESHOLD,
    perceptual_threshold: float = LPIPS_THRESHOLD,
    lpips_weights: str | os.PathLike[str] | None = None,
    stlpips_weights: str | os.PathLike[str] | None = None,
    device: torch.device | str | None = None,
) -> LeakageRates:
    """BRR of every initialisation and the WSRR over all of them.

    Args:
        candidates: every initialisation's reconstruction ``(K, n, C, H, W)`` in ``[0, 1]``
            (``Reconstruction.candidates``); each is matched to ``target`` on its own (Hungarian,
            ``matching`` cost).
        target: the ground truth ``(N, C, H, W)``.
        perceptual: ``"lpips"`` (the paper), ``"stlpips"`` or ``"none"`` (PSNR only).

    >>> x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    >>> runs = torch.stack([torch.stack([x[0], 1 - x[1]]), torch.stack([1 - x[0], 1 - x[1]])])
    >>> r = leakage_rates(runs, x, perceptual="none")
    >>> r.per_sample.tolist(), r.wsrr, r.brr_per_candidate.tolist()
    ([0.5, 0.0], 0.5, [0.5, 0.0])
    """
    _check(perceptual, psnr_threshold, perceptual_threshold)
    if not isinstance(candidates, Tensor) or candidates.ndim != 5:
        got = tuple(candidates.shape) if isinstance(candidates, Tensor) else type(candidates).__name__
        raise DataError(
            f"Expected the candidates of every initialisation as (K, N, C, H, W), but got {got}. "
            "Use Reconstruction.candidates (attacks with restarts fill it)."
        )
    if len(candidates) == 0:
        raise DataError("Expected at least one initialisation's reconstruction, but got K = 0.")
    gt = target.detach().float().cpu()
    rows = []
    for cand in candidates.detach().float().cpu().clamp(0, 1):
        m = match(cand, gt, criterion=matching)
        row = torch.zeros(len(gt), dtype=torch.float64)
        row[m.truth_index] = leakage_indicator(
            cand[m.recon_index],
            gt[m.truth_index],
            perceptual=perceptual,
            psnr_threshold=psnr_threshold,
            perceptual_threshold=perceptual_threshold,
            lpips_weights=lpips_weights,
            stlpips_weights=stlpips_weights,
            device=device,
        )
        rows.append(row)
    ind = torch.stack(rows)
    per_sample = ind.mean(dim=0)
    return LeakageRates(ind, per_sample, ind.mean(dim=1), float(per_sample.max()))


def wsrr(candidates: Tensor, target: Tensor, **kwargs: object) -> float:
    """Worst-sample reconstruction rate: :attr:`LeakageRates.wsrr` of :func:`leakage_rates`."""
    return leakage_rates(candidates, target, **kwargs).wsrr  # type: ignore[arg-type]
