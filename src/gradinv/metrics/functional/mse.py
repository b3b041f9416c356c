"""Mean squared error per image, computed in float64."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from gradinv.metrics.functional._checks import check_image_pair

__all__ = ["mse"]


def per_image_mean(preds: Tensor, target: Tensor, elementwise: Callable[[Tensor], Tensor]) -> Tensor:
    """Per-image mean over (C, H, W) of ``elementwise(preds - target)``, in float64 (unchecked)."""
    diff = preds.to(torch.float64) - target.to(torch.float64)
    return elementwise(diff).flatten(1).mean(dim=1)


def _mse_update(preds: Tensor, target: Tensor) -> Tensor:
    """Per-image mean over (C, H, W) of the squared difference, in float64."""
    return per_image_mean(preds, target, Tensor.square)


def mse(preds: Tensor, target: Tensor) -> Tensor:
    """Mean squared error of image ``i`` of ``preds`` against image ``i`` of ``target``.

    Args:
        preds: reconstructed images ``(N, C, H, W)`` in ``[0, 1]``.
        target: ground-truth images of the same shape.

    Returns:
        float64 tensor of shape ``(N,)``.

    >>> x = torch.zeros(2, 1, 4, 4)
    >>> mse(x, x + torch.tensor([0.1, 0.5]).view(2, 1, 1, 1)).tolist()  # doctest: +ELLIPSIS
    [0.0100..., 0.25]
    """
    check_image_pair(preds, target, metric="MSE")
    return _mse_update(preds, target)
