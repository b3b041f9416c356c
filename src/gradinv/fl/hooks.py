"""Client-side defenses as the federation sees them: anything that may change the model every party
uses and that gives each client hooks (:class:`ClientDefense`), and the chain that applies several
in one client's local training (:class:`DefenseChain`). The defenses themselves live in
:mod:`gradinv.defenses`; the FL simulation needs only this shape of them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor, nn

from gradinv.errors import ConfigError
from gradinv.fl.client import ClientHooks, StepContext, UpdateContext
from gradinv.types import ModelUpdate

__all__ = ["ClientDefense", "DefenseChain"]


class ClientDefense(Protocol):
    """What the FL simulation needs of a defense (every :class:`gradinv.defenses.Defense`)."""

    @property
    def name(self) -> str: ...

    @property
    def stage(self) -> str: ...

    def transform_model(self, model: nn.Module, *, generator: torch.Generator | None = None) -> nn.Module: ...

    def client_hooks(self) -> ClientHooks: ...


class DefenseChain(ClientHooks):
    """Client hooks applying several defenses in order (at most one training-stage defense).

    Data and update transforms run in the given order. For the step's gradient, the hooks are asked
    in ``gradient_order`` (default: the given order) and the first gradient returned is used;
    :meth:`of` asks the training-stage defense (DP-SGD) first, so that it takes precedence over a
    model-stage defense that only adds a loss term (PRECODE), whose term DP-SGD includes itself."""

    def __init__(
        self,
        hooks: Sequence[ClientHooks],
        names: Sequence[str] = (),
        *,
        gradient_order: Sequence[int] | None = None,
    ) -> None:
        self.hooks = list(hooks)
        self.names = list(names) or [f"defense{i}" for i in range(len(self.hooks))]
        order = list(range(len(self.hooks))) if gradient_order is None else list(gradient_order)
        if sorted(order) != list(range(len(self.hooks))):
            raise ConfigError(
                f"Expected `gradient_order` to be a permutation of 0..{len(self.hooks) - 1}, but got {order}."
            )
        self.gradient_order = order

    def start(self, ctx: UpdateContext) -> None:
        for h in self.hooks:
            h.start(ctx)

    def on_batch(self, x: Tensor, targets: Tensor, ctx: StepContext) -> tuple[Tensor, Tensor]:
        for h in self.hooks:
            x, targets = h.on_batch(x, targets, ctx)
        return x, targets

    def gradients(self, x: Tensor, targets: Tensor, ctx: StepContext) -> list[Tensor] | None:
        for i in self.gradient_order:
            g = self.hooks[i].gradients(x, targets, ctx)
            if g is not None:
                return g
        return None

    def on_update(self, update: ModelUpdate, ctx: UpdateContext) -> ModelUpdate:
        for h in self.hooks:
            update = h.on_update(update, ctx)
        return update

    def info(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, h in zip(self.names, self.hooks):
            out.update({f"{name}.{k}": v for k, v in h.info().items()})
        return out

    @classmethod
    def of(cls, defenses: Sequence[ClientDefense]) -> DefenseChain:
        training = [d.name for d in defenses if d.stage == "training"]
        if len(training) > 1:
            raise ConfigError(
                f"Expected at most one defense that replaces the training gradient, but got {training}. "
                "Keep one of them."
            )
        order = sorted(range(len(defenses)), key=lambda i: defenses[i].stage != "training")
        return cls([d.client_hooks() for d in defenses], [d.name for d in defenses], gradient_order=order)
