"""Reading facts off a model: BatchNorm input statistics, the classifier layer, parameter counts.

:func:`batchnorm_statistics` gives what the "client data distribution" knowledge exposes: the
per-channel mean and biased variance of every BatchNorm layer's input on the client's batch, as
used by BN-statistics priors (Yin et al., "See through Gradients: Image Batch Recovery via
GradInversion", CVPR 2021).

>>> from torch import nn
>>> net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
>>> [s.layer for s in batchnorm_statistics(net, torch.randn(8, 3))]
['1']
>>> find_classifier(net)
('3.weight', '3.bias')
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from gradinv.errors import ConfigError, ModelError
from gradinv.types import BNStatistics

__all__ = ["batchnorm_statistics", "count_parameters", "find_classifier", "has_batchnorm", "linear_layer"]

logger = logging.getLogger(__name__)

_BN = nn.modules.batchnorm._BatchNorm


def batchnorm_statistics(model: nn.Module, x: Tensor) -> tuple[BNStatistics, ...]:
    """Per-channel mean and biased variance of each BatchNorm layer's input when ``x`` goes through
    ``model`` in training mode, in forward order (a layer called twice appears twice).

    Works on a deep copy: ``model``'s mode and running statistics are left untouched. Returns an
    empty tuple for models without BatchNorm.
    """
    work = copy.deepcopy(model).train()
    records: list[BNStatistics] = []
    handles: list[RemovableHandle] = []

    def hook_for(name: str) -> Callable[[nn.Module, tuple[Tensor, ...]], None]:
        def hook(_module: nn.Module, args: tuple[Tensor, ...]) -> None:
            inp = args[0].detach()
            dims = (0, *range(2, inp.ndim))
            var, mean = torch.var_mean(inp, dim=dims, correction=0)
            records.append(BNStatistics(layer=name, mean=mean, var=var))

        return hook

    for name, module in work.named_modules():
        if isinstance(module, _BN):
            handles.append(module.register_forward_pre_hook(hook_for(name)))
    if not handles:
        return ()
    try:
        with torch.no_grad():
            work(x)
    except ValueError as err:
        raise ModelError(
            f"Expected a batch BatchNorm can normalise in training mode, but got input of shape "
            f"{tuple(x.shape)}: {err}. Use at least 2 samples."
        ) from err
    finally:
        for h in handles:
            h.remove()
    logger.debug("recorded statistics of %d BatchNorm calls", len(records))
    return tuple(records)


def find_classifier(model: nn.Module) -> tuple[str, str | None]:
    """Parameter names of the weight and bias (``None`` without bias) of the last ``nn.Linear``."""
    last: str | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    if last is None:
        raise ModelError(
            f"Expected a model with an nn.Linear classifier, but {type(model).__name__} has no nn.Linear "
            "layer. Use a model from gradinv.models, or end yours with an nn.Linear layer."
        )
    prefix = f"{last}." if last else ""
    linear = model.get_submodule(last)
    bias = f"{prefix}bias" if getattr(linear, "bias", None) is not None else None
    return f"{prefix}weight", bias


def linear_layer(model: nn.Module, layer: str | None = None) -> str:
    """The module name of the ``nn.Linear`` ``layer`` of ``model`` (default: the classifier, the last
    one; ``""`` when ``model`` is itself that ``nn.Linear``); a :class:`ConfigError` listing the
    linear layers when ``layer`` names no ``nn.Linear``."""
    if layer is None:
        weight, _ = find_classifier(model)
        return weight[: -len(".weight")] if weight != "weight" else ""
    try:
        module = model.get_submodule(layer)
    except AttributeError:
        module = None
    if not isinstance(module, nn.Linear):
        linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        raise ConfigError(
            f"Expected `layer` to name an nn.Linear layer of the model, but got {layer!r}. "
            f"Linear layers: {', '.join(linears) or '(none)'}."
        )
    return layer


def has_batchnorm(model: nn.Module) -> bool:
    """Whether ``model`` contains a BatchNorm layer (1-D, 2-D or 3-D)."""
    return any(isinstance(m, _BN) for m in model.modules())


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of scalar parameters (only those with ``requires_grad`` when ``trainable_only``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
