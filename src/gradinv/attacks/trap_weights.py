"""Trap weights.

Boenisch, Dziedzic, Schuster, Shamsabadi, Shumailov, Papernot, "When the Curious Abandon Honesty:
Federated Learning Is Not Private", IEEE EuroS&P 2023.

A malicious server re-initialises the first fully connected layer so that each of its ReLU neurons is
activated by only a few inputs ("trap weights", §4): every row keeps its weights' magnitudes, exactly
half of its entries (chosen at random) are made negative, and the positive half is scaled down by
``scale < 1``. For non-negative inputs (images in ``[0, 1]``) a row's pre-activation
``scale * P(x) - N(x)`` is then positive only for the few inputs whose positive-half mass exceeds
the negative half by the factor ``1 / scale``. A neuron fired by exactly one sample ``s`` has
``dL/dW_i = g z_s`` and ``dL/db_i = g``, so the sample's input is ``dL/dW_i / dL/db_i`` exactly
(the linear-layer leakage of Phong et al., IEEE TIFS 2018).

Extraction: every row with a non-zero bias gradient gives a candidate; candidates extracted
identically from two or more rows are most likely one sample each (mixtures of several samples
usually differ from row to row, because each row weighs its samples differently, but not always:
on CIFAR-10 at B = 32 about a quarter of them were mixtures), so they are reported first; single-row
candidates inside the image range follow, up to the number of samples. The note's counts are
estimates; the ``exact`` metric counts exact recoveries against the ground truth.

Implementation notes: the trap is built in image space and moved to the model's normalised input
space (``W_z = W_x * std``, ``b_z = W_x . mean``), so the sign structure acts on raw pixels as in
the paper. ``scale`` is fixed (default 0.95, an activation rate of about 4% per neuron on CIFAR-10)
or, with surrogate data, calibrated per row to a target activation rate (``calibrate = true``;
default rate ``1 / N``): row ``i`` fires for ``x`` iff ``scale > N_i(x) / P_i(x)``, so its scale is
the rate-quantile of that ratio over the surrogate images. The attack needs a model whose first
layer is ``nn.Linear`` on the flattened input (e.g. ``mlp``). FedAvg deltas are read the same way
(exact while a neuron is fired by one sample throughout local training; weight decay breaks the
ratio slightly).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gradinv.attacks._imprint import ExactCount, ImprintAttack, count_exact, to_images
from gradinv.attacks.base import AttackConfig, ProgressFn, register_attack
from gradinv.errors import AttackRefused, ConfigError
from gradinv.threat import Knowledge, Requirement
from gradinv.types import AttackerView, AttackResult, CraftView, Normalization

__all__ = [
    "ExactCount",
    "TrapWeights",
    "TrapWeightsConfig",
    "count_exact",
    "extract_rows",
    "first_linear",
    "trap_rows",
]

logger = logging.getLogger(__name__)

SHAPE_NEEDED = Requirement(
    Knowledge.BASIC_KNOWLEDGE,
    "the trap is built on raw pixels (input shape and normalisation) and extraction reshapes rows to images",
)
SURROGATE_NEEDED = Requirement(
    Knowledge.SURROGATE_DATA, "the config calibrates each neuron's activation rate on surrogate images"
)


@dataclass(frozen=True)
class TrapWeightsConfig(AttackConfig):
    """``scale``: factor on each row's positive half (< 1: rarely active neurons). ``calibrate``:
    per-row scale from surrogate data reaching activation ``rate`` (default ``1 / N``)."""

    scale: float = 0.95
    calibrate: bool = False
    rate: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ConfigError(
                f"Expected `scale` > 0, but got {self.scale}. The paper uses values just below 1."
            )
        if self.rate is not None and not 0 < self.rate < 1:
            raise ConfigError(f"Expected `rate` in (0, 1), but got {self.rate}.")


def first_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    """The model's first layer with parameters, which must be an ``nn.Linear`` (else AttackRefused)."""
    for name, module in model.named_modules():
        if any(True for _ in module.parameters(recurse=False)):
            if isinstance(module, nn.Linear) and module.bias is not None:
                return name, module
            raise AttackRefused(
                f"Trap weights need a model whose first layer is a fully connected nn.Linear with bias on "
                f"the flattened input, but the first layer of {type(model).__name__} is {name!r} "
                f"({type(module).__name__}). Use a fully connected model such as 'mlp'."
            )
    raise AttackRefused(f"Trap weights need a model with parameters, but {type(model).__name__} has none.")


