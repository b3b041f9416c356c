"""Inconsistent models: isolate one client's update through secure aggregation.

Pasquini, Francati, Ateniese, "Eluding Secure Aggregation in Federated Learning via Model
Inconsistency", ACM CCS 2022. Secure aggregation hides individual updates only if every client
trains the same model; nothing in the protocol checks that. The malicious server sends the victim
the real model and every other client a model whose update is zero on their data, so the secure
sum *is* the victim's update; any passive attack then runs on it.

Zero-update model (:func:`silence_model`), tried in this order and verified with autograd on probe
inputs of the client's shape (train and eval mode), keeping the first that works:

1. ``dead-layer`` (the paper's "dead ReLU" construction): the last parameterised layer before the
   classifier gets weight 0 and bias ``-dead_bias``, so its ReLU/sigmoid outputs exactly 0 for every
   input and passes back exactly 0. Nothing before it moves; the classifier's weight sees a zero input.
2. ``zeroed``: every parameter but the classifier's bias set to 0 (e.g. ResNets, whose residual sum
   keeps a dead layer from silencing the features).

Either way the classifier's **bias** still moves: its cross-entropy gradient ``softmax(b) - onehot(y)``
depends only on each client's labels. That is the one parameter on which the others' updates are not
zero; it is left out of the isolated update (and frozen for the inner attack). Every other parameter
of the aggregate is exactly the victim's (up to secure aggregation's fixed-point step).

Deviations and limits: FedSGD and FedAvg without weight decay give exact zeros (weight decay shrinks
the silenced model's non-zero parameters, which the server could subtract only knowing each client's
step count; a warning is logged). BatchNorm running statistics of silenced clients still move under
FedAvg; buffer deltas are left out of the isolated update. Rescaling assumes sample-weighted
aggregation (the aggregate times ``N / n_victim``); the inner attacks used here are scale-free anyway.

Threat model: active manipulation (crafting the silenced model) and client selection (sending
different models to different clients; the SoK's threat model H). Basic knowledge: the server probes
the crafted models with inputs of the client's shape and rescales by the victim's sample count.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from gradinv.attacks.base import (
    ACTIVE_NEEDED,
    ATTACKS,
    UPDATES_NEEDED,
    Attack,
    AttackConfig,
    ProgressFn,
    create_attack,
    register_attack,
)
from gradinv.attacks.fc_bias import fc_layer_problem
from gradinv.errors import AttackRefused, ConfigError
from gradinv.models.inspect import find_classifier
from gradinv.threat import Knowledge, Requirement
from gradinv.types import AttackerView, AttackResult, CraftView, ModelUpdate

__all__ = [
    "InconsistentModels",
    "InconsistentModelsConfig",
    "IsolationAttack",
    "IsolationPlan",
    "Silenced",
    "isolate_update",
    "leaking_parameters",
    "silence_model",
]

logger = logging.getLogger(__name__)

SELECTION_NEEDED = Requirement(
    Knowledge.CLIENT_SELECTION, "it sends the victim a different model than every other client"
)
ISOLATION_BASIC = Requirement(
    Knowledge.BASIC_KNOWLEDGE,
    "it rescales the aggregate by the victim's sample count and feeds the isolated update to an attack "
    "that needs the input shape",
)


# --------------------------------------------------------------------------------------------------
# Zero-update models
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Silenced:
    """A model whose update is zero on any data, except on ``leaks`` (the classifier's bias)."""

    model: nn.Module
    method: Literal["dead-layer", "zeroed"]
    layer: str
    leaks: tuple[str, ...]


def leaking_parameters(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    samples: int = 4,
    seed: int = 0,
) -> dict[str, float]:
    """Parameters with a non-zero gradient on seeded probe batches, with their largest ``|grad|``
    (train and eval mode; inputs at three scales; random labels)."""
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, float] = {}
    for mode in ("train", "eval"):
        m = copy.deepcopy(model)
        m.train(mode == "train")
        named = [(n, p) for n, p in m.named_parameters() if p.requires_grad]
        dev = named[0][1].device if named else torch.device("cpu")
        for scale in (0.1, 1.0, 10.0):
            x = (torch.randn(samples, *input_shape, generator=gen) * scale).to(dev)
            y = torch.randint(num_classes, (samples,), generator=gen).to(dev)
            grads = torch.autograd.grad(F.cross_entropy(m(x), y), [p for _, p in named], allow_unused=True)
            for (name, _), g in zip(named, grads):
                if g is not None and bool((g != 0).any()):
                    out[name] = max(out.get(name, 0.0), float(g.abs().max()))
    return out


