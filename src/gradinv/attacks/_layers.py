"""Reading a layer's inputs during a forward pass (shared by the attacks that work on one layer)."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["layer_inputs"]


def layer_inputs(model: nn.Module, layer: nn.Module, x: Tensor) -> list[Tensor]:
    """The input ``layer`` receives, one tensor per call, while ``model`` runs on ``x`` (in the
    model's current mode and grad setting)."""
    seen: list[Tensor] = []
    handle = layer.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    try:
        model(x)
    finally:
        handle.remove()
    return seen
