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
here by default; R-GAP then reads the classifier's input off exactly). ``bias`` (default ``False``, as in the
paper's derivation) adds biases to the convolutions; ``activation`` swaps the leaky ReLU for another
invertible ``sigmoid`` / ``tanh`` / ``identity``, or for ``relu`` (not invertible: R-GAP then loses
the equations of the inactive units); any name of :data:`gradinv.models.base.ACTIVATIONS` is accepted.

>>> RGAPCNN6(ModelShape(10)).fc.in_features
3200
>>> RGAPCNN6(ModelShape(2, image_size=(8, 8))).fc.in_features
512
"""

from __future__ import annotations

from torch import nn

from gradinv.models.base import BodyClassifier, ModelShape, activation_factory, check_flag, conv_output_size
from gradinv.models.registry import register_model

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


@register_model("rgap-cnn6", paper='Zhu, Blaschko, "R-GAP: Recursive Gradient Attack on Privacy", ICLR 2021')
class RGAPCNN6(BodyClassifier):
    """R-GAP's CNN6: 6 conv (12-36-36-36-64-128) + leaky ReLU, no pooling, 1 linear layer.

    ``body`` (6 x conv + activation) -> ``flatten`` -> ``fc`` (logits)."""

    def __init__(self, shape: ModelShape, *, activation: str = "leaky_relu", bias: bool = False) -> None:
        act = activation_factory(activation, fix="R-GAP's paper uses 'leaky_relu'.")
        check_flag("bias", bias)
        layers: list[nn.Module] = []
        cin, (h, w) = shape.in_channels, shape.image_size
        for cout, k, s, p in CNN6_LAYERS:
            layers += [nn.Conv2d(cin, cout, kernel_size=k, stride=s, padding=p, bias=bias), act()]
            h, w = (conv_output_size(n, kernel=k, stride=s, padding=p) for n in (h, w))
            cin = cout
        super().__init__(nn.Sequential(*layers), features=cin * h * w, num_classes=shape.num_classes)
