"""Weight initialisation schemes for the models of :mod:`gradinv.models`.

* ``default`` — PyTorch's own ``reset_parameters()`` on every module that has one.
* ``kaiming`` — the torchvision ResNet initialisation: Kaiming-normal convolution weights
  (He, Zhang, Ren, Sun, "Delving Deep into Rectifiers", ICCV 2015) with ``mode="fan_out"`` and the
  ReLU gain, zero convolution biases, normalisation layers with weight 1 and bias 0; linear layers
  keep PyTorch's default initialisation (as torchvision does: a fan-out Kaiming classifier of a
  10-class model would start with logits of standard deviation ≈ 7 and a saturated softmax).
* ``uniform`` — the initialisation of DLG (Zhu, Liu, Han, "Deep Leakage from Gradients",
  NeurIPS 2019): every weight and bias of convolution and linear layers ~ U(-0.5, 0.5).

A ``generator`` makes the result reproducible without touching the global random state
(:func:`new_linear` builds an ``nn.Linear`` initialised from one).

>>> from torch import nn
>>> layer = initialize(nn.Linear(4, 2), "uniform", generator=torch.Generator().manual_seed(0))
>>> bool(layer.weight.abs().max() <= 0.5)
True
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from types import MappingProxyType

import torch
from torch import nn

from gradinv.errors import ConfigError, did_you_mean
from gradinv.models.seeding import seeded

__all__ = ["INIT_SCHEMES", "check_scheme", "initialize", "new_linear", "reset_linear"]

logger = logging.getLogger(__name__)

_CONV = nn.modules.conv._ConvNd
_NORM = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


def reset_linear(m: nn.Linear, generator: torch.Generator | None = None) -> nn.Linear:
    """``nn.Linear.reset_parameters`` drawing from ``generator`` (the global RNG when ``None``)."""
    nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
    if m.bias is not None:
        fan_in = m.weight.shape[1]
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        nn.init.uniform_(m.bias, -bound, bound, generator=generator)
    return m


def new_linear(
    in_features: int, out_features: int, *, bias: bool = True, generator: torch.Generator | None = None
) -> nn.Linear:
    """``nn.Linear(in_features, out_features)`` with PyTorch's default initialisation drawn from
    ``generator``: the same weights as the constructor after ``torch.manual_seed`` with the
    generator's seed, without touching the global RNG (``None``: drawn from the global RNG)."""
    return reset_linear(nn.utils.skip_init(nn.Linear, in_features, out_features, bias=bias), generator)


def _init_default(model: nn.Module, generator: torch.Generator | None) -> None:
    # reset_parameters() takes no generator: run it on a global RNG seeded from the generator
    seed = None if generator is None else int(torch.randint(0, 2**62, (1,), generator=generator))
    with seeded(seed):
        for m in model.modules():
            reset = getattr(m, "reset_parameters", None)
            if callable(reset):
                reset()


def _init_kaiming(model: nn.Module, generator: torch.Generator | None) -> None:
    for m in model.modules():
        if isinstance(m, _CONV):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=generator)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            reset_linear(m, generator)
        elif isinstance(m, _NORM) and getattr(m, "weight", None) is not None:
            nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _init_uniform(model: nn.Module, generator: torch.Generator | None) -> None:
    for m in model.modules():
        if isinstance(m, (_CONV, nn.Linear)):
            for p in m.parameters(recurse=False):
                nn.init.uniform_(p, -0.5, 0.5, generator=generator)


_SCHEMES: dict[str, Callable[[nn.Module, torch.Generator | None], None]] = {
    "default": _init_default,
    "kaiming": _init_kaiming,
    "uniform": _init_uniform,
}

#: Initialisation scheme names with a one-line description (for ``gradinv list``).
INIT_SCHEMES: Mapping[str, str] = MappingProxyType(
    {
        "default": "PyTorch's own reset_parameters() on every layer",
        "kaiming": "Kaiming-normal conv weights (fan_out, ReLU), BN weight 1 / bias 0 (torchvision ResNet)",
        "uniform": "every conv/linear weight and bias ~ U(-0.5, 0.5) (DLG, Zhu et al. 2019)",
    }
)


def check_scheme(scheme: str) -> str:
    """Return ``scheme`` when it is a known initialisation scheme, else raise :class:`ConfigError`."""
    if scheme not in _SCHEMES:
        valid = sorted(_SCHEMES)
        raise ConfigError(
            f"Unknown initialisation scheme {scheme!r}.{did_you_mean(str(scheme), valid)} "
            f"Valid schemes: {', '.join(valid)}."
        )
    return scheme


def initialize(model: nn.Module, scheme: str, *, generator: torch.Generator | None = None) -> nn.Module:
    """Re-initialise ``model``'s parameters in place with ``scheme`` and return it.

    >>> from torch import nn
    >>> net = initialize(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)), "kaiming")
    >>> net[1].weight.unique().tolist()
    [1.0]
    """
    fn = _SCHEMES[check_scheme(scheme)]
    logger.debug("initialising %s with scheme %r", type(model).__name__, scheme)
    fn(model, generator)
    return model
