"""Fishing for user data.

Wen, Geiping, Fowl, Goldblum, Goldstein, "Fishing for User Data in Large-Batch Federated Learning
via Gradient Magnification", ICML 2022.

A malicious server changes only parameters of the model it sends so that the gradient of a large
batch is dominated by one sample, then runs an optimisation attack on that isolated gradient as if
the batch held a single image.

* **Class fishing** (§3.1): the classifier rows of every class but the target ``c`` are zeroed and
  their biases set to a large ``offset``. Every sample then predicts "not c" with certainty
  (``p_c = 0`` in float32), so samples of other classes send no gradient into the network, and each
  sample of class ``c`` sends exactly ``-grad z_c`` (its logit's gradient): the batch gradient of
  every layer before the classifier is the sum over the class-``c`` samples alone. The number of
  such samples is read off the classifier bias gradient (``dL/db_c = -n_c / N`` for FedSGD).
* **Feature fishing** (§3.2): within the target class, one feature ``j`` of the classifier input
  decides which sample speaks. The target row becomes ``magnitude * e_j`` and the bias feeding the
  ReLU of feature ``j`` is lowered by a threshold ``tau``: samples whose feature stays below
  ``tau`` have a closed ReLU gate and no gradient, so only class-``c`` samples above the threshold
  contribute. ``j`` (default: the feature of largest variance on class-``c`` surrogate images) and
  ``tau`` (so that a fraction ``quantile``, default ``1 / expected class-c count``, passes) come from
  surrogate data.

The isolated gradient is then inverted with Inverting Gradients (Geiping et al., NeurIPS 2020,
:mod:`gradinv.attacks.inverting_gradients`) on a two-logit copy of the crafted model — the target
logit and the constant logit of the other classes — whose single-sample gradient is exactly the
isolated one; the label is the target class.

Deviations: the paper locates the threshold by a multi-round binary search on the user's gradient and
separates samples by differencing two rounds; gradinv simulates one round, so the threshold is set
from surrogate data and one sample is isolated with probability ``n q (1 - q)^(n-1)``. Feature
fishing needs a ReLU between the located bias and the classifier (``mlp``, ``convnet``, ResNets;
not the sigmoid ``lenet``). With BatchNorm in ``train`` mode the batch statistics couple samples,
so the isolated gradient is only approximately a single-sample one; ``model_mode = "eval"`` makes it
exact.
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

from gradinv.attacks._layers import layer_inputs
from gradinv.attacks.base import (
    ACTIVE_NEEDED,
    BASIC_NEEDED,
    UPDATES_NEEDED,
    Attack,
    AttackConfig,
    ProgressFn,
    register_attack,
)
from gradinv.attacks.inverting_gradients import InvertingGradients, InvertingGradientsConfig
from gradinv.attacks.optimization import InitName
from gradinv.errors import AttackRefused, ConfigError
from gradinv.models.inspect import find_classifier
from gradinv.threat import Knowledge, Requirement
from gradinv.types import AttackerView, AttackResult, CraftView, ModelUpdate, Reconstruction, UpdateKind

__all__ = ["Fishing", "FishingConfig", "FishingPlan", "class_fishing", "feature_fishing"]

logger = logging.getLogger(__name__)

SURROGATE_NEEDED = Requirement(
    Knowledge.SURROGATE_DATA, "feature fishing picks the feature and its threshold on surrogate images"
)


@dataclass(frozen=True)
class FishingConfig(AttackConfig):
    """``mode``: ``class`` or ``feature`` fishing on ``target_class``; ``offset``: logit of the other
    classes; ``feature`` / ``quantile``: feature fishing's feature (default: largest variance) and the
    share of class-``c`` surrogate images above the threshold (default: 1 / expected count).
    ``iterations`` ... ``seed``: the Inverting Gradients run on the isolated gradient."""

    mode: Literal["class", "feature"] = "class"
    target_class: int = 0
    offset: float = 1000.0
    magnitude: float = 1.0
    feature: int | None = None
    quantile: float | None = None
    iterations: int = 2000
    lr: float = 0.1
    tv: float = 1e-4
    restarts: int = 1
    init: InitName = "randn"
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.target_class < 0:
            raise ConfigError(f"Expected `target_class` >= 0, but got {self.target_class}.")
        if not self.offset >= 50:
            raise ConfigError(
                "Expected `offset` >= 50 (a logit margin that makes p_c vanish in float32), but got "
                f"{self.offset}."
            )
        if not self.magnitude > 0:
            raise ConfigError(f"Expected `magnitude` > 0, but got {self.magnitude}.")
        if self.feature is not None and self.feature < 0:
            raise ConfigError(f"Expected `feature` >= 0, but got {self.feature}.")
        if self.quantile is not None and not 0 < self.quantile <= 1:
            raise ConfigError(f"Expected `quantile` in (0, 1], but got {self.quantile}.")
        self.inversion()  # validates the options of the Inverting Gradients run

    def inversion(self) -> InvertingGradientsConfig:
        """The config of the Inverting Gradients run on the isolated gradient (labels known: the
        target class)."""
        return InvertingGradientsConfig(
            iterations=self.iterations,
            lr=self.lr,
            tv=self.tv,
            restarts=self.restarts,
            init=self.init,
            seed=self.seed,
            labels="known",
        )


@dataclass(frozen=True)
class FishingPlan:
    """What the server crafted (kept on the model as ``_fishing_plan``, never sent as tensors)."""

    mode: str
    target_class: int
    num_classes: int
    offset: float
    feature: int | None = None
    gate: str | None = None
    gate_index: int | None = None
    threshold: float | None = None


def _classifier(model: nn.Module) -> tuple[str, nn.Linear]:
    wname, bname = find_classifier(model)
    if bname is None:
        raise AttackRefused(
            "Fishing sets the other classes' classifier biases, but the classifier of "
            f"{type(model).__name__} "
            "has no bias. Use a model whose last nn.Linear has a bias."
        )
    path = wname.rsplit(".", 1)[0] if "." in wname else ""
    layer = model.get_submodule(path)
    assert isinstance(layer, nn.Linear)
    return path, layer


def class_fishing(model: nn.Module, target: int, *, offset: float) -> nn.Module:
    """A copy of ``model`` whose classifier rows except ``target`` are zero with bias ``offset``."""
    crafted = copy.deepcopy(model)
    _, layer = _classifier(crafted)
    k = layer.out_features
    if not 0 <= target < k:
        raise AttackRefused(f"Expected `target_class` in [0, {k}), but got {target}.")
    others = torch.arange(k) != target
    with torch.no_grad():
        layer.weight[others] = 0.0
        layer.bias[others] = offset
    return crafted


def _features(model: nn.Module, x: Tensor) -> Tensor:
    """The classifier's input for ``x`` (model in its current mode, no grad)."""
    _, layer = _classifier(model)
    return layer_inputs(model, layer, x)[0]


