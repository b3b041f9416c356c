"""The individual checks of client-side vetting, as pure functions of state dicts.

Each check takes named tensors (``state_dict()`` layout) and returns a list of
:class:`~gradinv.vetting.findings.Finding`. Thresholds are module constants, chosen so that every
honest model in gradinv's test set (untrained models of every registered architecture under every
init scheme, the trained CIFAR ResNet-20/56, models after several rounds of honest FedAvg) has no
finding, with a wide margin, while the malicious constructions are far beyond them.

Parameter patterns (no reference needed):

* ``zero-weights``: weight entries (or normalisation scales) that are exactly zero (fishing zeroes
  classifier rows; inconsistent models zero whole layers). Random or trained float weights never are.
* ``extreme-bias``: biases beyond +-100, units pinned on or off for every input (dead layers of
  inconsistent models, saturated fishing logits); honest biases stay within a few units.
* ``constant-weights``: a weight tensor whose entries are all equal (an imprint block's output layer).
* ``parallel-rows``: rows of a weight matrix that are (anti)parallel, ``|cos| > 1 - 1e-4``: several
  neurons measuring the same input direction, e.g. Robbing the Fed's bins; the evidence says whether
  their biases are sorted like bin cut-offs.
* ``monotone-bias``: a bias vector of 16+ distinct entries made of at most ``n // 6`` strictly
  increasing or decreasing runs (one run: probability ``2 / n!`` for honest biases; a random order
  has about ``2n / 3`` runs). Several runs cover imprint blocks that split their bins between
  measurements; 0 of 64 000 random Gaussian vectors (n = 16 … 128) were flagged.
* ``sign-balanced-rows``: rows with exactly half of their entries negative, far more often than a
  binomial count allows (trap weights). A lean of the rows' signed sums is *not* used: honest
  training on non-negative inputs shifts a first layer's rows the same way (an MLP after four FedAvg
  rounds leans as much as trap weights with scale 0.95), and trained conv filters lean negative.
* ``row-norm-outlier``: a row whose norm is 30x the layer's median (magnified rows).
* ``abnormal-scale``: a layer whose weight scale ``std * sqrt(fan_in)`` is 100x above or below what
  any registered initialisation gives (trained weights drift by far less).
* ``saturating-bias``: classifier biases spread over more than 20 nats: every prediction is
  decided by the biases, whatever the input (class fishing).

With references: ``architecture-change`` (vs the previous model or a registered architecture),
``inconsistent-models`` (vs the models other clients received), ``localized-change`` and
``large-jump`` (vs the previous global model), and, given the client's own update,
``zero-update``, ``isolated-update`` (more than 99% exact zeros) and ``sparse-update-rows`` (a fully
connected layer with 90%+ zero rows; convolution channels are left out because BatchNorm + ReLU
channels die in honest training: a ConvNet trained with a large learning rate had 91% silent
filters in one layer).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from scipy.stats import binom
from torch import Tensor, nn

from gradinv.vetting.findings import Finding

__all__ = [
    "State",
    "check_architecture",
    "check_change",
    "check_classifier_bias",
    "check_consistency",
    "check_constant",
    "check_extreme_bias",
    "check_monotone_bias",
    "check_parallel_rows",
    "check_row_norms",
    "check_scale",
    "check_sign_balance",
    "check_update",
    "check_zero_weights",
    "classifier_name",
    "weight_rows",
]

State = Mapping[str, Tensor]

ZERO_FRACTION = 0.01
PARALLEL_COS = 1.0 - 1e-4
MONOTONE_MIN = 16
MONOTONE_RUN_LENGTH = 6  # at most n // 6 monotone runs
SIGN_MIN_FAN_IN = 64
SIGN_MIN_ROWS = 8
SIGN_LOG10_P = -12.0
ROW_NORM_RATIO = 30.0
SCALE_FACTOR = 100.0
BIAS_SPREAD = 20.0
EXTREME_BIAS = 100.0
LOCALIZED_FRACTION = 0.5
JUMP_RATIO = 1.0
SPARSE_ROWS = 0.9
SPARSE_MIN_ROWS = 32
ISOLATED_FRACTION = 0.01

_SHOW = 4


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_SHOW])
    return shown + (f" and {len(names) - _SHOW} more" if len(names) > _SHOW else "")


def weight_rows(state: State) -> dict[str, Tensor]:
    """Every floating weight tensor with 2+ dims as ``(rows, fan_in)`` float64 (conv filters are rows)."""
    out: dict[str, Tensor] = {}
    for name, t in state.items():
        if name.endswith("weight") and t.ndim >= 2 and t.is_floating_point() and t.shape[0] > 0:
            out[name] = t.detach().double().cpu().reshape(t.shape[0], -1)
    return out


def _bias_of(state: State, weight_name: str) -> Tensor | None:
    b = state.get(weight_name[: -len("weight")] + "bias")
    return b.detach().double().cpu() if b is not None and b.ndim == 1 else None


def classifier_name(state: State) -> str | None:
    """The last 2-D weight (an ``nn.Linear``) in state order: the classifier."""
    last = None
    for name, t in state.items():
        if name.endswith("weight") and t.ndim == 2:
            last = name
    return last


# --------------------------------------------------------------------------------------------------
# Parameter patterns
# --------------------------------------------------------------------------------------------------


def check_zero_weights(state: State) -> list[Finding]:
    """Weight tensors (including 1-D normalisation scales) with more than 1% exactly-zero entries."""
    out = []
    classifier = classifier_name(state)
    for name, t in state.items():
        if not (name.endswith("weight") and t.is_floating_point() and t.numel() >= 2):
            continue
        w = t.detach().double().cpu().reshape(t.shape[0], -1)
        zeros = w == 0
        frac = float(zeros.double().mean())
        if frac <= ZERO_FRACTION:
            continue
        zero_rows = int(zeros.all(dim=1).sum())
        sparse_rows = int(((zeros.double().mean(dim=1) >= 0.5) & ~zeros.all(dim=1)).sum())
        where = (
            "the classifier" if name == classifier else "a normalisation layer" if t.ndim == 1 else "a layer"
        )
        if zero_rows == w.shape[0]:
            what = (
                f"every weight of {where} {name!r} is exactly zero: a constant output that passes no gradient"
            )
        elif t.ndim == 1:
            what = f"{zero_rows} of {w.shape[0]} scales of {where} {name!r} are exactly zero (dead channels)"
        else:
            what = (
                f"{frac:.0%} of the weights of {where} {name!r} are exactly zero ({zero_rows} of "
                f"{w.shape[0]} "
                f"rows entirely, {sparse_rows} more rows mostly)"
            )
        if name == classifier and zero_rows:
            what += "; zeroed classifier rows silence those classes (class fishing, Wen et al. 2022)"
        out.append(
            Finding(
                "high",
                "zero-weights",
                what + ". Trained or randomly initialised weights are never exactly zero.",
                (name,),
                {"zero_fraction": frac, "zero_rows": float(zero_rows), "sparse_rows": float(sparse_rows)},
            )
        )
    return out


def check_extreme_bias(state: State) -> list[Finding]:
    """Biases beyond +-100: a unit pinned on or off for every input (dead layers, saturated logits)."""
    out = []
    for name, t in state.items():
        if not (name.endswith("bias") and t.is_floating_point() and t.numel()):
            continue
        b = t.detach().double().cpu()
        big = b.abs() > EXTREME_BIAS
        if bool(big.any()):
            out.append(
                Finding(
                    "high",
                    "extreme-bias",
                    f"{int(big.sum())} of {b.numel()} entries of {name!r} exceed {EXTREME_BIAS:.0f} in "
                    "magnitude "
                    f"(max {float(b.abs().max()):.3g}): units pinned on or off whatever the input — dead "
                    "layers "
                    "that silence a client (Pasquini et al. 2022) or saturated logits (Wen et al. 2022).",
                    (name,),
                    {"max_abs": float(b.abs().max()), "entries": float(big.sum())},
                )
            )
    return out


def check_constant(state: State) -> list[Finding]:
    """Weight tensors (2+ entries) whose entries are all equal and non-zero."""
    out = []
    for name, w in weight_rows(state).items():
        if w.numel() > 1 and bool((w == w.flatten()[0]).all()) and float(w.flatten()[0]) != 0:
            out.append(
                Finding(
                    "high",
                    "constant-weights",
                    f"every entry of {name!r} {tuple(w.shape)} equals {float(w.flatten()[0]):.4g}: a "
                    "hand-set "
                    "layer, e.g. the output layer of an inserted imprint block (Fowl et al. 2022).",
                    (name,),
                    {"value": float(w.flatten()[0])},
                )
            )
    return out


def _groups(close: Tensor) -> list[list[int]]:
    """Groups of mutually parallel rows from a boolean (n, n) matrix (parallelism is transitive, so
    each unassigned row collects every row close to it)."""
    free = torch.ones(len(close), dtype=torch.bool)
    out = []
    for i in range(len(close)):
        if not free[i] or not bool(close[i].any()):
            continue
        members = torch.nonzero((close[i] | (torch.arange(len(close)) == i)) & free).flatten()
        free[members] = False
        if len(members) > 1:
            out.append(members.tolist())
    return out


def check_parallel_rows(state: State) -> list[Finding]:
    """Rows (fan-in >= 8) that are parallel or anti-parallel to another row of the same layer."""
    out = []
    for name, w in weight_rows(state).items():
        rows, fan_in = w.shape
        if rows < 2 or fan_in < 8:
            continue
        norms = w.norm(dim=1)
        live = torch.nonzero(norms > 0).flatten()
        if len(live) < 2:
            continue
        unit = w[live] / norms[live, None]
        cos = (unit.float() @ unit.float().T).abs().double()  # float32 resolves 1e-4 with margin
        cos.fill_diagonal_(0)
        close = cos >= PARALLEL_COS
        if not bool(close.any()):
            continue
        groups = [[int(live[i]) for i in g] for g in _groups(close)]
        involved = sum(len(g) for g in groups)
        largest = max(groups, key=len)
        text = (
            f"{involved} of {rows} rows of {name!r} are parallel to another row (|cos| > {PARALLEL_COS}), in "
            f"{len(groups)} group(s), the largest of {len(largest)}: these neurons measure the same "
            "direction "
            "of their input"
        )
        bias = _bias_of(state, name)
        sorted_bins = False
        if bias is not None and len(largest) >= 4:
            idx = torch.tensor(largest)
            direction = unit[torch.nonzero(live == idx[0]).flatten()[0]]
            sign = torch.sign(w[idx] @ direction)
            cut = -bias[idx] * sign / norms[idx]
            d = torch.diff(cut)
            sorted_bins = bool((d > 0).all() or (d < 0).all())
            if sorted_bins:
                text += ", and their offsets (bias / norm) are sorted like bin cut-offs"
        text += " — the signature of an imprint / binning layer (Robbing the Fed, Fowl et al. 2022)."
        out.append(
            Finding(
                "high",
                "parallel-rows",
                text,
                (name,),
                {
                    "rows": float(rows),
                    "parallel_rows": float(involved),
                    "largest_group": float(len(largest)),
                    "sorted_offsets": float(sorted_bins),
                },
            )
        )
    return out


def check_monotone_bias(state: State) -> list[Finding]:
    """Bias vectors of 16+ distinct entries made of at most ``n // 6`` strictly monotone runs."""
    out = []
    for name, t in state.items():
        if not (name.endswith("bias") and t.ndim == 1 and t.is_floating_point() and len(t) >= MONOTONE_MIN):
            continue
        signs = torch.sign(torch.diff(t.detach().double().cpu()))
        if bool((signs == 0).any()):
            continue  # repeated entries (e.g. zero-initialised biases): not cut-offs
        runs = 1 + int((signs[1:] != signs[:-1]).sum())
        if runs <= len(t) // MONOTONE_RUN_LENGTH:
            direction = "increasing" if bool(signs[0] > 0) else "decreasing"
            shape = (
                f"strictly {direction} (chance 2/{len(t)}! for honest biases)"
                if runs == 1
                else f"made of only {runs} strictly monotone runs (a random order has ~{2 * len(t) // 3})"
            )
            out.append(
                Finding(
                    "high",
                    "monotone-bias",
                    f"the {len(t)} entries of {name!r} are {shape}: bin cut-offs of an imprint layer "
                    "(Fowl et al. 2022).",
                    (name,),
                    {"entries": float(len(t)), "runs": float(runs)},
                )
            )
    return out


