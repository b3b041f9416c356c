"""What the model builders share: the shape they are built for, the activation table, the
convolution size formula, and the ``body -> flatten -> fc`` classifier shape.

Every builder takes a :class:`ModelShape` (``num_classes`` logits from images
``(in_channels, *image_size)``) as its one positional argument; its keyword-only parameters are its
options (:func:`gradinv.models.register_model` reads them off the signature).

>>> from torch import nn
>>> net = BodyClassifier(nn.Conv2d(3, 2, 3), features=2 * 4 * 4, num_classes=5)
>>> net(torch.zeros(1, 3, 6, 6)).shape
torch.Size([1, 5])
>>> ModelShape(10, in_channels=1, image_size=(28, 28)).input_features
784
>>> conv_output_size(32, kernel=4, stride=2, padding=2)
17
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType

import torch  # noqa: F401  (the doctest uses it)
from torch import Tensor, nn

from gradinv._checks import check_choice
from gradinv.errors import ConfigError

__all__ = [
    "ACTIVATIONS",
    "BodyClassifier",
    "ModelShape",
    "activation_factory",
    "check_flag",
    "conv_output_size",
]


@dataclass(frozen=True)
class ModelShape:
    """What a model is built for: ``num_classes`` logits from images ``(in_channels, *image_size)``
    (``image_size`` is ``(height, width)``)."""

    num_classes: int
    in_channels: int = 3
    image_size: tuple[int, int] = (32, 32)

    @property
    def input_features(self) -> int:
        """Values in one flattened input image, ``C * H * W``."""
        return self.in_channels * self.image_size[0] * self.image_size[1]


def _leaky_relu() -> nn.Module:
    return nn.LeakyReLU(negative_slope=0.2)  # R-GAP's slope (invertible)


#: The activations a model option ``activation`` may name (one table for every model);
#: ``identity`` removes the non-linearity.
ACTIVATIONS: MappingProxyType[str, Callable[[], nn.Module]] = MappingProxyType(
    {
        "identity": nn.Identity,
        "leaky_relu": _leaky_relu,
        "relu": nn.ReLU,
        "sigmoid": nn.Sigmoid,
        "tanh": nn.Tanh,
    }
)


def activation_factory(name: str, *, fix: str = "") -> Callable[[], nn.Module]:
    """What makes the activation module ``name`` of :data:`ACTIVATIONS` (an unknown name is a
    ConfigError that lists the valid ones, with ``fix`` after it)."""
    return ACTIVATIONS[check_choice("activation", name, ACTIVATIONS, fix=fix)]


def check_flag(name: str, value: object) -> bool:
    """``value`` when it is a bool (a model option such as ``bias``)."""
    if not isinstance(value, bool):
        raise ConfigError(f"Expected `{name}` to be true or false, but got {value!r}.")
    return value


def conv_output_size(size: int, *, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """The side length a convolution (or pooling) of ``kernel``/``stride``/``padding`` leaves of
    ``size`` pixels (``<= 0``: nothing is left)."""
    return (size + 2 * padding - kernel) // stride + 1


class BodyClassifier(nn.Module):
    """``body`` -> ``flatten`` -> ``fc`` (logits): a feature extractor and a linear classifier on its
    flattened output of ``features`` values (with a bias unless ``bias=False``)."""

    def __init__(self, body: nn.Module, *, features: int, num_classes: int, bias: bool = True) -> None:
        super().__init__()
        self.body = body
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(features, num_classes, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.fc(self.flatten(self.body(x)))
        return out
