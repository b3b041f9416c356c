"""CIFAR ResNets with option-A shortcuts (He, Zhang, Ren, Sun, "Deep Residual Learning for Image
Recognition", CVPR 2016, §4.2): ResNet-20/32/56 with 0.27M / 0.46M / 0.85M parameters.

A 3x3 convolution with 16 channels + BN + ReLU, three stages of ``n = (depth - 2) / 6`` basic
blocks with 16/32/64 channels and strides 1/2/2, global average pooling and ``Linear(64, classes)``;
convolutions have no bias. Option-A shortcuts add no parameters: where a block halves the
resolution and doubles the channels, the shortcut is ``x[:, :, ::2, ::2]`` zero-padded with
``planes // 4`` channels on each side.

Module names match the trained checkpoints of akamaster/pytorch_resnet_cifar10 (BSD-2): ``conv1``,
``bn1``, ``layer{1,2,3}.{i}.{conv1,bn1,conv2,bn2}``, ``linear`` (after stripping ``module.``), so
they load with ``strict=True``. Those checkpoints expect ImageNet mean/std input normalisation.

>>> sum(p.numel() for p in ResNetCIFAR(ModelShape(10), depth=20).parameters())
269722
"""

from __future__ import annotations

from functools import partial

import torch.nn.functional as F
from torch import Tensor, nn

from gradinv.errors import ConfigError
from gradinv.models.base import ModelShape
from gradinv.models.registry import register_model
from gradinv.models.resnet import HE_2016, ResidualBlock, ResidualNet, single_image_floor

__all__ = ["CifarBasicBlock", "ResNetCIFAR", "ShortcutA"]


class ShortcutA(nn.Module):
    """Parameter-free shortcut: subsample spatially by ``stride`` and zero-pad the channels."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        extra = planes - in_planes
        self.pad = (extra // 2, extra - extra // 2)

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, *self.pad), "constant", 0.0)

    def extra_repr(self) -> str:
        return f"stride={self.stride}, pad_channels={self.pad}"


class CifarBasicBlock(ResidualBlock):
    """A residual block whose shortcut goes through :class:`ShortcutA` when shapes change."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__(in_planes, planes, stride)
        self.shortcut: nn.Module = (
            ShortcutA(in_planes, planes, stride) if stride != 1 or in_planes != planes else nn.Identity()
        )

    def residual(self, x: Tensor) -> Tensor:
        out: Tensor = self.shortcut(x)
        return out


class ResNetCIFAR(ResidualNet):
    """CIFAR ResNet of ``depth = 6 n + 2`` layers (20, 32, 44, 56, 110, ...)."""

    def __init__(self, shape: ModelShape, *, depth: int) -> None:
        if depth < 8 or (depth - 2) % 6:
            raise ConfigError(f"Expected a CIFAR ResNet depth 6n + 2 (20, 32, 56, ...), but got {depth}.")
        n = (depth - 2) // 6
        stages = ((16, 1, n), (32, 2, n), (64, 2, n))
        super().__init__(CifarBasicBlock, stages, shape, head="linear")


_AKAMASTER = "akamaster/pytorch_resnet_cifar10 (BSD-2)"

for _depth, _params, _pretrained in (
    (20, "0.27M", f"cifar10_resnet20-12fca82f.th in ../shared/weights: 91.78% on CIFAR-10, {_AKAMASTER}"),
    (32, "0.46M", f"compatible with the resnet32 checkpoint of {_AKAMASTER}; none in ../shared"),
    (56, "0.85M", f"cifar10_resnet56-4bfd9763.th in ../shared/weights: 93.62% on CIFAR-10, {_AKAMASTER}"),
):
    register_model(
        f"resnet{_depth}",
        description=f"CIFAR ResNet-{_depth} with option-A shortcuts, {_params} parameters",
        paper=f"{HE_2016}, §4.2",
        default_init="kaiming",
        default_normalization="imagenet",
        pretrained=_pretrained,
        **single_image_floor(2),
    )(partial(ResNetCIFAR, depth=_depth))
