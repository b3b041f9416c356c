"""Small tensor helpers shared by the update-stage defenses (pure functions, no state)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
from torch import Tensor

__all__ = ["ceil_count", "fraction", "global_norm", "keep_largest", "rand_like", "randn_like"]


def rand_like(t: Tensor, generator: torch.Generator) -> Tensor:
    """Uniform ``[0, 1)`` samples shaped like ``t``, drawn from a CPU ``generator`` (seeded per
    client), on ``t``'s device and dtype."""
    return torch.rand(t.shape, generator=generator, dtype=torch.float64).to(t.device, t.dtype)


def randn_like(t: Tensor, generator: torch.Generator) -> Tensor:
    """Standard normal samples shaped like ``t`` from a CPU ``generator``, on ``t``'s device."""
    return torch.randn(t.shape, generator=generator, dtype=torch.float64).to(t.device, t.dtype)


def global_norm(tensors: Mapping[str, Tensor]) -> float:
    """The L2 norm of all tensors concatenated into one vector."""
    if not tensors:
        return 0.0
    return float(torch.stack([(t.double() ** 2).sum() for t in tensors.values()]).sum().sqrt())


def fraction(tensors: Mapping[str, Tensor], where: Callable[[Tensor], Tensor]) -> float:
    """The fraction of all entries of ``tensors`` (together) where the boolean ``where(t)`` holds."""
    total = sum(t.numel() for t in tensors.values())
    return sum(int(where(t).sum()) for t in tensors.values()) / total


def keep_largest(tensors: Mapping[str, Tensor], counts: int | Mapping[str, int]) -> dict[str, Tensor]:
    """Zero all but the entries of largest magnitude.

    ``counts`` is one int (keep exactly that many entries over all tensors together, "global") or a
    count per tensor. Exactly ``count`` entries survive (ties are broken by ``torch.topk``); a count
    larger than the number of entries keeps everything.
    """
    if isinstance(counts, int):
        names = list(tensors)
        flat = torch.cat([tensors[n].detach().reshape(-1) for n in names])
        mask = _topk_mask(flat, counts)
        out: dict[str, Tensor] = {}
        start = 0
        for n in names:
            t = tensors[n]
            m = mask[start : start + t.numel()].view(t.shape)
            out[n] = torch.where(m, t, torch.zeros_like(t))
            start += t.numel()
        return out
    return {
        n: torch.where(_topk_mask(t.reshape(-1), counts[n]).view(t.shape), t, torch.zeros_like(t))
        for n, t in tensors.items()
    }


def _topk_mask(flat: Tensor, k: int) -> Tensor:
    k = max(0, min(int(k), flat.numel()))
    mask = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    if k:
        idx = torch.topk(flat.abs(), k, sorted=False).indices
        mask[idx] = True
    return mask


def ceil_count(fraction: float, n: int) -> int:
    """``ceil(fraction * n)`` guarded against floating-point noise (0.3 * 10 is 3, not 4)."""
    return min(n, math.ceil(round(fraction * n, 9)))
