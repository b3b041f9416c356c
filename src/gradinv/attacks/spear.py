"""SPEAR: exact recovery of a whole batch from the gradient of a ReLU linear layer.

Dimitrov, Müller, Yang, Vechev, "SPEAR: Exact Gradient Inversion of Batches in Federated Learning",
NeurIPS 2024.

For a linear layer ``Z = X W^T + b`` followed by a ReLU, the weight gradient is
``dL/dW = (dL/dZ)^T X`` (``dL/dZ`` of shape ``(B, m)``), so it has rank at most B. Write its
truncated SVD as ``dL/dW = L R`` with ``L`` ``(m, B)`` orthonormal. Then ``(dL/dZ)^T = L Q`` for an
unknown invertible ``Q`` ``(B, B)`` and ``X = (Q^{-1} R)^T``. The ReLU makes every column of
``(dL/dZ)^T`` sparse (about half the units of a sample are inactive), and a direction ``q`` with
``L q`` zero on ``B - 1`` chosen rows is the kernel of those rows: when all of them are inactive for
the same sample, the kernel is that sample's column of ``Q`` (up to scale). The attack

1. samples random subsets of ``B - 1`` rows of ``L`` and keeps the kernel directions whose image
   ``L q`` is sparse (at least ``min_sparsity`` of the live units are zero);
2. filters them greedily: most zeros first, skipping directions linearly dependent on those already
   taken (a mixture of two found columns has fewer zeros than either and lies in their span);
3. fixes each column's scale and sign with the bias gradient, ``dL/db = (dL/dZ)^T 1 = L Q 1``;
4. verifies the result: the recovered inputs must reproduce the observed ReLU sparsity pattern
   (units with ``Z <= 0`` only where ``dL/dZ`` is zero). When the greedy selection fails, a local
   search swaps the direction of the worst-matching sample for the pool candidate that lowers the
   mismatch most (spurious sparse directions — combinations of samples that share many inactive
   units — can have more zeros than a true column). Sampling stops as soon as a selection passes,
   or after ``max_samples`` subsets (the best selection so far is returned, with a note).

Labels are recovered too: with ``X`` exact, each sample's label is the class whose per-sample
gradient at the layer output matches the recovered column of ``dL/dZ``.

Deviations from the paper: the kernel of each subset is computed with a batched linear solve (and
confirmed by an SVD for the subsets that pass the sparsity filter, which also rejects subsets with a
two-dimensional kernel); the greedy filter is the independence-by-sparsity rule above followed by
the sparsity-pattern check and the swap search, rather than the paper's exact scoring; by default
half of the row subsets are drawn uniformly (with replacement; subsets with a repeated row are
singular and discarded) and half with probabilities proportional to ``1 / |row of dL/dW|``
(``sampling = "mixed"``): units that few samples activate have small gradient rows and are zero in
more columns, which matters for unnormalised (non-negative) inputs whose activation patterns overlap
strongly. The complexity is exponential in B (the chance that ``B - 1`` random rows are all inactive
for one sample is about ``2^-(B-1)``), as in the paper. The layer must be the model's first layer
(its input is the image) and have a bias.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradinv.attacks.base import UPDATES_NEEDED, Attack, AttackConfig, ProgressFn, register_attack
from gradinv.errors import AttackRefused, ConfigError
from gradinv.threat import Knowledge, Requirement
from gradinv.types import AttackerView, AttackResult, Normalization, Reconstruction, UpdateKind

__all__ = [
    "InputLayer",
    "LayerGradient",
    "Spear",
    "SpearConfig",
    "SpearOutcome",
    "find_input_linear",
    "input_layer_gradient",
    "labels_from_layer_gradient",
    "leaf_modules",
    "spear_recover",
]

logger = logging.getLogger(__name__)

SHAPES_NEEDED = Requirement(
    Knowledge.BASIC_KNOWLEDGE,
    "it needs the number of samples B behind the update and the input shape to reshape the rows it recovers",
)


# --------------------------------------------------------------------------------------------------
# Model structure shared by the analytic attacks on linear layers
# --------------------------------------------------------------------------------------------------


def leaf_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules without children, in registration order (``""`` names the model itself)."""
    return [(n, m) for n, m in model.named_modules() if not any(True for _ in m.children())]


