"""A multi-layer perceptron on flattened images: Linear layers with bias and an activation between.

With ``hidden=()`` it is multinomial logistic regression. Fully connected first layers are the
setting of analytic attacks that recover inputs exactly from a linear layer's gradient
(Phong, Aono, Hayashi, Wang, Moriai, "Privacy-Preserving Deep Learning via Additively
Homomorphic Encryption", IEEE TIFS 2018; Geiping et al., NeurIPS 2020, §4).

>>> MLP(num_classes=10, in_channels=1, image_size=(28, 28), hidden=(64, 32))
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

from gradinv._checks import check_choice
from gradinv.errors import ConfigError
from gradinv.models.registry import ModelSpec, register_model

__all__ = ["ACTIVATIONS", "MLP"]

#: Activation names accepted by :class:`MLP`.
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


class MLP(nn.Module):
    """``Flatten`` -> (``Linear`` -> activation) per hidden width -> ``Linear`` (logits)."""

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int = 3,
        image_size: tuple[int, int] = (32, 32),
        hidden: Sequence[int] = (256,),
        activation: str = "relu",
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
        check_choice("activation", activation, ACTIVATIONS)
        widths = [in_channels * image_size[0] * image_size[1], *hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for fan_in, fan_out in itertools.pairwise(widths):
            layers += [nn.Linear(fan_in, fan_out), ACTIVATIONS[activation]()]
        layers.append(nn.Linear(widths[-1], num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.net(x)
        return out


register_model(
    ModelSpec(
        name="mlp",
        builder=MLP,
        description="multi-layer perceptron on flattened images (options: hidden widths, activation)",
        paper="(generic fully connected network)",
        default_init="default",
        default_normalization="none",
        options=("hidden", "activation"),
    )
)
