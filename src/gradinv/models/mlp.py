"""A multi-layer perceptron on flattened images: Linear layers with bias and an activation between.

With ``hidden=()`` it is multinomial logistic regression. Fully connected first layers are the
setting of analytic attacks that recover inputs exactly from a linear layer's gradient
(Phong, Aono, Hayashi, Wang, Moriai, "Privacy-Preserving Deep Learning via Additively
Homomorphic Encryption", IEEE TIFS 2018; Geiping et al., NeurIPS 2020, §4).

>>> MLP(ModelShape(10, in_channels=1, image_size=(28, 28)), hidden=(64, 32))
MLP(
  (net): Sequential(
    (0): Flatten(start_dim=1, end_dim=-1)
    (1): Linear(in_features=784, out_features=64, bias=True)
    (2): ReLU()
    (3): Linear(in_features=64, out_features=32, bias=True)
    (4): ReLU()
    (5): Linear(in_features=32, out_features=10, bias=True)
  )
)
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from torch import Tensor, nn

from gradinv.errors import ConfigError
from gradinv.models.base import ModelShape, activation_factory
from gradinv.models.registry import register_model

__all__ = ["MLP"]


@register_model("mlp", paper="(generic fully connected network)")
class MLP(nn.Module):
    """multi-layer perceptron on flattened images (options: hidden widths, activation).

    ``Flatten`` -> (``Linear`` -> activation) per hidden width -> ``Linear`` (logits); ``activation``
    is any name of :data:`gradinv.models.base.ACTIVATIONS`."""

    def __init__(
        self, shape: ModelShape, *, hidden: Sequence[int] = (256,), activation: str = "relu"
    ) -> None:
        super().__init__()
        if (
            isinstance(hidden, (str, bytes))
            or not isinstance(hidden, Sequence)
            or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden)
        ):
            raise ConfigError(
                f"Expected `hidden` to be a list of layer widths (ints >= 1), but got {hidden!r}. "
                "Use e.g. hidden = [256], or [] for logistic regression."
            )
        act = activation_factory(activation)
        widths = [shape.input_features, *hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for fan_in, fan_out in itertools.pairwise(widths):
            layers += [nn.Linear(fan_in, fan_out), act()]
        layers.append(nn.Linear(widths[-1], shape.num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.net(x)
        return out