@dataclass(frozen=True)
class InputLayer:
    """A linear layer that reads the flattened image, and the module that follows it."""

    name: str
    module: nn.Linear
    activation_name: str
    activation: nn.Module | None


def _where(name: str) -> str:
    return f"model.{name}" if name else "model"


def find_input_linear(model: nn.Module, input_shape: tuple[int, int, int], *, attack: str) -> InputLayer:
    """The model's first layer as an :class:`nn.Linear` on the flattened image, or a refusal that names
    the layer found instead.

    The claim is checked on a random input: the layer's input must equal the flattened image."""
    leaves = leaf_modules(model)
    params = [(i, n, m) for i, (n, m) in enumerate(leaves) if any(True for _ in m.parameters(recurse=False))]
    if not params:
        raise AttackRefused(
            f"{attack} needs a model with a first Linear layer, but the model has no parameters."
        )
    i, name, module = params[0]
    features = math.prod(input_shape)
    if not isinstance(module, nn.Linear):
        raise AttackRefused(
            f"{attack} needs the model's first layer to be a Linear layer on the flattened image, but got "
            f"{type(module).__name__} at {_where(name)}. Use a fully connected model (e.g. model 'mlp')."
        )
    if module.in_features != features:
        raise AttackRefused(
            f"{attack} needs the first Linear layer to read the flattened image ({features} features), but "
            f"{_where(name)} has in_features={module.in_features}."
        )
    seen: list[Tensor] = []
    handle = module.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach()))
    try:
        x = torch.rand(2, *input_shape, generator=torch.Generator().manual_seed(0))
        dev = module.weight.device
        with torch.no_grad():
            was = model.training
            model.eval()
            try:
                model(x.to(dev, module.weight.dtype))
            finally:
                model.train(was)
    finally:
        handle.remove()
    if len(seen) != 1 or seen[0].shape != (2, features) or not torch.equal(seen[0].cpu(), x.flatten(1)):
        raise AttackRefused(
            f"{attack} needs the model's first layer to receive the flattened image unchanged, but "
            f"{_where(name)} received something else (or was called {len(seen)} times)."
        )
    nxt = leaves[i + 1] if i + 1 < len(leaves) else ("", None)
    return InputLayer(name, module, nxt[0], nxt[1])


@dataclass(frozen=True)
class LayerGradient:
    """The observed gradient of one linear layer, in gradient form (float64)."""

    weight: Tensor
    bias: Tensor | None
    notes: tuple[str, ...]


def input_layer_gradient(view: AttackerView, layer: InputLayer, *, attack: str) -> LayerGradient:
    """The first layer's gradient from the view. A FedAvg delta of one local step is ``-lr`` times the
    gradient (the scale cancels in these attacks); several local steps are refused."""
    upd = view.update
    wkey = f"{layer.name}.weight" if layer.name else "weight"
    bkey = f"{layer.name}.bias" if layer.name else "bias"
    if wkey not in upd.params:
        raise AttackRefused(
            f"{attack} needs the gradient of {_where(layer.name)}'s weight, which the update lacks."
        )
    notes: list[str] = []
    sign = 1.0
    if upd.kind is UpdateKind.DELTA:
        sign = -1.0
        if view.training is not None:
            n = view.num_samples or 1
            per_client = max(1, round(n / max(1, view.aggregated_over)))
            steps = view.training.local_steps(per_client)
            if steps > 1:
                raise AttackRefused(
                    f"{attack} inverts one gradient, but the client's update is a FedAvg delta of {steps} "
                    "local steps. Use protocol = 'fedsgd', or FedAvg with one local step (epochs = 1 and "
                    "batch_size >= the number of samples)."
                )
            notes.append("target: -delta of one FedAvg step (proportional to the gradient)")
        else:
            notes.append("target: -delta, assumed to be one local step (training details not granted)")
    else:
        notes.append("target: shared gradient (FedSGD)")
    w = upd.params[wkey].detach().double().cpu() * sign
    b = upd.params.get(bkey)
    bias = b.detach().double().cpu() * sign if b is not None else None
    if view.aggregated_over > 1:
        notes.append(f"update aggregated over {view.aggregated_over} clients: recovering all their samples")
    return LayerGradient(w, bias, tuple(notes))


