"""Mean absolute error per image, computed in float64."""

from __future__ import annotations

import torch  # noqa: F401  (the doctest uses it)
from torch import Tensor

from gradinv.metrics.functional._checks import check_image_pair
from gradinv.metrics.functional.mse import per_image_mean

__all__ = ["mae"]


def mae(preds: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error of image ``i`` of ``preds`` against image ``i`` of ``target``: the
    arguments and the float64 ``(N,)`` result are those of :func:`~gradinv.metrics.functional.mse.mse`,
    with absolute in place of squared differences.

    >>> x = torch.zeros(2, 1, 4, 4)
    >>> mae(x, x + torch.tensor([0.25, -0.5]).view(2, 1, 1, 1)).tolist()
    [0.25, 0.5]
    """
    check_image_pair(preds, target, metric="MAE")
    return per_image_mean(preds, target, Tensor.abs)
