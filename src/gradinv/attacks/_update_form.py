"""What an update's form reveals of the client's compression defense, read once for every attack
that adapts to it (GGL's adaptive mode, Learning to Invert's simulated client).

The attacker view does not say which defense the client ran, but compression leaves a mark on the
update: signSGD leaves one magnitude per tensor (``±s``, or ``±1`` unscaled); top-k and pruning leave
exact zeros. Noise leaves none, so it is never inferred."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from torch import Tensor

__all__ = ["SPARSE_FRACTION", "UpdateForm", "read_update_form"]

#: the update is read as sparsified when at least this fraction of its entries is exactly zero
SPARSE_FRACTION = 0.5


@dataclass(frozen=True)
class UpdateForm:
    """``kind``: ``sign`` (every tensor one magnitude, no zeros), ``sparse`` (at least the
    threshold's fraction of exact zeros) or ``plain``. ``sign_scale``: ``none`` when every magnitude
    is 1, else ``mean``. ``entries`` and ``zero_entries``: how many entries, how many exactly zero.
    ``detail``: why, in words."""

    kind: Literal["sign", "sparse", "plain"]
    sign_scale: Literal["none", "mean"]
    entries: int
    zero_entries: int
    detail: str

    @property
    def zeros(self) -> float:
        """The fraction of exact zeros."""
        return self.zero_entries / max(1, self.entries)


def _one_magnitude(t: Tensor) -> bool:
    a = t.detach().abs()
    top = float(a.max())
    return top > 0 and float(top - a.min()) <= 1e-6 * top


def read_update_form(tensors: Sequence[Tensor], *, sparse_fraction: float = SPARSE_FRACTION) -> UpdateForm:
    """The form of the update ``tensors`` (see :class:`UpdateForm`)."""
    ts = [t.detach().reshape(-1) for t in tensors if t.numel()]
    total = sum(t.numel() for t in ts)
    zero_count = sum(int((t == 0).sum()) for t in ts)
    zeros = zero_count / max(1, total)
    unit = bool(ts) and all(bool(((t.abs() - 1).abs() <= 1e-6).all()) for t in ts)
    scale: Literal["none", "mean"] = "none" if unit else "mean"
    # more entries than tensors: one magnitude per tensor is then informative
    if total > len(ts) and zero_count == 0 and all(_one_magnitude(t) for t in ts):
        detail = f"every update tensor holds one magnitude (sign compression, scale {scale})"
        return UpdateForm("sign", scale, total, zero_count, detail)
    if total and zeros >= sparse_fraction:
        detail = f"{zeros:.1%} of the update is exactly zero (top-k / pruning)"
        return UpdateForm("sparse", scale, total, zero_count, detail)
    detail = f"no sign compression or sparsity in the update ({zeros:.1%} zeros)"
    return UpdateForm("plain", scale, total, zero_count, detail)