def _layers_with_params(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if next(m.parameters(recurse=False), None) is not None]


def silence_model(
    model: nn.Module,
    *,
    input_shape: tuple[int, int, int],
    num_classes: int,
    dead_bias: float = 1e4,
    seed: int = 0,
) -> Silenced:
    """A copy of ``model`` whose update is zero for every input, except the classifier's bias.

    Raises :class:`AttackRefused` naming the parameters that still move if neither construction
    (``dead-layer``, ``zeroed``) silences the model."""
    weight, bias = find_classifier(model)
    classifier = weight.rsplit(".", 1)[0] if "." in weight else ""
    allowed = {bias} if bias is not None else set()
    layers = _layers_with_params(model)
    if classifier not in layers or layers[-1] != classifier:
        raise AttackRefused(
            f"Inconsistent models needs the classifier ({classifier or 'the model'!r}) to be the last layer "
            f"with parameters, but the last is {layers[-1]!r}."
        )
    tried: list[str] = []
    before = layers[:-1]
    if before:
        dead = copy.deepcopy(model)
        layer = dead.get_submodule(before[-1])
        w, b = getattr(layer, "weight", None), getattr(layer, "bias", None)
        if isinstance(w, torch.Tensor) and isinstance(b, torch.Tensor):
            with torch.no_grad():
                w.zero_()
                b.fill_(-dead_bias)
            moving = set(leaking_parameters(dead, input_shape, num_classes, seed=seed)) - allowed
            if not moving:
                return Silenced(dead, "dead-layer", before[-1], tuple(sorted(allowed)))
            tried.append(f"dead layer {before[-1]!r} left {sorted(moving)[:3]} moving")
    zeroed = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in zeroed.named_parameters():
            if name not in allowed:
                p.zero_()
    moving = set(leaking_parameters(zeroed, input_shape, num_classes, seed=seed)) - allowed
    if not moving:
        return Silenced(zeroed, "zeroed", "", tuple(sorted(allowed)))
    tried.append(f"zeroing every parameter left {sorted(moving)[:3]} moving")
    raise AttackRefused(
        f"Inconsistent models could not build a zero-update model for {type(model).__name__}: "
        + "; ".join(tried)
        + ". It needs features that a dead ReLU/sigmoid layer or zero weights can silence before the "
        "classifier (e.g. an MLP, LeNet, ConvNet or ResNet from gradinv.models)."
    )


def isolate_update(update: ModelUpdate, *, scale: float, exclude: tuple[str, ...] = ()) -> ModelUpdate:
    """``scale`` times ``update``'s parameters, without ``exclude`` and without buffer deltas.

    >>> u = ModelUpdate("gradient", {"w": torch.ones(2), "b": torch.ones(1)})
    >>> sorted(isolate_update(u, scale=3.0, exclude=("b",)).params["w"].tolist())
    [3.0, 3.0]
    """
    params = {k: v * scale for k, v in update.params.items() if k not in exclude}
    return ModelUpdate(update.kind, params)


