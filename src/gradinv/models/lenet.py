"""The LeNet variant of DLG: Zhu, Liu, Han, "Deep Leakage from Gradients", NeurIPS 2019.

Three 5x5 convolutions with 12 channels (padding 2, strides 2, 2, 1), each followed by a sigmoid,
then one linear layer. Sigmoid activations keep the model twice differentiable everywhere, which
DLG's L-BFGS gradient matching relies on. Originally used with every weight and bias drawn from
U(-0.5, 0.5) (scheme ``"uniform"``) and unnormalised inputs in [0, 1].

>>> LeNet(ModelShape(10)).fc.in_features
768
"""

from __future__ import annotations

import math

from torch import nn

from gradinv.models.base import BodyClassifier, ModelShape
from gradinv.models.registry import register_model

__all__ = ["LeNet"]


_DLG = 'Zhu, Liu, Han, "Deep Leakage from Gradients", NeurIPS 2019'


@register_model("lenet", paper=_DLG, default_init="uniform")
class LeNet(BodyClassifier):
    """DLG's LeNet: 3 conv 5x5 (12 ch) + sigmoid, 1 linear layer.

    ``body`` (conv-sigmoid x3) -> ``flatten`` -> ``fc`` (logits)."""

    def __init__(self, shape: ModelShape) -> None:
        body = nn.Sequential(
            nn.Conv2d(shape.in_channels, 12, kernel_size=5, padding=2, stride=2),
            nn.Sigmoid(),
            nn.Conv2d(12, 12, kernel_size=5, padding=2, stride=2),
            nn.Sigmoid(),
            nn.Conv2d(12, 12, kernel_size=5, padding=2, stride=1),
            nn.Sigmoid(),
        )
        h, w = shape.image_size
        features = 12 * math.ceil(h / 4) * math.ceil(w / 4)
        super().__init__(body, features=features, num_classes=shape.num_classes)