def labels_from_layer_gradient(
    model: nn.Module,
    layer: InputLayer,
    images: Tensor,
    columns: Tensor,
    *,
    num_classes: int,
    batch_size: int,
) -> Tensor:
    """Each sample's label: the class whose per-sample gradient at the layer's output (scaled by
    ``1 / batch_size``, the mean loss) is closest to the recovered column ``columns[i]`` ``(m,)``.

    ``images`` are in the model's input space. The model runs in eval mode on a copy of the input."""
    n = images.shape[0]
    dev = layer.module.weight.device
    dtype = layer.module.weight.dtype
    x = images.to(dev, dtype).repeat_interleave(num_classes, dim=0)
    y = torch.arange(num_classes, device=dev).repeat(n)
    out: list[Tensor] = []

    def keep(_m: nn.Module, _args: object, output: Tensor) -> None:
        output.retain_grad()
        out.append(output)

    handle = layer.module.register_forward_hook(keep)
    was = model.training
    try:
        model.eval()
        logits = model(x)
        loss = F.cross_entropy(logits, y, reduction="sum") / batch_size
        z = out[0]
        (gz,) = torch.autograd.grad(loss, z)
    finally:
        handle.remove()
        model.train(was)
    per = gz.detach().double().cpu().view(n, num_classes, -1)
    dist = (per - columns.double().cpu()[:, None, :]).norm(dim=2)
    return dist.argmin(dim=1)


# --------------------------------------------------------------------------------------------------
# The algorithm (pure functions on tensors)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpearConfig(AttackConfig):
    """SPEAR settings.

    ``max_samples`` bounds the number of row subsets drawn (in chunks of ``chunk``); ``zero_tol`` is
    the relative size ``|L_i q| / ||L_i||`` below which a unit counts as inactive; ``min_sparsity``
    the fraction of live units that must be zero for a direction to become a candidate;
    ``rank_tol`` the relative singular value below which the gradient's rank ends;
    ``verify_tol`` the fraction of (sample, unit) pairs whose recovered ReLU state may disagree with
    the observed sparsity pattern for a selection to be accepted. ``sampling``: ``uniform`` draws
    every row subset uniformly (the paper); ``mixed`` draws half of them with row probabilities
    proportional to ``1 / |row of dL/dW|`` (units that few samples activate have small rows and are
    zero in more columns), which finds the columns of samples with many active units much sooner."""

    max_samples: int = 2_000_000
    chunk: int = 16384
    zero_tol: float = 1e-5
    min_sparsity: float = 0.1
    rank_tol: float = 1e-6
    verify_tol: float = 1e-3
    pool_size: int = 4096
    sampling: Literal["uniform", "mixed"] = "mixed"
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("max_samples", "chunk", "pool_size"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"Expected `{key}` to be an int >= 1, but got {v!r}.")
        for key in ("zero_tol", "rank_tol", "verify_tol"):
            v = getattr(self, key)
            if not 0 < v < 1:
                raise ConfigError(f"Expected `{key}` in (0, 1), but got {v!r}.")
        if not 0 <= self.min_sparsity < 1:
            raise ConfigError(f"Expected `min_sparsity` in [0, 1), but got {self.min_sparsity!r}.")


@dataclass(frozen=True)
class SpearOutcome:
    """What :func:`spear_recover` found.

    ``inputs`` ``(r, n)`` are the recovered layer inputs (rows), ``columns`` ``(r, m)`` the recovered
    columns of ``dL/dZ`` (per sample), ``rank`` the numerical rank r of the weight gradient,
    ``found`` how many independent sparse directions were selected, ``verified`` whether the ReLU
    pattern check passed and ``mismatch`` the fraction of disagreeing (sample, unit) pairs."""

    inputs: Tensor
    columns: Tensor
    rank: int
    found: int
    candidates: int
    samples: int
    verified: bool
    mismatch: float
    interrupted: bool


def _kernels(rows: Tensor) -> tuple[Tensor, Tensor]:
    """Unit kernel vectors of ``(T, r - 1, r)`` row sets (by a linear solve with the last coordinate
    fixed to 1) and a validity mask."""
    t, k, r = rows.shape
    if k == 0:
        return torch.ones(t, 1, dtype=rows.dtype), torch.ones(t, dtype=torch.bool)
    y, info = torch.linalg.solve_ex(rows[:, :, : r - 1], -rows[:, :, r - 1 :])
    q = torch.cat([y.squeeze(2), torch.ones(t, 1, dtype=rows.dtype)], dim=1)
    q = q / q.norm(dim=1, keepdim=True)
    ok = (info == 0) & torch.isfinite(q).all(dim=1)
    return torch.where(ok[:, None], q, torch.zeros_like(q)), ok


