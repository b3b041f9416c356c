"""Relative data leakage value (RDLV) of Hatamizadeh, Yin, Molchanov, Myronenko, Li, Dogra, Feng,
Flores, Kautz, Xu and Roth, "Do Gradient Inversion Attacks Make Federated Learning Unsafe?", IEEE
Transactions on Medical Imaging, 2023.

How much closer a reconstruction is to the original than a *prior image* (what an attacker knows
without the update, e.g. an average image of the data):

``RDLV = (SSIM(x_rec, x) - SSIM(x_prior, x)) / SSIM(x_prior, x)``

Positive values mean the reconstruction tells more about ``x`` than the prior; 0 means no gain.
As in the authors' NVFlare implementation the base similarity is SSIM. :func:`rdlv` scores matched
pairs; :func:`rdlv_best` reduces like NVFlare's filter (for each original, the best over all
reconstructions).

The prior is configurable. Defaults (ours; the paper uses a prior image of its data set):
:func:`prior_image` gives the mean image of a data set (e.g. the surrogate) or a constant grey.
A constant grey prior has SSIM close to 0 with any image (its local variance is 0), which makes
RDLV large and unstable; prefer the mean image. Where ``SSIM(x_prior, x) <= 0`` the ratio is
undefined and the value is NaN.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from gradinv.errors import ConfigError, DataError
from gradinv.metrics.functional._checks import check_image_pair
from gradinv.metrics.functional.ssim import ssim

__all__ = ["PRIORS", "prior_image", "rdlv", "rdlv_best"]

PRIORS: tuple[str, ...] = ("mean", "gray")


def prior_image(
    kind: Literal["mean", "gray"] = "mean",
    *,
    images: Tensor | None = None,
    shape: tuple[int, int, int] | None = None,
) -> Tensor:
    """A prior image ``(C, H, W)``: the mean of ``images`` (``"mean"``) or constant 0.5 (``"gray"``).

    >>> prior_image("gray", shape=(1, 2, 2)).tolist()
    [[[0.5, 0.5], [0.5, 0.5]]]
    >>> prior_image("mean", images=torch.stack([torch.zeros(1, 2, 2), torch.ones(1, 2, 2)]))[0, 0, 0].item()
    0.5
    """
    if kind == "mean":
        if images is None or images.ndim != 4 or len(images) == 0:
            raise DataError(
                "Expected `images` (M, C, H, W) with M >= 1 for a mean prior image, but got "
                f"{None if images is None else tuple(images.shape)}. Pass the surrogate/dataset images, "
                "or use kind = 'gray'."
            )
        return images.detach().double().mean(dim=0).float()
    if kind == "gray":
        if shape is None:
            if images is None:
                raise DataError(
                    "Expected `shape` (C, H, W) or `images` for a grey prior image, but got neither."
                )
            shape = tuple(images.shape[1:])  # type: ignore[assignment]
        assert shape is not None
        return torch.full(shape, 0.5)
    raise ConfigError(f"Expected a prior kind in {PRIORS}, but got {kind!r}.")


def _expand_prior(prior: Tensor, target: Tensor) -> Tensor:
    p = prior.detach().to(target.device, target.dtype)
    if p.ndim == 3:
        p = p.unsqueeze(0)
    if p.ndim != 4 or p.shape[1:] != target.shape[1:] or len(p) not in (1, len(target)):
        raise DataError(
            f"Expected a prior image of shape {tuple(target.shape[1:])} (or one per original), but got "
            f"{tuple(prior.shape)}."
        )
    return p.expand_as(target)


def _relative(sim_rec: Tensor, sim_prior: Tensor) -> Tensor:
    out = (sim_rec - sim_prior) / sim_prior
    return torch.where(sim_prior > 0, out, torch.full_like(out, torch.nan))


def rdlv(preds: Tensor, target: Tensor, prior: Tensor) -> Tensor:
    """RDLV of each matched pair, ``(SSIM(preds[i], x_i) - SSIM(prior, x_i)) / SSIM(prior, x_i)``.

    Args:
        preds: matched reconstructions ``(N, C, H, W)`` in ``[0, 1]``, at least 11x11.
        target: the originals, same shape.
        prior: the prior image ``(C, H, W)`` (or ``(N, C, H, W)``, one per original).

    Returns:
        float64 ``(N,)``; NaN where the prior's SSIM is not positive.
    """
    check_image_pair(preds, target, metric="RDLV")
    p = _expand_prior(prior, target)
    return _relative(ssim(preds, target), ssim(p, target))


def rdlv_best(recons: Tensor, target: Tensor, prior: Tensor) -> Tensor:
    """For each original, the highest RDLV over all reconstructions (NVFlare's ``reduce = "max"``).

    Args:
        recons: reconstructions ``(n, C, H, W)``, any order; ``target``: originals ``(N, C, H, W)``.

    Returns:
        float64 ``(N,)``.
    """
    if recons.ndim != 4 or recons.shape[1:] != target.shape[1:]:
        raise DataError(
            f"Expected reconstructions (n, {', '.join(map(str, target.shape[1:]))}), "
            f"but got {tuple(recons.shape)}."
        )
    p = _expand_prior(prior, target)
    base = ssim(p, target)
    best = torch.full((len(target),), -torch.inf, dtype=torch.float64)
    for r in recons:
        sim = ssim(r.unsqueeze(0).expand_as(target).to(target.dtype), target).cpu()
        best = torch.maximum(best, _relative(sim, base.cpu()).nan_to_num(nan=-torch.inf))
    return torch.where(torch.isfinite(best), best, torch.full_like(best, torch.nan))
