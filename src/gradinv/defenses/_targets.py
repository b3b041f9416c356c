"""Label helpers for the data-stage defenses: integer labels to per-class probabilities."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradinv.errors import DataError

__all__ = ["as_probabilities", "num_classes_of"]


def num_classes_of(model: nn.Module) -> int:
    """The number of classes: ``out_features`` of the last ``nn.Linear`` (the classifier)."""
    last: nn.Linear | None = None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            last = m
    if last is None:
        raise DataError(
            f"Expected a model ending in an nn.Linear classifier to size soft labels, but "
            f"{type(model).__name__} has none. Pass soft labels (N, classes) instead of class indices."
        )
    return int(last.out_features)


def as_probabilities(targets: Tensor, num_classes: int, *, dtype: torch.dtype) -> Tensor:
    """``(N,)`` class indices as one-hot rows ``(N, classes)``; soft labels are returned as they are."""
    if targets.is_floating_point():
        if targets.ndim != 2:
            raise DataError(f"Expected soft labels of shape (N, classes), but got {tuple(targets.shape)}.")
        return targets
    return F.one_hot(targets, num_classes).to(dtype)
