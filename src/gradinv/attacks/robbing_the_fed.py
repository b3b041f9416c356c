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
not recovered. :func:`count_exact` counts exactly recovered images against the ground truth (used by
the acceptance benchmark; the attack itself cannot see the truth and reports how many recovered
images are consistent with a single sample per bin).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from gradinv.attacks._imprint import (
    MEASUREMENTS,
    ExactCount,
    count_exact,
    gaussian_edges,
    input_measurement,
    measurement_vector,
    quantile_edges,
    to_images,
)
from gradinv.attacks.base import (
    ACTIVE_NEEDED,
    UPDATES_NEEDED,
    Attack,
    AttackConfig,
    ProgressFn,
    register_attack,
)
from gradinv.errors import AttackRefused, ConfigError
from gradinv.models.imprint import ImprintBlock, ImprintLayout, ImprintModel, find_imprint
from gradinv.threat import Knowledge, Requirement
from gradinv.types import AttackerView, AttackResult, CraftView, Normalization, Reconstruction, TrainingConfig

__all__ = [
    "ExactCount",
    "RobbingTheFed",
    "RobbingTheFedConfig",
    "count_exact",
    "decode_imprint",
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
    """Recovered model inputs (flattened), confirmed ones first, with bookkeeping for the notes."""

    inputs: Tensor
    confirmed: int
    nonempty: tuple[int, ...]
    consistent: int


def _bins_of(weight: Tensor, bias: Tensor, structure: str) -> tuple[Tensor, Tensor]:
    if structure == "sparse":
        return weight.clone(), bias.clone()
    num, den = weight.clone(), bias.clone()
    num[:-1] -= weight[1:]
    den[:-1] -= bias[1:]
    return num, den


def _candidates(g: _Group, threshold: float) -> tuple[Tensor, Tensor, Tensor]:
    idx = torch.nonzero(g.den.abs() > threshold).flatten()
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
) -> Decoded:
    """Recover inputs from the imprint layer's weight and bias gradient (or weight delta).

    ``threshold`` (relative to the largest bias entry) separates empty bins from occupied ones;
    ``tol`` is the relative agreement needed to confirm a sample in two measurements."""
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
    rest: list[tuple[float, Tensor]] = []
    consistent = 0
    for g in groups:
        idx, z, den = _candidates(g, thr)
        if not len(idx):
            continue
        ok = g.inside(z, idx, slack=1e-3)
        consistent += int(ok.sum())
        for i in range(len(idx)):
            rest.append((float(den[i].abs()), z[i]))
    rest.sort(key=lambda t: -t[0])
    leftovers = [z for _, z in rest]
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
    return Decoded(stacked, len(confirmed), nonempty, consistent)


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
        cands = [_candidates(g, thr) for g in groups]
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


# --------------------------------------------------------------------------------------------------
# The attack
# --------------------------------------------------------------------------------------------------


@register_attack
class RobbingTheFed(Attack):
    """Imprint module with k bins in front of the model; exact inputs from consecutive bin differences."""

    name = "robbing-the-fed"
    title = "Robbing the Fed"
    family = "malicious-server"
    paper = "Fowl, Geiping, Czaja, Goldblum, Goldstein. Robbing the Fed. ICLR 2022"
    config_cls = RobbingTheFedConfig
    config: RobbingTheFedConfig
    active = True
    base_requirements = (UPDATES_NEEDED, ACTIVE_NEEDED, SHAPE_NEEDED)

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
        surrogate = knowledge.surrogate
        if surrogate is None or len(surrogate) < 2:
            raise AttackRefused(
                f"{self.title} with cutoffs = 'surrogate' needs at least 2 surrogate images, but got "
                f"{0 if surrogate is None else len(surrogate)}. Set [data] surrogate_images > 1 or use "
                "cutoffs = 'gaussian'."
            )
        c, h, w = shape
        images = surrogate.to_batch(image_size=h if h == w else None, channels=c).images.double()
        if tuple(images.shape[1:]) != shape:
            raise AttackRefused(
                f"Expected surrogate images of shape {shape}, but got {tuple(images.shape[1:])}. "
                "Use square images of the client's size."
            )
        out = []
        for k, m in zip(sizes, cfg.measurements):
            values = images.flatten(1) @ measurement_vector(m, shape).reshape(-1)
            out.append(quantile_edges(values, k))
        return out

    def craft(self, knowledge: CraftView) -> tuple[nn.Module, ...]:
        problems = self.check_threat(knowledge.threat)
        if problems:
            raise AttackRefused(" ".join(problems))
        if knowledge.input_shape is None or knowledge.normalization is None:
            raise AttackRefused(f"{self.title} needs the input shape and normalisation (basic knowledge).")
        shape = knowledge.input_shape
        structure = self.structure_for(knowledge.training)
        block = imprint_block(
            shape,
            knowledge.normalization,
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
        decoded = decode_imprint(
            view.update.params[prefix + "linear0.weight"],
            view.update.params[prefix + "linear0.bias"],
            layout,
            max_samples=n,
        )
        images = to_images(decoded.inputs, block.in_shape, view.normalization)
        recovered = len(images)
        if n is not None and recovered < n:
            images = torch.cat([images, torch.full((n - recovered, *block.in_shape), 0.5)])
        total_bins = block.bins
        notes = [
            f"structure: {layout.structure} bins on {'+'.join(layout.names)}",
            f"non-empty bins: {sum(decoded.nonempty)} of {total_bins}",
            (
                f"recovered {recovered} images: {decoded.confirmed} confirmed by two measurements, "
                f"{decoded.consistent} more consistent with one sample in their bin"
                if len(layout.names) > 1
                else f"recovered {recovered} images; {decoded.consistent} consistent with one sample per bin"
            ),
        ]
        if n is not None and recovered < n:
            notes.append(
                f"{n - recovered} of {n} outputs are gray fillers (fewer occupied bins than samples)"
            )
        if view.update.kind.value == "delta" and layout.structure == "cumulative":
            notes.append(
                "cumulative bins under FedAvg: several local steps blur bin differences (use sparse)"
            )
        notes.append("labels: not recovered")
        seconds = time.perf_counter() - start
        if progress is not None:
            progress(1, 1, 0.0)
        return AttackResult(
            attack=self.name,
            reconstruction=Reconstruction(images=images.cpu()),
            parameters=self.config.to_dict(),
            iterations=1,
            seconds=seconds,
            notes=tuple(notes),
        )