def locate_gate(model: nn.Module, feature: int, probe: Tensor) -> tuple[str, int]:
    """The last bias entry that shifts only feature ``feature`` of the classifier input before a ReLU
    gate: found with autograd (its gradient of ``sum f_j`` is non-zero at one index only) and verified
    (lowering it by 1e4 closes the feature for every probe input)."""
    if not any(isinstance(m, (nn.ReLU, nn.ReLU6, nn.Hardtanh)) for m in model.modules()):
        raise AttackRefused(
            f"Feature fishing needs a hard ReLU gate before the classifier, but {type(model).__name__} has "
            "no ReLU (e.g. sigmoid activations only, as in 'lenet'). Use mode = 'class'."
        )
    work = copy.deepcopy(model).eval()
    biases = [(n, p) for n, p in work.named_parameters() if n.endswith("bias") and p.ndim == 1]
    for _, p in biases:
        p.requires_grad_(True)
    f = _features(work, probe)
    if not 0 <= feature < f.shape[1]:
        raise AttackRefused(f"Expected `feature` in [0, {f.shape[1]}), but got {feature}.")
    grads = torch.autograd.grad(f[:, feature].sum(), [p for _, p in biases], allow_unused=True)
    found: tuple[str, int] | None = None
    cls_path, _ = _classifier(work)
    for (name, _), g in zip(biases, grads):
        if g is None or name.startswith(cls_path + ".") or name == "bias":
            continue
        nz = torch.nonzero(g).flatten()
        if len(nz) == 1:
            found = (name, int(nz[0]))
    if found is None:
        raise AttackRefused(
            f"Feature fishing needs a bias that shifts feature {feature} alone before a ReLU, but "
            f"{type(model).__name__} has none. Use mode = 'class'."
        )
    name, idx = found
    with torch.no_grad():
        dict(work.named_parameters())[name][idx] -= 1e4
        closed = _features(work, probe)[:, feature]
    if bool((closed != 0).any()):
        raise AttackRefused(
            f"Feature fishing needs a hard ReLU gate on feature {feature}, but lowering {name}[{idx}] does "
            f"not zero it in {type(model).__name__} (e.g. sigmoid activations). Use mode = 'class'."
        )
    return found


