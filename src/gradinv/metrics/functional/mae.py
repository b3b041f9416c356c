"""Mean absolute error per image, computed in float64."""

from __future__ import annotations

import torch
from torch import Tensor

from gradinv.metrics.functional._checks import check_image_pair

__all__ = ["mae"]


def mae(preds: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error of image ``i`` of ``preds`` against image ``i`` of ``target``.

    Args:
        preds: reconstructed images ``(N, C, H, W)`` in ``[0, 1]``.
        target: ground-truth images of the same shape.

    Returns:
        float64 tensor of shape ``(N,)``.

    >>> x = torch.zeros(2, 1, 4, 4)
    >>> mae(x, x + torch.tensor([0.25, -0.5]).view(2, 1, 1, 1)).tolist()
    [0.25, 0.5]
    """
    check_image_pair(preds, target, metric="MAE")
    diff = preds.to(torch.float64) - target.to(torch.float64)
    return diff.abs().flatten(1).mean(dim=1)
