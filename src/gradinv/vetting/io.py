"""Reading models and updates for vetting from files, safely (``torch.load(weights_only=True)``)."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from gradinv.models.checkpoint import read_state_dict

__all__ = ["load_state"]


def load_state(path: str | Path) -> dict[str, Tensor]:
    """The named tensors in a checkpoint or update file (a state_dict, or a dict holding one under
    ``state_dict`` / ``model_state_dict`` / ``model``; ``module.`` prefixes stripped), read with
    ``torch.load(path, map_location="cpu", weights_only=True)``. The values are not checked here
    (a file may be read to be inspected); :func:`~gradinv.vetting.vet` refuses NaN or infinite
    tensors in everything it is given, with an error naming them."""
    return read_state_dict(path)
