"""Label recovery from the gradient (or FedAvg update) of the last fully connected layer.

With softmax cross-entropy averaged over ``n`` samples, the classifier's gradient is
``dL/dW_c = (1/n) sum_i (p_ic - y_ic) a_i`` and ``dL/db_c = (1/n) sum_i (p_ic - y_ic)``, where
``a_i`` is sample ``i``'s input to the layer (its *features*) and ``p_i`` its softmax output. Every
method returns a sorted label vector of length ``n`` (a multiset: duplicates allowed); labels are
compared as multisets (:func:`gradinv.metrics.label_accuracy`).

Unique-label methods (pure functions of the classifier gradient):

* ``idlg`` — Zhao, Mopuri, Bilen, "iDLG: Improved Deep Leakage from Gradients", arXiv 2020: for
  ``n = 1`` the true class is the row whose sum is negative (needs non-negative features ``a``, e.g.
  after ReLU or sigmoid).
* ``bias-sign`` — the analytic sign of the bias gradient: only present classes can be negative. For
  ``n = 1`` exact whenever the classifier has a bias; for ``n > 1`` the ``n`` most negative entries
  (assumes unique labels).
* ``yin`` — Yin, Mallya, Vahdat, Alvarez, Kautz, Molchanov, "See through Gradients: Image Batch
  Recovery via GradInversion", CVPR 2021: the ``n`` classes whose gradient rows have the most
  negative minima (assumes unique labels, ``n <= classes``).

Count-aware methods (duplicates allowed):

* ``llg``, ``llg-star``, ``llg-plus`` — Wainakh, Ventola, Müßig, Keim, Garcia Cordero, Zimmer, Grube,
  Kersting, Mühlhäuser, "User-Level Label Leakage from Gradients in Federated Learning", PETS 2022.
  With non-negative features the row sum ``g_c = sum_f dL/dW_cf`` is negative when class ``c`` is
  present (existence) and its magnitude grows with the class count (count). Every class with
  ``g_c < 0`` is taken once and its ``g_c`` lowered by the per-sample *impact* ``m`` (``g_c -= m``,
  ``m < 0``); then, after subtracting the per-class *offset* ``s``, the class with the smallest
  ``g_c`` is taken and lowered by ``m`` until there are ``n`` labels. LLG estimates ``m`` from the
  gradient alone (``m = (1 + 1/C) sum_{g_c < 0} g_c / n``, ``s = 0``; scale-free, needs no model);
  LLG* estimates ``m`` with dummy data through the model (the mean of ``(p_jc - 1) S_j / n`` over
  random inputs ``j`` and classes ``c``, ``S_j`` the sum of ``j``'s features); LLG+ adds the offset
  ``s_c`` = mean of ``p_jc S_j``, the share of class ``c``'s row sum caused by samples of *other*
  classes. Dummy inputs: uniform noise in image space, normalised like the client's data, through
  the model in the client's forward mode (``train`` when unknown). Accuracy is limited by how much
  the feature sums ``S_i`` of real images vary: the row sum weighs each sample by ``S_i``.
* ``ilrg`` — Ma, Sun, Cui, Li, Guan, Liu, "Instance-wise Batch Label Restoration via Gradients in
  Federated Learning", ICLR 2023. The class-wise mean features are restored as
  ``e_c = dL/dW_c / dL/db_c``, fed through the classifier, ``q_c = softmax(W e_c + b)``, and the
  counts solve the linear system ``sum_j k_j (q_j - onehot_j) = n dL/db`` with ``sum_j k_j = n``
  (least squares), rounded to integers summing to ``n``. Exact when the samples of each class share
  one softmax output and ``e_c`` equals their mean feature, e.g. identical features within a class
  and ``n * p_c << k_c`` (many classes, untrained network: the paper's setting). With few classes
  (``n`` comparable to ``k_c / p_c``) ``e_c`` is contaminated by the other classes' features and
  the counts degrade; needs a classifier bias.
* ``ilrg-refined`` — our extension of iLRG (not in the paper): starting from iLRG's counts, the
  batch-mean feature ``a_bar`` is restored from the classes estimated absent
  (``a_bar = sum_absent dL/dW_c / sum_absent dL/db_c``, exact up to the spread of ``p_ic`` over
  samples), the class means are de-contaminated, ``e_c = a_bar - (n / k_c)(dL/dW_c - dL/db_c a_bar)``,
  and the counts are re-solved from the bias identity ``k = n (p_bar - dL/db)`` with
  ``p_bar = sum_c (k_c / n) softmax(W e_c + b)``, iterated to a fixed point. When every class is
  present the batch mean is not identifiable from the gradient and iLRG's counts are returned.
* ``geng`` — Geng, Mou, Li, Li, Beyan, Decker, Rong, "Towards General Deep Leakage in Federated
  Learning", arXiv 2110.09074, 2021: ``k_c = n p_c - n g_c / O`` with ``p`` the mean softmax output
  and ``O`` the mean feature sum of dummy inputs. For a FedAvg delta (E epochs of U_e mini-batch
  steps, known lr, batch size, momentum and weight decay) the summed per-step gradients are
  recovered from the delta, the dummy statistics are interpolated linearly between the global model
  and the updated model over the U = E U_e steps (as in the implementation of Dimitrov et al., TMLR
  2022), and ``k_c = N / (E U_e) * (sum_s p_sc - G_c mean_s(1 / O_s))``.

Simple methods are functions ``fn(ClassifierGradient, n)``; methods that need the model or the
training details take the whole view (``LabelMethod.view_fn(view, grads)``). For a FedAvg weight
delta the gradient-based methods see the pseudo-gradient the attack derives (``-delta``, scaled when
the training details are known).
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradinv.errors import AttackRefused, DataError
from gradinv.registry import Registry
from gradinv.types import AttackerView, Normalization, TrainingConfig, UpdateKind

__all__ = [
    "AUTO_DESCRIPTION",
    "LABEL_METHODS",
    "LABEL_STRATEGIES",
    "ClassifierGradient",
    "ClassifierStatistics",
    "LabelMethod",
    "auto_label_method",
    "bias_sign_labels",
    "classifier_gradient",
    "classifier_statistics",
    "counts_to_labels",
    "dummy_inputs",
    "geng_counts",
    "geng_fedavg_counts",
    "idlg_labels",
    "ilrg_counts",
    "ilrg_refined_counts",
    "llg_greedy",
    "llg_labels",
    "llg_plus_labels",
    "llg_star_labels",
    "resolve_labels",
    "round_counts",
    "yin_labels",
]

logger = logging.getLogger(__name__)

#: Number of random inputs LLG*/LLG+ and Geng et al. push through the model.
NUM_DUMMY = 32


@dataclass(frozen=True)
class ClassifierGradient:
    """Gradient of the last Linear layer: weight ``(classes, features)`` and bias ``(classes,)``."""

    weight: Tensor
    bias: Tensor | None

    @property
    def num_classes(self) -> int:
        return int(self.weight.shape[0])

    @property
    def row_sums(self) -> Tensor:
        """``g_c = sum_f dL/dW_cf`` in float64 (Wainakh et al.'s per-class signal)."""
        return self.weight.double().sum(dim=1)


def classifier_gradient(model: nn.Module, grads: Mapping[str, Tensor]) -> ClassifierGradient:
    """Pick the classifier's gradient out of a per-parameter mapping (bias ``None`` when the mapping
    leaves it out, e.g. a frozen bias)."""
    from gradinv.models.inspect import find_classifier

    w_name, b_name = find_classifier(model)
    w = grads[w_name].detach().float().cpu()
    b = grads[b_name].detach().float().cpu() if b_name is not None and b_name in grads else None
    return ClassifierGradient(w.reshape(w.shape[0], -1), b)


def _classifier(model: nn.Module) -> nn.Linear:
    from gradinv.models.inspect import find_classifier

    w_name, _ = find_classifier(model)
    path = w_name.rsplit(".", 1)[0] if "." in w_name else ""
    module = model.get_submodule(path)
    assert isinstance(module, nn.Linear)
    return module


# --------------------------------------------------------------------------------------------------
# Counts <-> labels
# --------------------------------------------------------------------------------------------------


def counts_to_labels(counts: Tensor) -> Tensor:
    """Sorted label vector holding class ``c`` ``counts[c]`` times.

    >>> counts_to_labels(torch.tensor([2, 0, 1])).tolist()
    [0, 0, 2]
    """
    k = counts.detach().cpu().long()
    if k.ndim != 1 or (k < 0).any():
        raise DataError(f"Expected non-negative per-class counts (C,), but got {k.tolist()}.")
    return torch.repeat_interleave(torch.arange(len(k)), k)


def round_counts(counts: Tensor, n: int) -> Tensor:
    """Non-negative integer counts summing to ``n`` closest to the real-valued ``counts``.

    Negative estimates are clipped to 0 and the values rounded; while the total exceeds ``n`` the
    count rounded up the most is lowered, while it falls short the count rounded down the most is
    raised (the correction of Ma et al., ICLR 2023).

    >>> round_counts(torch.tensor([2.6, -0.3, 1.45, 0.2]), 4).tolist()
    [3, 0, 1, 0]
    >>> round_counts(torch.tensor([1.4, 1.4, 1.4]), 4).tolist()
    [2, 1, 1]
    """
    kf = counts.detach().cpu().double()
    if kf.ndim != 1 or not torch.isfinite(kf).all():
        raise DataError(f"Expected finite real-valued counts (C,), but got {kf.tolist()}.")
    if n < 0:
        raise DataError(f"Expected a non-negative total, but got n={n}.")
    k = kf.clamp(min=0).round()
    excess = int(k.sum().item()) - n
    while excess > 0:
        err = torch.where(k > 0, k - kf, torch.full_like(kf, -math.inf))
        i = int(err.argmax())
        k[i] -= 1
        excess -= 1
    while excess < 0:
        i = int((k - kf).argmin())
        k[i] += 1
        excess += 1
    return k.long()


# --------------------------------------------------------------------------------------------------
# Unique-label methods
# --------------------------------------------------------------------------------------------------


def _check_n(name: str, n: int, cg: ClassifierGradient, *, unique: bool) -> None:
    if n < 1:
        raise AttackRefused(f"{name} label recovery needs at least one sample, got n={n}.")
    if unique and n > cg.num_classes:
        raise AttackRefused(
            f"{name} label recovery assumes unique labels, so n <= {cg.num_classes} classes, but n = {n}. "
            "Use known labels or a count-aware method (ilrg-refined, llg-plus, geng)."
        )


def idlg_labels(cg: ClassifierGradient, n: int) -> Tensor:
    """iDLG: argmin of the classifier-weight gradient's row sums (``n = 1`` only)."""
    if n != 1:
        raise AttackRefused(
            f"iDLG label recovery is defined for a single sample (B = 1), but the update holds n = {n}. "
            "Use a count-aware method (labels = 'ilrg-refined', 'llg-plus', 'geng') or known labels."
        )
    return cg.weight.sum(dim=1).argmin().reshape(1)


def bias_sign_labels(cg: ClassifierGradient, n: int) -> Tensor:
    """The ``n`` most negative entries of the classifier-bias gradient."""
    if cg.bias is None:
        raise AttackRefused(
            "bias-sign label recovery needs a classifier (last Linear layer) with a bias, but it has none. "
            "Use labels = 'idlg' (B = 1) or 'llg'."
        )
    _check_n("bias-sign", n, cg, unique=True)
    return torch.sort(torch.argsort(cg.bias)[:n]).values


def yin_labels(cg: ClassifierGradient, n: int) -> Tensor:
    """Yin et al.: the ``n`` classes whose gradient rows have the most negative minimum."""
    _check_n("Yin", n, cg, unique=True)
    row_min = cg.weight.min(dim=1).values
    return torch.sort(torch.argsort(row_min)[:n]).values


# --------------------------------------------------------------------------------------------------
# Statistics of the classifier on dummy inputs (LLG*, LLG+, Geng et al.)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassifierStatistics:
    """What the classifier sees on some inputs: its input features ``(M, F)`` and the softmax
    outputs ``(M, C)`` (float64, CPU)."""

    features: Tensor
    probs: Tensor

    @property
    def feature_sums(self) -> Tensor:
        """``S_j = sum_f a_jf`` per input, ``(M,)``."""
        return self.features.sum(dim=1)

    @property
    def mean_probs(self) -> Tensor:
        return self.probs.mean(dim=0)

    @property
    def mean_feature_sum(self) -> float:
        return float(self.feature_sums.mean())


def dummy_inputs(
    input_shape: tuple[int, int, int],
    normalization: Normalization | None,
    *,
    num: int = NUM_DUMMY,
    seed: int = 0,
) -> Tensor:
    """``num`` seeded images of uniform noise in ``[0, 1]``, normalised for the model.

    >>> dummy_inputs((3, 4, 4), None, num=2).shape
    torch.Size([2, 3, 4, 4])
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand((num, *input_shape), generator=gen)
    return normalization.apply(x) if normalization is not None else x


def classifier_statistics(model: nn.Module, inputs: Tensor, *, mode: str = "train") -> ClassifierStatistics:
    """Features entering the last Linear layer and softmax outputs of ``model`` on ``inputs``.

    Runs a deep copy in ``mode`` (``train``: BatchNorm uses the batch statistics, like a client's
    training step) without gradients; ``model`` is left untouched."""
    work = copy.deepcopy(model)
    work.train() if mode == "train" else work.eval()
    store: dict[str, Tensor] = {}

    def hook(_m: nn.Module, args: tuple[Tensor, ...]) -> None:
        store["a"] = args[0].detach()

    handle = _classifier(work).register_forward_pre_hook(hook)
    try:
        with torch.no_grad():
            logits = work(inputs.to(next(work.parameters()).device))
    finally:
        handle.remove()
    feats = store["a"].reshape(len(inputs), -1).double().cpu()
    return ClassifierStatistics(feats, F.softmax(logits.double().cpu(), dim=-1))


def _mode(view: AttackerView) -> str:
    return view.training.model_mode if view.training is not None else "train"


def _view_statistics(view: AttackerView, model: nn.Module | None = None) -> ClassifierStatistics:
    shape = view.input_shape
    if shape is None:
        raise AttackRefused("Dummy-data label recovery needs the input shape (basic knowledge).")
    x = dummy_inputs(shape, view.normalization, num=NUM_DUMMY)
    return classifier_statistics(model if model is not None else view.model, x, mode=_mode(view))


# --------------------------------------------------------------------------------------------------
# LLG, LLG*, LLG+ (Wainakh et al., PETS 2022)
# --------------------------------------------------------------------------------------------------


def llg_greedy(row_sums: Tensor, n: int, *, impact: Tensor | float, offset: Tensor | float = 0.0) -> Tensor:
    """Wainakh et al.'s two-stage selection of ``n`` labels from the row sums ``g``.

    Stage 1 takes every class with ``g_c < 0`` once (the ``n`` most negative if there are more) and
    lowers its ``g_c`` by the impact ``m_c`` (negative: ``g_c -= m_c`` raises it); stage 2 subtracts
    the offset ``s`` and repeatedly takes the class with the smallest ``g_c - s_c``, lowering it by
    ``m_c``.

    >>> llg_greedy(torch.tensor([-3.0, 0.5, -1.0, 1.0]), 4, impact=-1.0).tolist()
    [0, 0, 0, 2]
    """
    g = row_sums.detach().cpu().double().clone()
    c = len(g)
    m = torch.as_tensor(impact, dtype=torch.float64).expand(c).clone()
    s = torch.as_tensor(offset, dtype=torch.float64).expand(c).clone()
    if n < 1:
        raise AttackRefused(f"LLG label recovery needs at least one sample, got n={n}.")
    if not (m < 0).all():
        raise AttackRefused(
            f"Expected a negative per-sample impact for LLG, but got {m.max().item():.3g}. The classifier "
            "gradient shows no negative row sum (features not non-negative, or a degenerate update)."
        )
    negative = [int(i) for i in torch.argsort(g) if g[i] < 0][:n]
    labels = list(negative)
    for i in negative:
        g[i] -= m[i]
    g -= s
    while len(labels) < n:
        i = int(g.argmin())
        labels.append(i)
        g[i] -= m[i]
    return torch.sort(torch.tensor(labels, dtype=torch.long)).values


def llg_labels(cg: ClassifierGradient, n: int) -> Tensor:
    """LLG: impact ``m = (1 + 1/C) sum_{g_c < 0} g_c / n`` from the gradient alone, no offset.

    Scale-free: works on a FedAvg delta of unknown scale."""
    g = cg.row_sums
    neg = g[g < 0]
    if neg.numel() == 0:
        raise AttackRefused(
            "LLG needs at least one negative row sum of the classifier gradient, but none is negative. "
            "The features entering the classifier are probably not non-negative."
        )
    m = float(neg.sum()) * (1 + 1 / cg.num_classes) / n
    return llg_greedy(g, n, impact=m)


def _impact(stats: ClassifierStatistics, n: int) -> float:
    """Mean over dummy inputs j and classes c of ``(p_jc - 1) S_j / n``: one sample's push on the
    row sum of its own class in a mean over ``n`` samples."""
    s = stats.feature_sums[:, None]
    return float(((stats.probs - 1.0) * s).mean()) / n


def llg_star_labels(cg: ClassifierGradient, n: int, stats: ClassifierStatistics) -> Tensor:
    """LLG*: the impact measured on dummy inputs (``stats``), no offset."""
    return llg_greedy(cg.row_sums, n, impact=_impact(stats, n))


def llg_plus_labels(cg: ClassifierGradient, n: int, stats: ClassifierStatistics) -> Tensor:
    """LLG+: impact and per-class offset ``s_c = mean_j p_jc S_j`` measured on dummy inputs."""
    offset = (stats.probs * stats.feature_sums[:, None]).mean(dim=0)
    return llg_greedy(cg.row_sums, n, impact=_impact(stats, n), offset=offset)


# --------------------------------------------------------------------------------------------------
# iLRG (Ma et al., ICLR 2023) and its refinement
# --------------------------------------------------------------------------------------------------


def _check_ilrg_inputs(weight_grad: Tensor, bias_grad: Tensor | None, weight: Tensor, n: int) -> Tensor:
    if bias_grad is None:
        raise AttackRefused(
            "iLRG restores class-wise features as dL/dW_c / dL/db_c and solves for the counts on the "
            "bias gradient, so it needs a classifier (last Linear layer) with a bias, but it has none. "
            "Use labels = 'llg-plus' or 'geng'."
        )
    if weight_grad.shape != weight.shape:
        raise DataError(
            f"Expected the classifier gradient of shape {tuple(weight.shape)} like its weight, "
            f"but got {tuple(weight_grad.shape)}."
        )
    if n < 1:
        raise AttackRefused(f"iLRG needs at least one sample, got n={n}.")
    return bias_grad


def _class_probs(embeddings: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    logits = embeddings @ weight.T
    return F.softmax(logits + bias if bias is not None else logits, dim=-1)


def ilrg_counts(
    weight_grad: Tensor, bias_grad: Tensor | None, weight: Tensor, bias: Tensor | None, n: int
) -> Tensor:
    """iLRG's real-valued per-class counts ``(C,)`` (float64; round with :func:`round_counts`).

    Args:
        weight_grad: classifier weight gradient ``(C, F)`` of the mean loss over ``n`` samples.
        bias_grad: classifier bias gradient ``(C,)``.
        weight: the classifier weight ``(C, F)`` at which the gradient was taken.
        bias: the classifier bias ``(C,)`` (or ``None``).
        n: number of samples.

    >>> W, b = torch.zeros(3, 2, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    >>> a = torch.tensor([1.0, 2.0], dtype=torch.float64)   # every sample has these features
    >>> k = torch.tensor([2.0, 0.0, 1.0], dtype=torch.float64)
    >>> gb = 1 / 3 - k / 3                                   # p = 1/3 (zero logits)
    >>> ilrg_counts(gb[:, None] * a, gb, W, b, 3).round().tolist()
    [2.0, 0.0, 1.0]
    """
    gb = _check_ilrg_inputs(weight_grad, bias_grad, weight, n).detach().double().cpu()
    gw = weight_grad.detach().double().cpu()
    w = weight.detach().double().cpu()
    bb = bias.detach().double().cpu() if bias is not None else None
    c = len(gb)
    safe = torch.where(gb != 0, gb, torch.ones_like(gb))
    emb = torch.where((gb != 0)[:, None], gw / safe[:, None], torch.zeros_like(gw))
    probs = _class_probs(emb, w, bb)  # row j: softmax output of class j's mean feature
    a = torch.cat([torch.ones(1, c, dtype=torch.float64), probs.T - torch.eye(c, dtype=torch.float64)])
    rhs = torch.cat([torch.tensor([float(n)], dtype=torch.float64), n * gb])
    return torch.linalg.lstsq(a, rhs[:, None], driver="gelsd").solution[:, 0]


def _refine_fixed_point(
    gw: Tensor, gb: Tensor, w: Tensor, bb: Tensor | None, n: int, k: Tensor, max_iter: int
) -> tuple[Tensor, Tensor | None]:
    """Iterate absent-class batch mean -> de-contaminated class features -> counts; returns the
    counts and their last real-valued estimate (``None`` when no usable absent class exists)."""
    kf: Tensor | None = None
    for _ in range(max_iter):
        absent = k == 0
        denom = gb[absent].sum()
        if not absent.any() or not denom > 0:
            return k, None
        a_bar = gw[absent].sum(dim=0) / denom
        present = torch.nonzero(~absent).flatten()
        kp = k[present].double()
        emb = a_bar - (n / kp)[:, None] * (gw[present] - gb[present, None] * a_bar)
        p_bar = (kp[:, None] * _class_probs(emb, w, bb)).sum(dim=0) / n
        kf = n * (p_bar - gb)
        new = round_counts(kf, n)
        if torch.equal(new, k):
            break
        k = new
    return k, kf


def _off_integer(kf: Tensor | None) -> float:
    return float(((kf - kf.round()) ** 2).sum()) if kf is not None else math.inf


def ilrg_refined_counts(
    weight_grad: Tensor,
    bias_grad: Tensor | None,
    weight: Tensor,
    bias: Tensor | None,
    n: int,
    *,
    max_iter: int = 10,
    max_starts: int = 10,
) -> Tensor:
    """Integer counts ``(C,)`` of ``ilrg-refined`` (iLRG, then the absent-class refinement).

    When iLRG's counts leave no class absent, each of the (at most ``max_starts``) classes with the
    largest positive bias gradient is tried as the one absent class; the candidate whose real-valued
    counts lie closest to integers wins (iLRG's own counts included, so an all-present batch keeps them).

    >>> W, b = torch.zeros(3, 2, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    >>> a = torch.tensor([1.0, 2.0], dtype=torch.float64)
    >>> k = torch.tensor([2.0, 0.0, 1.0], dtype=torch.float64)
    >>> gb = 1 / 3 - k / 3
    >>> ilrg_refined_counts(gb[:, None] * a, gb, W, b, 3).tolist()
    [2, 0, 1]
    """
    gb = _check_ilrg_inputs(weight_grad, bias_grad, weight, n).detach().double().cpu()
    gw, w = weight_grad.detach().double().cpu(), weight.detach().double().cpu()
    bb = bias.detach().double().cpu() if bias is not None else None
    kf0 = ilrg_counts(gw, gb, w, bb, n)
    k0 = round_counts(kf0, n)
    if (k0 == 0).any():
        return _refine_fixed_point(gw, gb, w, bb, n, k0, max_iter)[0]
    best, best_score = k0, _off_integer(kf0)
    for c in torch.argsort(gb, descending=True)[:max_starts].tolist():
        if not gb[c] > 0:
            break
        start = n * (_class_probs((gw[c] / gb[c])[None, :], w, bb)[0] - gb)
        start[c] = 0.0
        k, kf = _refine_fixed_point(gw, gb, w, bb, n, round_counts(start, n), max_iter)
        if _off_integer(kf) < best_score:
            best, best_score = k, _off_integer(kf)
    logger.debug("ilrg-refined: no class absent in iLRG's counts; kept %s", best.tolist())
    return best


# --------------------------------------------------------------------------------------------------
# Geng et al. 2021 (FedSGD gradients and FedAvg deltas)
# --------------------------------------------------------------------------------------------------


def geng_counts(row_sums: Tensor, n: int, *, mean_probs: Tensor, mean_feature_sum: float) -> Tensor:
    """Geng et al.'s real-valued counts from one gradient: ``n p_c - n g_c / O``.

    >>> geng_counts(torch.tensor([-0.25, 0.25]), 4, mean_probs=torch.tensor([0.5, 0.5]),
    ...             mean_feature_sum=2.0).tolist()
    [2.5, 1.5]
    """
    if not mean_feature_sum > 0:
        raise AttackRefused(
            f"Geng et al.'s label counts need a positive mean feature sum on dummy inputs, but got "
            f"{mean_feature_sum:.3g}. The features entering the classifier are not non-negative."
        )
    return n * mean_probs.double() - n * row_sums.double() / mean_feature_sum


def geng_fedavg_counts(
    delta_row_sums: Tensor,
    num_samples: float,
    training: TrainingConfig,
    *,
    start: ClassifierStatistics,
    end: ClassifierStatistics,
    weight_row_sums: Tensor | None = None,
) -> Tensor:
    """Geng et al.'s real-valued counts from a FedAvg weight delta.

    Args:
        delta_row_sums: row sums of the classifier weight delta ``W_local - W_global``, ``(C,)``.
        num_samples: the client's N.
        training: the client's lr, epochs E, batch size B, momentum and weight decay.
        start: dummy statistics of the global model; ``end``: of the global model plus the delta.
        weight_row_sums: row sums of the global classifier weight (needed with weight decay).

    The per-step SGD direction ``v_t = mu v_{t-1} + g_t + wd w_t`` sums to ``-delta / lr``; the
    summed gradients ``G = sum_t g_t`` follow with ``sum_t c_t g_t = -delta/lr - wd sum_t c_t w_t``,
    ``c_t = (1 - mu^(U-t)) / (1 - mu)``, approximating ``w_t`` by linear interpolation and
    ``sum_t c_t g_t`` by ``mean(c) G``.
    """
    n = float(num_samples)
    n_int = max(1, round(n))
    per_epoch = math.ceil(n_int / training.resolved_batch_size(n_int))
    epochs = training.epochs
    u = epochs * per_epoch
    mu, wd, lr = training.momentum, training.weight_decay, training.lr
    t = torch.arange(u, dtype=torch.float64)
    coef = (1 - mu ** (u - t)) / (1 - mu) if mu > 0 else torch.ones(u, dtype=torch.float64)
    d = delta_row_sums.double()
    weighted = -d / lr
    if wd > 0:
        if weight_row_sums is None:
            raise DataError("Expected the global classifier weight's row sums to undo weight decay.")
        w_t = weight_row_sums.double()[None, :] + (t / u)[:, None] * d[None, :]
        weighted = weighted - wd * (coef[:, None] * w_t).sum(dim=0)
    g_sum = weighted / coef.mean()
    tau = (t / u)[:, None]
    p_steps = (1 - tau) * start.mean_probs[None, :] + tau * end.mean_probs[None, :]
    o_steps = (1 - tau[:, 0]) * start.mean_feature_sum + tau[:, 0] * end.mean_feature_sum
    if not (o_steps > 0).all():
        raise AttackRefused(
            "Geng et al.'s label counts need positive mean feature sums on dummy inputs, but got "
            f"{o_steps.min().item():.3g}. The features entering the classifier are not non-negative."
        )
    return (n / (epochs * per_epoch)) * (p_steps.sum(dim=0) - g_sum * (1.0 / o_steps).mean())


# --------------------------------------------------------------------------------------------------
# View adapters
# --------------------------------------------------------------------------------------------------


def _num_samples(view: AttackerView) -> int:
    n = view.num_samples
    if n is None:
        raise AttackRefused("Label recovery needs the number of samples (basic knowledge).")
    return n


def _llg_star_view(view: AttackerView, grads: Mapping[str, Tensor]) -> Tensor:
    return llg_star_labels(classifier_gradient(view.model, grads), _num_samples(view), _view_statistics(view))


def _llg_plus_view(view: AttackerView, grads: Mapping[str, Tensor]) -> Tensor:
    return llg_plus_labels(classifier_gradient(view.model, grads), _num_samples(view), _view_statistics(view))


def _ilrg_inputs(
    view: AttackerView, grads: Mapping[str, Tensor]
) -> tuple[Tensor, Tensor | None, Tensor, Tensor | None]:
    cg = classifier_gradient(view.model, grads)
    lin = _classifier(view.model)
    w = lin.weight.detach().cpu().double().reshape(cg.weight.shape)
    b = lin.bias.detach().cpu().double() if lin.bias is not None else None
    return cg.weight, cg.bias, w, b


def _ilrg_view(view: AttackerView, grads: Mapping[str, Tensor]) -> Tensor:
    n = _num_samples(view)
    return counts_to_labels(round_counts(ilrg_counts(*_ilrg_inputs(view, grads), n), n))


def _ilrg_refined_view(view: AttackerView, grads: Mapping[str, Tensor]) -> Tensor:
    return counts_to_labels(ilrg_refined_counts(*_ilrg_inputs(view, grads), _num_samples(view)))


def _updated_model(view: AttackerView) -> nn.Module:
    """The global model plus the shared delta (parameters and floating-point buffers)."""
    m = copy.deepcopy(view.model)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name in view.update.params:
                p.add_(view.update.params[name].to(p.device, p.dtype))
        for name, buf in m.named_buffers():
            if name in view.update.buffers and buf.is_floating_point():
                buf.add_(view.update.buffers[name].to(buf.device, buf.dtype))
    return m


def _geng_view(view: AttackerView, grads: Mapping[str, Tensor]) -> Tensor:
    n = _num_samples(view)
    start = _view_statistics(view)
    if view.update.kind is UpdateKind.GRADIENT:
        cg = classifier_gradient(view.model, grads)
        kf = geng_counts(cg.row_sums, n, mean_probs=start.mean_probs, mean_feature_sum=start.mean_feature_sum)
        return counts_to_labels(round_counts(kf, n))
    if view.training is None:
        raise AttackRefused(
            "Geng et al.'s label counts from a FedAvg delta need the client's training details (lr, "
            "epochs, batch size, momentum, weight decay) to turn the delta into summed gradients; the "
            "threat model does not grant them. Use threat model C or stronger, or labels = 'llg' "
            "(scale-free)."
        )
    clients = max(1, view.aggregated_over)
    delta = classifier_gradient(view.model, view.update.params)
    w_rows = _classifier(view.model).weight.detach().cpu().double().reshape(delta.weight.shape).sum(dim=1)
    end = _view_statistics(view, _updated_model(view))
    kf = geng_fedavg_counts(
        delta.row_sums, n / clients, view.training, start=start, end=end, weight_row_sums=w_rows
    )
    return counts_to_labels(round_counts(kf * clients, n))


# --------------------------------------------------------------------------------------------------
# Registry and strategy resolution
# --------------------------------------------------------------------------------------------------

SimpleLabelFn = Callable[[ClassifierGradient, int], Tensor]
ViewLabelFn = Callable[[AttackerView, Mapping[str, Tensor]], Tensor]


@dataclass(frozen=True)
class LabelMethod:
    """A registered label recovery method.

    ``fn(ClassifierGradient, n)`` for methods that read only the classifier gradient; ``view_fn(view,
    grads)`` for methods that also need the model (dummy inputs, the classifier's weights) or the
    training details. :meth:`recover` calls whichever applies (``view_fn`` first)."""

    name: str
    fn: SimpleLabelFn | None
    description: str
    paper: str
    assumption: str
    view_fn: ViewLabelFn | None = None
    count_aware: bool = False

    def __post_init__(self) -> None:
        if self.fn is None and self.view_fn is None:
            raise ValueError(f"label method {self.name!r} needs `fn` or `view_fn`")

    def recover(self, view: AttackerView, grads: Mapping[str, Tensor]) -> Tensor:
        """Sorted recovered labels ``(n,)`` for the view and its (pseudo-)gradient ``grads``."""
        if self.view_fn is not None:
            labels = self.view_fn(view, grads)
        else:
            assert self.fn is not None
            labels = self.fn(classifier_gradient(view.model, grads), _num_samples(view))
        return torch.sort(labels.long().cpu()).values


LABEL_METHODS: Registry[LabelMethod] = Registry("label recovery method")
for _m in (
    LabelMethod(
        "idlg",
        idlg_labels,
        "negative row sum of the classifier weight gradient",
        "Zhao et al., arXiv 2020",
        "B = 1, non-negative features",
    ),
    LabelMethod(
        "bias-sign",
        bias_sign_labels,
        "most negative classifier bias gradients",
        "analytic (softmax cross-entropy)",
        "classifier bias; unique labels when B > 1",
    ),
    LabelMethod(
        "yin",
        yin_labels,
        "most negative row minima of the classifier weight gradient",
        "Yin et al., CVPR 2021",
        "unique labels",
    ),
    LabelMethod(
        "llg",
        llg_labels,
        "LLG: negative row sums give existence, their magnitudes the counts (impact from the gradient)",
        "Wainakh et al., PETS 2022",
        "non-negative features; scale-free (works on FedAvg deltas of unknown scale)",
        count_aware=True,
    ),
    LabelMethod(
        "llg-star",
        None,
        "LLG*: LLG with the per-sample impact measured on random inputs through the model",
        "Wainakh et al., PETS 2022",
        "non-negative features; gradient scale (FedSGD, or FedAvg with training details)",
        view_fn=_llg_star_view,
        count_aware=True,
    ),
    LabelMethod(
        "llg-plus",
        None,
        "LLG+: LLG with impact and per-class offset measured on random inputs through the model",
        "Wainakh et al., PETS 2022",
        "non-negative features; gradient scale (FedSGD, or FedAvg with training details)",
        view_fn=_llg_plus_view,
        count_aware=True,
    ),
    LabelMethod(
        "ilrg",
        None,
        "iLRG: class features dW_c/db_c through the classifier, counts from a linear system",
        "Ma et al., ICLR 2023",
        "classifier bias; untrained network; exact when n p_c << k_c and class features are shared",
        view_fn=_ilrg_view,
        count_aware=True,
    ),
    LabelMethod(
        "ilrg-refined",
        None,
        "iLRG, then the batch-mean feature from absent classes and de-contaminated class features",
        "extension of Ma et al., ICLR 2023 (gradinv)",
        "classifier bias; untrained network; at least one absent class (else plain iLRG)",
        view_fn=_ilrg_refined_view,
        count_aware=True,
    ),
    LabelMethod(
        "geng",
        None,
        "counts n p_c - n g_c / O from dummy-input statistics; FedAvg deltas via summed local steps",
        "Geng et al., arXiv 2110.09074, 2021",
        "non-negative features; a FedAvg delta needs training details",
        view_fn=_geng_view,
        count_aware=True,
    ),
):
    LABEL_METHODS.register(_m.name)(_m)

#: Strategies accepted by attack configs besides the method names.
LABEL_STRATEGIES = ("auto", "known")
#: What ``auto`` does, for ``gradinv list``.
AUTO_DESCRIPTION = (
    "known if granted; else B = 1: bias-sign (idlg without a classifier bias); FedAvg delta: geng with "
    "training details, llg without; gradient: ilrg-refined (llg-plus without a classifier bias)"
)


def auto_label_method(view: AttackerView, grads: Mapping[str, Tensor]) -> str:
    """The method ``auto`` picks when the labels are not granted.

    * ``n = 1``: ``bias-sign`` with a classifier bias (exact), else ``idlg``;
    * FedAvg delta: ``geng`` with training details (it models the local steps), else ``llg`` (the
      delta's scale is unknown and LLG is scale-free);
    * gradient with a classifier bias: ``ilrg-refined`` (most accurate in our benchmark,
      ``benchmarks/bench_labels.py``); without a bias: ``llg-plus``.
    """
    n = _num_samples(view)
    cg = classifier_gradient(view.model, grads)
    if n == 1:
        return "bias-sign" if cg.bias is not None else "idlg"
    if view.update.kind is UpdateKind.DELTA:
        return "geng" if view.training is not None else "llg"
    return "ilrg-refined" if cg.bias is not None else "llg-plus"


def resolve_labels(strategy: str, view: AttackerView, grads: Mapping[str, Tensor]) -> tuple[Tensor, str]:
    """Labels for the dummy batch and the name of the method that produced them.

    ``known`` reads the label multiset the threat model grants; ``auto`` uses it when granted, else
    the method :func:`auto_label_method` picks; any other name is a recovery method from
    :data:`LABEL_METHODS`. ``grads`` is the (pseudo-)gradient the attack matches."""
    _num_samples(view)
    if strategy == "known":
        if view.known_labels is None:
            raise AttackRefused(
                "labels = 'known' needs the labels, which the threat model does not grant. Use threat "
                "model E or add the labels extension (e.g. 'B+labels'), or recover them (labels = 'auto')."
            )
        return view.known_labels, "known"
    if strategy == "auto":
        if view.known_labels is not None:
            return view.known_labels, "known"
        strategy = auto_label_method(view, grads)
    method = LABEL_METHODS.get(strategy)
    labels = method.recover(view, grads)
    logger.info("recovered labels with %s: %s", method.name, labels.tolist())
    return labels, method.name
