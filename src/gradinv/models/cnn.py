"""The configurable small CNN of the micro-design study of Du, Hu, Wang, Sun, Gong, Ren, Chen,
"SoK: On Gradient Leakage in Federated Learning", USENIX Security 2025, §5.2.2 and Table 4.

``depth`` blocks of ``conv (kernel_size, padding, width channels) -> activation -> pool``, one
dropout layer on the last block's features, then one linear classifier (``body.conv0``,
``body.act0``, ``body.pool0``, …, ``body.dropout``, ``fc``). Each option expresses one modification
of Table 4 (:data:`TABLE4`):

===================  ==========================  ====================================
Table 4              option                      default (the paper's standard model)
===================  ==========================  ====================================
R ReLU               ``activation = "identity"``  ``"relu"``
R DropOut            ``dropout = 0``              ``0.25``
R MaxPool2d          ``pool = "none"``            ``"max"`` (2x2, stride 2, every block)
I kernel to 4        ``kernel_size = 4``          ``3``
D kernel to 2 / 1    ``kernel_size = 2`` / ``1``
I padding to 2 / 3   ``padding = 2`` / ``3``      ``1``
R bias               ``bias = false``             ``true`` (every conv and the classifier)
===================  ==========================  ====================================

plus ``width`` (channels of every conv, default 32) and ``depth`` (blocks, default 2).

The baseline is our reading of the paper: "a configurable model, ConvNet [Geiping et al.], which only
includes components related to micro designs … The standard ConvNet incorporates bias, employs ReLU
functions, and includes two max pooling layers and one dropout layer. Additionally, all
convolutional layers are equipped with 3x3 kernels and padding 1." The paper gives no depth, width,
dropout rate, dropout position or pooling size (its Appendix C has no further details), so we chose:
two blocks (one max-pool after each gives the paper's two), 32 channels, ``MaxPool2d(2)``, and
``Dropout(0.25)`` after the last pool, as in the common Keras / PyTorch example CNNs. Deviations from
Geiping et al.'s ConvNet (``convnet`` here): no BatchNorm (not a micro design of the study), 2
convolutions instead of 8, constant width. ``activation`` takes any name of
:data:`gradinv.models.base.ACTIVATIONS` (``identity``, ``leaky_relu``, ``relu``, ``sigmoid``,
``tanh``).

Dropout is a :class:`~gradinv.models.seeding.SeededDropout`: its masks come from its own generator,
never from torch's global RNG. A client trains in ``train`` mode (``TrainingConfig.model_mode``), so
dropout is active in its update; it reseeds its model copy from its private seed
(:func:`gradinv.fl.local_update`), so an attacker simulating the client draws other masks, as a real
attacker who does not know the client's masks would. In ``eval`` mode dropout is the identity.

The classifier's input size is computed for every ``(kernel_size, padding, pool, depth)`` and image
size; a combination that shrinks the feature map to nothing is one ConfigError that names the
options. The model's ``min_image_size`` (4) is that of the default options.

>>> net = CNN(ModelShape(10))
>>> net.fc.in_features  # 32 channels x 8 x 8 after two 2x2 max-pools of 32x32 images
2048
>>> CNN(ModelShape(10, in_channels=1, image_size=(8, 8)), kernel_size=4).fc.in_features  # 8-7-3-2-1
32
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from torch import nn

from gradinv._checks import check_choice, check_int
from gradinv.errors import ConfigError
from gradinv.models.base import BodyClassifier, ModelShape, activation_factory, check_flag, conv_output_size
from gradinv.models.registry import register_model
from gradinv.models.seeding import SeededDropout

__all__ = ["CNN", "POOLS", "TABLE4"]

#: Values of the option ``pool``: a 2x2 max-pool (stride 2) after every block, or none.
POOLS = ("max", "none")

#: The options of each column of Du et al.'s Table 4 ("none": the standard model).
TABLE4: dict[str, dict[str, Any]] = {
    "none": {},
    "remove-relu": {"activation": "identity"},
    "remove-dropout": {"dropout": 0.0},
    "remove-maxpool": {"pool": "none"},
    "kernel-4": {"kernel_size": 4},
    "remove-bias": {"bias": False},
    "kernel-2": {"kernel_size": 2},
    "kernel-1": {"kernel_size": 1},
    "padding-2": {"padding": 2},
    "padding-3": {"padding": 3},
}

_DU_2025 = (
    'Du, Hu, Wang, Sun, Gong, Ren, Chen, "SoK: On Gradient Leakage in Federated Learning", '
    "USENIX Security 2025 (Table 4)"
)


def _check_dropout(p: object) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
        raise ConfigError(f"Expected `dropout` to be a probability in [0, 1), but got {p!r}. Use 0 for none.")
    return float(p)


@register_model(
    "cnn",
    paper=_DU_2025,
    default_normalization="cifar10",
    min_image_size=4,
    min_image_reason="the two 2x2 max-pools of the standard model leave no pixels",
)
class CNN(BodyClassifier):
    """Du et al.'s Table-4 CNN: 2 conv 3x3 + ReLU + max-pool, dropout, 1 linear layer (configurable).

    ``body`` (``depth`` x conv -> activation -> pool, then dropout) -> ``flatten`` -> ``fc``."""

    def __init__(
        self,
        shape: ModelShape,
        *,
        activation: str = "relu",
        dropout: float = 0.25,
        pool: str = "max",
        kernel_size: int = 3,
        padding: int = 1,
        bias: bool = True,
        width: int = 32,
        depth: int = 2,
    ) -> None:
        act = activation_factory(activation, fix="Table 4 removes ReLU with 'identity'.")
        p = _check_dropout(dropout)
        check_choice("pool", pool, POOLS)
        check_int("kernel_size", kernel_size, fix="The standard model uses 3.")
        check_int("padding", padding, minimum=0, fix="The standard model uses 1.")
        check_flag("bias", bias)
        check_int("width", width, fix="Use e.g. 32 channels.")
        check_int("depth", depth, fix="The standard model has 2 blocks (one max-pool each).")
        layers: list[tuple[str, nn.Module]] = []
        cin, (h, w) = shape.in_channels, shape.image_size
        for i in range(depth):
            layers += [
                (f"conv{i}", nn.Conv2d(cin, width, kernel_size, padding=padding, bias=bias)),
                (f"act{i}", act()),
            ]
            h, w = (conv_output_size(n, kernel=kernel_size, padding=padding) for n in (h, w))
            if pool == "max" and min(h, w) >= 1:
                layers.append((f"pool{i}", nn.MaxPool2d(2)))
                h, w = h // 2, w // 2
            if min(h, w) < 1:
                raise ConfigError(
                    f"Expected options of model 'cnn' that leave a feature map of "
                    f"{shape.image_size[0]}x{shape.image_size[1]} images, but kernel_size = {kernel_size}, "
                    f"padding = {padding}, pool = {pool!r}, depth = {depth} leave none after block {i + 1}. "
                    "Use a smaller kernel_size or depth, more padding, pool = 'none' or larger images."
                )
            cin = width
        if p > 0:
            layers.append(("dropout", SeededDropout(p)))
        features = width * h * w
        super().__init__(
            nn.Sequential(OrderedDict(layers)), features=features, num_classes=shape.num_classes, bias=bias
        )