def _unique_rows(x: Tensor) -> tuple[Tensor, Tensor]:
    """Unique rows of ``x`` and the index of the first occurrence of each."""
    uniq, inverse = torch.unique(x, dim=0, return_inverse=True)
    first = torch.full((len(uniq),), len(x), dtype=torch.long)
    first = first.scatter_reduce(0, inverse, torch.arange(len(x)), reduce="amin")
    return uniq, first


def _confirm(rows: Tensor, q: Tensor, tol: float) -> tuple[Tensor, Tensor]:
    """Recompute kernels by SVD; reject row sets whose kernel is not one-dimensional."""
    if rows.shape[1] == 0:
        return q, torch.ones(q.shape[0], dtype=torch.bool)
    _, s, vh = torch.linalg.svd(rows, full_matrices=True)
    k = vh[:, -1, :]
    k = k * torch.sign((k * q).sum(dim=1, keepdim=True) + 1e-300)
    # r - 1 rows of length r: one-dimensional kernel iff the (r-1)-th singular value is clearly > 0
    smallest = s[:, -1] / s[:, 0].clamp_min(1e-300)
    return k, smallest > tol


def _select(pool: Tensor, masks: Tensor, r: int, *, tol: float = 1e-6) -> list[int]:
    """Greedy filter: most zeros first, skipping directions (nearly) in the span of those taken."""
    order = torch.argsort(masks.sum(dim=1), descending=True, stable=True).tolist()
    chosen: list[int] = []
    basis = torch.zeros(0, pool.shape[1], dtype=pool.dtype)
    for i in order:
        v = pool[i]
        resid = v - basis.T @ (basis @ v) if len(basis) else v
        if float(resid.norm()) > math.sqrt(tol):
            chosen.append(i)
            basis = torch.cat([basis, (resid / resid.norm())[None]])
            if len(chosen) == r:
                break
    return chosen


def _solve_selection(q_hat: Tensor, L: Tensor, R: Tensor, grad_b: Tensor) -> tuple[Tensor, Tensor] | None:
    """Fix the scales with the bias gradient (``Q_hat s = L^T dL/db``) and return (inputs, columns)."""
    c = L.T @ grad_b
    try:
        s = torch.linalg.solve(q_hat, c)
    except RuntimeError:
        return None
    if not torch.isfinite(s).all() or (s.abs() < 1e-300).any():
        return None
    q = q_hat * s[None, :]
    try:
        inputs = torch.linalg.solve(q, R)  # (r, n): row i is sample i
    except RuntimeError:
        return None
    columns = (L @ q).T  # (r, m)
    return inputs, columns


def _mismatch(inputs: Tensor, columns: Tensor, weight: Tensor, bias: Tensor, zero_tol: float) -> Tensor:
    """Per sample, the fraction of units that the recovered inputs switch off (``Z <= 0``) although
    their observed gradient ``dL/dZ`` is non-zero — impossible for the true inputs. The converse (an
    active unit with a tiny gradient that counts as zero) happens, so it is scored separately and
    only loosely (a quarter of the units), which rules out inputs that switch every unit on. A unit
    counts as switched off only below ``-zero_tol`` times the sample's largest ``|Z|``: the client's
    float32 forward pass and this float64 one disagree about units with ``Z`` within rounding of 0.
    A gradient counts as non-zero above ``10 zero_tol`` of the sample's largest: the recovered columns
    carry the float32 gradient's rounding noise (measured up to ``1.1e-5`` relative on photos)."""
    z = inputs @ weight.T + bias
    scale = columns.abs().amax(dim=1, keepdim=True).clamp_min(1e-300)
    observed_on = columns.abs() > 10 * zero_tol * scale
    margin = zero_tol * z.abs().amax(dim=1, keepdim=True)
    off_but_on = ((z < -margin) & observed_on).double().mean(dim=1)
    on_but_off = ((z > 0) & ~observed_on).double().mean(dim=1)
    return off_but_on + (on_but_off > 0.25).double()


