"""Image-space initialisations of dummy data, mapped into the model's input space.

* ``constant`` — every pixel ``value`` (SAPAG, Wang et al., arXiv 2020, starts from a constant image).
* ``patterned`` — CPL's patterned randomisation (Wei, Liu, Loper, Chow, Gursoy, Truex, Wu, "A
  Framework for Evaluating Gradient Leakage Attacks in Federated Learning", ESORICS 2020): a random
  ``patch x patch`` uniform patch, tiled over the image. Fewer free values at the start give a
  smoother, better-conditioned starting point than i.i.d. noise.
* ``geometric`` — our reading of the geometric initialisation the surveys attribute to CPL (Zhang
  et al., IJCAI 2022, Table 1): a deterministic-per-seed smooth pattern of concentric rings,
  ``0.5 + 0.5 sin(2 pi f r + phase_c)`` around a random centre with a random frequency (0.5 to 1.5
  rings per image side); the paper's exact construction is not reproduced here (its text was not
  available to us).
* ``uniform`` — i.i.d. uniform in [0, 1]; ``gaussian`` — ``clamp(0.5 + 0.25 N(0, 1), 0, 1)``.

Every candidate gets its own seed (``seed + k``), so restarts differ.

>>> x = init_images("patterned", (2, 1, 3, 8, 8), seed=0, patch=4)
>>> bool((x[..., :4, :4] == x[..., 4:, 4:]).all()), bool((x[0] != x[1]).any())
(True, True)
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from gradinv.errors import ConfigError
from gradinv.types import Normalization

__all__ = ["IMAGE_INITS", "ImageInit", "init_images", "init_model_input"]

ImageInit = Literal["constant", "patterned", "geometric", "uniform", "gaussian"]
IMAGE_INITS: tuple[str, ...] = ("constant", "patterned", "geometric", "uniform", "gaussian")


def _one(kind: str, shape: tuple[int, ...], gen: torch.Generator, patch: int, value: float) -> Tensor:
    n, c, h, w = shape
    if kind == "constant":
        return torch.full(shape, float(value))
    if kind == "uniform":
        return torch.rand(shape, generator=gen)
    if kind == "gaussian":
        return (0.5 + 0.25 * torch.randn(shape, generator=gen)).clamp(0, 1)
    if kind == "patterned":
        tile = torch.rand((n, c, patch, patch), generator=gen)
        reps = (1, 1, math.ceil(h / patch), math.ceil(w / patch))
        return tile.repeat(reps)[..., :h, :w].contiguous()
    # geometric: concentric rings around a random centre, one phase per channel
    ys = torch.arange(h, dtype=torch.float32).view(1, 1, h, 1)
    xs = torch.arange(w, dtype=torch.float32).view(1, 1, 1, w)
    centre = torch.rand((n, 1, 2, 1), generator=gen)
    cy = (centre[:, :, 0:1] * h).view(n, 1, 1, 1)
    cx = (centre[:, :, 1:2] * w).view(n, 1, 1, 1)
    r = ((ys - cy) ** 2 + (xs - cx) ** 2).sqrt() / max(h, w)
    freq = 0.5 + torch.rand((n, 1, 1, 1), generator=gen)
    phase = 2 * math.pi * torch.rand((n, c, 1, 1), generator=gen)
    return 0.5 + 0.5 * torch.sin(2 * math.pi * freq * r + phase)


def init_images(
    kind: str,
    shape: tuple[int, ...],
    *,
    seed: int,
    patch: int = 4,
    value: float = 0.5,
) -> Tensor:
    """Images in [0, 1] of ``shape`` ``(K, N, C, H, W)``; candidate k is drawn with seed ``seed + k``."""
    if kind not in IMAGE_INITS:
        raise ConfigError(
            f"Expected an image initialisation in {', '.join(map(repr, IMAGE_INITS))}, but got {kind!r}."
        )
    if patch < 1:
        raise ConfigError(f"Expected `patch` >= 1, but got {patch}.")
    if not 0 <= value <= 1:
        raise ConfigError(f"Expected the constant initial `value` in [0, 1], but got {value}.")
    if len(shape) != 5:
        raise ConfigError(f"Expected an initialisation shape (K, N, C, H, W), but got {shape}.")
    k = shape[0]
    out = [
        _one(kind, tuple(shape[1:]), torch.Generator().manual_seed(seed + i), patch, value) for i in range(k)
    ]
    return torch.stack(out).clamp(0, 1)


def init_model_input(
    kind: str,
    shape: tuple[int, ...],
    normalization: Normalization,
    *,
    seed: int,
    device: torch.device,
    patch: int = 4,
    value: float = 0.5,
) -> Tensor:
    """:func:`init_images` mapped into the model's input space (``normalization.apply``)."""
    return normalization.apply(init_images(kind, shape, seed=seed, patch=patch, value=value)).to(device)
