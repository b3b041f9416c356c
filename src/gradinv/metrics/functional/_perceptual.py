"""The calibrated head shared by LPIPS and ST-LPIPS.

Both metrics (Zhang et al., CVPR 2018; Ghildyal & Liu, ECCV 2022) compare two images through a
5-stage feature network: inputs in ``[-1, 1]`` are shifted and scaled per channel
(``ScalingLayer``), each stage's features are normalised to unit length along channels
(``x / (||x|| + 1e-10)``), squared differences go through a learned non-negative 1x1 convolution
("lin" layer, no bias), are averaged spatially and summed over the five stages.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from gradinv.errors import ModelError
from gradinv.metrics.functional._checks import check_image_pair, check_min_size

__all__ = [
    "FeatureStages",
    "LinLayer",
    "PerceptualMetric",
    "ScalingLayer",
    "load_state_dict_file",
    "normalize_channels",
]


#: Channel counts of the five AlexNet stages compared by LPIPS and ST-LPIPS (alex variants).
ALEX_CHANNELS = (64, 192, 384, 256, 256)


class ScalingLayer(nn.Module):
    """``(x - shift) / scale`` per RGB channel, for inputs in ``[-1, 1]`` (LPIPS v0.1 constants)."""

    shift: Tensor
    scale: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.shift) / self.scale


class LinLayer(nn.Module):
    """A 1x1 convolution ``C -> 1`` without bias.

    ``model[0]`` stands for the training-time dropout of the original code (an identity at inference),
    so the state-dict key is ``model.1.weight`` as in the released weight files."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Identity(), nn.Conv2d(channels, 1, kernel_size=1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.model(x)
        return out


class FeatureStages(nn.Module):
    """A feature network cut into stages ``slice1, slice2, ...``: stage ``s`` holds ``layers[lo:hi]``
    for the ``s``-th ``(lo, hi)`` of ``bounds``, each layer named by its index in ``layers`` (as in the
    weight files, e.g. ``slice3.6.weight``). ``forward`` returns the output of every stage."""

    def __init__(self, layers: Sequence[nn.Module], bounds: Sequence[tuple[int, int]]) -> None:
        super().__init__()
        for s, (lo, hi) in enumerate(bounds, start=1):
            self.add_module(
                f"slice{s}", nn.Sequential(OrderedDict((str(i), layers[i]) for i in range(lo, hi)))
            )
        self.num_stages = len(bounds)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        outs = []
        for s in range(1, self.num_stages + 1):
            x = getattr(self, f"slice{s}")(x)
            outs.append(x)
        return tuple(outs)


def normalize_channels(x: Tensor, eps: float = 1e-10) -> Tensor:
    """Divide each feature vector (along dim 1) by its Euclidean norm plus ``eps``."""
    return x / (x.square().sum(dim=1, keepdim=True).sqrt() + eps)


def load_state_dict_file(path: Path, *, what: str) -> dict[str, Tensor]:
    """``torch.load`` a tensor dict (``weights_only=True``, on CPU); :class:`ModelError` if unreadable."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt file, pickled code, not a torch file
        raise ModelError(
            f"Expected {what} as a torch state dict at {path}, but it could not be loaded ({e}). "
            "Re-download the file."
        ) from e
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ModelError(
            f"Expected {what} as a dict of tensors at {path}, but got {type(obj).__name__}. "
            "Pass the state-dict file itself."
        )
    return dict(obj)


def load_strict(module: nn.Module, state: Mapping[str, Tensor], *, what: str, source: Path) -> None:
    """``load_state_dict(strict=True)`` with a :class:`ModelError` naming missing / unexpected keys."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ModelError(
            f"Expected {what} in {source} to match the network, but loading failed: {e}. "
            "Check that the file is the right one for this metric."
        ) from e


class PerceptualMetric(nn.Module):
    """Base module: ``scaling_layer``, a feature ``net`` returning 5 stages, lin layers ``lin0..lin4``.

    Subclasses set ``net``, ``name`` (for messages) and ``min_size``, then load weights, and say in
    :meth:`from_file` how to load them from a resolved weight file. ``forward`` takes images in
    ``[0, 1]`` (grayscale is replicated to RGB) and returns one float64 distance per image pair; it is
    differentiable with respect to the inputs. Parameters are frozen and the module is in eval mode.
    """

    name = "perceptual metric"
    min_size = 1
    net: nn.Module

    def __init__(self, channels: tuple[int, ...] = ALEX_CHANNELS) -> None:
        super().__init__()
        self.scaling_layer = ScalingLayer()
        for i, c in enumerate(channels):
            self.add_module(f"lin{i}", LinLayer(c))
        self.num_stages = len(channels)

    @classmethod
    def from_file(cls, path: Path) -> PerceptualMetric:
        """The metric with its weights from ``path`` (a resolved weight file)."""
        raise NotImplementedError

    @classmethod
    def distances(
        cls, preds: Tensor, target: Tensor, *, path: Path, device: torch.device | str | None
    ) -> Tensor:
        """:meth:`forward` of the metric loaded from ``path``, run on ``device`` (default: the device
        of ``preds``) and returned on the device of ``preds``. The network is loaded once per weight
        file and device and kept (the last 8)."""
        dev = torch.device(device) if device is not None else preds.device
        return cls._loaded(path, str(dev))(preds, target).to(preds.device)

    @classmethod
    @functools.lru_cache(maxsize=8)
    def _loaded(cls, path: Path, device: str) -> PerceptualMetric:
        return cls.from_file(path).to(device)

    @property
    def lins(self) -> list[LinLayer]:
        return [getattr(self, f"lin{i}") for i in range(self.num_stages)]

    def _freeze(self) -> None:
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def _prepare(self, x: Tensor) -> Tensor:
        """``[0, 1]`` image batch -> scaled network input (RGB, float32 like the weights)."""
        dtype = self.scaling_layer.scale.dtype
        x = x.to(device=self.scaling_layer.scale.device, dtype=dtype)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        out: Tensor = self.scaling_layer(2.0 * x - 1.0)
        return out

    def forward(self, preds: Tensor, target: Tensor) -> Tensor:
        """Per-pair distance ``(N,)`` in float64 for two ``(N, C, H, W)`` batches in ``[0, 1]``."""
        check_image_pair(preds, target, metric=self.name, rgb_or_gray=True)
        check_min_size(preds, minimum=self.min_size, metric=self.name, why="its AlexNet feature stages")
        n = preds.shape[0]
        feats = self.net(torch.cat([self._prepare(preds), self._prepare(target)]))
        total = torch.zeros(n, dtype=torch.float64, device=self.scaling_layer.scale.device)
        for f, lin in zip(feats, self.lins, strict=True):
            diff = (normalize_channels(f[:n]) - normalize_channels(f[n:])).square()
            total = total + lin(diff).mean(dim=(1, 2, 3)).to(torch.float64)
        return total
