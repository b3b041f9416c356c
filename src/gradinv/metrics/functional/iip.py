"""Image identifiability precision (IIP) of Yin, Mallya, Vahdat, Alvarez, Kautz and Molchanov,
"See through Gradients: Image Batch Recovery via GradInversion", CVPR 2021.

A reconstruction *identifies* its ground-truth image when, among a pool of candidate images (the
client's batch plus other images of the dataset), its nearest neighbour is that ground-truth image.
IIP is the fraction of reconstructions that do. Yin et al. measure the distance in deep-feature
spaces (LPIPS among them); Fowl et al. (2021) use pixels. Here the distance is chosen explicitly:

* ``"mse"`` (default): pixel mean squared error — model-free and the strictest;
* ``"lpips"``: official LPIPS (AlexNet), when its weights are available;
* ``"stlpips"``: ST-LPIPS (shift-tolerant; a different metric, labelled as such).

A perceptual distance whose weights are missing raises :class:`~gradinv.errors.MetricUnavailable`;
it is never replaced by another distance.

The pool is the ground truth followed by the candidates; candidates equal to a ground-truth image
(within half a grey level) are dropped, so passing the whole dataset, victim images included, is
fine. A tie between the ground truth and another image counts as not identified.
"""

from __future__ import annotations

import os
from typing import Literal, get_args

import torch
from torch import Tensor

from gradinv.errors import ConfigError, DataError, unknown_name
from gradinv.metrics.functional._checks import check_image_pair
from gradinv.metrics.functional.lpips import lpips
from gradinv.metrics.functional.mse import _mse_update
from gradinv.metrics.functional.stlpips import stlpips

__all__ = ["IIP_DISTANCES", "iip", "iip_pool", "pairwise_distance"]

Distance = Literal["mse", "lpips", "stlpips"]
IIP_DISTANCES: tuple[str, ...] = get_args(Distance)
#: Candidates closer than this (max absolute pixel difference) to a ground-truth image are that image.
SAME_IMAGE_TOL = 0.5 / 255


def _check_pool(pool: Tensor, like: Tensor, name: str) -> None:
    if not isinstance(pool, Tensor) or pool.ndim != 4 or not pool.is_floating_point():
        got = (
            f"shape {tuple(pool.shape)}, dtype {pool.dtype}"
            if isinstance(pool, Tensor)
            else type(pool).__name__
        )
        raise DataError(f"Expected `{name}` as float images (M, C, H, W) in [0, 1], but got {got}.")
    if pool.shape[1:] != like.shape[1:]:
        raise DataError(
            f"Expected `{name}` of image shape {tuple(like.shape[1:])} like the reconstructions, but got "
            f"{tuple(pool.shape[1:])}. Prepare the candidates at the attack's input size and channels."
        )


def pairwise_distance(
    preds: Tensor,
    pool: Tensor,
    *,
    distance: str = "mse",
    lpips_weights: str | os.PathLike[str] | None = None,
    stlpips_weights: str | os.PathLike[str] | None = None,
    device: torch.device | str | None = None,
    chunk: int = 256,
) -> Tensor:
    """Distances ``(N, M)`` (float64, CPU) of every image of ``preds`` to every image of ``pool``.

    >>> a = torch.zeros(1, 1, 2, 2); b = torch.stack([torch.zeros(1, 2, 2), torch.ones(1, 2, 2)])
    >>> pairwise_distance(a, b).tolist()
    [[0.0, 1.0]]
    """
    if distance not in IIP_DISTANCES:
        raise ConfigError(unknown_name("IIP distance", distance, IIP_DISTANCES))
    _check_pool(preds, pool, "preds")
    _check_pool(pool, preds, "pool")
    rows = []
    for p in preds.detach():
        row = []
        for s in range(0, len(pool), chunk):
            part = pool[s : s + chunk].detach()
            rep = p.unsqueeze(0).expand_as(part)
            if distance == "mse":
                row.append(_mse_update(rep, part))
            elif distance == "lpips":
                row.append(lpips(rep, part, backbone_weights=lpips_weights, device=device))
            else:
                row.append(stlpips(rep, part, weights=stlpips_weights, device=device))
        rows.append(torch.cat(row).double().cpu())
    return torch.stack(rows)


def iip_pool(target: Tensor, candidates: Tensor) -> Tensor:
    """The identification pool: ``target`` followed by the candidates that are not one of them."""
    _check_pool(candidates, target, "candidates")
    t = target.detach().to(candidates.device, candidates.dtype)
    same = torch.zeros(len(candidates), dtype=torch.bool, device=candidates.device)
    for img in t:
        same |= (candidates - img).abs().flatten(1).amax(dim=1) <= SAME_IMAGE_TOL
    return torch.cat([t, candidates[~same]])


def iip(
    preds: Tensor,
    target: Tensor,
    candidates: Tensor,
    *,
    distance: str = "mse",
    lpips_weights: str | os.PathLike[str] | None = None,
    stlpips_weights: str | os.PathLike[str] | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Per reconstruction, 1.0 when its nearest neighbour in the pool is its own ground truth.

    Args:
        preds: matched reconstructions ``(N, C, H, W)`` in ``[0, 1]``; ``preds[i]`` belongs to ``target[i]``.
        target: the ground-truth images ``(N, C, H, W)``.
        candidates: other images of the dataset ``(M, C, H, W)`` (may include the ground truth).
        distance: ``"mse"`` (pixels, default), ``"lpips"`` or ``"stlpips"``.

    Returns:
        float64 ``(N,)`` of 0.0 / 1.0; its mean is the IIP.

    >>> t = torch.stack([torch.full((1, 4, 4), v) for v in (0.1, 0.5, 0.9)])
    >>> others = torch.full((1, 1, 4, 4), 0.62)
    >>> recon = t + torch.tensor([0.05, 0.08, -0.02]).view(3, 1, 1, 1)  # 0.58 is nearer 0.62 than 0.5
    >>> iip(recon, t, others).tolist()
    [1.0, 0.0, 1.0]
    """
    check_image_pair(preds, target, metric="IIP")
    pool = iip_pool(target, candidates)
    d = pairwise_distance(
        preds,
        pool,
        distance=distance,
        lpips_weights=lpips_weights,
        stlpips_weights=stlpips_weights,
        device=device,
    )
    n = len(preds)
    own = d[torch.arange(n), torch.arange(n)]
    others = d.clone()
    others[torch.arange(n), torch.arange(n)] = torch.inf
    return (own < others.min(dim=1).values).double()
