"""ST-LPIPS (Ghildyal and Liu, "Shift-tolerant Perceptual Similarity Metric", ECCV 2022), AlexNet
"shift_tolerant" variant, in plain PyTorch.

ST-LPIPS keeps the LPIPS head (ScalingLayer, channel-normalised features, calibrated 1x1 "lin"
layers, spatial average, sum over five stages) on an anti-aliased AlexNet: the first convolution
has stride 1, and every down-sampling is a BlurPool (Zhang, "Making Convolutional Networks
Shift-Invariant Again", ICML 2019): reflect padding by 2 on each side, then a depthwise
``[1, 2, 1] ⊗ [1, 2, 1] / 16`` filter with stride 2. Max-pools have stride 1.

It is **not** LPIPS: its values differ and must be reported as ST-LPIPS. It is offered because its
complete weights (backbone and lin layers, one file ``stlpips_alex_shift_tolerant.pth`` from the
BSD-2-Clause ``stlpips-pytorch`` 0.0.2 package) can be used offline. The file is not bundled; it is
looked for as every weight file is (:mod:`gradinv.weights`): the ``weights=`` argument (a file, or a
folder holding it), ``$GRADINV_WEIGHTS``, the torch hub cache. (``$GRADINV_STLPIPS_WEIGHTS``, the
path of the file, is deprecated but still read in gradinv 0.1.)
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradinv.metrics.functional._perceptual import (
    FeatureStages,
    PerceptualMetric,
    load_state_dict_file,
    load_strict,
)
from gradinv.weights import find_weight_file

__all__ = [
    "STLPIPS",
    "STLPIPS_FILE",
    "STLPIPS_MIN_SIZE",
    "WEIGHTS_ENV",
    "BlurPool",
    "resolve_stlpips_weights",
    "stlpips",
]

logger = logging.getLogger(__name__)

STLPIPS_FILE = "stlpips_alex_shift_tolerant.pth"
#: Deprecated (read until the next release, with a warning): use ``$GRADINV_WEIGHTS``.
WEIGHTS_ENV = "GRADINV_STLPIPS_WEIGHTS"
#: Smallest image side the shift-tolerant AlexNet stages accept.
STLPIPS_MIN_SIZE = 21


class BlurPool(nn.Module):
    """Anti-aliased down-sampling: reflect pad ``pad`` on each side, depthwise blur, stride 2.

    The blur kernel is the buffer ``filt`` of shape ``(channels, 1, 3, 3)`` (``[1, 2, 1] ⊗ [1, 2, 1] / 16``
    per channel), stored in the ST-LPIPS weight file.
    """

    filt: Tensor

    def __init__(self, channels: int, *, stride: int = 2, pad: int = 2) -> None:
        super().__init__()
        a = torch.tensor([1.0, 2.0, 1.0])
        k = torch.outer(a, a)
        self.register_buffer("filt", (k / k.sum()).expand(channels, 1, 3, 3).clone())
        self.stride = stride
        self.pad = pad

    def forward(self, x: Tensor) -> Tensor:
        padded = F.pad(x, (self.pad,) * 4, mode="reflect")
        return F.conv2d(padded, self.filt, stride=self.stride, groups=x.shape[1])


class ShiftTolerantAlexNetStages(FeatureStages):
    """The five stages of the "shift_tolerant" AlexNet, ``slice1 .. slice5``.

    Module names are the indices of the original ``features`` sequence, matching the weight file
    (``slice1.0`` conv, ``slice1.1`` BlurPool, ``slice2.4`` BlurPool, ``slice2.5`` conv, ...)."""

    def __init__(self) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(3, 64, kernel_size=11, stride=1, padding=2),  # 0
            BlurPool(64),  # 1
            nn.ReLU(),  # 2 -> stage 1
            nn.MaxPool2d(kernel_size=3, stride=1),  # 3
            BlurPool(64),  # 4
            nn.Conv2d(64, 192, kernel_size=5, padding=2),  # 5
            nn.ReLU(),  # 6 -> stage 2
            nn.MaxPool2d(kernel_size=3, stride=1),  # 7
            BlurPool(192),  # 8
            nn.Conv2d(192, 384, kernel_size=3, padding=1),  # 9
            nn.ReLU(),  # 10 -> stage 3
            nn.Conv2d(384, 256, kernel_size=3, padding=1),  # 11
            nn.ReLU(),  # 12 -> stage 4
            nn.Conv2d(256, 256, kernel_size=3, padding=1),  # 13
            nn.ReLU(),  # 14 -> stage 5
        ]
        super().__init__(layers, ((0, 3), (3, 7), (7, 11), (11, 13), (13, 15)))


def resolve_stlpips_weights(weights: str | os.PathLike[str] | None = None) -> Path:
    """Find ``stlpips_alex_shift_tolerant.pth``: the argument (a file, or a folder holding it),
    ``$GRADINV_WEIGHTS``, the torch hub cache (see :mod:`gradinv.weights`).

    Raises :class:`MetricUnavailable` naming every place tried when none has the file."""
    return find_weight_file(
        STLPIPS_FILE,
        explicit=weights,
        explicit_name="weights",
        legacy_env=WEIGHTS_ENV,
        what="the ST-LPIPS weights: backbone and lin layers of ST-LPIPS, Ghildyal & Liu, ECCV 2022",
    )


class STLPIPS(PerceptualMetric):
    """ST-LPIPS, AlexNet shift-tolerant variant (Ghildyal & Liu, ECCV 2022). Not LPIPS.

    ``forward(preds, target)`` takes two ``(N, C, H, W)`` batches in ``[0, 1]`` (C = 1 or 3), at
    least 21x21, and returns the float64 distances ``(N,)``; 0 for identical images, lower is more
    similar.

    Args:
        weights: path to ``stlpips_alex_shift_tolerant.pth`` (or its folder); when ``None`` it is
            looked up as described in :func:`resolve_stlpips_weights`.
    """

    name = "ST-LPIPS"
    min_size = STLPIPS_MIN_SIZE

    def __init__(self, *, weights: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        self.net = ShiftTolerantAlexNetStages()
        path = resolve_stlpips_weights(weights)
        logger.info("ST-LPIPS: weights from %s", path)
        load_strict(
            self, load_state_dict_file(path, what="ST-LPIPS weights"), what="ST-LPIPS weights", source=path
        )
        self.weights_path = path
        self._freeze()

    @classmethod
    def from_file(cls, path: Path) -> STLPIPS:
        return cls(weights=path)


def stlpips(
    preds: Tensor,
    target: Tensor,
    *,
    weights: str | os.PathLike[str] | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """ST-LPIPS distance (AlexNet, shift-tolerant) of image ``i`` of ``preds`` against ``target[i]``.

    Not LPIPS: report the values as ST-LPIPS.

    Args:
        preds: reconstructed images ``(N, C, H, W)`` in ``[0, 1]``, C = 1 (replicated) or 3, at least 21x21.
        target: ground-truth images of the same shape.
        weights: path to ``stlpips_alex_shift_tolerant.pth`` (or its folder); when ``None`` it is
            looked up as described in :func:`resolve_stlpips_weights`.
        device: where to run the network; defaults to the device of ``preds``.

    Returns:
        float64 tensor ``(N,)`` on the device of ``preds``; lower is more similar.

    Raises:
        MetricUnavailable: the weight file cannot be found.
    """
    path = resolve_stlpips_weights(weights).resolve()
    return STLPIPS.distances(preds, target, path=path, device=device)
