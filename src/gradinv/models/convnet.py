"""The ConvNet of Geiping, Bauermeister, Dröge, Moeller, "Inverting Gradients — How easy is it to
break privacy in federated learning?", NeurIPS 2020 (``ConvNet``/"ConvNetBN" of their ``inversefed``
code).

Eight 3x3 convolutions (padding 1), each followed by BatchNorm and ReLU, with widths
w, 2w, 2w, 4w, 4w, 4w | pool | 4w, 4w | pool, two 3x3 max-pools (stride 3), and one linear layer
on the flattened ``4w x s x s`` features (``s = 3`` for 32x32 images, so ``36 w`` inputs).
Module names follow ``inversefed`` (``model.conv0`` ... ``model.linear``), so its checkpoints load.

>>> ConvNet(ModelShape(10), width=8).model.linear.in_features
288
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from gradinv._checks import check_int
from gradinv.models.base import ModelShape
from gradinv.models.registry import image_too_small, register_model

__all__ = ["ConvNet"]

_MIN_SIZE = 9  # two 3x3 max-pools with stride 3 need 9 pixels to leave one
_TOO_SMALL = "two 3x3 max-pools leave no pixels"


def _block(i: int, cin: int, cout: int) -> list[tuple[str, nn.Module]]:
    return [
        (f"conv{i}", nn.Conv2d(cin, cout, kernel_size=3, padding=1)),
        (f"bn{i}", nn.BatchNorm2d(cout)),
        (f"relu{i}", nn.ReLU()),
    ]


@register_model(
    "convnet",
    paper='Geiping, Bauermeister, Dröge, Moeller, "Inverting Gradients — How easy is it to break '
    'privacy in federated learning?", NeurIPS 2020',
    default_normalization="cifar10",
    min_image_size=_MIN_SIZE,
    min_image_reason=_TOO_SMALL,
)
class ConvNet(nn.Module):
    """Geiping et al.'s ConvNet: 8 conv 3x3 + BN + ReLU, 2 max-pools, 1 linear layer.

    ``width`` scales every layer's channels (the paper uses 64)."""

    def __init__(self, shape: ModelShape, *, width: int = 64) -> None:
        super().__init__()
        check_int("width", width, fix="The paper uses 64.")
        h, w = (shape.image_size[0] // 3) // 3, (shape.image_size[1] // 3) // 3
        if h < 1 or w < 1:
            raise image_too_small("convnet", shape.image_size, _MIN_SIZE, _TOO_SMALL)
        c1, c2, c4 = width, 2 * width, 4 * width
        layers = [
            *_block(0, shape.in_channels, c1),
            *_block(1, c1, c2),
            *_block(2, c2, c2),
            *_block(3, c2, c4),
            *_block(4, c4, c4),
            *_block(5, c4, c4),
            ("pool0", nn.MaxPool2d(3)),
            *_block(6, c4, c4),
            *_block(7, c4, c4),
            ("pool1", nn.MaxPool2d(3)),
            ("flatten", nn.Flatten()),
            ("linear", nn.Linear(c4 * h * w, shape.num_classes)),
        ]
        self.model = nn.Sequential(OrderedDict(layers))

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.model(x)
        return out
