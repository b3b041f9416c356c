"""LPIPS (Zhang, Isola, Efros, Shechtman and Wang, "The Unreasonable Effectiveness of Deep Features as
a Perceptual Metric", CVPR 2018), AlexNet variant, in plain PyTorch.

Equivalent to the ``lpips`` package v0.1 with ``net="alex"``: ScalingLayer, torchvision's AlexNet
``features`` cut after each of its five ReLUs, channel-normalised features, squared differences,
the calibrated 1x1 "lin" layers, spatial average, sum over stages.

Weights come from two places:

* the lin layers ship with gradinv (``weights/lpips_alex_v0.1.pth``, copied from the ``lpips``
  package, BSD-2-Clause, Richard Zhang et al.; see ``weights/LICENSE-lpips.txt``);
* the AlexNet backbone is torchvision's ImageNet checkpoint ``alexnet-owt-7be5be79.pth``, which is
  not bundled. It is looked for as every weight file is (:mod:`gradinv.weights`): the
  ``backbone_weights`` argument, ``$GRADINV_WEIGHTS``, the torch hub cache
  (``torch.hub.get_dir()/checkpoints/alexnet-owt-7be5be79.pth``), and with ``download=True`` it is
  downloaded from ``https://download.pytorch.org/models/alexnet-owt-7be5be79.pth`` into that cache.
  Without it :class:`~gradinv.errors.MetricUnavailable` is raised; nothing else is ever substituted.
  (``$GRADINV_LPIPS_BACKBONE``, the path of the file, is deprecated but still read in gradinv 0.1.)
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import Tensor, nn

from gradinv.errors import MetricUnavailable, ModelError
from gradinv.metrics.functional._perceptual import (
    FeatureStages,
    PerceptualMetric,
    load_state_dict_file,
    load_strict,
)
from gradinv.weights import hub_checkpoints_dir, not_found_message, search_weight_file

__all__ = [
    "ALEXNET_FILE",
    "ALEXNET_URL",
    "BACKBONE_ENV",
    "LPIPS",
    "LPIPS_MIN_SIZE",
    "lpips",
    "resolve_lpips_backbone",
]

logger = logging.getLogger(__name__)

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
ALEXNET_URL = f"https://download.pytorch.org/models/{ALEXNET_FILE}"
#: Deprecated (read until the next release, with a warning): use ``$GRADINV_WEIGHTS``.
BACKBONE_ENV = "GRADINV_LPIPS_BACKBONE"
LIN_WEIGHTS = Path(__file__).resolve().parent / "weights" / "lpips_alex_v0.1.pth"
#: Smallest image side the AlexNet stages accept (stride-4 conv and two stride-2 max-pools).
LPIPS_MIN_SIZE = 31
#: torchvision ``features`` indices of AlexNet's five convolutions.
_CONV_INDICES = (0, 3, 6, 8, 10)


class AlexNetStages(FeatureStages):
    """torchvision's AlexNet ``features`` split after each ReLU into ``slice1 .. slice5``.

    Module names inside each slice are the torchvision ``features`` indices, so
    ``features.6.weight`` lives at ``slice3.6.weight``."""

    def __init__(self) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(),
        ]
        super().__init__(layers, ((0, 2), (2, 5), (5, 8), (8, 10), (10, 12)))


def _slice_of(index: int) -> int:
    return 1 + sum(index >= lo for lo in (2, 5, 8, 10))


def torchvision_to_stages(state: dict[str, Tensor], *, source: Path) -> dict[str, Tensor]:
    """Map torchvision AlexNet keys ``features.{i}.{weight,bias}`` to :class:`AlexNetStages` keys.

    ``classifier.*`` entries are ignored; missing convolution entries raise :class:`ModelError`."""
    wanted = [f"features.{i}.{p}" for i in _CONV_INDICES for p in ("weight", "bias")]
    missing = [k for k in wanted if k not in state]
    if missing:
        raise ModelError(
            f"Expected torchvision AlexNet weights with keys {', '.join(wanted[:2])}, ... in {source}, but "
            f"{len(missing)} are missing ({', '.join(missing[:4])}). Use torchvision's {ALEXNET_FILE} "
            f"from {ALEXNET_URL}."
        )
    out = {}
    for k in wanted:
        i = int(k.split(".")[1])
        out[f"slice{_slice_of(i)}.{i}.{k.rsplit('.', 1)[1]}"] = state[k]
    return out


def _hub_checkpoint() -> Path:
    return hub_checkpoints_dir() / ALEXNET_FILE


_WHAT = "torchvision's ImageNet AlexNet weights for official LPIPS, Zhang et al., CVPR 2018"
_FIX = (
    f"The file is {ALEXNET_URL}; `download=True` fetches it where the internet is reachable. "
    "Offline alternative: ST-LPIPS (`gradinv.metrics.stlpips`, Ghildyal & Liu, ECCV 2022), whose "
    "complete weights are a single file; it is a different metric: its values are NOT LPIPS values, "
    "report them as ST-LPIPS."
)


def resolve_lpips_backbone(
    backbone_weights: str | os.PathLike[str] | None = None, *, download: bool = False
) -> Path:
    """Find the AlexNet checkpoint: the argument (a file, or a folder holding it),
    ``$GRADINV_WEIGHTS``, the torch hub cache, then (``download=True``) a download into that cache.

    Raises :class:`MetricUnavailable` naming every place tried when none has the file."""
    search = search_weight_file(
        ALEXNET_FILE, explicit=backbone_weights, explicit_name="backbone_weights", legacy_env=BACKBONE_ENV
    )
    if search.path is not None:
        return search.path
    if search.explicit or not download:
        failure = None if search.explicit else "none of these places has it and `download` is False"
        raise MetricUnavailable(not_found_message(search, what=_WHAT, fix=_FIX, failure=failure))
    hub = _hub_checkpoint()
    logger.info("Downloading LPIPS AlexNet backbone from %s", ALEXNET_URL)
    try:
        torch.hub.load_state_dict_from_url(
            ALEXNET_URL, check_hash=True, map_location="cpu", weights_only=True
        )
    except Exception as e:  # no network, proxy, hash mismatch ...
        raise MetricUnavailable(
            not_found_message(
                search, what=_WHAT, fix=_FIX, failure=f"the download failed ({e})", also_tried=(ALEXNET_URL,)
            )
        ) from e
    if not hub.is_file():  # pragma: no cover - torch.hub saves into get_dir()/checkpoints
        raise MetricUnavailable(
            not_found_message(
                search,
                what=_WHAT,
                fix=_FIX,
                failure="the downloaded file was not found in the hub cache",
                also_tried=(ALEXNET_URL,),
            )
        )
    return hub


class LPIPS(PerceptualMetric):
    """Official LPIPS v0.1, AlexNet (Zhang et al., CVPR 2018), as an ``nn.Module``.

    ``forward(preds, target)`` takes two ``(N, C, H, W)`` batches in ``[0, 1]`` (C = 1 or 3; unlike
    the ``lpips`` package, which expects ``[-1, 1]``) of at least 31x31 pixels and returns the
    float64 distances ``(N,)``; 0 for identical images, lower is more similar.

    Args:
        backbone_weights: path to torchvision's ``alexnet-owt-7be5be79.pth``; when ``None`` it is
            looked up as described in :func:`resolve_lpips_backbone`.
        download: allow downloading the backbone into the torch hub cache.
    """

    name = "LPIPS"
    min_size = LPIPS_MIN_SIZE

    def __init__(
        self, *, backbone_weights: str | os.PathLike[str] | None = None, download: bool = False
    ) -> None:
        super().__init__()
        self.net = AlexNetStages()
        path = resolve_lpips_backbone(backbone_weights, download=download)
        logger.info("LPIPS: AlexNet backbone from %s, lin layers from %s", path, LIN_WEIGHTS)
        backbone = torchvision_to_stages(load_state_dict_file(path, what="AlexNet weights"), source=path)
        load_strict(self.net, backbone, what="AlexNet weights", source=path)
        lins = load_state_dict_file(LIN_WEIGHTS, what="LPIPS lin weights")
        load_strict(
            nn.ModuleDict({f"lin{i}": lin for i, lin in enumerate(self.lins)}),
            lins,
            what="LPIPS lin weights",
            source=LIN_WEIGHTS,
        )
        self.backbone_path = path
        self._freeze()

    @classmethod
    def from_file(cls, path: Path) -> LPIPS:
        return cls(backbone_weights=path)


def lpips(
    preds: Tensor,
    target: Tensor,
    *,
    backbone_weights: str | os.PathLike[str] | None = None,
    download: bool = False,
    device: torch.device | str | None = None,
) -> Tensor:
    """LPIPS distance (AlexNet, v0.1) of image ``i`` of ``preds`` against image ``i`` of ``target``.

    Args:
        preds: reconstructed images ``(N, C, H, W)`` in ``[0, 1]``, C = 1 (replicated) or 3,
            at least 31x31.
        target: ground-truth images of the same shape.
        backbone_weights: path to torchvision's ``alexnet-owt-7be5be79.pth`` (see
            :func:`resolve_lpips_backbone` for where it is otherwise looked for).
        download: allow downloading the backbone into the torch hub cache.
        device: where to run the network; defaults to the device of ``preds``.

    Returns:
        float64 tensor ``(N,)`` on the device of ``preds``; lower is more similar.

    Raises:
        MetricUnavailable: the AlexNet ImageNet weights cannot be found (never substituted).
    """
    path = resolve_lpips_backbone(backbone_weights, download=download).resolve()
    return LPIPS.distances(preds, target, path=path, device=device)
