"""The defense protocol, the defense registry, and the chain that turns defenses into client hooks.

A defense acts at one stage of the data path:

* ``model``: changes the global model's architecture once, for every party (e.g. PRECODE);
* ``data``: transforms each local mini-batch before the loss (e.g. MixUp, InstaHide);
* ``training``: replaces the per-step gradient (e.g. DP-SGD's per-sample clipping and noise);
* ``update``: transforms the finished update (e.g. noise, quantisation, sparsification, Soteria).

Defenses compose in the order given; :class:`DefenseChain` adapts a list of them to
:class:`gradinv.fl.ClientHooks`. Each client gets fresh hook objects (they may hold state, such as
a privacy accountant). Adding a defense touches its module, one ``@register_defense`` line, one row
in the contract test and the docs.

Helpers for defense authors:

* :class:`UpdateDefense`: an update-stage defense is one method, ``apply(update, ctx) -> (update,
  stats)``; the per-client hook object keeps the stats for :meth:`ClientHooks.info`.
* :class:`DefenseHooks`: the base of a defense's per-client hook object (``hooks_cls``).
* :class:`RegularizedModule` and :func:`auxiliary_loss`: a module that adds a term to the training
  loss (PRECODE's KL divergence). The client's fixed loss is cross-entropy; a defense that replaces
  the step's gradient adds :func:`auxiliary_loss` of the model to it.
* :func:`map_update` / :func:`with_params`: an update with every parameter tensor transformed /
  replaced (buffer deltas kept).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Literal, TypeVar, cast, get_args

import torch
from torch import Tensor, nn

from gradinv.errors import ConfigError
from gradinv.fl.client import ClientHooks, HookDefaults, StepContext, UpdateContext
from gradinv.fl.hooks import DefenseChain
from gradinv.registry import Registry
from gradinv.settings import as_dict, from_mapping
from gradinv.types import ModelUpdate

__all__ = [
    "DEFENSES",
    "Defense",
    "DefenseChain",
    "DefenseConfig",
    "DefenseHooks",
    "RegularizedModule",
    "Stage",
    "UpdateDefense",
    "auxiliary_loss",
    "create_defense",
    "map_update",
    "register_defense",
    "with_params",
]

Stage = Literal["model", "data", "training", "update"]


@dataclass(frozen=True)
class DefenseConfig:
    """Base class of defense configs (frozen dataclasses validated in ``__post_init__``)."""

    def to_dict(self) -> dict[str, Any]:
        return as_dict(self)


ConfigT = TypeVar("ConfigT", bound=DefenseConfig)


DefenseT = TypeVar("DefenseT", bound="Defense[Any]")


class DefenseHooks(ClientHooks, Generic[DefenseT]):
    """The client hooks of one defense, :attr:`defense` (a fresh object per client, which may keep
    per-client state); :meth:`Defense.client_hooks` returns ``defense.hooks_cls(defense)``."""

    def __init__(self, defense: DefenseT) -> None:
        self.defense = defense


class _DefenseHooks(DefenseHooks["Defense[Any]"]):
    """Forwards every hook to the defense's own stage methods."""

    def start(self, ctx: UpdateContext) -> None:
        self.defense.on_start(ctx)

    def on_batch(self, x: Tensor, targets: Tensor, ctx: StepContext) -> tuple[Tensor, Tensor]:
        return self.defense.on_batch(x, targets, ctx)

    def gradients(self, x: Tensor, targets: Tensor, ctx: StepContext) -> list[Tensor] | None:
        return self.defense.gradients(x, targets, ctx)

    def on_update(self, update: ModelUpdate, ctx: UpdateContext) -> ModelUpdate:
        return self.defense.on_update(update, ctx)

    def info(self) -> dict[str, float]:
        return self.defense.info()


