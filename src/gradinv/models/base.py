"""Shared shape of the convolutional classifiers: a feature ``body``, ``flatten``, one ``fc`` layer.

>>> from torch import nn
>>> net = BodyClassifier(nn.Conv2d(3, 2, 3), features=2 * 4 * 4, num_classes=5)
>>> net(torch.zeros(1, 3, 6, 6)).shape
torch.Size([1, 5])
"""

from __future__ import annotations

import torch  # noqa: F401  (the doctest uses it)
from torch import Tensor, nn

__all__ = ["BodyClassifier"]


class BodyClassifier(nn.Module):
    """``body`` -> ``flatten`` -> ``fc`` (logits): a feature extractor and a linear classifier on its
    flattened output of ``features`` values."""

    def __init__(self, body: nn.Module, *, features: int, num_classes: int) -> None:
        super().__init__()
        self.body = body
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(features, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.fc(self.flatten(self.body(x)))
        return out
