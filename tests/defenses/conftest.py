"""Fixtures for the defense tests: a real-photo batch, a tiny model, update contexts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradinv.fl.client import UpdateContext, fedsgd_gradient
from gradinv.types import Batch, ModelUpdate, TrainingConfig, UpdateKind
from tests.helpers import photo_batch, tiny_lenet


@pytest.fixture
def batch(photos: np.ndarray) -> Batch:
    """Four real 16x16 photos with distinct labels."""
    return photo_batch(photos, [0, 1, 2, 3], labels=[3, 1, 4, 1], size=16)


@pytest.fixture
def lenet() -> torch.nn.Module:
    return tiny_lenet(size=16)


def make_ctx(model: torch.nn.Module, batch: Batch, *, client_id: int = 0, seed: int = 0) -> UpdateContext:
    return UpdateContext(
        model,
        batch,
        TrainingConfig(),
        client_id,
        1,
        torch.Generator().manual_seed(seed * 1_000_003 + client_id),
    )


def real_update(model: torch.nn.Module, batch: Batch) -> ModelUpdate:
    """The undefended FedSGD gradient of ``model`` on ``batch`` (real, non-trivial values)."""
    grads, _ = fedsgd_gradient(model, batch)
    return ModelUpdate(UpdateKind.GRADIENT, grads)
