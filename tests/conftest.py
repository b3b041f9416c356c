"""Shared fixtures: real images (scikit-image / scikit-learn, offline), seeds, the ../shared folder."""

from __future__ import annotations

import os
from pathlib import Path

# idle OpenMP threads sleep instead of spinning (as the CLI does): on a loaded machine spinning threads
# take the cores the working ones need; results are the same. Must be set before torch loads.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path | None:
    """``$GRADINV_SHARED`` or ``../shared`` next to the repository, when it holds data/ and weights/."""
    env = os.environ.get("GRADINV_SHARED")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared")
    for c in candidates:
        if (c / "data").is_dir() and (c / "weights").is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def shared() -> Path:
    """The shared data/weights folder; tests using it skip with a reason when it is absent."""
    d = shared_dir()
    if d is None:
        pytest.skip("needs ../shared (real CIFAR-10 images, trained weights) or $GRADINV_SHARED; absent here")
    return d


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture(scope="session")
def photos() -> np.ndarray:
    """Eight real 32x32 RGB photo crops (uint8, N×H×W×C) from scikit-image's bundled images."""
    from skimage import data
    from skimage.transform import resize

    imgs = [
        data.astronaut(),
        data.chelsea(),
        data.coffee(),
        data.rocket(),
        data.hubble_deep_field(),
        data.immunohistochemistry(),
        data.retina(),
        data.colorwheel(),
    ]
    out = []
    for im in imgs:
        h, w = im.shape[:2]
        s = min(h, w)
        crop = im[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s, :3]
        out.append((resize(crop, (32, 32), anti_aliasing=True) * 255).round().astype(np.uint8))
    return np.stack(out)