# --------------------------------------------------------------------------------------------------
# Shared machinery: isolate, then run an inner attack
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IsolationPlan:
    """What the server did before the round (it remembers it when it reads the aggregate)."""

    victim: int
    num_clients: int
    victim_samples: int | None
    exclude: tuple[str, ...] = ()
    sybils: tuple[int, ...] = ()
    method: str = ""


def _check_inner(inner: str) -> None:
    if inner == "auto":
        return
    cls = ATTACKS.get(inner)
    if cls.active or issubclass(cls, IsolationAttack):
        raise ConfigError(
            f"Expected `inner` to be a passive attack run on the isolated update, but got {inner!r} "
            f"(active). Use e.g. 'fc-bias' or 'inverting-gradients'."
        )


class IsolationAttack(Attack):
    """Base of attacks that isolate the victim's update from the aggregate and pass it to a passive
    ``inner`` attack (``"auto"``: ``fc-bias`` when the model starts with a biased Linear layer, else
    ``inverting-gradients``; ``inner_options`` configure it)."""

    family = "malicious-server"
    active = True
    target = "victim"
    _plan: IsolationPlan | None = None

    def __init__(self, config: AttackConfig | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        inner = str(getattr(self.config, "inner", "auto"))
        _check_inner(inner)
        if inner != "auto":
            create_attack(inner, **dict(getattr(self.config, "inner_options", {})))  # early check
        self._plan = None

    def _inner_name(self, model: nn.Module, input_shape: tuple[int, int, int] | None) -> str:
        inner = str(getattr(self.config, "inner", "auto"))
        if inner != "auto":
            return ATTACKS.get(inner).name
        return "fc-bias" if fc_layer_problem(model, input_shape) is None else "inverting-gradients"

    def _inner(self, model: nn.Module, input_shape: tuple[int, int, int] | None) -> Attack:
        return create_attack(
            self._inner_name(model, input_shape), **dict(getattr(self.config, "inner_options", {}))
        )

    def requirements(self) -> tuple[Requirement, ...]:
        inner = str(getattr(self.config, "inner", "auto"))
        names = ("fc-bias", "inverting-gradients") if inner == "auto" else (inner,)
        own = self.base_requirements
        extra: list[Requirement] = []
        for n in names:
            cls = ATTACKS.get(n)
            needs = (
                cls.base_requirements
                if inner == "auto"
                else cls(**dict(getattr(self.config, "inner_options", {}))).requirements()
            )
            for r in needs:
                if all(r.knowledge is not o.knowledge for o in (*own, *extra)):
                    extra.append(r)
        return own + tuple(extra)

    def _scale(self, view: AttackerView, plan: IsolationPlan) -> float:
        if view.aggregated_over <= 1:
            return 1.0  # the server already sees the victim's own update (no secure aggregation)
        if view.num_samples is None or not plan.victim_samples:
            return 1.0
        return view.num_samples / plan.victim_samples

    def isolated_view(self, view: AttackerView) -> AttackerView:
        """The victim's update as the inner attack sees it: rescaled, without the parameters the
        other clients still move (frozen in the model copy)."""
        plan = self._plan
        if plan is None:
            raise AttackRefused(f"{self.title} has not crafted this round's models; run craft() first.")
        model = copy.deepcopy(view.model)
        params = dict(model.named_parameters())
        for name in plan.exclude:
            params[name].requires_grad_(False)
        update = isolate_update(view.update, scale=self._scale(view, plan), exclude=plan.exclude)
        return AttackerView(
            threat=view.threat,
            model=model,
            update=update,
            aggregated_over=1,
            num_samples=plan.victim_samples if view.num_samples is not None else None,
            input_shape=view.input_shape,
            num_classes=view.num_classes,
            class_names=view.class_names,
            normalization=view.normalization,
            training=view.training,
            surrogate=view.surrogate,
        )

    def check_view(self, view: AttackerView) -> list[str]:
        if self._plan is None:
            return [
                f"{self.title} must craft the round's models before it can read the aggregate: run it "
                "through gradinv.experiment.run_experiment / simulate, or call craft() first."
            ]
        if view.aggregated_over not in (1, self._plan.num_clients):
            logger.warning(
                "%s: the aggregate covers %d clients but the server crafted models for %d",
                self.title,
                view.aggregated_over,
                self._plan.num_clients,
            )
        inner_view = self.isolated_view(view)
        return self._inner(view.model, view.input_shape).check(inner_view)

    def _notes(self, view: AttackerView, plan: IsolationPlan) -> list[str]:
        scale = self._scale(view, plan)
        return [f"isolated the victim's update from {view.aggregated_over} clients (scale {scale:.6g})"]

    def _reconstruct(
        self, view: AttackerView, *, progress: ProgressFn | None, device: torch.device
    ) -> AttackResult:
        plan = self._plan
        assert plan is not None  # check_view
        inner = self._inner(view.model, view.input_shape)
        result = inner.reconstruct(self.isolated_view(view), progress=progress, device=device)
        notes = (*self._notes(view, plan), f"inner attack: {inner.name}", *result.notes)
        return replace(result, attack=self.name, parameters=self.config.to_dict(), notes=notes)


# --------------------------------------------------------------------------------------------------
# The attack
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InconsistentModelsConfig(AttackConfig):
    """``inner``: passive attack on the isolated update (``auto``: fc-bias if the model starts with a
    biased Linear layer, else inverting-gradients); ``inner_options``: its parameters;
    ``dead_bias``: magnitude of the negative bias of the dead layer."""

    inner: str = "auto"
    inner_options: Mapping[str, Any] = field(default_factory=dict)
    dead_bias: float = 1e4

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.dead_bias > 0:
            raise ConfigError(f"Expected `dead_bias` > 0, but got {self.dead_bias}.")


@register_attack
class InconsistentModels(IsolationAttack):
    """Send every client but the victim a zero-update model; the secure sum is the victim's update."""

    name = "inconsistent-models"
    title = "Inconsistent models"
    paper = (
        "Pasquini, Francati, Ateniese. Eluding Secure Aggregation in Federated Learning via Model "
        "Inconsistency. ACM CCS 2022"
    )
    config_cls = InconsistentModelsConfig
    config: InconsistentModelsConfig
    base_requirements = (UPDATES_NEEDED, ACTIVE_NEEDED, SELECTION_NEEDED, ISOLATION_BASIC)

    def craft(self, knowledge: CraftView) -> tuple[nn.Module, ...]:
        if knowledge.input_shape is None or knowledge.num_classes is None:
            raise AttackRefused(f"{self.title} needs basic knowledge (input shape, classes) to craft.")
        if knowledge.training is not None and knowledge.training.weight_decay:
            logger.warning("weight decay moves the silenced models' parameters: isolation is not exact")
        silenced = silence_model(
            knowledge.model,
            input_shape=knowledge.input_shape,
            num_classes=knowledge.num_classes,
            dead_bias=self.config.dead_bias,
        )
        logger.info(
            "%s: victim %d gets the real model, %d others a %s model (%s)",
            self.title,
            knowledge.victim,
            knowledge.num_clients - 1,
            silenced.method,
            silenced.layer or "all layers",
        )
        self._plan = IsolationPlan(
            victim=knowledge.victim,
            num_clients=knowledge.num_clients,
            victim_samples=knowledge.num_samples,
            exclude=silenced.leaks,
            method=silenced.method,
        )
        return tuple(
            copy.deepcopy(knowledge.model) if k == knowledge.victim else copy.deepcopy(silenced.model)
            for k in range(knowledge.num_clients)
        )

    def _notes(self, view: AttackerView, plan: IsolationPlan) -> list[str]:
        left = (
            f"; left out {', '.join(plan.exclude)} (moved by every client's labels)" if plan.exclude else ""
        )
        return [*super()._notes(view, plan), f"other clients got a {plan.method} model{left}"]