def trap_rows(magnitudes: Tensor, *, generator: torch.Generator, scale: Tensor | float = 1.0) -> Tensor:
    """Trap rows in image space: ``|magnitudes|`` with a random half of every row negated and the
    positive half multiplied by ``scale`` (a float or one value per row).

    >>> rows = trap_rows(torch.ones(2, 6), generator=torch.Generator().manual_seed(0), scale=0.5)
    >>> (rows < 0).sum(1).tolist(), sorted(set(rows.flatten().tolist()))
    ([3, 3], [-1.0, 0.5])
    """
    rows, d = magnitudes.shape
    m = magnitudes.abs().double()
    sign = torch.ones(rows, d, dtype=torch.float64)
    for r in range(rows):
        sign[r, torch.randperm(d, generator=generator)[: d // 2]] = -1.0
    s = torch.as_tensor(scale, dtype=torch.float64)
    s = s.reshape(-1, 1) if s.ndim else s
    return torch.where(sign > 0, m * s, -m)


def calibrated_scales(rows: Tensor, images: Tensor, rate: float) -> Tensor:
    """Per-row scale at which a fraction ``rate`` of ``images`` (flattened, in ``[0, 1]``) fires the
    row: the ``rate``-quantile of ``N_i(x) / P_i(x)`` (rows given with unit positive scale)."""
    pos = rows.clamp_min(0) @ images.T
    neg = (-rows).clamp_min(0) @ images.T
    ratio = neg / pos.clamp_min(1e-12)
    return torch.quantile(ratio, rate, dim=1)


def _image_space(layer: nn.Linear, normalization: Normalization, shape: tuple[int, int, int]) -> Tensor:
    c, h, w = shape
    weight = layer.weight.detach().double().cpu()
    if normalization.is_identity:
        return weight
    std = torch.tensor(normalization.std, dtype=torch.float64).expand(c).repeat_interleave(h * w)
    return weight / std


def _to_input_space(
    rows: Tensor, normalization: Normalization, shape: tuple[int, int, int]
) -> tuple[Tensor, Tensor]:
    """``W_x x + 0 = W_z z + b_z`` for ``x = z * std + mean``."""
    c, h, w = shape
    if normalization.is_identity:
        return rows, torch.zeros(rows.shape[0], dtype=torch.float64)
    std = torch.tensor(normalization.std, dtype=torch.float64).expand(c).repeat_interleave(h * w)
    mean = torch.tensor(normalization.mean, dtype=torch.float64).expand(c).repeat_interleave(h * w)
    return rows * std, rows @ mean


@dataclass(frozen=True)
class Extraction:
    """Recovered model inputs (flattened): ``confirmed`` ones (seen in two or more rows) first."""

    inputs: Tensor
    confirmed: int
    active_rows: int
    candidates: int


def extract_rows(
    weight: Tensor,
    bias: Tensor,
    *,
    normalization: Normalization | None,
    shape: tuple[int, int, int],
    layer: tuple[Tensor, Tensor] | None = None,
    max_samples: int | None = None,
    tol: float = 1e-3,
) -> Extraction:
    """Candidate inputs ``dL/dW_i / dL/db_i`` of every row with a non-zero bias gradient (``weight``,
    ``bias``: the layer's gradient or delta), grouped: candidates equal (RMS difference below ``tol``
    in image space) across rows are one sample each and come first.

    Single-row candidates follow, ranked with the crafted ``layer`` (its weight and bias as sent): a
    row whose candidate is a mixture was fired by several samples, so another recovered sample fires
    it too; candidates from rows fired by no other recovered sample rank first."""
    w, b = weight.detach().double().cpu(), bias.detach().double().cpu()
    active = torch.nonzero(b.abs() > 1e-7 * float(b.abs().max().clamp_min(1e-300))).flatten()
    if not len(active):
        return Extraction(torch.zeros(0, w.shape[1], dtype=torch.float64), 0, 0, 0)
    z = w[active] / b[active, None]
    x = z.reshape(-1, *shape)
    if normalization is not None:
        x = normalization.invert(x)
    x = x.flatten(1)
    rms = torch.cdist(x, x) / math.sqrt(x.shape[1])
    same = rms < tol
    seen = torch.zeros(len(x), dtype=torch.bool)
    groups: list[tuple[int, int, float, float]] = []  # (size, representative, out-of-range, |db|)
    for i in range(len(x)):
        if seen[i]:
            continue
        members = torch.nonzero(same[i] & ~seen).flatten()
        seen[members] = True
        excess = float((x[i] - x[i].clamp(0, 1)).abs().max())
        groups.append((len(members), i, excess, float(b[active[i]].abs())))
    confirmed = sorted((g for g in groups if g[0] > 1), key=lambda g: (-g[0], -g[3]))
    single = [g for g in groups if g[0] == 1]
    if layer is not None and single:
        lw, lb = (t.detach().double().cpu() for t in layer)
        reps = [g[1] for g in confirmed + single]
        fires = (z[reps] @ lw[active].T + lb[active]) > 0  # (candidates, active rows)
        rank = {g[1]: k for k, g in enumerate(confirmed + single)}
        n_conf = len(confirmed)

        def conflicts(g: tuple[int, int, float, float]) -> tuple[int, int]:
            col = fires[:, g[1]].clone()
            col[rank[g[1]]] = False
            return int(col[:n_conf].sum()), int(col[n_conf:].sum())

        single.sort(key=lambda g: (conflicts(g)[0] > 0, conflicts(g)[1], g[2] > 1e-3, -g[3]))
    else:
        single.sort(key=lambda g: (g[2] > 1e-3, -g[3]))
    order = [g[1] for g in confirmed + single]
    if max_samples is not None:
        order = order[:max_samples]
    return Extraction(z[order], len(confirmed), len(active), len(groups))


@register_attack
class TrapWeights(ImprintAttack):
    """Trap-weight initialisation of the first Linear layer; inputs from rows fired by one sample."""

    name = "trap-weights"
    title = "Trap weights"
    paper = (
        "Boenisch, Dziedzic, Schuster, Shamsabadi, Shumailov, Papernot. When the Curious Abandon Honesty: "
        "Federated Learning Is Not Private. IEEE EuroS&P 2023"
    )
    config_cls = TrapWeightsConfig
    config: TrapWeightsConfig
    base_requirements = (*ImprintAttack.base_requirements, SHAPE_NEEDED)

    def requirements(self) -> tuple[Requirement, ...]:
        return self.base_requirements + ((SURROGATE_NEEDED,) if self.config.calibrate else ())

    def _scales(self, rows: Tensor, knowledge: CraftView, shape: tuple[int, int, int]) -> Tensor | float:
        cfg = self.config
        if not cfg.calibrate:
            return cfg.scale
        option, instead = "calibrate = true", "calibrate = false"
        images = self._surrogate_images(knowledge, shape, option=option, instead=instead).flatten(1)
        rate = cfg.rate if cfg.rate is not None else 1.0 / max(1, knowledge.num_samples or 1)
        return calibrated_scales(rows, images, rate)

    def craft(self, knowledge: CraftView) -> tuple[nn.Module, ...]:
        shape, norm = self._craft_input(knowledge)
        model = copy.deepcopy(knowledge.model)
        name, layer = first_linear(model)
        if layer.in_features != shape[0] * shape[1] * shape[2]:
            raise AttackRefused(
                f"Trap weights need the first Linear layer to see the flattened input ({math.prod(shape)} "
                f"features), but {name!r} has {layer.in_features} inputs."
            )
        gen = torch.Generator().manual_seed(self.config.seed)
        magnitudes = _image_space(layer, norm, shape)
        unit = trap_rows(magnitudes, generator=gen)
        scales = torch.as_tensor(self._scales(unit, knowledge, shape), dtype=torch.float64)
        rows = torch.where(unit > 0, unit * (scales.reshape(-1, 1) if scales.ndim else scales), unit)
        w_z, b_z = _to_input_space(rows, norm, shape)
        with torch.no_grad():
            layer.weight.copy_(w_z.to(layer.weight.dtype))
            layer.bias.copy_(b_z.to(layer.bias.dtype))
        logger.info("%s: trapped %d rows of %r", self.title, layer.out_features, name)
        return tuple(model for _ in range(knowledge.num_clients))

    def check_view(self, view: AttackerView) -> list[str]:
        try:
            name, _ = first_linear(view.model)
        except AttackRefused as e:
            return [str(e)]
        prefix = f"{name}." if name else ""
        if prefix + "weight" not in view.update.params or prefix + "bias" not in view.update.params:
            return [f"{self.title} needs the update of {name!r}, but it is missing from the update."]
        return []

    def _reconstruct(
        self, view: AttackerView, *, progress: ProgressFn | None, device: torch.device
    ) -> AttackResult:
        start = time.perf_counter()
        name, layer = first_linear(view.model)
        prefix = f"{name}." if name else ""
        assert view.input_shape is not None  # basic knowledge is required
        shape = view.input_shape
        n = view.num_samples
        ext = extract_rows(
            view.update.params[prefix + "weight"],
            view.update.params[prefix + "bias"],
            normalization=view.normalization,
            shape=shape,
            layer=(layer.weight, layer.bias),
            max_samples=n,
        )
        images = to_images(ext.inputs, shape, view.normalization)
        notes = [
            f"{ext.active_rows} of {layer.out_features} trapped neurons fired",
            f"{ext.confirmed} candidates extracted identically by two or more neurons, "
            f"{ext.candidates - ext.confirmed} by one (an estimate without ground truth, not a count of "
            "exact recoveries: agreeing neurons suggest one sample, but a mixture of samples can agree "
            "too; the `exact` metric measures the count)",
        ]
        return self._extracted(
            images, shape, n, notes=notes, fewer="fewer candidates", start=start, progress=progress
        )
