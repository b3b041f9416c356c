"""A model as an FL engineer writes it: plain PyTorch, nothing from gradinv.

Audit it with::

    gradinv audit --model examples/audit/my_model.py:make_model --source npz:PATH/cifar10_test_jpeg_3k.npz

``gradinv`` calls ``make_model(num_classes=..., in_channels=...)`` (the parameters it names) and
expects an ``nn.Module`` mapping ``(N, C, 32, 32)`` images to ``(N, num_classes)`` logits.
"""

from __future__ import annotations

from torch import nn


class SmallCNN(nn.Module):
    """Two 5x5 convolutions with max-pooling, then two fully connected layers (32x32 inputs)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(2 * width * 8 * 8, 64),
            nn.ReLU(),
            nn.Linear(64, num_classes),
        )

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.classifier(self.features(x))


def make_model(num_classes: int = 10, in_channels: int = 3, width: int = 16) -> nn.Module:
    """A small CNN for 32x32 images (two conv layers, two FC layers)."""
    return SmallCNN(num_classes, in_channels, width)
