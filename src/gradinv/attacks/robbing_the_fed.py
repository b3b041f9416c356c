"""Robbing the Fed.

Fowl, Geiping, Czaja, Goldblum, Goldstein, "Robbing the Fed: Directly Obtaining Private Data in
Federated Learning with Modified Models", ICLR 2022.

A malicious server prepends an *imprint module* to the model it sends (:mod:`gradinv.models.imprint`):
``Linear(D, k)`` whose ``k`` rows all measure one linear quantity ``h`` of the input (mean brightness
by default) and whose biases are bin cut-offs ``c_1 < ... < c_k``, then a ReLU, then ``Linear(k, D)``
back to the input (added to it, so the original model still sees the image). The cut-offs are the
``i / k`` quantiles of the distribution the server assumes for ``h``: a Gaussian (default) or the
empirical distribution of surrogate images (needs surrogate data, threat models G/H).

* **Cumulative bins (FedSGD)**: row ``i`` fires for every sample with ``h > c_i`` and every row's
  gradient is the same per-sample factor ``g_s`` times the input, so consecutive rows differ by the
  samples of one bin: ``z = (dL/dW_i - dL/dW_{i+1}) / (dL/db_i - dL/db_{i+1})`` is the input of the
  sample alone in bin ``i`` — exactly, up to float rounding.
* **Sparse bins (the paper's FedAvg variant)**: a two-sided activation (Hardtanh clamped to
  ``[0, scale]``) with rows scaled by ``1 / bin width`` makes row ``i`` active only for samples
  inside bin ``i``, so ``z = dL/dW_i / dL/db_i`` directly; over several local steps the row
  accumulates the same sample's gradients, so a weight delta gives the same ratio
  (``delta W_i / delta b_i``).

A bin holding two samples gives their weighted mean, not an image; with ``k`` bins and ``B`` samples
about ``B (1 - 1/k)^(B-1)`` samples are alone in their bin when the cut-offs fit the data (Prop. 1).

Extension (not in the paper, ON by default): ``measurements`` names several quantities (default
``["brightness", "left"]``, the mean brightness of the whole image and of its left half; the paper's
construction is ``["brightness"]``); the bins are split between them and samples that share a bin in one
measurement are separated in another ("peeling": a sample recovered twice, or explaining another
measurement's bin exactly, is confirmed and subtracted from every bin it occupies). Every row's
per-sample factor ``g_s`` is shared because ``Linear(k, D)`` has one constant weight.

Why the default deviates: with one measurement and ideal bins the expected number of exactly
recovered samples at B = 64, k = 1000 is 64 (1 - 1/1000)^63 = 60.1, so a random batch misses 60/64
about half the time (measured on 10 random CIFAR-10 batches: 54–64, 6 of 10 at >= 60); with two
measurements the same batches gave 62–64, mean 63.6 (benchmarks/acceptance_malicious.py).

Deviations: the block's output is added to its input (a pass-through, so the original model keeps
working) through one constant weight; the sparse variant's Hardtanh ceiling is one median bin width,
which keeps the biases O(1) — with a ceiling of 1 they reach ~1e3 and a client's small FedAvg steps
are rounded away in float32.

Implementation notes: the cut-offs are computed in image space (``h`` in ``[0, 1]``) and moved to the
model's normalised input space; the server keeps what it crafted on the block
(:class:`~gradinv.models.imprint.ImprintLayout`) and reads it back from the view's model. Labels are
not recovered. The attack cannot see the ground truth: its note gives an *estimate*, an upper bound
on the exact recoveries from bin counts (:func:`estimate_exact`; samples sharing a bin can look like
one). Measured against the ground truth, the ``exact`` metric (and :func:`count_exact`, the same
function) counts them.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from gradinv.attacks._imprint import (
    MEASUREMENTS,
    ExactCount,
    ImprintAttack,
    count_exact,
    gaussian_edges,
    input_measurement,
    measurement_vector,
    quantile_edges,
    to_images,
)
from gradinv.attacks.base import AttackConfig, ProgressFn, register_attack
from gradinv.errors import ConfigError
from gradinv.models.imprint import ImprintBlock, ImprintLayout, ImprintModel, find_imprint
from gradinv.threat import Knowledge, Requirement
from gradinv.types import AttackerView, AttackResult, CraftView, Normalization, TrainingConfig

__all__ = [
    "ExactCount",
    "ExactEstimate",
    "RobbingTheFed",
    "RobbingTheFedConfig",
    "count_exact",
    "decode_imprint",
    "estimate_exact",
    "imprint_block",
]

logger = logging.getLogger(__name__)

SHAPE_NEEDED = Requirement(
    Knowledge.BASIC_KNOWLEDGE,
    "the imprint layer is sized for the client's input shape and its cut-offs use the input normalisation",
)
SURROGATE_NEEDED = Requirement(
    Knowledge.SURROGATE_DATA,
    "the config places the bin cut-offs at surrogate-data quantiles (cutoffs = 'surrogate')",
)


@dataclass(frozen=True)
class RobbingTheFedConfig(AttackConfig):
    """``bins`` rows in the imprint layer (paper 003, Table IV: 1000). ``structure``: ``cumulative``
    (ReLU, FedSGD), ``sparse`` (two-sided, FedAvg) or ``auto`` (sparse when the server knows the
    client runs FedAvg). ``cutoffs``: quantiles of ``N(mean, std^2)`` for the measured brightness in
    ``[0, 1]`` (defaults fitted to natural photos: CIFAR-10 images have 0.47 +- 0.12), or of
    surrogate images. ``gain``: the scale of the first layer (and the Hardtanh ceiling when sparse)."""

    bins: int = 1000
    structure: Literal["auto", "cumulative", "sparse"] = "auto"
    cutoffs: Literal["gaussian", "surrogate"] = "gaussian"
    mean: float = 0.47
    std: float = 0.125
    measurements: tuple[str, ...] = ("brightness", "left")
    gain: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.bins, bool) or not isinstance(self.bins, int) or self.bins < 1:
            raise ConfigError(
                f"Expected `bins` to be an int >= 1, but got {self.bins!r}. The paper uses 1000."
            )
        if not self.measurements or any(m not in MEASUREMENTS for m in self.measurements):
            raise ConfigError(
                f"Expected `measurements` to be a non-empty list from {', '.join(MEASUREMENTS)}, "
                f"but got {list(self.measurements)!r}."
            )
        if len(set(self.measurements)) != len(self.measurements):
            raise ConfigError(f"Expected distinct `measurements`, but got {list(self.measurements)!r}.")
        if self.bins < len(self.measurements):
            raise ConfigError(
                f"Expected at least one bin per measurement ({len(self.measurements)}), but got "
                f"bins={self.bins}."
            )
        if not (math.isfinite(self.mean) and math.isfinite(self.std) and self.std > 0):
            raise ConfigError(f"Expected a finite `mean` and `std` > 0, but got {self.mean} and {self.std}.")
        if not (math.isfinite(self.gain) and self.gain > 0):
            raise ConfigError(f"Expected `gain` > 0, but got {self.gain}.")


def _strictly_increasing(values: list[float], lo: float, hi: float) -> list[float]:
    """Clip interior cut-offs into ``(lo, hi)`` and separate ties by a tiny step."""
    out: list[float] = []
    step = (hi - lo) * 1e-9
    for v in values:
        v = min(max(v, lo + step), hi - step)
        if out and v <= out[-1]:
            v = out[-1] + step
        out.append(v)
    return out


def imprint_block(
    shape: tuple[int, int, int],
    normalization: Normalization,
    interior: list[list[float]],
    *,
    measurements: tuple[str, ...],
    structure: Literal["cumulative", "sparse"],
    gain: float = 1.0,
) -> ImprintBlock:
    """Build the imprint block: for measurement group ``g`` with interior cut-offs ``interior[g]``
    (``k_g - 1`` values in image units), ``k_g`` rows.

    Cumulative rows ``W_j = gain a``, ``b_j = -gain (c_j - offset)`` (``c_0`` below any image: always
    on); sparse rows ``W_j = s a / w_j``, ``b_j = -s (c_j - offset) / w_j`` with bin width
    ``w_j = c_{j+1} - c_j``, edges ``c_0 < 0``, ``c_k > 1`` (a mean of pixels in ``[0, 1]``) and
    ``s = gain * median(w)``, followed by Hardtanh clamped to ``[0, s]``. The output layer has one
    constant weight ``1 / (s k)``, so every row shares the per-sample factor."""
    lo, hi = -1e-3, 1.0 + 1e-3
    specs: list[tuple[Tensor, float, list[float]]] = []
    for name, cut in zip(measurements, interior):
        a_z, off = input_measurement(measurement_vector(name, shape), normalization)
        inner = _strictly_increasing(sorted(cut), lo, hi)
        edges = [-1.0, *inner, math.inf] if structure == "cumulative" else [lo, *inner, hi]
        specs.append((a_z, off, edges))
    scale = gain
    if structure == "sparse":
        # pre-activations inside a bin span (0, scale); a scale of about one bin width keeps the biases
        # O(1), so that a client's small FedAvg steps are not rounded away in float32
        widths = torch.cat([torch.diff(torch.tensor(e, dtype=torch.float64)) for _, _, e in specs])
        scale = gain * float(widths.median())
    rows_w: list[Tensor] = []
    rows_b: list[Tensor] = []
    groups: list[int] = []
    for g, (a_z, off, edges) in enumerate(specs):
        k = len(edges) - 1
        if structure == "cumulative":
            starts = torch.tensor(edges[:k], dtype=torch.float64)
            rows_w.append((scale * a_z).expand(k, -1))
            rows_b.append(-scale * (starts - off))
        else:
            e = torch.tensor(edges, dtype=torch.float64)
            width = e[1:] - e[:-1]
            rows_w.append(scale * a_z[None, :] / width[:, None])
            rows_b.append(-scale * (e[:-1] - off) / width)
        groups += [g] * k
    total = len(groups)
    block = ImprintBlock(
        shape, total, activation="relu" if structure == "cumulative" else "hardtanh", max_value=scale
    )
    with torch.no_grad():
        block.linear0.weight.copy_(torch.cat(rows_w).float())
        block.linear0.bias.copy_(torch.cat(rows_b).float())
        block.linear1.weight.fill_(1.0 / (scale * total))
        block.linear1.bias.zero_()
    block.layout = ImprintLayout(
        structure=structure,
        names=tuple(measurements),
        groups=tuple(groups),
        edges=tuple(tuple(e) for _, _, e in specs),
        measurements=tuple(a for a, _, _ in specs),
        offsets=tuple(o for _, o, _ in specs),
        scale=scale,
    )
    return block


# --------------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------------


@dataclass
class _Group:
    num: Tensor  # (k, D) residual weight-gradient of each bin
    den: Tensor  # (k,) residual bias-gradient of each bin
    edges: tuple[float, ...]
    a: Tensor
    offset: float
    structure: str
    den0: Tensor = field(init=False)  # (k,) each bin's bias-gradient before any subtraction

    def __post_init__(self) -> None:
        self.den0 = self.den.clone()

    def occupied(self, threshold: float, tol: float) -> Tensor:
        """Bins that still hold a sample: bias gradient above ``threshold`` and, once confirmed
        samples were subtracted, above ``tol`` of the bin's original value (what remains below that
        is the rounding error of the subtraction, not a sample)."""
        return (self.den.abs() > threshold) & (self.den.abs() > tol * self.den0.abs())

    def locate(self, z: Tensor) -> Tensor:
        """Bin index of each input ``z`` (n, D) by its measurement."""
        h = z @ self.a + self.offset
        k = self.den.shape[0]
        if self.structure == "cumulative":
            inner = torch.tensor(self.edges[1:k], dtype=h.dtype)
            return torch.searchsorted(inner, h, right=True).clamp(0, k - 1)
        e = torch.tensor(self.edges, dtype=h.dtype)
        return (torch.searchsorted(e, h, right=True) - 1).clamp(0, k - 1)

    def inside(self, z: Tensor, j: Tensor, *, slack: float) -> Tensor:
        """Whether the measurement of ``z`` lies inside bin ``j`` (up to ``slack`` of the bin width)."""
        h = z @ self.a + self.offset
        e = torch.tensor([x if math.isfinite(x) else 1e9 for x in self.edges], dtype=h.dtype)
        lo, hi = e[j], e[j + 1]
        width = torch.where(hi - lo < 1e6, hi - lo, torch.ones_like(hi))
        return (h >= lo - slack * width) & (h <= hi + slack * width)


@dataclass(frozen=True)
class Decoded:
    """Recovered model inputs (flattened), confirmed ones first, with bookkeeping for the notes.

    ``nonempty``: occupied bins per measurement; ``residual``: bins per measurement still occupied
    after the confirmed samples were subtracted, of which ``residual_consistent`` give a candidate
    consistent with one sample (its measurement inside its bin, its pixels inside the image
    range); ``consistent`` is their sum."""

    inputs: Tensor
    confirmed: int
    nonempty: tuple[int, ...]
    consistent: int
    residual: tuple[int, ...] = ()
    residual_consistent: tuple[int, ...] = ()


def _bins_of(weight: Tensor, bias: Tensor, structure: str) -> tuple[Tensor, Tensor]:
    if structure == "sparse":
        return weight.clone(), bias.clone()
    num, den = weight.clone(), bias.clone()
    num[:-1] -= weight[1:]
    den[:-1] -= bias[1:]
    return num, den


def _candidates(g: _Group, threshold: float, tol: float) -> tuple[Tensor, Tensor, Tensor]:
    idx = torch.nonzero(g.occupied(threshold, tol)).flatten()
    z = g.num[idx] / g.den[idx, None]
    return idx, z, g.den[idx]


def _close(a: Tensor, b: Tensor, tol: float) -> Tensor:
    """Pairwise ``max |a_i - b_j| <= tol * max(1, max |b_j|)`` as an (n, m) boolean matrix."""
    if not len(a) or not len(b):
        return torch.zeros(len(a), len(b), dtype=torch.bool)
    dist = torch.cdist(a, b, p=float("inf"))
    scale = b.abs().amax(dim=1).clamp_min(1.0)
    return dist <= tol * scale[None, :]


def decode_imprint(
    weight: Tensor,
    bias: Tensor,
    layout: ImprintLayout,
    *,
    max_samples: int | None = None,
    threshold: float = 1e-7,
    tol: float = 1e-3,
    bounds: tuple[Tensor, Tensor] | None = None,
) -> Decoded:
    """Recover inputs from the imprint layer's weight and bias gradient (or weight delta).

    ``threshold`` (relative to the largest bias entry) separates empty bins from occupied ones;
    ``tol`` is the relative agreement needed to confirm a sample in two measurements. ``bounds``
    (lowest and highest valid input per feature, in the model's input space) lets a candidate
    outside them count as a mixture of samples: one sample is an image, a mixture with weights of
    both signs extrapolates beyond the image range. Unconfirmed candidates consistent with one sample
    come before the others, each group by decreasing bias gradient."""
    w, b = weight.detach().double().cpu(), bias.detach().double().cpu()
    groups_idx = torch.tensor(layout.groups)
    groups: list[_Group] = []
    for gi in range(len(layout.names)):
        rows = torch.nonzero(groups_idx == gi).flatten()
        num, den = _bins_of(w[rows], b[rows], layout.structure)
        groups.append(
            _Group(num, den, layout.edges[gi], layout.measurements[gi], layout.offsets[gi], layout.structure)
        )
    thr = threshold * float(b.abs().max()) if b.numel() else 0.0
    nonempty = tuple(int((g.den.abs() > thr).sum()) for g in groups)
    confirmed: list[Tensor] = []
    if len(groups) > 1:
        confirmed = _peel(groups, thr, tol)
    rest: list[tuple[bool, float, Tensor]] = []
    residual: list[int] = []
    residual_ok: list[int] = []
    occupied = [g.occupied(thr, tol) for g in groups]
    for gi, g in enumerate(groups):
        idx, z, den = _candidates(g, thr, tol)
        ok = g.inside(z, idx, slack=1e-3) if len(idx) else torch.zeros(0, dtype=torch.bool)
        if bounds is not None and len(idx):
            lo, hi = (t.to(z.dtype).reshape(1, -1) for t in bounds)
            ok &= ((z >= lo) & (z <= hi)).all(dim=1)
        for oi, other in enumerate(groups):  # one sample also sits in an occupied bin of the others
            if oi != gi and len(idx):
                ok &= _in_occupied(other, occupied[oi], z)
        residual.append(len(idx))
        residual_ok.append(int(ok.sum()))
        for i in range(len(idx)):
            rest.append((bool(ok[i]), float(den[i].abs()), z[i]))
    rest.sort(key=lambda t: (not t[0], -t[1]))
    leftovers = [z for _, _, z in rest]
    if confirmed and leftovers:
        known = torch.stack(confirmed)
        left = torch.stack(leftovers)
        dup = _close(left, known, tol).any(dim=1)
        leftovers = [z for z, d in zip(leftovers, dup.tolist()) if not d]
    if len(groups) > 1 and leftovers:  # the same leftover seen in two measurements: keep one copy
        uniq: list[Tensor] = []
        for z in leftovers:
            if not uniq or not bool(_close(z[None], torch.stack(uniq), tol).any()):
                uniq.append(z)
        leftovers = uniq
    inputs = confirmed + leftovers
    if max_samples is not None:
        inputs = inputs[:max_samples]
    d = w.shape[1]
    stacked = torch.stack(inputs) if inputs else torch.zeros(0, d, dtype=torch.float64)
    return Decoded(
        stacked,
        len(confirmed),
        nonempty,
        sum(residual_ok),
        residual=tuple(residual),
        residual_consistent=tuple(residual_ok),
    )


def _in_occupied(group: _Group, occupied: Tensor, z: Tensor, *, slack: float = 1e-3) -> Tensor:
    """Whether the measurement of each input ``z`` (n, D) falls in (or within ``slack`` of a bin
    width of) a bin of ``group`` that still holds a sample."""
    k = occupied.shape[0]
    j = group.locate(z)
    out = torch.zeros(len(z), dtype=torch.bool)
    for shift in (-1, 0, 1):
        near = (j + shift).clamp(0, k - 1)
        out |= occupied[near] & group.inside(z, near, slack=slack)
    return out


@dataclass(frozen=True)
class ExactEstimate:
    """What the attacker can say about its exact recoveries without the ground truth.

    ``upper`` bounds the number of outputs that are one sample exactly (see :func:`estimate_exact`);
    ``confirmed`` outputs were read identically off two measurements (a sample alone in its bin in
    both or, rarely, the same mixture in both); ``occupied`` bins held the ``samples``."""

    upper: int
    confirmed: int
    outputs: int
    samples: int | None
    measurements: int
    occupied: int
    from_bins: bool = True

    def note(self) -> str:
        """The estimate as a report note, labelled as one and saying what it is."""
        of = f" of {self.samples}" if self.samples is not None else ""
        if not self.from_bins:
            return (
                f"estimated exact recoveries: at most {self.upper}{of} (an upper bound without ground "
                "truth: the outputs that are not gray fillers; over several local steps the bins' rows "
                "move, so a sample sharing a bin can come back alone and bin counts bound nothing "
                "tighter; the `exact` metric measures the count)"
            )
        if self.measurements > 1:
            basis = (
                f"{self.confirmed} read identically off two measurements, at most "
                f"{max(0, self.upper - self.confirmed)} more alone in a bin"
            )
        else:
            samples = self.samples if self.samples is not None else "?"
            basis = f"{self.occupied} occupied bins for {samples} samples"
        return (
            f"estimated exact recoveries: at most {self.upper}{of} (an upper bound from bin counts, "
            f"without ground truth: {basis}; samples sharing a bin can look like one, so the true "
            "count may be lower; the `exact` metric measures it)"
        )


def _singles_bound(occupied: int, consistent: int, samples: int) -> int:
    """Most samples alone in their bin when ``samples`` fill ``occupied`` bins, of which only
    ``consistent`` give a candidate consistent with one sample: fewer bins than samples means at
    least one bin holds several."""
    if samples <= 0 or occupied <= 0:
        return 0
    most = occupied - 1 if occupied < samples else occupied
    return max(0, min(consistent, most, samples))


def estimate_exact(decoded: Decoded, num_samples: int | None, *, one_step: bool = True) -> ExactEstimate:
    """An upper bound on the exactly recovered outputs, from what the attacker sees (no ground truth).

    An output is one sample exactly only if it is confirmed or alone in a bin left after the
    confirmed ones were subtracted. A sample alone in such a bin in two measurements would have been
    confirmed, so the lone samples of different measurements are different samples. A lone sample's
    candidate is *consistent*: inside its bin, inside the image range, and in an occupied bin of
    every other measurement (``v_g`` of the ``m_g`` remaining bins of measurement ``g``). With ``R``
    samples left, at most ``min(v_g, m_g - 1)`` are alone when ``m_g < R`` (one bin holds several).
    ``R = B - C`` when every confirmed output is one sample; if ``k`` of them are mixtures (two
    samples sharing a bin in both measurements read the same), ``R <= B - C - k``, so the bound is
    the maximum over ``k`` and ``R``. Without the batch size ``B`` it counts the confirmed and
    consistent candidates. Duplicate images in a batch break the bound (their mixture is each of
    them). Over several local steps (``one_step = False``: FedAvg weight deltas) rows move away from
    the samples that fired them, so two samples of one bin can each come back alone (or not at all)
    and no bin argument holds: the bound is then the number of outputs.

    >>> d = Decoded(torch.zeros(62, 4), 0, (62,), 62, residual=(62,), residual_consistent=(62,))
    >>> estimate_exact(d, 64).upper  # 62 bins for 64 samples: at least one bin holds two or more
    61
    """
    outputs = len(decoded.inputs)
    c = decoded.confirmed
    occupied, consistent = decoded.residual, decoded.residual_consistent
    occupied_bins = sum(decoded.nonempty)
    measurements = len(decoded.nonempty)
    if not one_step:
        return ExactEstimate(
            outputs, min(c, outputs), outputs, num_samples, measurements, occupied_bins, from_bins=False
        )
    if num_samples is None:
        upper = c + sum(consistent)
    else:
        upper = -1
        for k in range(0, min(c, max(0, num_samples - c)) + 1):
            top = num_samples - c - k
            # no mixture among the confirmed: exactly the other samples are left; k mixtures hold at
            # least 2k samples, so at most B - C - k are left
            low = top if k == 0 else max(occupied, default=0)
            for rest in range(low, top + 1):
                if rest < max(occupied, default=0) or (rest > 0 and min(occupied, default=0) == 0):
                    continue  # every sample left sits in an occupied bin of each measurement
                singles = sum(_singles_bound(m, v, rest) for m, v in zip(occupied, consistent))
                upper = max(upper, c - k + min(rest, singles))
        if upper < 0:  # the counts contradict each other (more confirmed than samples): no bin bound
            upper = c + sum(consistent)
        upper = min(upper, num_samples)
    return ExactEstimate(
        min(upper, outputs), min(c, outputs), outputs, num_samples, measurements, occupied_bins
    )


#: A confirmed sample: its input, its per-sample factor and its bin in each measurement it was seen in.
_Sample = tuple[Tensor, Tensor, dict[int, int]]


def _subtract(groups: list[_Group], samples: list[_Sample]) -> None:
    """Remove confirmed samples from every measurement's bins (their known bin, else located)."""
    for z, g, bins in samples:
        for gi, grp in enumerate(groups):
            j = bins.get(gi, int(grp.locate(z[None])[0]))
            grp.num[j] -= g * z
            grp.den[j] -= g


def _peel(groups: list[_Group], thr: float, tol: float) -> list[Tensor]:
    """Confirm samples seen alone in two measurements, chains of samples that explain each other's
    bins exactly, or several samples alone in one measurement that together fill one bin of another;
    subtract them everywhere and repeat until nothing new is confirmed."""
    confirmed: list[Tensor] = []
    for _ in range(10_000):
        cands = [_candidates(g, thr, tol) for g in groups]
        accepted: list[_Sample] = []
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                close = _close(cands[i][1], cands[j][1], tol)
                for a, c in torch.nonzero(close).tolist():
                    bins = {i: int(cands[i][0][a]), j: int(cands[j][0][c])}
                    accepted.append((cands[i][1][a], cands[i][2][a], bins))
        if not accepted:
            accepted = _chain_any(groups, cands, thr, tol)
        if not accepted:
            accepted = _explained(groups, cands, tol)
        unique: list[_Sample] = []
        for sample in accepted:  # one copy per sample, none already confirmed
            known = torch.stack(confirmed + [u[0] for u in unique]) if confirmed or unique else None
            if known is None or not bool(_close(sample[0][None], known, tol).any()):
                unique.append(sample)
        if not unique:
            break
        _subtract(groups, unique)
        confirmed += [z for z, _, _ in unique]
    return confirmed


def _chain(
    groups: list[_Group],
    i: int,
    j: int,
    start: tuple[Tensor, Tensor, int],
    thr: float,
    tol: float,
    *,
    max_len: int = 8,
) -> list[_Sample]:
    """Follow the hypothesis that candidate ``start = (z, g, bin)`` of measurement ``i`` is one sample:
    subtract it from its bin in measurement ``j``; what remains must be empty (confirmed) or one more
    sample, which is subtracted from its bin in ``i``, and so on (a chain of samples sharing bins
    alternately). Any step whose remainder is not inside its own bin refutes the chain."""
    z0, g0, b0 = start
    chain: list[_Sample] = [(z0, g0, {i: b0})]
    cur = j
    for _ in range(max_len):
        grp = groups[cur]
        newest = chain[-1]
        t = newest[2].get(cur, int(grp.locate(newest[0][None])[0]))
        newest[2][cur] = t
        members = [s for s in chain if s[2].get(cur, int(grp.locate(s[0][None])[0])) == t]
        num = grp.num[t] - sum((s[1] * s[0] for s in members), torch.zeros_like(grp.num[t]))
        den = grp.den[t] - sum((s[1] for s in members), torch.zeros_like(grp.den[t]))
        scale = float(grp.num[t].abs().max().clamp_min(1e-300))
        if (
            abs(float(den)) <= max(thr, tol * abs(float(grp.den[t])))
            and float(num.abs().max()) <= tol * scale
        ):
            for s in members:
                s[2][cur] = t
            return chain
        if abs(float(den)) <= thr:
            return []
        nz = num / den
        if not bool(grp.inside(nz[None], torch.tensor([t]), slack=1e-3)[0]):
            return []
        chain.append((nz, den, {cur: t}))
        cur = i if cur == j else j
    return []


def _chain_any(
    groups: list[_Group], cands: list[tuple[Tensor, Tensor, Tensor]], thr: float, tol: float
) -> list[_Sample]:
    for i, (idx, zi, gi) in enumerate(cands):
        for j in range(len(groups)):
            if i == j:
                continue
            for a in range(len(zi)):
                chain = _chain(groups, i, j, (zi[a], gi[a], int(idx[a])), thr, tol)
                if chain:
                    return chain
    return []


def _explained(groups: list[_Group], cands: list[tuple[Tensor, Tensor, Tensor]], tol: float) -> list[_Sample]:
    """Candidates of one measurement whose sum reproduces a bin of another measurement exactly (three
    or more samples sharing that bin, each alone in the first measurement)."""
    for i, (idx, zi, gi) in enumerate(cands):
        if len(zi) < 2:
            continue
        for j, other in enumerate(groups):
            if i == j:
                continue
            where = other.locate(zi)
            for t in torch.unique(where).tolist():
                members = torch.nonzero(where == t).flatten()
                if len(members) < 2:
                    continue
                num = (gi[members, None] * zi[members]).sum(0)
                den = gi[members].sum()
                ref_num, ref_den = other.num[t], other.den[t]
                scale = float(ref_num.abs().max().clamp_min(1e-300))
                if float((num - ref_num).abs().max()) <= tol * scale and abs(
                    float(den - ref_den)
                ) <= tol * abs(float(ref_den)):
                    return [(zi[m], gi[m], {i: int(idx[m]), j: t}) for m in members.tolist()]
    return []


def _one_step(view: AttackerView) -> bool:
    """Whether the update is one gradient step (FedSGD, or FedAvg known to take a single step)."""
    if view.update.kind.value != "delta":
        return True
    if view.training is None or view.num_samples is None:
        return False
    try:
        return view.training.local_steps(view.num_samples) == 1
    except ValueError:  # an inconsistent training config: assume several steps
        return False


def _input_bounds(
    shape: tuple[int, int, int], normalization: Normalization | None, *, slack: float = 0.01
) -> tuple[Tensor, Tensor]:
    """The image range ``[-slack, 1 + slack]`` per pixel, in the model's (normalised) input space."""
    lo = torch.full(shape, -slack, dtype=torch.float64)
    hi = torch.full(shape, 1.0 + slack, dtype=torch.float64)
    if normalization is not None and not normalization.is_identity:
        lo, hi = normalization.apply(lo[None])[0], normalization.apply(hi[None])[0]
    return lo.reshape(-1), hi.reshape(-1)


# --------------------------------------------------------------------------------------------------
# The attack
# --------------------------------------------------------------------------------------------------


@register_attack
class RobbingTheFed(ImprintAttack):
    """Imprint module with k bins in front of the model; exact inputs from consecutive bin differences."""

    name = "robbing-the-fed"
    title = "Robbing the Fed"
    paper = "Fowl, Geiping, Czaja, Goldblum, Goldstein. Robbing the Fed. ICLR 2022"
    config_cls = RobbingTheFedConfig
    config: RobbingTheFedConfig
    base_requirements = (*ImprintAttack.base_requirements, SHAPE_NEEDED)

    def requirements(self) -> tuple[Requirement, ...]:
        extra = (SURROGATE_NEEDED,) if self.config.cutoffs == "surrogate" else ()
        return self.base_requirements + extra

    def structure_for(self, training: TrainingConfig | None) -> Literal["cumulative", "sparse"]:
        """The bin structure crafted for a client running ``training`` (``None``: unknown)."""
        if self.config.structure != "auto":
            return self.config.structure
        return "sparse" if training is not None and training.protocol == "fedavg" else "cumulative"

    def _interior(self, knowledge: CraftView, shape: tuple[int, int, int]) -> list[list[float]]:
        cfg = self.config
        n = len(cfg.measurements)
        sizes = [cfg.bins // n + (1 if g < cfg.bins % n else 0) for g in range(n)]
        if cfg.cutoffs == "gaussian":
            # halves of an image vary more than the whole image: widen their assumed spread
            return [
                gaussian_edges(k, cfg.mean, cfg.std * (1.0 if m == "brightness" else 1.2))
                for k, m in zip(sizes, cfg.measurements)
            ]
        images = self._surrogate_images(
            knowledge, shape, option="cutoffs = 'surrogate'", instead="cutoffs = 'gaussian'"
        )
        out = []
        for k, m in zip(sizes, cfg.measurements):
            values = images.flatten(1) @ measurement_vector(m, shape).reshape(-1)
            out.append(quantile_edges(values, k))
        return out

    def craft(self, knowledge: CraftView) -> tuple[nn.Module, ...]:
        shape, norm = self._craft_input(knowledge)
        structure = self.structure_for(knowledge.training)
        block = imprint_block(
            shape,
            norm,
            self._interior(knowledge, shape),
            measurements=self.config.measurements,
            structure=structure,
            gain=self.config.gain,
        )
        ref = next(iter(knowledge.model.parameters()), None)
        if ref is not None:
            block = block.to(device=ref.device, dtype=ref.dtype)
        crafted = ImprintModel(block, copy.deepcopy(knowledge.model))
        logger.info(
            "%s: %d %s bins on %s in front of %s",
            self.title,
            block.bins,
            structure,
            "+".join(self.config.measurements),
            type(knowledge.model).__name__,
        )
        return tuple(crafted for _ in range(knowledge.num_clients))

    def check_view(self, view: AttackerView) -> list[str]:
        found = find_imprint(view.model)
        if found is None or found[1].layout is None:
            return [
                f"{self.title} reads the gradient of the imprint layer it crafted, but the view's model "
                f"({type(view.model).__name__}) has none. Run it through the experiment pipeline so the "
                "server sends the crafted model (Attack.craft)."
            ]
        prefix = f"{found[0]}." if found[0] else ""
        missing = [k for k in ("linear0.weight", "linear0.bias") if prefix + k not in view.update.params]
        if missing:
            return [f"{self.title} needs the update of {prefix}linear0, but it is missing from the update."]
        return []

    def _reconstruct(
        self, view: AttackerView, *, progress: ProgressFn | None, device: torch.device
    ) -> AttackResult:
        start = time.perf_counter()
        found = find_imprint(view.model)
        assert found is not None and found[1].layout is not None  # checked in check_view
        prefix = f"{found[0]}." if found[0] else ""
        block, layout = found[1], found[1].layout
        n = view.num_samples
        shape = block.in_shape
        decoded = decode_imprint(
            view.update.params[prefix + "linear0.weight"],
            view.update.params[prefix + "linear0.bias"],
            layout,
            max_samples=n,
            bounds=_input_bounds(shape, view.normalization),
        )
        images = to_images(decoded.inputs, shape, view.normalization)
        recovered = len(images)
        estimate = estimate_exact(decoded, n, one_step=_one_step(view))
        several = len(layout.names) > 1
        notes = [
            f"structure: {layout.structure} bins on {'+'.join(layout.names)}",
            f"non-empty bins: {sum(decoded.nonempty)} of {block.bins}"
            + (f" ({' + '.join(map(str, decoded.nonempty))})" if several else ""),
            (
                f"recovered {recovered} images: {estimate.confirmed} read identically off two "
                f"measurements, {min(recovered - estimate.confirmed, decoded.consistent)} more from bins "
                "consistent with one sample (inside their bin and the image range)"
                if several
                else f"recovered {recovered} images, {decoded.consistent} from bins consistent with one "
                "sample (inside their bin and the image range)"
            ),
            estimate.note(),
        ]
        blurred = view.update.kind.value == "delta" and layout.structure == "cumulative"
        blur = "cumulative bins under FedAvg: several local steps blur bin differences (use sparse)"
        return self._extracted(
            images,
            shape,
            n,
            notes=notes,
            fewer="fewer occupied bins",
            more_notes=(blur,) if blurred else (),
            start=start,
            progress=progress,
        )
