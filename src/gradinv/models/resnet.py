"""ResNet-18 (He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016) with
the CIFAR stem common in gradient inversion work (e.g. Geiping et al., NeurIPS 2020).

The ImageNet stem (7x7 stride-2 convolution and max-pool) is replaced by a 3x3 stride-1
convolution without max-pool; then four stages of two basic blocks with 64/128/256/512 channels
(strides 1/2/2/2, 1x1 convolution + BatchNorm projection shortcuts where the shape changes), global
average pooling and a linear classifier. Module names follow torchvision (``conv1``, ``bn1``,
``layer1.0.downsample.0``, ``fc``).

>>> sum(p.numel() for p in ResNet18(ModelShape(10)).parameters())
11173962
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from gradinv.models.base import ModelShape
from gradinv.models.registry import register_model

__all__ = ["HE_2016", "BasicBlock", "ResNet18", "ResidualBlock", "ResidualNet", "single_image_floor"]


class ResidualBlock(nn.Module):
    """Two 3x3 conv + BN layers with a residual connection: ``relu(bn2(conv2(relu(bn1(conv1(x))))) +
    shortcut(x))``; subclasses define the shortcut (:meth:`residual`)."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()

    def residual(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        result: Tensor = self.relu(out + self.residual(x))
        return result


class BasicBlock(ResidualBlock):
    """A :class:`ResidualBlock` whose shortcut is the identity, or a 1x1 conv + BN projection
    (``downsample``) where the shape changes."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__(in_planes, planes, stride)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def residual(self, x: Tensor) -> Tensor:
        return x if self.downsample is None else self.downsample(x)


class ResidualNet(nn.Module):
    """``conv1`` (3x3, stride 1, as wide as the first stage) + ``bn1`` + ``relu``, then stages
    ``layer1``, ``layer2``, … of ``block`` modules (``(planes, stride, blocks)`` each; the first block
    of a stage has the stride), global average pooling (any image size), ``flatten`` and a linear
    classifier named ``head``."""

    def __init__(
        self,
        block: type[ResidualBlock],
        stages: Sequence[tuple[int, int, int]],
        shape: ModelShape,
        *,
        head: str,
    ) -> None:
        super().__init__()
        width = stages[0][0]
        self.conv1 = nn.Conv2d(shape.in_channels, width, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self._stages: list[str] = []
        in_planes = width
        for i, (planes, stride, blocks) in enumerate(stages, 1):
            layers = [
                block(in_planes, planes, stride),
                *(block(planes, planes, 1) for _ in range(blocks - 1)),
            ]
            self._stages.append(f"layer{i}")
            self.add_module(f"layer{i}", nn.Sequential(*layers))
            in_planes = planes
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self._head = head
        self.add_module(head, nn.Linear(in_planes, shape.num_classes))

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        for name in self._stages:
            out = self.get_submodule(name)(out)
        logits: Tensor = self.get_submodule(self._head)(self.flatten(self.avgpool(out)))
        return logits


HE_2016 = 'He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016'


def single_image_floor(halvings: int) -> dict[str, Any]:
    """``min_image_size`` and ``min_image_reason`` of a BatchNorm net whose stages halve the
    resolution ``halvings`` times: below ``2 ** halvings + 1`` pixels the last stage is 1x1, where
    BatchNorm sees one value per channel when a client trains on a single image."""
    return {
        "min_image_size": 2**halvings + 1,
        "min_image_reason": f"its {_COUNTS[halvings]} stride-2 stages shrink smaller images to 1x1, where "
        "BatchNorm sees one value per channel when a client trains on a single image",
    }


_COUNTS = {1: "one", 2: "two", 3: "three", 4: "four"}


@register_model(
    "resnet18",
    paper=HE_2016,
    default_init="kaiming",
    default_normalization="cifar10",
    **single_image_floor(3),
)
class ResNet18(ResidualNet):
    """ResNet-18 with a CIFAR stem (3x3 conv, no max-pool), 11.2M parameters.

    Any image size from 9x9 (global average pooling; below 9 the last stage is 1x1 and BatchNorm
    cannot train on a single image)."""

    def __init__(self, shape: ModelShape) -> None:
        stages = ((64, 1, 2), (128, 2, 2), (256, 2, 2), (512, 2, 2))
        super().__init__(BasicBlock, stages, shape, head="fc")