def open_thresholds(
    model: nn.Module, gate: tuple[str, int], feature: int, probe: Tensor, *, steps: int = 50
) -> Tensor:
    """For each probe input, the largest amount by which the gate bias can be lowered while feature
    ``feature`` stays open (> 0): a bisection run for all inputs at once, the shift applied per input
    by a forward hook on the module that owns the bias."""
    work = copy.deepcopy(model).eval()
    owner = work.get_submodule(gate[0].rsplit(".", 1)[0]) if "." in gate[0] else work
    n = len(probe)
    lo = torch.full((n,), -1e4, dtype=torch.float64)
    hi = torch.full((n,), 1e4, dtype=torch.float64)
    shift = torch.zeros(n, dtype=probe.dtype, device=probe.device)

    def hook(_m: nn.Module, _args: tuple[Tensor, ...], out: Tensor) -> Tensor:
        out = out.clone()
        out[:, gate[1]] -= shift.view(-1, *([1] * (out.ndim - 2)))
        return out

    handle = owner.register_forward_hook(hook)
    try:
        for _ in range(steps):
            mid = 0.5 * (lo + hi)
            shift.copy_(mid.to(shift.dtype))
            with torch.no_grad():
                is_open = (_features(work, probe)[:, feature] > 0).cpu()
            lo = torch.where(is_open, mid, lo)
            hi = torch.where(is_open, hi, mid)
    finally:
        handle.remove()
    return lo


def feature_fishing(
    model: nn.Module,
    target: int,
    probe: Tensor,
    *,
    offset: float,
    magnitude: float = 1.0,
    feature: int | None = None,
    quantile: float,
) -> tuple[nn.Module, FishingPlan]:
    """Class fishing plus a ReLU gate on one feature: the target row reads only feature ``j``; the
    gate's bias is lowered by ``tau`` so that a fraction ``quantile`` of ``probe`` (model inputs of
    surrogate class-``target`` images) keeps the gate open."""
    crafted = class_fishing(model, target, offset=offset)
    with torch.no_grad():
        feats = _features(copy.deepcopy(model).eval(), probe)
    if feature is None:
        order = torch.argsort(feats.var(dim=0, correction=0), descending=True).tolist()
    else:
        order = [feature]
    gate: tuple[str, int] | None = None
    last_error: AttackRefused | None = None
    for j in order[:8]:
        try:
            gate = locate_gate(crafted, j, probe)
            feature = j
            break
        except AttackRefused as e:
            last_error = e
    if gate is None or feature is None:
        assert last_error is not None
        raise last_error
    # the gate stays open for input x while the shift is below its threshold T(x): keep a share
    # ``quantile`` of the probes open
    thresholds = open_thresholds(crafted, gate, feature, probe)
    tau = float(torch.quantile(thresholds, 1.0 - quantile)) if quantile < 1 else float(thresholds.min()) - 1.0
    _, layer = _classifier(crafted)
    with torch.no_grad():
        row = torch.zeros_like(layer.weight[target])
        row[feature] = magnitude
        layer.weight[target] = row
        dict(crafted.named_parameters())[gate[0]][gate[1]] -= tau
    plan = FishingPlan(
        "feature",
        target,
        layer.out_features,
        offset,
        feature=feature,
        gate=gate[0],
        gate_index=gate[1],
        threshold=tau,
    )
    return crafted, plan