@dataclass(frozen=True)
class _Selection:
    chosen: tuple[int, ...]
    inputs: Tensor
    columns: Tensor
    per_sample: Tensor

    @property
    def mismatch(self) -> float:
        return float(self.per_sample.mean())


def spear_recover(
    grad_weight: Tensor,
    grad_bias: Tensor,
    weight: Tensor,
    bias: Tensor,
    num_samples: int,
    config: SpearConfig = SpearConfig(),
    *,
    progress: ProgressFn | None = None,
) -> SpearOutcome:
    """Recover the inputs of a ReLU linear layer from its weight and bias gradients (all float64).

    ``grad_weight`` ``(m, n)``, ``grad_bias`` ``(m,)``, ``weight`` ``(m, n)``, ``bias`` ``(m,)``.

    >>> _ = torch.manual_seed(0)
    >>> layer = torch.nn.Linear(6, 40)
    >>> x = torch.randn(3, 6, dtype=torch.float64)
    >>> w, b = layer.weight.double(), layer.bias.double()
    >>> z = x @ w.T + b
    >>> gz = torch.randn(3, 40, dtype=torch.float64) * (z > 0)  # what a ReLU lets through
    >>> out = spear_recover(gz.T @ x, gz.sum(0), w, b, 3)
    >>> out.verified, out.found
    (True, 3)
    >>> bool(min((out.inputs - x[i]).abs().amax(1).min() for i in range(3)) < 1e-8)
    True
    """
    cfg = config
    g = grad_weight.double()
    m = g.shape[0]
    u, s, vh = torch.linalg.svd(g, full_matrices=False)
    if float(s[0]) == 0.0:
        raise AttackRefused("SPEAR needs a non-zero weight gradient, but the first layer's gradient is zero.")
    r = int((s > cfg.rank_tol * s[0]).sum())
    r = min(r, num_samples)
    # what counts as zero: zero_tol, or well above the update's noise floor (the first singular value
    # beyond the rank; float32 rounding of a FedAvg delta is far above that of a gradient)
    noise = float(s[r] / s[0]) if r < len(s) else 0.0
    zero_tol = max(cfg.zero_tol, 300.0 * noise)
    L = u[:, :r]
    R = s[:r, None] * vh[:r]
    row_norm = L.norm(dim=1)
    live = torch.nonzero(row_norm > 1e-9 * row_norm.max()).squeeze(1)
    Ln = L[live] / row_norm[live, None]
    n_live = int(live.numel())
    # "mixed" sampling: half the subsets favour units active for few samples (small gradient rows)
    weights = 1.0 / g[live].norm(dim=1)
    min_zeros = max(r, math.ceil(cfg.min_sparsity * n_live))
    gen = torch.Generator().manual_seed(cfg.seed)

    pool = torch.zeros(0, r, dtype=torch.float64)
    pool_zeros = torch.zeros(0, dtype=torch.long)
    best: _Selection | None = None
    drawn = 0
    interrupted = False
    last_checked = -1
    next_search = 0

    def evaluate(chosen: list[int]) -> _Selection | None:
        if len(chosen) < r:
            return None
        sol = _solve_selection(pool[chosen].T, L, R, grad_bias.double())
        if sol is None:
            return None
        inputs, columns = sol
        per = _mismatch(inputs, columns, weight.double(), bias.double(), zero_tol)
        return _Selection(tuple(chosen), inputs, columns, per)

    def consider(sel: _Selection | None) -> bool:
        nonlocal best
        if sel is not None and (best is None or sel.mismatch < best.mismatch):
            best = sel
        return best is not None and best.mismatch <= cfg.verify_tol

    def local_search(start: _Selection) -> bool:
        """From ``start``, swap the direction of one of the two worst samples for the pool candidate
        (among the sparsest ``8 r``) that lowers the mismatch most, until verified or no swap helps."""
        order = torch.argsort(pool_zeros, descending=True).tolist()
        current = start
        for _ in range(2 * r):
            cands = [i for i in order if i not in current.chosen][: 8 * r]
            step: _Selection | None = None
            for pos in torch.argsort(current.per_sample, descending=True).tolist()[:2]:
                for c in cands:
                    trial = list(current.chosen)
                    trial[pos] = c
                    sel = evaluate(trial)
                    if sel is not None and sel.mismatch < (step or current).mismatch:
                        step = sel
                if step is not None:
                    break
            if step is None:
                return False
            current = step
            if consider(current):
                return True
        return False

    if r == 1:  # one sample: the only direction is q = [1]
        pool = torch.ones(1, 1, dtype=torch.float64)
        pool_zeros = torch.zeros(1, dtype=torch.long)
    verified = r == 1 and consider(evaluate([0]))
    try:
        while not verified and drawn < cfg.max_samples:
            t = min(cfg.chunk, cfg.max_samples - drawn)
            if cfg.sampling == "mixed" and r > 2:
                half = t // 2
                idx = torch.cat(
                    [
                        torch.randint(n_live, (t - half, r - 1), generator=gen),
                        torch.multinomial(weights.expand(half, -1), r - 1, generator=gen),
                    ]
                )
            else:
                idx = torch.randint(n_live, (t, r - 1), generator=gen)
            rows = Ln[idx]
            q, ok = _kernels(rows)
            zeros = ((q @ Ln.T).abs() < zero_tol).sum(dim=1)
            keep = ok & (zeros >= min_zeros)
            drawn += t
            if keep.any():
                q2, ok2 = _confirm(rows[keep], q[keep], cfg.zero_tol)
                q2 = q2[ok2]
                if len(q2):
                    q2 = q2 * torch.sign(q2[:, :1] + (q2[:, :1] == 0).double())  # canonical sign
                    # exact duplicates (the same direction from several subsets) collapse first
                    _, first = _unique_rows(torch.round(q2 * 1e6))
                    q2 = q2[first]
                    z2 = ((q2 @ Ln.T).abs() < zero_tol).sum(dim=1)
                    if len(q2) > cfg.pool_size:
                        top = torch.argsort(z2, descending=True)[: cfg.pool_size]
                        q2, z2 = q2[top], z2[top]
                    same = (q2 @ q2.T).abs() > 1 - 1e-9
                    fresh = ~torch.tril(same, diagonal=-1).any(dim=1)  # first of each duplicate group
                    if len(pool):
                        fresh &= (q2 @ pool.T).abs().amax(dim=1) <= 1 - 1e-9
                    pool = torch.cat([pool, q2[fresh]])
                    pool_zeros = torch.cat([pool_zeros, z2[fresh]])
                    if len(pool) > cfg.pool_size:
                        top = torch.argsort(pool_zeros, descending=True)[: cfg.pool_size]
                        pool, pool_zeros = pool[top], pool_zeros[top]
                        best = None  # indices into the pool changed
            if len(pool) >= r and len(pool) != last_checked:
                last_checked = len(pool)
                greedy = evaluate(_select(pool, (pool @ Ln.T).abs() < zero_tol, r))
                verified = consider(greedy)
                if (
                    not verified
                    and greedy is not None
                    and greedy.mismatch < 0.25
                    and len(pool) >= next_search
                ):
                    next_search = math.ceil(1.5 * len(pool)) + r
                    verified = local_search(greedy)
            if progress is not None:
                progress(drawn, cfg.max_samples, -float(len(pool)))
        if not verified and len(pool) > r:
            greedy = evaluate(_select(pool, (pool @ Ln.T).abs() < zero_tol, r))
            if greedy is not None:
                verified = consider(greedy) or local_search(greedy)
    except KeyboardInterrupt:
        interrupted = True
    if best is None:
        chosen = _select(pool, (pool @ Ln.T).abs() < zero_tol, r) if len(pool) else []
        found = len(chosen)
        # complete the basis with arbitrary orthogonal directions: those rows are not exact
        basis = pool[chosen] if chosen else torch.zeros(0, r, dtype=torch.float64)
        eye = torch.eye(r, dtype=torch.float64)
        full = torch.linalg.qr(torch.cat([basis, eye]).T, mode="complete")[0][:, :r]
        q_hat = torch.cat([basis.T, full[:, found:]], dim=1) if found else full
        sol = _solve_selection(q_hat, L, R, grad_bias.double())
        if sol is None:
            inputs = torch.zeros(r, g.shape[1], dtype=torch.float64)
            columns = torch.zeros(r, m, dtype=torch.float64)
        else:
            inputs, columns = sol
        return SpearOutcome(inputs, columns, r, found, len(pool), drawn, False, 1.0, interrupted)
    return SpearOutcome(
        best.inputs, best.columns, r, r, len(pool), drawn, verified, best.mismatch, interrupted
    )


