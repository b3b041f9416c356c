"""Gradient distances between a candidate's gradient and the observed (target) gradient, with the
options every optimisation attack shares: the distance, per-layer weights and a layer subset.

Each distance takes two equal-length sequences of per-layer tensors (optionally per-layer weights
``w``) and returns a scalar; all are plain tensor operations, so they work under ``torch.func.vmap``
over candidates.

* ``l2``: squared Euclidean distance ``sum_l w_l ||g_l - t_l||^2`` (Zhu et al., NeurIPS 2019).
* ``cosine``: one minus the cosine similarity of the concatenated gradients under the weighted inner
  product ``<a, b>_w = sum_l w_l <a_l, b_l>`` (Geiping et al., NeurIPS 2020; their ``sim`` cost with
  ``weights``).
* ``l2-fitted``: the L2 distance to the best-scaled target, ``min_s ||g - s t||_w^2 = ||g||_w^2 -
  <g, t>_w^2 / ||t||_w^2``; used when the target's scale is unknown (a FedAvg delta without training
  details).
* ``gaussian``: the Gaussian-kernel distance of SAPAG (Wang, Deng, Guo, Wang, Meng, Liu, Ding,
  Rajasekaran, "SAPAG: A Self-Adaptive Privacy Attack From Gradients", arXiv:2009.06228, 2020):
  ``sum_l w_l (1 - exp(-mean((g_l - t_l)^2) / sigma_l^2))`` with a per-layer width ``sigma_l^2``
  adapted to the observed gradient (:func:`adaptive_widths`: the variance of the layer's target
  entries times ``sigma_scale``). Each layer's contribution is bounded by ``w_l``, so layers with
  large gradients cannot dominate the early iterations.

Per-layer weights (``layer_weights``): ``equal``; ``linear`` — ``(L - i) / L`` for the i-th selected
layer, emphasising shallow layers (Geiping et al.'s ``linear``); ``exp`` — ``exp(-i)`` (their
``exp``); or an explicit list. Layer subsets (``layers``): parameter-name prefixes (``"conv1"``,
``"layer1.0"``, ``"fc.bias"``), parameter indices (``3``, ``-1``) or index ranges (``"0:4"``,
``"-2:"``); paper 002 (Du et al., USENIX Security 2025, Table 3) finds that matching a single
block's gradient can beat the full gradient.

>>> import torch
>>> a = [torch.tensor([1.0, 0.0])]
>>> float(cosine_distance(a, [torch.tensor([2.0, 0.0])]))
0.0
>>> float(l2_distance(a, [torch.tensor([0.0, 0.0])]))
1.0
>>> round(float(l2_fitted_distance(a, [torch.tensor([3.0, 0.0])])), 6)
0.0
>>> select_layers(["conv.weight", "conv.bias", "fc.weight", "fc.bias"], ("fc", 0))
(0, 2, 3)
>>> [round(w, 3) for w in resolve_layer_weights("linear", 4)]
[1.0, 0.75, 0.5, 0.25]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from gradinv.errors import ConfigError
from gradinv.registry import Registry

__all__ = [
    "DISTANCES",
    "DISTANCE_NAMES",
    "LAYER_WEIGHTS",
    "DistanceName",
    "GradientMatcher",
    "LayerSpec",
    "LayerWeights",
    "adaptive_widths",
    "build_matcher",
    "check_objective_options",
    "cosine_distance",
    "gaussian_distance",
    "l2_distance",
    "l2_fitted_distance",
    "resolve_layer_weights",
    "select_layers",
]

#: ``distance(grads, target, weights=None) -> scalar`` (``gaussian`` also takes ``widths``).
Distance = Callable[..., Tensor]
DISTANCES: Registry[Distance] = Registry("gradient distance")
DistanceName = Literal["l2", "cosine", "l2-fitted", "gaussian"]
DISTANCE_NAMES: tuple[str, ...] = ("l2", "cosine", "l2-fitted", "gaussian")
LAYER_WEIGHTS: tuple[str, ...] = ("equal", "linear", "exp")
#: ``"equal"`` | ``"linear"`` | ``"exp"`` or one weight per selected layer.
LayerWeights = str | tuple[float, ...]
#: Which parameters to match: name prefixes, indices, or ``"start:stop"`` ranges; empty = all.
LayerSpec = tuple[int | str, ...]


def _dot(a: Sequence[Tensor], b: Sequence[Tensor], w: Sequence[float] | None = None) -> Tensor:
    if w is None:
        return sum((x * y).sum() for x, y in zip(a, b))  # type: ignore[return-value]
    return sum(wi * (x * y).sum() for x, y, wi in zip(a, b, w))  # type: ignore[return-value]


def _sq(a: Sequence[Tensor], w: Sequence[float] | None = None) -> Tensor:
    if w is None:
        return sum(x.pow(2).sum() for x in a)  # type: ignore[return-value]
    return sum(wi * x.pow(2).sum() for x, wi in zip(a, w))  # type: ignore[return-value]


@DISTANCES.register("l2")
def l2_distance(
    grads: Sequence[Tensor], target: Sequence[Tensor], weights: Sequence[float] | None = None
) -> Tensor:
    """``sum_l w_l ||g_l - t_l||^2``."""
    if weights is None:
        return sum(((g - t) ** 2).sum() for g, t in zip(grads, target))  # type: ignore[return-value]
    return sum(w * ((g - t) ** 2).sum() for g, t, w in zip(grads, target, weights))  # type: ignore[return-value]


@DISTANCES.register("cosine")
def cosine_distance(
    grads: Sequence[Tensor], target: Sequence[Tensor], weights: Sequence[float] | None = None
) -> Tensor:
    """``1 - <g, t>_w / (||g||_w ||t||_w)``."""
    num = _dot(grads, target, weights)
    return 1 - num / (_sq(grads, weights).sqrt() * _sq(target, weights).sqrt() + 1e-30)


@DISTANCES.register("l2-fitted")
def l2_fitted_distance(
    grads: Sequence[Tensor], target: Sequence[Tensor], weights: Sequence[float] | None = None
) -> Tensor:
    """``min_s ||g - s t||_w^2 = ||g||_w^2 - <g, t>_w^2 / ||t||_w^2``."""
    gt = _dot(grads, target, weights)
    return _sq(grads, weights) - gt * gt / (_sq(target, weights) + 1e-30)


#: Widths below this fraction of the largest are raised to it (see :func:`adaptive_widths`).
WIDTH_FLOOR = 1e-8


def adaptive_widths(target: Sequence[Tensor], *, scale: float = 1.0) -> tuple[float, ...]:
    """SAPAG's per-layer kernel widths ``sigma_l^2``: the variance of each layer's target entries
    times ``scale``. A single-entry layer uses its squared value. Widths below ``WIDTH_FLOOR`` times
    the largest are raised to it: a layer whose gradient is numerically zero (a bias followed by
    BatchNorm) would otherwise turn rounding noise into a full-weight distance term."""
    var = []
    for t in target:
        v = float(t.detach().double().var(correction=0)) if t.numel() > 1 else float(t.detach().double() ** 2)
        var.append(v if math.isfinite(v) else 0.0)
    top = max(var, default=0.0)
    floor = WIDTH_FLOOR * top if top > 0 else 1.0
    return tuple(scale * max(v, floor) for v in var)


@DISTANCES.register("gaussian")
def gaussian_distance(
    grads: Sequence[Tensor],
    target: Sequence[Tensor],
    weights: Sequence[float] | None = None,
    widths: Sequence[float] | None = None,
) -> Tensor:
    """SAPAG: ``sum_l w_l (1 - exp(-mean((g_l - t_l)^2) / sigma_l^2))``; ``widths`` default to
    :func:`adaptive_widths` of ``target``."""
    sig = widths if widths is not None else adaptive_widths(target)
    w = weights if weights is not None else (1.0,) * len(target)
    terms = [wi * (1 - torch.exp(-((g - t) ** 2).mean() / s)) for g, t, wi, s in zip(grads, target, w, sig)]
    return sum(terms)  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------------
# Options: layer subsets and per-layer weights
# --------------------------------------------------------------------------------------------------


def _describe_names(names: Sequence[str]) -> str:
    shown = ", ".join(f"{i}:{n}" for i, n in enumerate(names[:40]))
    return shown + (f", ... ({len(names)} parameters)" if len(names) > 40 else "")


def _parse_range(item: str, count: int) -> range | None:
    if ":" not in item:
        return None
    lo, _, hi = item.partition(":")
    try:
        start = int(lo) if lo.strip() else None
        stop = int(hi) if hi.strip() else None
    except ValueError:
        return None
    return range(count)[slice(start, stop)]


def select_layers(names: Sequence[str], spec: LayerSpec | None) -> tuple[int, ...]:
    """Indices (sorted, unique) of the parameters ``spec`` selects; empty ``spec`` selects all.

    Items: a parameter index (``3``, ``-1``), an index range (``"0:4"``, ``"-2:"``), or a name prefix
    matched at a module boundary (``"layer1"`` selects ``layer1.0.conv1.weight`` but not
    ``layer10.weight``). Unknown items raise :class:`ConfigError` listing the valid names."""
    count = len(names)
    if not spec:
        return tuple(range(count))
    chosen: set[int] = set()
    for item in spec:
        if isinstance(item, bool) or not isinstance(item, (int, str)):
            raise ConfigError(
                f"Expected `layers` entries to be parameter indices, 'start:stop' ranges or name prefixes, "
                f"but got {item!r}."
            )
        if isinstance(item, int):
            if not -count <= item < count:
                raise ConfigError(
                    f"Expected a parameter index in [{-count}, {count}) in `layers`, but got {item}. "
                    f"Parameters: {_describe_names(names)}."
                )
            chosen.add(item % count)
            continue
        rng = _parse_range(item, count)
        if rng is not None:
            if len(rng) == 0:
                raise ConfigError(
                    f"Expected the range {item!r} in `layers` to select at least one of the {count} "
                    f"parameters, but it selects none. Parameters: {_describe_names(names)}."
                )
            chosen.update(rng)
            continue
        hits = [i for i, n in enumerate(names) if n == item or n.startswith(item + ".")]
        if not hits:
            raise ConfigError(
                f"Unknown layer {item!r} in `layers`: no parameter name equals it or starts with "
                f"'{item}.'. Valid names: {_describe_names(names)}."
            )
        chosen.update(hits)
    return tuple(sorted(chosen))


def resolve_layer_weights(kind: LayerWeights, count: int) -> tuple[float, ...]:
    """``count`` per-layer weights (in the order of the selected layers)."""
    if isinstance(kind, str):
        if kind == "equal":
            return (1.0,) * count
        if kind == "linear":  # inversefed: arange(L, 0, -1) / L
            return tuple((count - i) / count for i in range(count))
        if kind == "exp":  # inversefed: softmax(arange(L, 0, -1)) / its first entry = exp(-i)
            return tuple(math.exp(-i) for i in range(count))
        raise ConfigError(
            f"Expected `layer_weights` to be one of {', '.join(map(repr, LAYER_WEIGHTS))} or a list of "
            f"numbers, but got {kind!r}."
        )
    w = tuple(float(v) for v in kind)
    if len(w) != count:
        raise ConfigError(
            f"Expected {count} `layer_weights` (one per matched parameter tensor), but got {len(w)}. "
            "Give one weight per selected layer, or use 'equal', 'linear' or 'exp'."
        )
    if any(not (v >= 0 and math.isfinite(v)) for v in w) or not any(v > 0 for v in w):
        raise ConfigError(f"Expected finite, non-negative `layer_weights` with one > 0, but got {list(w)}.")
    return w


def check_objective_options(
    distance: str, layer_weights: LayerWeights, layers: LayerSpec, sigma_scale: float = 1.0
) -> None:
    """Validate the shared objective options of an attack config (names are checked against the
    model later, in :func:`build_matcher`)."""
    if distance not in DISTANCE_NAMES:
        raise ConfigError(
            f"Expected `distance` to be one of {', '.join(map(repr, DISTANCE_NAMES))}, but got {distance!r}."
        )
    if isinstance(layer_weights, str):
        resolve_layer_weights(layer_weights, 1)
    else:
        resolve_layer_weights(layer_weights, len(layer_weights))
    for item in layers:
        if isinstance(item, bool) or not isinstance(item, (int, str)) or item == "":
            raise ConfigError(
                f"Expected `layers` entries to be parameter indices, 'start:stop' ranges or name prefixes, "
                f"but got {item!r}."
            )
    if not (sigma_scale > 0 and math.isfinite(sigma_scale)):
        raise ConfigError(f"Expected `sigma_scale` > 0, but got {sigma_scale!r}.")


@dataclass(frozen=True)
class GradientMatcher:
    """A gradient distance bound to a target: ``matcher(grads)`` takes the candidate's full list of
    per-parameter gradients (simulator order) and returns the distance over the selected layers.

    Targets and per-layer constants (weights, Gaussian widths, the target's norm) are fixed at
    construction, so an evaluation does no work on the target beyond the distance itself."""

    distance: str
    indices: tuple[int, ...]
    names: tuple[str, ...]
    target: tuple[Tensor, ...]
    weights: tuple[float, ...] | None
    widths: tuple[float, ...] | None = None
    target_sq: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.distance not in DISTANCE_NAMES:
            raise ConfigError(
                f"Expected `distance` to be one of {', '.join(map(repr, DISTANCE_NAMES))}, "
                f"but got {self.distance!r}."
            )
        object.__setattr__(self, "target_sq", float(_sq(self.target, self.weights)))

    def select(self, grads: Sequence[Tensor]) -> list[Tensor]:
        """The selected layers of a full gradient list (a list of only the selected layers, as a
        restricted :class:`~gradinv.attacks.gradients.GradientSimulator` returns, passes through)."""
        if len(self.indices) == len(grads):
            return list(grads)
        if len(grads) != len(self.names):
            raise ValueError(
                f"Expected {len(self.names)} gradients (all layers) or {len(self.indices)} (the selected "
                f"ones), but got {len(grads)}."
            )
        return [grads[i] for i in self.indices]

    def __call__(self, grads: Sequence[Tensor]) -> Tensor:
        g = self.select(grads)
        t, w = self.target, self.weights
        if self.distance == "l2":
            return l2_distance(g, t, w)
        if self.distance == "cosine":
            return 1 - _dot(g, t, w) / (_sq(g, w).sqrt() * math.sqrt(self.target_sq) + 1e-30)
        if self.distance == "l2-fitted":
            gt = _dot(g, t, w)
            return _sq(g, w) - gt * gt / (self.target_sq + 1e-30)
        return gaussian_distance(g, t, w, self.widths)

    def describe(self) -> str:
        sel = "all layers" if len(self.indices) == len(self.names) else f"{len(self.indices)} layers"
        return f"distance {self.distance} over {sel}"


def build_matcher(
    names: Sequence[str],
    target: Sequence[Tensor],
    *,
    distance: str = "l2",
    layer_weights: LayerWeights = "equal",
    layers: LayerSpec | None = None,
    sigma_scale: float = 1.0,
) -> GradientMatcher:
    """A :class:`GradientMatcher` for ``target`` (full list, in ``names`` order) with the options."""
    check_objective_options(distance, layer_weights, tuple(layers or ()), sigma_scale)
    if len(names) != len(target):
        raise ConfigError(f"Expected one target tensor per parameter ({len(names)}), but got {len(target)}.")
    idx = select_layers(names, layers)
    sel = tuple(target[i].detach() for i in idx)
    w = resolve_layer_weights(layer_weights, len(idx))
    weights = None if all(v == 1.0 for v in w) else w
    widths = adaptive_widths(sel, scale=sigma_scale) if distance == "gaussian" else None
    return GradientMatcher(distance, idx, tuple(names), sel, weights, widths)
