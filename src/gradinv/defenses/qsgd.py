"""QSGD: k-bit stochastic quantisation of the update.

Alistarh, Grubic, Li, Tomioka, Vojnovic, "QSGD: Communication-Efficient SGD via Gradient
Quantization and Encoding", NeurIPS 2017. Paper 002 (Du et al., USENIX Security 2025) finds 2-bit
QSGD the best privacy–utility trade-off among post-processing defenses.

Each bucket ``v`` (``bucket_size`` consecutive entries of a flattened tensor, or the whole tensor
when ``bucket_size`` is none) is sent as its norm ``||v||``, one sign per entry and one level per
entry. With ``bits = k`` the level takes one of ``2^k`` values ``0, 1/s, ..., 1`` where
``s = 2^k - 1``::

    Q(v_i) = ||v|| * sign(v_i) * xi_i,   xi_i = (l + Bernoulli(s|v_i|/||v|| - l)) / s,
    l = floor(s |v_i| / ||v||)

so every bucket holds at most ``2^k`` distinct magnitudes (at most ``2^(k+1) - 1`` distinct values
with the sign), and ``E[Q(v)] = v`` (unbiased). ``k`` counts the bits of the level; the sign is one
more bit, as in QSGD's encoding. ``norm = "l2"`` is the paper's choice; ``"max"`` (the largest
magnitude in the bucket) gives lower variance and is used by many implementations. The randomness
comes from the client's private generator. Buffer deltas (BatchNorm statistics) are sent unquantised.

>>> g = torch.Generator().manual_seed(0)
>>> q = qsgd_quantize(torch.tensor([0.3, -0.4, 0.0]), bits=1, generator=g)
>>> sorted(set(q.abs().tolist()) - {0.0})  # 1 bit: magnitudes 0 or ||v|| = 0.5
[0.5]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from gradinv._checks import check_choice, check_int
from gradinv.defenses._tensors import fraction, rand_like
from gradinv.defenses.base import DefenseConfig, UpdateDefense, map_update, register_defense
from gradinv.fl.client import UpdateContext
from gradinv.types import ModelUpdate

__all__ = ["QSGD", "QSGDConfig", "qsgd_quantize"]

Norm = Literal["l2", "max"]


def qsgd_quantize(
    t: Tensor,
    *,
    bits: int,
    bucket_size: int | None = None,
    norm: Norm = "l2",
    generator: torch.Generator,
) -> Tensor:
    """QSGD's unbiased stochastic quantisation of ``t`` with ``2^bits`` magnitude levels per bucket."""
    s = 2**bits - 1
    flat = t.detach().reshape(-1).double()
    n = flat.numel()
    if n == 0:
        return t.clone()
    d = n if bucket_size is None else min(bucket_size, n)
    pad = (-n) % d
    v = torch.cat([flat, flat.new_zeros(pad)]).view(-1, d)
    scale = v.norm(dim=1, keepdim=True) if norm == "l2" else v.abs().amax(dim=1, keepdim=True)
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    a = (v.abs() / safe * s).clamp(max=float(s))
    low = a.floor()
    up = (rand_like(a, generator) < (a - low)).to(a.dtype)
    q = torch.sign(v) * scale * (low + up) / s
    return q.reshape(-1)[:n].view(t.shape).to(t.dtype)


@dataclass(frozen=True)
class QSGDConfig(DefenseConfig):
    """``bits``: k (2^k levels); ``bucket_size``: entries per bucket (none: per tensor)."""

    bits: int = 2
    bucket_size: int | None = None
    norm: Norm = "l2"

    def __post_init__(self) -> None:
        check_int("bits", self.bits, minimum=1, maximum=16, fix="Use at least 1 bit.")
        if self.bucket_size is not None:
            check_int("bucket_size", self.bucket_size, fix="Or none for one bucket per tensor.")
        check_choice("norm", self.norm, ("l2", "max"))


@register_defense
class QSGD(UpdateDefense[QSGDConfig]):
    """Unbiased stochastic quantisation to 2^k magnitude levels per bucket (plus a sign bit)."""

    name = "qsgd"
    title = "QSGD quantisation"
    paper = (
        "Alistarh, Grubic, Li, Tomioka, Vojnovic, QSGD: Communication-Efficient SGD via Gradient "
        "Quantization and Encoding, NeurIPS 2017"
    )

    def apply(self, update: ModelUpdate, ctx: UpdateContext) -> tuple[ModelUpdate, dict[str, float]]:
        cfg = self.config
        out = map_update(
            update,
            lambda _, t: qsgd_quantize(
                t, bits=cfg.bits, bucket_size=cfg.bucket_size, norm=cfg.norm, generator=ctx.generator
            ),
        )
        zeros = fraction(out.params, lambda t: t == 0)
        return out, {"bits": float(cfg.bits), "levels": float(2**cfg.bits), "zero_fraction": zeros}