def check_sign_balance(state: State) -> list[Finding]:
    """Trap-weight signature (Boenisch et al. 2023): rows with exactly half of their entries negative,
    far more often than a binomial count allows (chance below 1e-12)."""
    out = []
    for name, w in weight_rows(state).items():
        rows, fan_in = w.shape
        if rows < SIGN_MIN_ROWS or fan_in < SIGN_MIN_FAN_IN:
            continue
        negatives = (w < 0).sum(dim=1)
        half = (negatives == fan_in // 2) | (negatives == (fan_in + 1) // 2)
        k = int(half.sum())
        p0 = float(binom.pmf(fan_in // 2, fan_in, 0.5)) * (1 if fan_in % 2 == 0 else 2)
        log10_p = float(binom.logsf(k - 1, rows, p0)) / math.log(10) if k else 0.0
        if log10_p < SIGN_LOG10_P:
            out.append(
                Finding(
                    "high",
                    "sign-balanced-rows",
                    f"{k} of {rows} rows of {name!r} have exactly half of their {fan_in} weights negative "
                    f"(expected {rows * p0:.1f} by chance; probability 10^{log10_p:.0f}): trap weights that "
                    "let "
                    "each neuron fire for few inputs (Boenisch et al. 2023).",
                    (name,),
                    {"half_negative_rows": float(k), "rows": float(rows), "log10_chance": log10_p},
                )
            )
    return out


def check_row_norms(state: State) -> list[Finding]:
    """Rows whose norm exceeds 30x the layer's median row norm (layers with 8+ rows)."""
    out = []
    for name, w in weight_rows(state).items():
        if w.shape[0] < 8:
            continue
        norms = w.norm(dim=1)
        median = float(norms.median())
        if median <= 0:
            continue
        ratio = float(norms.max()) / median
        if ratio > ROW_NORM_RATIO:
            big = int((norms > ROW_NORM_RATIO * median).sum())
            out.append(
                Finding(
                    "high",
                    "row-norm-outlier",
                    f"{big} row(s) of {name!r} have {ratio:.0f}x the median row norm: magnified neurons "
                    "(gradient magnification, Wen et al. 2022; scaled imprint bins, Fowl et al. 2022).",
                    (name,),
                    {"max_over_median": ratio, "rows": float(big)},
                )
            )
    return out


def _init_gains(fan_in: int, fan_out: int) -> tuple[float, float]:
    """Range of ``std * sqrt(fan_in)`` over gradinv's init schemes (default, kaiming, uniform)."""
    gains = [
        1 / math.sqrt(3),
        math.sqrt(2 * fan_in / max(fan_out, 1)),
        0.5 / math.sqrt(3) * math.sqrt(fan_in),
    ]
    return min(gains), max(gains)


def check_scale(state: State) -> list[Finding]:
    """Weight tensors whose scale is 100x outside what any registered initialisation gives."""
    out = []
    for name, t in state.items():
        if not (name.endswith("weight") and t.ndim >= 2 and t.is_floating_point() and t.numel() > 1):
            continue
        w = t.detach().double().cpu()
        fan_in = w[0].numel()
        fan_out = w.shape[0] * (w[0, 0].numel() if w.ndim > 2 else 1)
        std = float(w.std())
        if std == 0:
            continue  # constant: reported by check_constant / check_zero_weights
        gain = std * math.sqrt(fan_in)
        lo, hi = _init_gains(fan_in, fan_out)
        if gain > SCALE_FACTOR * hi or gain < lo / SCALE_FACTOR:
            out.append(
                Finding(
                    "high",
                    "abnormal-scale",
                    f"{name!r} has scale std*sqrt(fan_in) = {gain:.3g}, {'above' if gain > hi else 'below'} "
                    "the "
                    f"range [{lo:.3g}, {hi:.3g}] of any registered initialisation by more than "
                    f"{SCALE_FACTOR:.0f}x: "
                    "a hand-set layer.",
                    (name,),
                    {"gain": gain, "init_low": lo, "init_high": hi},
                )
            )
    return out


def check_classifier_bias(state: State) -> list[Finding]:
    """Classifier biases spread over more than 20 nats decide predictions regardless of the input."""
    name = classifier_name(state)
    if name is None:
        return []
    bias = _bias_of(state, name)
    if bias is None or len(bias) < 2:
        return []
    spread = float(bias.max() - bias.min())
    if spread <= BIAS_SPREAD:
        return []
    low = torch.nonzero(bias < bias.max() - BIAS_SPREAD).flatten().tolist()
    return [
        Finding(
            "high",
            "saturating-bias",
            f"the classifier biases {name[: -len('weight')]}bias span {spread:.3g} nats: class(es) "
            f"{low[:8]} sit "
            f"{spread:.3g} below the others, so their probability is ~exp(-{spread:.0f}) for every input and "
            "only their samples send gradient (class fishing, Wen et al. 2022).",
            (name[: -len("weight")] + "bias",),
            {"spread": spread},
        )
    ]


# --------------------------------------------------------------------------------------------------
# Comparisons
# --------------------------------------------------------------------------------------------------


def _comparable(state: State) -> dict[str, Tensor]:
    """Tensors to compare between models (BatchNorm's integer step counter is not one)."""
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}


def _prefix_map(received: State, reference: State) -> tuple[str, dict[str, str]]:
    """The prefix under which ``reference``'s keys appear in ``received`` (``""`` when they match) and
    the mapping reference key -> received key. A prefix is used only when it maps more keys than none."""
    counts: dict[str, int] = {"": sum(1 for k in reference if k in received)}
    if counts[""] < len(reference):
        for r in received:
            for k in reference:
                if r != k and r.endswith("." + k):
                    p = r[: -len(k)]
                    counts[p] = counts.get(p, 0) + 1
    prefix = max(counts, key=lambda p: (counts[p], p == ""))
    return prefix, {k: prefix + k for k in reference if prefix + k in received}


def _leaf_modules(model: nn.Module) -> list[tuple[str, str]]:
    return [(n, type(m).__name__) for n, m in model.named_modules() if n and not list(m.children())]


def check_architecture(
    received: State,
    reference: State,
    *,
    what: str,
    received_module: nn.Module | None = None,
    reference_module: nn.Module | None = None,
) -> list[Finding]:
    """Added, missing or reshaped tensors (and inserted modules) relative to ``reference``."""
    received, reference = _comparable(received), _comparable(reference)
    prefix, mapping = _prefix_map(received, reference)
    mapped = set(mapping.values())
    added = [k for k in received if k not in mapped]
    missing = [k for k in reference if k not in mapping]
    reshaped = [k for k, r in mapping.items() if tuple(received[r].shape) != tuple(reference[k].shape)]
    out: list[Finding] = []
    if added or missing or prefix:
        extra = sum(received[k].numel() for k in added)
        parts = []
        if prefix:
            parts.append(f"the {what} is nested under {prefix!r}")
        if added:
            parts.append(
                f"{len(added)} tensors were added "
                f"({_names([f'{k} {tuple(received[k].shape)}' for k in added])}; "
                f"{extra:,} values)"
            )
        if missing:
            parts.append(f"{len(missing)} tensors are missing ({_names(missing)})")
        if received_module is not None and reference_module is not None:
            ref_types = {t for _, t in _leaf_modules(reference_module)}
            ref_names = {prefix + n for n, _ in _leaf_modules(reference_module)}
            inserted = [f"{n} ({t})" for n, t in _leaf_modules(received_module) if n not in ref_names]
            if inserted:
                parts.append(f"inserted modules: {_names(inserted)}")
            new_types = sorted({t for _, t in _leaf_modules(received_module)} - ref_types)
            if new_types:
                parts.append(f"module types absent from the {what}: {', '.join(new_types)}")
        out.append(
            Finding(
                "high",
                "architecture-change",
                "; ".join(parts)
                + (
                    ". Inserted layers in front of a model are how imprint attacks read inputs off gradients "
                    "(Robbing the Fed, Fowl et al. 2022)."
                    if added
                    else ". The model is not the architecture it should be."
                ),
                tuple(added[:16] + missing[:16]),
                {"added": float(len(added)), "missing": float(len(missing)), "added_values": float(extra)},
            )
        )
    if reshaped:
        out.append(
            Finding(
                "high",
                "architecture-change",
                f"{len(reshaped)} tensors changed shape vs the {what}: "
                + _names(
                    [
                        f"{k} {tuple(reference[k].shape)} -> {tuple(received[mapping[k]].shape)}"
                        for k in reshaped
                    ]
                )
                + ".",
                tuple(reshaped[:16]),
                {"reshaped": float(len(reshaped))},
            )
        )
    return out


def _differences(a: State, b: State) -> tuple[list[str], float]:
    a, b = _comparable(a), _comparable(b)
    keys = sorted(set(a) | set(b))
    diff: list[str] = []
    worst = 0.0
    for k in keys:
        if k not in a or k not in b or a[k].shape != b[k].shape:
            diff.append(k)
            worst = math.inf
            continue
        if not torch.equal(a[k].cpu(), b[k].cpu()):
            diff.append(k)
            if a[k].is_floating_point():
                worst = max(worst, float((a[k].double().cpu() - b[k].double().cpu()).abs().max()))
            else:
                worst = max(worst, 1.0)
    return diff, worst


def check_consistency(received: State, others: Sequence[State]) -> list[Finding]:
    """Every client of a round should receive the same global model, bit for bit."""
    bad = []
    for i, other in enumerate(others):
        diff, worst = _differences(received, other)
        if diff:
            bad.append((i, diff, worst))
    if not bad:
        return []
    desc = "; ".join(
        f"model #{i} differs in {len(d)} tensors ({_names(d)}; max |diff| {w:.3g})" for i, d, w in bad[:4]
    )
    names = sorted({k for _, d, _ in bad for k in d})
    return [
        Finding(
            "high",
            "inconsistent-models",
            f"{len(bad)} of {len(others)} other clients received a different model: {desc}. A server that "
            "sends "
            "different models can isolate one client's update through secure aggregation (Pasquini et al., "
            "CCS 2022).",
            tuple(names[:16]),
            {"inconsistent_clients": float(len(bad)), "clients": float(len(others))},
        )
    ]


def _trained(state: State) -> dict[str, Tensor]:
    return {
        k: v
        for k, v in state.items()
        if v.is_floating_point() and (k.endswith("weight") or k.endswith("bias"))
    }


def check_change(received: State, previous: State) -> list[Finding]:
    """Since the previous global model: only a few parameter tensors changed (``localized-change``), or
    a weight tensor moved by more than its own norm (``large-jump``; honest rounds in the test set move
    weights by at most 20% of their norm)."""
    _, mapping = _prefix_map(received, previous)
    prev = _trained(previous)
    pairs = [(k, mapping[k]) for k in prev if k in mapping and received[mapping[k]].shape == prev[k].shape]
    if not pairs:
        return []
    out = []
    changed = [r for k, r in pairs if not torch.equal(received[r].cpu(), prev[k].cpu())]
    if changed and len(pairs) >= 4 and len(changed) / len(pairs) < LOCALIZED_FRACTION:
        out.append(
            Finding(
                "medium",
                "localized-change",
                f"only {len(changed)} of {len(pairs)} parameter tensors changed since the previous global "
                "model "
                f"({_names(changed)}); an aggregated training step moves every trained parameter. Targeted "
                "edits of a few layers are how trap weights and fishing are planted.",
                tuple(changed[:16]),
                {"changed": float(len(changed)), "tensors": float(len(pairs))},
            )
        )
    jumps = []
    for k, r in pairs:
        if not k.endswith("weight") or prev[k].numel() < 16:
            continue
        base = float(prev[k].double().norm())
        if base <= 0:
            continue
        ratio = float((received[r].double().cpu() - prev[k].double().cpu()).norm()) / base
        if ratio > JUMP_RATIO:
            jumps.append((r, ratio))
    if jumps:
        out.append(
            Finding(
                "high",
                "large-jump",
                f"{len(jumps)} weight tensor(s) moved by more than {JUMP_RATIO:g}x their norm since the "
                "previous "
                f"global model ({_names([f'{n} {x:.1f}x' for n, x in jumps])}): replaced, not trained.",
                tuple(n for n, _ in jumps[:16]),
                {"max_ratio": max(x for _, x in jumps)},
            )
        )
    return out


def check_update(update: State) -> list[Finding]:
    """The client's own update: exactly zero everywhere, or a layer whose rows are almost all zero."""
    tensors = {k: v for k, v in update.items() if v.is_floating_point() and v.numel()}
    if not tensors:
        return []
    nonzero = sum(int((v != 0).sum()) for v in tensors.values())
    if nonzero == 0:
        return [
            Finding(
                "high",
                "zero-update",
                "your update is exactly zero for every parameter: the model you received makes your data "
                "contribute nothing, as the silenced clients of an inconsistent-model attack do (Pasquini et "
                "al., CCS 2022) while another client's update is isolated.",
                (),
                {"tensors": float(len(tensors))},
            )
        ]
    total = sum(v.numel() for v in tensors.values())
    out = []
    if nonzero / total < ISOLATED_FRACTION:
        moved = [k for k, v in tensors.items() if bool((v != 0).any())]
        out.append(
            Finding(
                "high",
                "isolated-update",
                f"{1 - nonzero / total:.2%} of your update is exactly zero; only {_names(moved)} moved. The "
                "model "
                "you received silences your data (inconsistent models, Pasquini et al. 2022; fishing, Wen "
                "et al. "
                "2022).",
                tuple(moved[:16]),
                {"nonzero_fraction": nonzero / total},
            )
        )
    for name, v in tensors.items():
        if v.ndim != 2 or v.shape[0] < SPARSE_MIN_ROWS:  # conv channels die honestly (BN + ReLU)
            continue
        rows = v.reshape(v.shape[0], -1)
        zero = float((rows == 0).all(dim=1).double().mean())
        if zero >= SPARSE_ROWS:
            out.append(
                Finding(
                    "medium",
                    "sparse-update-rows",
                    f"{zero:.0%} of the rows of your update of {name!r} are exactly zero: each of the few "
                    "remaining "
                    "rows carries few samples, so it can hold an input in the clear (binning / trap "
                    "attacks).",
                    (name,),
                    {"zero_rows": zero},
                )
            )
    return out