# --------------------------------------------------------------------------------------------------
# The attack
# --------------------------------------------------------------------------------------------------


@register_attack
class Spear(Attack):
    """SPEAR: exact batch recovery from a ReLU linear first layer (passive, analytic)."""

    name = "spear"
    title = "SPEAR"
    family = "analytic"
    paper = (
        "Dimitrov, Müller, Yang, Vechev. SPEAR: Exact Gradient Inversion of Batches in Federated "
        "Learning. NeurIPS 2024"
    )
    config_cls = SpearConfig
    config: SpearConfig
    base_requirements = (UPDATES_NEEDED, SHAPES_NEEDED)

    def check_view(self, view: AttackerView) -> list[str]:
        assert view.input_shape is not None  # granted by basic knowledge
        try:
            layer = find_input_linear(view.model, view.input_shape, attack=self.title)
        except AttackRefused as e:
            return [str(e)]
        problems = []
        if layer.module.bias is None:
            problems.append(
                f"SPEAR fixes each sample's scale with the first layer's bias gradient, but "
                f"{_where(layer.name)} has no bias. Use a Linear layer with bias."
            )
        if not isinstance(layer.activation, nn.ReLU):
            got = type(layer.activation).__name__ if layer.activation is not None else "nothing"
            problems.append(
                f"SPEAR needs a ReLU right after the first Linear layer (its sparsity reveals the batch), "
                f"but got {got} after {_where(layer.name)}. Use activation = 'relu'."
            )
        elif layer.module.out_features < (view.num_samples or 1):
            problems.append(
                f"SPEAR needs at least as many units as samples, but {_where(layer.name)} has "
                f"{layer.module.out_features} units for {view.num_samples} samples."
            )
        return problems

    def _reconstruct(
        self, view: AttackerView, *, progress: ProgressFn | None, device: torch.device
    ) -> AttackResult:
        assert view.input_shape is not None and view.num_samples is not None
        start = time.perf_counter()
        layer = find_input_linear(view.model, view.input_shape, attack=self.title)
        grad = input_layer_gradient(view, layer, attack=self.title)
        assert grad.bias is not None and layer.module.bias is not None
        w = layer.module.weight.detach().double().cpu()
        b = layer.module.bias.detach().double().cpu()
        out = spear_recover(grad.weight, grad.bias, w, b, view.num_samples, self.config, progress=progress)
        norm = view.normalization or Normalization.identity(view.input_shape[0])
        x_model = out.inputs.float().view(-1, *view.input_shape)
        images = norm.invert(x_model).clamp(0, 1)
        labels = None
        label_method = "none"
        if view.num_classes is not None and out.found == out.rank:
            labels = labels_from_layer_gradient(
                view.model,
                layer,
                x_model,
                out.columns,
                num_classes=view.num_classes,
                batch_size=view.num_samples,
            )
            label_method = "spear-columns"
        notes = [
            *grad.notes,
            f"gradient rank {out.rank} (B = {view.num_samples})",
            f"{out.samples} row subsets sampled, {out.candidates} sparse candidate directions, "
            f"{out.found} of {out.rank} selected",
            "verified: recovered inputs reproduce the ReLU sparsity pattern"
            if out.verified
            else f"NOT verified: {out.mismatch:.2%} of (sample, unit) ReLU states disagree; "
            "raise max_samples or lower min_sparsity",
        ]
        if out.rank < view.num_samples:
            notes.append(
                f"the gradient has rank {out.rank} < B = {view.num_samples} (duplicate images or samples "
                f"without gradient): {out.rank} inputs recovered"
            )
        logger.info("SPEAR: %s", "; ".join(notes))
        rec = Reconstruction(images=images, labels=labels, label_method=label_method)
        return AttackResult(
            attack=self.name,
            reconstruction=rec,
            parameters=self.config.to_dict(),
            iterations=out.samples,
            seconds=time.perf_counter() - start,
            interrupted=out.interrupted,
            notes=tuple(notes),
        )