class Defense(HookDefaults, Generic[ConfigT]):
    """Base class of all defenses. Override the method(s) of your stage.

    A defense names its config class as the type argument of its base,
    ``class Clipping(UpdateDefense[ClippingConfig])``: that class is :attr:`config_cls` (keyword
    parameters are validated against it) and the type of :attr:`config`.

    The default :meth:`client_hooks` forwards to this object's ``on_*`` methods; a defense that
    keeps per-client state (an accountant, a momentum buffer) names a :class:`DefenseHooks` subclass
    as :attr:`hooks_cls` (or overrides :meth:`client_hooks`) to get a fresh object per client. (A
    defense is not itself a :class:`~gradinv.fl.ClientHooks`: passed where hooks are expected, one
    whose hooks live in another object would do nothing.)"""

    name: ClassVar[str]
    title: ClassVar[str]
    stage: ClassVar[Stage]
    paper: ClassVar[str]
    config_cls: ClassVar[type[DefenseConfig]]
    config: ConfigT
    #: the class of each client's hooks, called with the defense
    hooks_cls: ClassVar[type[DefenseHooks[Any]]] = _DefenseHooks
    #: whether :meth:`on_update` / ``apply`` reads the client's batch (``UpdateContext.batch``), as
    #: Soteria does; a Flower mod that sees only the update cannot run such a defense without the data
    uses_batch: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in cls.__dict__.get("__orig_bases__", ()):
            args = get_args(base)  # (ClippingConfig,) for UpdateDefense[ClippingConfig]
            if args and isinstance(args[0], type) and issubclass(args[0], DefenseConfig):
                cls.config_cls = args[0]

    def __init__(self, config: DefenseConfig | None = None, **params: Any) -> None:
        if config is not None and params:
            raise ConfigError("Pass either a config object or keyword parameters, not both.")
        if config is None:
            config = from_mapping(
                self.config_cls, params, section="defenses", context=f"for defense {self.name!r}"
            )
        self.config = cast(ConfigT, config)

    # stage "model"
    def transform_model(self, model: nn.Module, *, generator: torch.Generator | None = None) -> nn.Module:
        """The model every party uses; new layers are initialised from ``generator`` (torch's
        global RNG when ``None``)."""
        return model

    # stages "data", "training", "update": a fresh hook object per client; the stage methods
    # on_batch, gradients, on_update and info (no-ops by default) come from HookDefaults
    def client_hooks(self) -> ClientHooks:
        return self.hooks_cls(self)

    def on_start(self, ctx: UpdateContext) -> None:
        """Per-client set-up (e.g. reset an accountant)."""

    @classmethod
    def describe(cls) -> dict[str, Any]:
        doc = (cls.__doc__ or "").strip().splitlines()
        return {
            "name": cls.name,
            "title": cls.title,
            "stage": cls.stage,
            "paper": cls.paper,
            "description": doc[0] if doc else "",
            "parameters": cls.config_cls().to_dict(),
        }


class _UpdateHooks(DefenseHooks["UpdateDefense[Any]"]):
    def __init__(self, defense: UpdateDefense[Any]) -> None:
        super().__init__(defense)
        self.stats: dict[str, float] = {}

    def on_update(self, update: ModelUpdate, ctx: UpdateContext) -> ModelUpdate:
        update, self.stats = self.defense.apply(update, ctx)
        return update

    def info(self) -> dict[str, float]:
        return dict(self.stats)


class UpdateDefense(Defense[ConfigT]):
    """Base of update-stage defenses: implement :meth:`apply`; each client's hooks keep its stats.

    ``apply`` returns the transformed update and numbers describing what it did (reported in
    :attr:`gradinv.types.ClientUpdate.info`, prefixed by the defense's name)."""

    stage: ClassVar[Stage] = "update"
    hooks_cls = _UpdateHooks

    def apply(self, update: ModelUpdate, ctx: UpdateContext) -> tuple[ModelUpdate, dict[str, float]]:
        raise NotImplementedError


def with_params(update: ModelUpdate, params: Mapping[str, Tensor]) -> ModelUpdate:
    """``update`` with new parameter tensors ``params``; its buffer deltas (the BatchNorm running
    statistics FedAvg shares) are kept as they are."""
    return ModelUpdate(update.kind, dict(params), dict(update.buffers))


def map_update(update: ModelUpdate, fn: Callable[[str, Tensor], Tensor]) -> ModelUpdate:
    """A new update with ``fn(name, tensor)`` applied to every parameter tensor (buffer deltas are
    kept, see :func:`with_params`)."""
    return with_params(update, {k: fn(k, v) for k, v in update.params.items()})


class RegularizedModule(nn.Module):
    """A module that contributes a term to the training loss, computed from its last forward pass.

    ``auxiliary_loss(per_sample=False)`` returns the batch mean (a scalar); with ``per_sample=True``
    one value per sample ``(N,)`` (for per-sample gradients, e.g. DP-SGD)."""

    def auxiliary_loss(self, *, per_sample: bool = False) -> Tensor:
        raise NotImplementedError


def auxiliary_loss(model: nn.Module, *, per_sample: bool = False) -> Tensor | None:
    """The sum of every :class:`RegularizedModule`'s term after the last forward pass of ``model``
    (``None`` when the model has none)."""
    terms = [
        m.auxiliary_loss(per_sample=per_sample) for m in model.modules() if isinstance(m, RegularizedModule)
    ]
    if not terms:
        return None
    return torch.stack(terms).sum(0)


DEFENSES: Registry[type[Defense[Any]]] = Registry("defense")

DefenseType = TypeVar("DefenseType", bound=type[Defense[Any]])


def register_defense(cls: DefenseType) -> DefenseType:
    """Class decorator adding a defense to :data:`DEFENSES` under ``cls.name``."""
    DEFENSES.register(cls.name)(cls)
    return cls


def create_defense(name: str, **params: Any) -> Defense[Any]:
    return DEFENSES.get(name)(**params)
