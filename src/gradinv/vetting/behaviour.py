"""Behaviour-based vetting: what the received model *does* with harmless inputs.

The parameter checks of :mod:`gradinv.vetting.checks` recognise constructions; an attacker who writes
the same attack differently (trap weights with binomially distributed signs, imprint rows that are
not bit-identical) passes them. What every such construction needs, however it is written, is a
layer reading the input whose units each fire for *few* inputs: a ReLU neuron fired by one sample of
a batch has ``dL/dW_i = g z_s``, ``dL/db_i = g``, and gives the sample away (Boenisch et al., "When
the Curious Abandon Honesty", EuroS&P 2023, §4), and Robbing the Fed's bins (Fowl et al., ICLR 2022,
§3) fire on nested thresholds of one linear measurement so that differences of consecutive bins
hold one sample each. Both show up when harmless probe inputs go through the model.

Probes: the client's own inputs when given, and always seeded probe images in ``[0, 1]`` of the
model's input shape (:func:`noise_probes`: i.i.d. uniform noise, mid-grey with small noise, and
smooth random images of random brightness). Forward hooks record the pre-activation of every
``nn.Linear`` / ``nn.Conv*`` layer that reads the model input (the layers an input-recovering attack
must own; the first layer called when none reads the input as it is). A unit *fires* for an input
(and, for a convolution, a position) when its pre-activation is positive: a following ReLU passes
it. Its *rate* is the fraction of probe inputs (times positions) it fires for.

* ``sparse-activations``: at least 80% of a layer's units (8 or more) fire for less than 5% of the
  probes. Measured on the seeded probes (``tests/vetting/test_behaviour.py`` builds every model
  below): untrained models of every registered architecture x init scheme x seeds 0-2 at most 0.50
  (ResNet-20, default init, seed 2); models trained on real digits (``load_digits``; MLP, CNN,
  ConvNet, ResNet-20, 40-300 SGD steps) at most 0.72 (a CNN on 16 px digits after 300 steps, whose
  negative-bias stroke detectors are genuinely sparse: 0.72 on the digits themselves too); the
  trained CIFAR ResNet-20 / -56 0.13 / 0.25. Malicious, written independently of
  :mod:`gradinv.attacks` (uniform magnitudes, each entry negative with probability 1/2, negatives
  x3, zero bias), seeds 0-2: 1.00 on an MLP's first Linear (also with negatives x1.2), 0.86-1.00 on
  the first conv of ResNet-20 / -18, ConvNet, CNN, LeNet, RGAP-CNN6; gradinv's own trap weights
  with a fixed scale are flagged too (calibrated on surrogate photos, 48 units: not flagged).
* ``binning-activations``: four or more units of a Linear layer with intermediate rates (2%-98%)
  whose pre-activations over the probes correlate above 0.999: they measure one quantity and fire
  on nested thresholds of it (evidence: whether their firing sets are nested). Honest Linear input
  layers: largest correlation 0.71 (untrained MLPs) and 0.90 (MLPs trained on digits); imprint bins
  of mean brightness: 1.0, and still 0.9999993 when the rows are jittered until their cosine is
  0.998 (``parallel-rows`` needs 0.9999).
* ``activation-shift`` (with the previous global model): a layer reading the input whose share of
  rarely firing units rose by 0.4 or more since the previous model, to at least 0.5. Measured on
  three rounds of honest FedAvg / FedSGD on real photos (LeNet, MLP, ConvNet, ResNet-20): at most
  +0.06; a trap planted in an MLP trained on digits: +0.8 and more. A diverging round (MLP, lr 0.5,
  momentum 0.9, 5 local epochs, weights moved 4.9x their norm) killed its first layer (+0.71) and is
  flagged, as ``large-jump`` flags it.

What it cannot see: traps planted in hidden layers (feature traps; trained hidden layers are sparse
honestly), and a model whose sparse units fire for inputs the probes never resemble (the client's
own data, passed as ``data``, closes most of that gap).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from gradinv.vetting.findings import Finding

__all__ = [
    "LayerActivity",
    "activity",
    "check_activation_shift",
    "check_binning",
    "check_sparse_activations",
    "infer_input_shape",
    "noise_probes",
]

logger = logging.getLogger(__name__)

PROBES = 64
RARE_RATE = 0.05
SPARSE_FRACTION = 0.8
MIN_UNITS = 8
BIN_CORR = 0.999
BIN_MIN_GROUP = 4
BIN_RATE = (0.02, 0.98)
SHIFT_RISE = 0.4
SHIFT_MIN = 0.5

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
#: Square image sizes tried when the input shape must be guessed for a convolutional first layer.
_SIZES = (32, 28, 64, 16, 224, 8)


@dataclass(frozen=True)
class LayerActivity:
    """What one layer did on the probes: per-unit firing ``rates`` (fraction of inputs x positions
    with a positive pre-activation) and ``pre``, the per-input pre-activation (spatial mean for
    convolutions), shape ``(probes, units)``."""

    name: str
    kind: str
    rates: Tensor
    pre: Tensor

    @property
    def units(self) -> int:
        return int(self.rates.numel())

    @property
    def rare_fraction(self) -> float:
        return float((self.rates < RARE_RATE).double().mean())


def noise_probes(shape: Sequence[int], n: int = PROBES, seed: int = 0) -> Tensor:
    """``n`` seeded harmless probe inputs in ``[0, 1]`` of ``shape`` (``(C, H, W)``, or ``(D,)`` for a
    flat input): a quarter i.i.d. uniform noise, a quarter mid-grey 0.5 with noise of std 0.05, half
    smooth random images (bilinearly upsampled 4x4 noise) of random brightness with small noise."""
    gen = torch.Generator().manual_seed(seed)
    dims = tuple(int(s) for s in shape)
    if len(dims) == 1:
        flat = noise_probes((1, 1, dims[0]), n, seed)
        return flat.reshape(n, dims[0])
    if len(dims) == 2:
        dims = (1, *dims)
    c, *spatial = dims
    k = max(n // 4, 1)
    iid = torch.rand(k, *dims, generator=gen)
    grey = (0.5 + 0.05 * torch.randn(k, *dims, generator=gen)).clamp(0, 1)
    m = n - 2 * k
    low = torch.rand(m, c, *(min(4, s) for s in spatial), generator=gen)
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}.get(len(spatial), "nearest")
    smooth = nn.functional.interpolate(low, size=tuple(spatial), mode=mode, align_corners=False)
    bright = torch.rand(m, *([1] * len(dims)), generator=gen)
    smooth = (0.5 * smooth + 0.5 * bright + 0.03 * torch.randn(m, *dims, generator=gen)).clamp(0, 1)
    return torch.cat([iid, grey, smooth])


def _forwards(model: nn.Module, shape: tuple[int, ...]) -> bool:
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            model(torch.full((2, *shape), 0.5))
    except (RuntimeError, ValueError, TypeError, IndexError):
        return False
    finally:
        for m, mode in modes.items():
            m.train(mode)
    return True


def infer_input_shape(model: nn.Module) -> tuple[int, ...] | None:
    """A per-sample input shape ``model`` accepts, guessed from its first Linear / Conv layer (in
    registration order): a flat Linear input as 3- or 1-channel square images (or flat), a 2-D
    convolution's channels at the common sizes 32, 28, 64, 16, 224, 8. ``None`` when none forwards."""
    first = next((m for m in model.modules() if isinstance(m, _LAYERS)), None)
    if first is None:
        return None
    candidates: list[tuple[int, ...]] = []
    if isinstance(first, nn.Linear):
        d = first.in_features
        for c in (3, 1):
            side = math.isqrt(d // c) if d % c == 0 else 0
            if side and c * side * side == d:
                candidates.append((c, side, side))
        candidates.append((d,))
    elif isinstance(first, nn.Conv2d):
        candidates += [(first.in_channels, s, s) for s in _SIZES]
    elif isinstance(first, nn.Conv1d):
        candidates += [(first.in_channels, s) for s in (64, 32, 128)]
    for shape in candidates:
        if _forwards(model, shape):
            return shape
    return None


class _Done(Exception):
    """Raised by a hook to stop the forward pass once the input layers have been recorded."""


def activity(model: nn.Module, x: Tensor) -> dict[str, LayerActivity]:
    """The activity of the layers of ``model`` that read its input ``x`` (or, when none reads ``x``
    as it is, of the first Linear / Conv layer called), in eval mode and without gradients (the
    modes of ``model`` are restored; BatchNorm running statistics are not updated in eval mode).
    The forward pass stops at the first layer after them that does not read ``x``. Raises what the
    forward pass raises."""
    modes = {m: m.training for m in model.modules()}
    dtype = next((p.dtype for p in model.parameters()), torch.float32)
    x = x.detach().to(dtype=dtype if dtype.is_floating_point else torch.float32).contiguous()
    ptr, numel = x.data_ptr(), x.numel()
    calls: list[tuple[str, str, Tensor]] = []
    handles: list[RemovableHandle] = []

    def hook_for(name: str) -> Callable[[nn.Module, tuple[Tensor, ...], Tensor], None]:
        def hook(module: nn.Module, args: tuple[Tensor, ...], out: Tensor) -> None:
            if not args or not isinstance(args[0], Tensor) or not isinstance(out, Tensor):
                return
            reads = args[0].data_ptr() == ptr and args[0].numel() == numel
            if reads or not calls:
                calls.append((name, type(module).__name__, out.detach().double()))
            if not reads:
                raise _Done

        return hook

    for name, module in model.named_modules():
        if isinstance(module, _LAYERS):
            handles.append(module.register_forward_hook(hook_for(name)))
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    except _Done:
        pass
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes.items():
            m.train(mode)
    out: dict[str, LayerActivity] = {}
    for name, kind, o in calls:
        if name in out or o.ndim < 2:
            continue
        spatial = tuple(range(2, o.ndim))
        rates = (o > 0).double().mean(dim=(0, *spatial))
        pre = o.mean(dim=spatial) if spatial else o
        out[name] = LayerActivity(name, kind, rates, pre)
    logger.debug("probed %d input layer(s) with %d inputs", len(out), len(x))
    return out


def _quantiles(rates: Tensor) -> str:
    q = torch.quantile(rates.float(), torch.tensor([0.1, 0.5, 0.9])).tolist()
    return f"10/50/90% quantiles of the rates {q[0]:.3f} / {q[1]:.3f} / {q[2]:.3f}"


def check_sparse_activations(acts: dict[str, LayerActivity], probes: str) -> list[Finding]:
    """Input layers (8+ units) where 80% or more of the units fire for less than 5% of the probes."""
    out = []
    for a in acts.values():
        if a.units < MIN_UNITS:
            continue
        frac = a.rare_fraction
        if frac < SPARSE_FRACTION:
            continue
        dead = float((a.rates == 0).double().mean())
        out.append(
            Finding(
                "high",
                "sparse-activations",
                f"{frac:.0%} of the {a.units} units of {a.name!r} ({a.kind}, reading the model input) fire "
                f"(pre-activation > 0) for less than {RARE_RATE:.0%} of the {probes} ({dead:.0%} for none; "
                f"{_quantiles(a.rates)}); threshold {SPARSE_FRACTION:.0%} of the units, honest models "
                "measured at most 72%. Units that few inputs activate isolate single samples in their "
                "gradient, so the input can be read off it: trap weights (Boenisch et al., EuroS&P 2023).",
                (f"{a.name}.weight",),
                {
                    "rare_fraction": frac,
                    "dead_fraction": dead,
                    "median_rate": float(a.rates.median()),
                    "units": float(a.units),
                    "threshold": SPARSE_FRACTION,
                    "rare_rate": RARE_RATE,
                },
            )
        )
    return out


def _corr(pre: Tensor) -> Tensor:
    z = pre - pre.mean(dim=0, keepdim=True)
    norms = z.norm(dim=0)
    z = z / norms.clamp_min(1e-300)
    c = z.T @ z
    c[norms == 0] = 0
    c[:, norms == 0] = 0
    return c


def check_binning(acts: dict[str, LayerActivity], probes: str) -> list[Finding]:
    """Four or more Linear units with intermediate rates whose pre-activations correlate > 0.999 on
    the probes: one measurement cut at several thresholds (imprint bins)."""
    out = []
    for a in acts.values():
        if a.kind != "Linear" or a.units < BIN_MIN_GROUP:
            continue
        mid = torch.nonzero((a.rates > BIN_RATE[0]) & (a.rates < BIN_RATE[1])).flatten()
        if len(mid) < BIN_MIN_GROUP:
            continue
        close = _corr(a.pre[:, mid]) > BIN_CORR
        close.fill_diagonal_(False)
        free = torch.ones(len(mid), dtype=torch.bool)
        groups: list[list[int]] = []
        for i in range(len(mid)):
            if free[i] and bool(close[i].any()):
                members = torch.nonzero((close[i] | (torch.arange(len(mid)) == i)) & free).flatten()
                free[members] = False
                groups.append([int(mid[j]) for j in members])
        big = [g for g in groups if len(g) >= BIN_MIN_GROUP]
        if not big:
            continue
        largest = max(big, key=len)
        fired = a.pre[:, largest] > 0
        order = torch.argsort(fired.double().mean(dim=0))
        f = fired[:, order]
        nested = bool((f[:, :-1] <= f[:, 1:]).all())  # each unit fires only where the next-denser one does
        involved = sum(len(g) for g in big)
        out.append(
            Finding(
                "high",
                "binning-activations",
                f"{involved} of the {a.units} units of {a.name!r} (reading the model input) respond alike to "
                f"the {probes}: in {len(big)} group(s), the largest of {len(largest)}, their pre-activations "
                f"correlate above {BIN_CORR} (honest layers measured at most 0.90) while they fire for "
                f"different shares of the probes ({float(a.rates[largest].min()):.2f}-"
                f"{float(a.rates[largest].max()):.2f})"
                + (", on nested sets of inputs" if nested else "")
                + ": one measurement of the input cut at several thresholds, the bins of an imprint layer "
                "whose differences hold single samples (Robbing the Fed, Fowl et al. 2022).",
                (f"{a.name}.weight",),
                {
                    "binned_units": float(involved),
                    "largest_group": float(len(largest)),
                    "nested": float(nested),
                    "threshold": BIN_CORR,
                },
            )
        )
    return out


def check_activation_shift(
    acts: dict[str, LayerActivity], previous: dict[str, LayerActivity], probes: str
) -> list[Finding]:
    """Input layers whose share of rarely firing units rose by 0.4+ (to 0.5+) since the previous model."""
    out = []
    for name, a in acts.items():
        p = previous.get(name)
        if p is None or p.units != a.units or a.units < MIN_UNITS:
            continue
        now, before = a.rare_fraction, p.rare_fraction
        if now - before >= SHIFT_RISE and now >= SHIFT_MIN:
            out.append(
                Finding(
                    "high",
                    "activation-shift",
                    f"since the previous global model, the share of units of {name!r} (reading the model "
                    f"input) that fire for less than {RARE_RATE:.0%} of the {probes} rose from {before:.0%} "
                    f"to {now:.0%} (threshold: a rise of {SHIFT_RISE:.0%} to at least {SHIFT_MIN:.0%}; "
                    "honest rounds measured at most 6 points): one round of training does not silence a "
                    "layer, a server planting trap weights does (Boenisch et al., EuroS&P 2023).",
                    (f"{name}.weight",),
                    {"rare_fraction": now, "previous_rare_fraction": before, "threshold": SHIFT_RISE},
                )
            )
    return out
