"""Shared maths and attack machinery of the attacks that plant a fully connected layer (Robbing the
Fed, trap weights).

Both read inputs off the gradient of a linear layer ``y = W z + b`` followed by a gating activation:
a row ``i`` reached by exactly one sample ``s`` has ``dL/dW_i = g_s z_s`` and ``dL/db_i = g_s``, so
``z_s = dL/dW_i / dL/db_i`` (Phong et al., IEEE TIFS 2018; Geiping et al., NeurIPS 2020, §4). This
module holds the pieces both need: measurements expressed in the model's input space, bin edges
(Gaussian or surrogate quantiles), conversion back to image space, the exactness criterion used
to count perfectly recovered images, and :class:`ImprintAttack` (crafting prerequisites, surrogate
images, packaging the extracted images).

Exact recovery (the criterion of Fowl et al.): PSNR >= 60 dB or a maximum absolute pixel error
below 1/255, after the one-to-one matching that maximises exact matches — the definition of the
``exact`` metric, from the same functions (:mod:`gradinv.metrics.functional.exact`).

>>> truth = torch.rand(3, 1, 4, 4)
>>> count_exact(torch.cat([truth[[2, 0]] + 1e-4, torch.rand(1, 1, 4, 4)]), truth).count
2
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import ClassVar

import numpy as np
import torch
from scipy.special import ndtr
from torch import Tensor

from gradinv.attacks.base import ACTIVE_NEEDED, UPDATES_NEEDED, Attack, ProgressFn
from gradinv.errors import AttackRefused, ConfigError, DataError
from gradinv.metrics.functional.exact import EXACT_MAX_ERROR, EXACT_PSNR, exact_matching, exact_matrix
from gradinv.threat import Requirement
from gradinv.types import AttackResult, CraftView, Normalization, Reconstruction

__all__ = [
    "EXACT_MAX_ERROR",
    "EXACT_PSNR",
    "MEASUREMENTS",
    "ExactCount",
    "ImprintAttack",
    "count_exact",
    "gaussian_edges",
    "input_measurement",
    "measurement_vector",
    "quantile_edges",
    "to_images",
]


#: Linear image measurements: mean brightness of the whole image or of one half.
MEASUREMENTS = ("brightness", "top", "bottom", "left", "right")


def measurement_vector(name: str, shape: tuple[int, int, int]) -> Tensor:
    """Image-space weights ``a`` (shape ``(C, H, W)``, non-negative, summing to 1): ``a . x`` is the
    mean pixel value of the whole image (``brightness``) or of its top/bottom/left/right half."""
    c, h, w = shape
    a = torch.zeros(c, h, w, dtype=torch.float64)
    if name == "brightness":
        a[:] = 1.0
    elif name == "top":
        a[:, : max(1, h // 2)] = 1.0
    elif name == "bottom":
        a[:, h // 2 :] = 1.0
    elif name == "left":
        a[:, :, : max(1, w // 2)] = 1.0
    elif name == "right":
        a[:, :, w // 2 :] = 1.0
    else:
        raise ConfigError(f"Expected a measurement in {', '.join(MEASUREMENTS)}, but got {name!r}.")
    return a / a.sum()


def input_measurement(a_image: Tensor, normalization: Normalization) -> tuple[Tensor, float]:
    """The same measurement on the model's (normalised) input ``z``: ``a . x = a_z . z + offset``
    with ``x = z * std + mean`` per channel. Returns the flattened ``a_z`` and ``offset`` (float64)."""
    c = a_image.shape[0]
    if normalization.is_identity:
        return a_image.reshape(-1).clone(), 0.0
    mean = torch.tensor(normalization.mean, dtype=torch.float64)
    std = torch.tensor(normalization.std, dtype=torch.float64)
    if len(mean) == 1 and c > 1:
        mean, std = mean.expand(c), std.expand(c)
    a_z = a_image * std.view(-1, 1, 1)
    offset = float((a_image * mean.view(-1, 1, 1)).sum())
    return a_z.reshape(-1), offset


def gaussian_edges(bins: int, mean: float, std: float) -> list[float]:
    """``bins - 1`` interior cut-offs at the ``i / bins`` quantiles of ``N(mean, std^2)``: each bin
    holds a ``1 / bins`` share of the assumed distribution (Fowl et al. 2022, §3)."""
    if std <= 0:
        raise ConfigError(f"Expected a Gaussian `std` > 0, but got {std}.")
    dist = NormalDist(mean, std)
    return [dist.inv_cdf(i / bins) for i in range(1, bins)]


def quantile_edges(values: Tensor, bins: int) -> list[float]:
    """``bins - 1`` interior cut-offs at the ``i / bins`` quantiles of a Gaussian kernel density
    estimate of ``values`` (Silverman's bandwidth), so that a few hundred surrogate samples give
    smooth cut-offs even for a thousand bins."""
    v = values.detach().double().cpu().numpy().reshape(-1)
    n = v.size
    if n < 2:
        raise DataError(f"Expected at least 2 surrogate measurements to place bin cut-offs, but got {n}.")
    sd = float(v.std(ddof=1))
    iqr = float(np.subtract(*np.percentile(v, [75, 25])))
    spread = min(sd, iqr / 1.349) if iqr > 0 else sd
    bw = 0.9 * max(spread, 1e-12) * n ** (-0.2)
    grid = np.linspace(v.min() - 6 * bw, v.max() + 6 * bw, 4001)
    cdf = ndtr((grid[:, None] - v[None, :]) / bw).mean(axis=1)
    targets = np.arange(1, bins) / bins
    return [float(x) for x in np.interp(targets, cdf, grid)]


def to_images(z: Tensor, shape: tuple[int, int, int], normalization: Normalization | None) -> Tensor:
    """Flattened model inputs ``(n, C*H*W)`` -> images ``(n, C, H, W)`` clamped to ``[0, 1]``."""
    x = z.reshape(-1, *shape).float()
    if normalization is not None:
        x = normalization.invert(x)
    return x.clamp(0, 1)


@dataclass(frozen=True)
class ExactCount:
    """How many ground-truth images a reconstruction recovers exactly (one-to-one matching)."""

    count: int
    total: int
    psnr: tuple[float, ...]
    max_error: tuple[float, ...]

    @property
    def fraction(self) -> float:
        return self.count / self.total if self.total else math.nan


def count_exact(reconstruction: Tensor, truth: Tensor) -> ExactCount:
    """The largest number of ground-truth images recovered exactly (PSNR >= 60 dB or maximum pixel
    error < 1/255, images in ``[0, 1]``) under a one-to-one assignment of reconstructions to truth
    images — the ``exact`` metric's definition and matching
    (:mod:`gradinv.metrics.functional.exact`, shared so the two cannot drift); the remaining images
    are paired by minimum MSE (Hungarian) for the reported PSNR and error. Unmatched truth images have
    PSNR ``-inf`` and error ``1``."""
    from scipy.optimize import linear_sum_assignment

    t = len(truth)
    psnrs = [-math.inf] * t
    errors = [1.0] * t
    em = exact_matrix(reconstruction, truth)  # checks the shapes
    if not len(reconstruction) or not t:
        return ExactCount(0, t, tuple(psnrs), tuple(errors))
    pairs = exact_matching(em.exact)
    count = len(pairs)
    used_r, used_c = {r for r, _ in pairs}, {c for _, c in pairs}
    rest_r = [r for r in range(len(reconstruction)) if r not in used_r]
    rest_c = [c for c in range(t) if c not in used_c]
    if rest_r and rest_c:
        rr, cc = linear_sum_assignment(em.mse[rest_r][:, rest_c].numpy())
        pairs += [(rest_r[r], rest_c[c]) for r, c in zip(rr.tolist(), cc.tolist())]
    for r, c in pairs:
        psnrs[c] = float(em.psnr[r, c])
        errors[c] = float(em.max_error[r, c])
    return ExactCount(count, t, tuple(psnrs), tuple(errors))


class ImprintAttack(Attack):
    """Base of the active attacks that craft a fully connected layer and read the clients' inputs
    off its gradient, in one step."""

    family = "malicious-server"
    active = True
    base_requirements: ClassVar[tuple[Requirement, ...]] = (UPDATES_NEEDED, ACTIVE_NEEDED)

    def _craft_input(self, knowledge: CraftView) -> tuple[tuple[int, int, int], Normalization]:
        """The input shape and normalisation the crafted layer is built for; refuses when the threat
        model or the knowledge falls short."""
        problems = self.check_threat(knowledge.threat)
        if problems:
            raise AttackRefused(" ".join(problems))
        if knowledge.input_shape is None or knowledge.normalization is None:
            raise AttackRefused(f"{self.title} needs the input shape and normalisation (basic knowledge).")
        return knowledge.input_shape, knowledge.normalization

    def _surrogate_images(
        self, knowledge: CraftView, shape: tuple[int, int, int], *, option: str, instead: str
    ) -> Tensor:
        """The server's surrogate images at the client's ``shape`` (float64, in [0, 1]); at least two
        are needed by ``option``, whose alternative is ``instead``."""
        surrogate = knowledge.surrogate
        if surrogate is None or len(surrogate) < 2:
            raise AttackRefused(
                f"{self.title} with {option} needs at least 2 surrogate images, but got "
                f"{0 if surrogate is None else len(surrogate)}. Set [data] surrogate_images > 1 or use "
                f"{instead}."
            )
        c, h, w = shape
        images = surrogate.to_batch(image_size=h if h == w else None, channels=c).images.double()
        if tuple(images.shape[1:]) != shape:
            raise AttackRefused(
                f"Expected surrogate images of shape {shape}, but got {tuple(images.shape[1:])}. "
                "Use square images of the client's size."
            )
        return images

    def _extracted(
        self,
        images: Tensor,
        shape: tuple[int, int, int],
        num_samples: int | None,
        *,
        notes: Sequence[str],
        fewer: str,
        more_notes: Sequence[str] = (),
        start: float,
        progress: ProgressFn | None,
    ) -> AttackResult:
        """The result of one extraction step: ``images`` padded with gray images up to the client's
        batch size (when known; the note says there were ``fewer`` than samples), then ``notes``,
        the padding note, ``more_notes`` and that labels are not recovered."""
        missing = 0 if num_samples is None else num_samples - len(images)
        padding: tuple[str, ...] = ()
        if missing > 0:
            images = torch.cat([images, torch.full((missing, *shape), 0.5)])
            padding = (f"{missing} of {num_samples} outputs are gray fillers ({fewer} than samples)",)
        seconds = time.perf_counter() - start
        if progress is not None:
            progress(1, 1, 0.0)
        return AttackResult(
            attack=self.name,
            reconstruction=Reconstruction(images=images.cpu()),
            parameters=self.config.to_dict(),
            iterations=1,
            seconds=seconds,
            notes=(*notes, *padding, *more_notes, "labels: not recovered"),
        )
