"""The 6-layer CNN of R-GAP: Zhu and Blaschko, "R-GAP: Recursive Gradient Attack on Privacy",
ICLR 2021 (``CNN6``).

Six convolutions without pooling, each followed by a leaky ReLU (negative slope 0.2, invertible), then
one linear layer on the flattened features:

====  ==========  ======  ======  =======
conv  channels    kernel  stride  padding
====  ==========  ======  ======  =======
0     C -> 12     4       2       2
1     12 -> 36    3       2       1
2     36 -> 36    3       1       1
3     36 -> 36    3       1       1
4     36 -> 64    3       2       1
5     64 -> 128   3       1       1
====  ==========  ======  ======  =======

A 32x32 image leaves 128 x 5 x 5 = 3200 features. Deviations: the paper's network ends in one output
with a logistic loss (binary labels); here the classifier has ``num_classes`` outputs and the client
uses softmax cross-entropy like every other model, and the classifier has a bias (as every model
here; R-GAP then reads the classifier's input off exactly). ``bias`` (default ``False``, as in the
paper's derivation) adds biases to the convolutions; ``activation`` swaps the leaky ReLU for another
invertible ``sigmoid`` / ``tanh``, or for ``relu`` (not invertible: R-GAP then loses the equations
of the inactive units).

>>> RGAPCNN6(num_classes=10).fc.in_features
3200
>>> RGAPCNN6(num_classes=2, image_size=(8, 8)).fc.in_features
512
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from gradinv._checks import check_choice
from gradinv.errors import ConfigError
from gradinv.models.base import BodyClassifier
from gradinv.models.registry import ModelSpec, register_model

__all__ = ["CNN6_LAYERS", "RGAPCNN6"]

#: (out_channels, kernel, stride, padding) of the six convolutions.
CNN6_LAYERS: tuple[tuple[int, int, int, int], ...] = (
    (12, 4, 2, 2),
    (36, 3, 2, 1),
    (36, 3, 1, 1),
    (36, 3, 1, 1),
    (64, 3, 2, 1),
    (128, 3, 1, 1),
)


def _leaky() -> nn.Module:
    return nn.LeakyReLU(negative_slope=0.2)


_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "leaky_relu": _leaky,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
}


def _out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


class RGAPCNN6(BodyClassifier):
    """R-GAP's CNN6: ``body`` (6 x conv + activation) -> ``flatten`` -> ``fc`` (logits)."""

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int = 3,
        image_size: tuple[int, int] = (32, 32),
        activation: str = "leaky_relu",
        bias: bool = False,
    ) -> None:
        check_choice("activation", activation, _ACTIVATIONS, fix="R-GAP's paper uses 'leaky_relu'.")
        if not isinstance(bias, bool):
            raise ConfigError(f"Expected `bias` to be true or false, but got {bias!r}.")
        layers: list[nn.Module] = []
        cin = in_channels
        h, w = image_size
        for cout, k, s, p in CNN6_LAYERS:
            layers += [
                nn.Conv2d(cin, cout, kernel_size=k, stride=s, padding=p, bias=bias),
                _ACTIVATIONS[activation](),
            ]
            cin, h, w = cout, _out(h, k, s, p), _out(w, k, s, p)
        super().__init__(nn.Sequential(*layers), features=cin * h * w, num_classes=num_classes)


register_model(
    ModelSpec(
        name="rgap-cnn6",
        builder=RGAPCNN6,
        description="R-GAP's CNN6: 6 conv (12-36-36-36-64-128) + leaky ReLU, no pooling, 1 linear layer",
        paper='Zhu, Blaschko, "R-GAP: Recursive Gradient Attack on Privacy", ICLR 2021',
        default_init="default",
        default_normalization="none",
        options=("activation", "bias"),
    )
)