class _FishHead(nn.Module):
    """Two logits: the target class's row and the constant logit of the other classes."""

    def __init__(self, weight: Tensor, bias: Tensor, other: float, *, trainable: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone().reshape(1, -1), requires_grad=trainable)
        self.bias = nn.Parameter(bias.detach().clone().reshape(1), requires_grad=trainable)
        self.other = float(other)

    def forward(self, x: Tensor) -> Tensor:
        z = x @ self.weight.T + self.bias
        return torch.cat([z, torch.full_like(z, self.other)], dim=1)


def _single_sample_model(crafted: nn.Module, plan: FishingPlan) -> tuple[nn.Module, str]:
    """The crafted model with its classifier replaced by the two-logit head (same parameter names)."""
    sub = copy.deepcopy(crafted)
    path, layer = _classifier(sub)
    c = plan.target_class
    other = plan.offset + math.log(max(1, plan.num_classes - 1))
    head = _FishHead(layer.weight[c], layer.bias[c], other, trainable=plan.mode == "class")
    if path:
        parent_path, _, leaf = path.rpartition(".")
        parent = sub.get_submodule(parent_path) if parent_path else sub
        setattr(parent, leaf, head)
    else:  # pragma: no cover - a bare Linear model has no body to attack
        raise AttackRefused("Fishing needs layers before the classifier.")
    return sub, path


