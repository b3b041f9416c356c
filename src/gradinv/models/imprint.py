"""Imprint modules: a fully connected block inserted in front of a model by a malicious server.

Fowl, Geiping, Czaja, Goldblum, Goldstein, "Robbing the Fed: Directly Obtaining Private Data in
Federated Learning with Modified Models", ICLR 2022, §3: the server prepends a block
``Linear(D, k) -> activation -> Linear(k, D)`` to the model it sends. The first linear layer
measures a quantity of the (flattened) input with every row and uses its biases as bin cut-offs, so
that the gradient of each "bin" holds the input of (ideally) one sample.

:class:`ImprintBlock` is the block, :class:`ImprintModel` the block followed by the original model
(``body``). The block passes its input through (``out = x + Linear(k, D)(act(Linear(D, k)(x)))``),
so the body still sees the image, shifted by a brightness-dependent constant. The
activation is ``relu`` (cumulative bins, FedSGD) or ``hardtanh`` (two-sided, sparse bins for
FedAvg). How the rows and cut-offs are chosen lives in :mod:`gradinv.attacks.robbing_the_fed`.

These are attack artefacts, not registered architectures: ``gradinv list models`` does not show them.

>>> import torch
>>> from torch import nn
>>> block = ImprintBlock((1, 2, 2), bins=3)
>>> model = ImprintModel(block, nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))
>>> model(torch.zeros(5, 1, 2, 2)).shape
torch.Size([5, 2])
>>> [n for n, _ in model.named_parameters()][:2]
['imprint.linear0.weight', 'imprint.linear0.bias']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor, nn

from gradinv.errors import ConfigError

__all__ = ["ImprintBlock", "ImprintLayout", "ImprintModel", "find_imprint"]

Activation = Literal["relu", "hardtanh"]


@dataclass(frozen=True)
class ImprintLayout:
    """What the server remembers about the block it crafted (kept on the block, never sent as
    tensors): the measurement of every row group, in model-input space, and the bin edges.

    ``groups[i]`` is the group (measurement) of row ``i``; ``edges[g]`` are the ``k_g + 1`` edges of
    group ``g`` in measurement units (row ``j`` of the group covers ``[edges[j], edges[j + 1])``);
    ``measurements[g]`` is a vector ``a`` with ``h(z) = a . z + offsets[g]`` for the flattened model
    input ``z``; ``scale`` is the activation's saturation value (hardtanh) or gain (relu)."""

    structure: Literal["cumulative", "sparse"]
    names: tuple[str, ...]
    groups: tuple[int, ...]
    edges: tuple[tuple[float, ...], ...]
    measurements: tuple[Tensor, ...]
    offsets: tuple[float, ...]
    scale: float


class ImprintBlock(nn.Module):
    """``x -> x + unflatten(linear1(act(linear0(flatten(x)))))`` for inputs of shape ``in_shape``.

    ``activation``: ``relu`` or ``hardtanh`` (clamped to ``[0, max_value]``)."""

    def __init__(
        self,
        in_shape: tuple[int, int, int],
        bins: int,
        *,
        activation: Activation = "relu",
        max_value: float = 1.0,
    ) -> None:
        super().__init__()
        if bins < 1:
            raise ConfigError(f"Expected `bins` >= 1, but got {bins}.")
        if activation not in ("relu", "hardtanh"):
            raise ConfigError(f"Expected `activation` to be 'relu' or 'hardtanh', but got {activation!r}.")
        c, h, w = in_shape
        self.in_shape = (int(c), int(h), int(w))
        features = c * h * w
        self.linear0 = nn.Linear(features, bins)
        self.act: nn.Module = nn.ReLU() if activation == "relu" else nn.Hardtanh(0.0, max_value)
        self.linear1 = nn.Linear(bins, features)
        self.layout: ImprintLayout | None = None

    @property
    def bins(self) -> int:
        return int(self.linear0.out_features)

    def forward(self, x: Tensor) -> Tensor:
        flat = x.flatten(1)
        shift = self.linear1(self.act(self.linear0(flat)))
        return x + shift.view_as(x)


class ImprintModel(nn.Module):
    """An :class:`ImprintBlock` followed by the original model (``body``)."""

    def __init__(self, imprint: ImprintBlock, body: nn.Module) -> None:
        super().__init__()
        self.imprint = imprint
        self.body = body

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.body(self.imprint(x))
        return out


def find_imprint(model: nn.Module) -> tuple[str, ImprintBlock] | None:
    """The name and module of the first :class:`ImprintBlock` in ``model``, or ``None``."""
    for name, module in model.named_modules():
        if isinstance(module, ImprintBlock):
            return name, module
    return None