@register_attack
class Fishing(Attack):
    """Class/feature fishing isolates one sample's gradient; Inverting Gradients reconstructs it."""

    name = "fishing"
    title = "Fishing"
    family = "malicious-server"
    paper = (
        "Wen, Geiping, Fowl, Goldblum, Goldstein. Fishing for User Data in Large-Batch Federated Learning "
        "via Gradient Magnification. ICML 2022"
    )
    config_cls = FishingConfig
    config: FishingConfig
    active = True
    base_requirements = (UPDATES_NEEDED, ACTIVE_NEEDED, BASIC_NEEDED)

    def requirements(self) -> tuple[Requirement, ...]:
        return self.base_requirements + ((SURROGATE_NEEDED,) if self.config.mode == "feature" else ())

    def _probe(self, knowledge: CraftView, num_classes: int) -> tuple[Tensor, float]:
        """Model inputs of the surrogate images of the target class (all of them when none has that
        class) and the expected number of target-class samples in the client's batch."""
        surrogate = knowledge.surrogate
        if surrogate is None or len(surrogate) == 0 or knowledge.input_shape is None:
            raise AttackRefused(
                "Feature fishing needs surrogate images to place its threshold; set [data] surrogate_images "
                "> 0."
            )
        c, h, w = knowledge.input_shape
        norm = knowledge.normalization
        batch = surrogate.to_batch(image_size=h if h == w else None, channels=c)
        x = norm.apply(batch.images) if norm is not None else batch.images
        mask = batch.labels == self.config.target_class
        share = float(mask.float().mean()) if len(mask) else 1.0 / num_classes
        if int(mask.sum()) >= 2:
            x = x[mask]
        else:
            share = 1.0 / num_classes
        ref = next(iter(knowledge.model.parameters()))
        return x.to(device=ref.device, dtype=ref.dtype), share * (knowledge.num_samples or 1)

    def craft(self, knowledge: CraftView) -> tuple[nn.Module, ...]:
        problems = self.check_threat(knowledge.threat)
        if problems:
            raise AttackRefused(" ".join(problems))
        cfg = self.config
        _, layer = _classifier(knowledge.model)
        k = layer.out_features
        if cfg.mode == "class":
            crafted = class_fishing(knowledge.model, cfg.target_class, offset=cfg.offset)
            plan = FishingPlan("class", cfg.target_class, k, cfg.offset)
        else:
            probe, expected = self._probe(knowledge, k)
            quantile = cfg.quantile if cfg.quantile is not None else min(1.0, 1.0 / max(expected, 1.0))
            crafted, plan = feature_fishing(
                knowledge.model,
                cfg.target_class,
                probe,
                offset=cfg.offset,
                magnitude=cfg.magnitude,
                feature=cfg.feature,
                quantile=quantile,
            )
            logger.info(
                "%s: feature %s gated at %.4g via %s[%s] (%.0f%% of class-%d surrogates pass)",
                self.title,
                plan.feature,
                plan.threshold,
                plan.gate,
                plan.gate_index,
                100 * quantile,
                cfg.target_class,
            )
        crafted._fishing_plan = plan  # type: ignore[assignment]
        return tuple(crafted for _ in range(knowledge.num_clients))

    def check_view(self, view: AttackerView) -> list[str]:
        plan = getattr(view.model, "_fishing_plan", None)
        if not isinstance(plan, FishingPlan):
            return [
                f"{self.title} inverts the gradient of the model it crafted, but the view's model carries no "
                "fishing plan. Run it through the experiment pipeline so the server sends the crafted model."
            ]
        return []

    def _count(self, view: AttackerView, plan: FishingPlan, bias_update: Tensor) -> int:
        """Number of target-class samples from the classifier bias: ``-N db_c`` (FedSGD) or
        ``delta b_c * B / (lr E)`` (FedAvg with known training details); 1 when unknown."""
        value = float(bias_update[plan.target_class])
        n = view.num_samples
        if view.update.kind is UpdateKind.GRADIENT and n is not None:
            return max(0, round(-n * value))
        t = view.training
        if t is not None and n is not None and t.momentum == 0 and t.weight_decay == 0:
            b = t.resolved_batch_size(n)
            return max(0, round(value * b / (t.lr * t.epochs)))
        return 1 if abs(value) > 0 else 0

    def _reconstruct(
        self, view: AttackerView, *, progress: ProgressFn | None, device: torch.device
    ) -> AttackResult:
        cfg = self.config
        plan: FishingPlan = view.model._fishing_plan  # type: ignore[assignment]
        start = time.perf_counter()
        sub, path = _single_sample_model(view.model, plan)
        params = dict(view.update.params)
        prefix = f"{path}."
        cls_w, cls_b = params.pop(prefix + "weight"), params.pop(prefix + "bias")
        count = self._count(view, plan, cls_b)
        body_mass = sum(float(t.abs().sum()) for t in params.values())
        assert view.input_shape is not None
        notes = [f"{plan.mode} fishing on class {plan.target_class}"]
        if plan.mode == "feature":
            notes.append(
                f"feature {plan.feature} gated at {plan.threshold:.4g} through {plan.gate}[{plan.gate_index}]"
            )
        if body_mass == 0 or count == 0:
            notes.append(
                f"no sample isolated: the batch holds no sample of class {plan.target_class}"
                + (" above the feature threshold" if plan.mode == "feature" else "")
            )
            return AttackResult(
                attack=self.name,
                reconstruction=Reconstruction(
                    images=torch.full((1, *view.input_shape), 0.5),
                    labels=torch.tensor([plan.target_class]),
                    label_method="fishing target class",
                ),
                parameters=cfg.to_dict(),
                iterations=0,
                seconds=time.perf_counter() - start,
                notes=tuple(notes),
            )
        batch = count if plan.mode == "class" else 1
        if plan.mode == "class":
            c = plan.target_class
            params[prefix + "weight"] = cls_w[c : c + 1]
            params[prefix + "bias"] = cls_b[c : c + 1]
        notes.append(
            f"{count} sample(s) of class {plan.target_class} in the batch; inverting the isolated gradient "
            f"as a batch of {batch}"
        )
        sub_view = AttackerView(
            threat=view.threat.with_changes(grant=[Knowledge.LABELS]),
            model=sub,
            update=ModelUpdate(view.update.kind, params),
            aggregated_over=1,
            num_samples=batch,
            input_shape=view.input_shape,
            num_classes=2,
            normalization=view.normalization,
            training=view.training,
            label_counts=torch.tensor([batch, 0]),
        )
        result = InvertingGradients(cfg.inversion()).reconstruct(sub_view, progress=progress, device=device)
        rec = result.reconstruction
        return AttackResult(
            attack=self.name,
            reconstruction=Reconstruction(
                images=rec.images,
                labels=torch.full((len(rec.images),), plan.target_class, dtype=torch.long),
                label_method="fishing target class",
                candidates=rec.candidates,
                candidate_losses=rec.candidate_losses,
            ),
            parameters=cfg.to_dict(),
            iterations=result.iterations,
            seconds=time.perf_counter() - start,
            interrupted=result.interrupted,
            loss_history=result.loss_history,
            best_candidate=result.best_candidate,
            notes=(*notes, *(f"inverting gradients: {n}" for n in result.notes)),
        )
