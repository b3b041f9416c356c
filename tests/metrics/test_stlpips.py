"""ST-LPIPS (Ghildyal & Liu, ECCV 2022): BlurPool against a naive loop; the real weights from ../shared
(strict load, identity, noise ordering and shift tolerance on real photos); weight resolution errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data
from skimage.transform import resize

import gradinv.metrics.functional.stlpips as st
from gradinv.errors import DataError, MetricUnavailable
from gradinv.metrics import STLPIPS, stlpips


def _naive_blurpool(x: torch.Tensor) -> torch.Tensor:
    """Reflect-pad 2, then out[i, j] = sum_{a,b} k[a, b] * x[2i + a, 2j + b], k = [1,2,1]⊗[1,2,1]/16."""
    p = np.pad(x.numpy(), ((0, 0), (0, 0), (2, 2), (2, 2)), mode="reflect")
    k = np.outer([1, 2, 1], [1, 2, 1]) / 16.0
    h = (p.shape[2] - 3) // 2 + 1
    w = (p.shape[3] - 3) // 2 + 1
    out = np.zeros((*x.shape[:2], h, w))
    for i in range(h):
        for j in range(w):
            out[:, :, i, j] = (p[:, :, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3] * k).sum(axis=(2, 3))
    return torch.from_numpy(out)


@pytest.mark.parametrize("size", [(7, 7), (8, 11)])
def test_blurpool_matches_naive_loop(size: tuple[int, int]) -> None:
    x = torch.rand(2, 3, *size, dtype=torch.float64)
    pool = st.BlurPool(3).double()
    np.testing.assert_allclose(pool(x).numpy(), _naive_blurpool(x).numpy(), rtol=1e-12, atol=1e-12)


def test_missing_weights_names_file_and_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(st.WEIGHTS_ENV, raising=False)
    monkeypatch.delenv("GRADINV_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(MetricUnavailable) as info:
        stlpips(x, x)
    msg = str(info.value)
    assert st.STLPIPS_FILE in msg and st.WEIGHTS_ENV in msg and "weights=" in msg and "ST-LPIPS" in msg
    monkeypatch.setenv(st.WEIGHTS_ENV, str(tmp_path / "absent.pth"))
    with pytest.raises(MetricUnavailable, match=r"absent\.pth.*does not exist"):
        STLPIPS()


@pytest.fixture(scope="module")
def weights(shared: Path) -> Path:
    return shared / "weights" / st.STLPIPS_FILE


def _photo(image: np.ndarray, size: int = 65) -> torch.Tensor:
    h, w = image.shape[:2]
    s = min(h, w)
    crop = image[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s, :3]
    return torch.from_numpy(resize(crop, (size, size), anti_aliasing=True)).permute(2, 0, 1).float()


@pytest.fixture(scope="module")
def photos64() -> tuple[torch.Tensor, torch.Tensor]:
    """Two real 65x65 photos (astronaut, cat)."""
    return _photo(data.astronaut()), _photo(data.chelsea())


@pytest.mark.shared_data
def test_weights_load_strictly(weights: Path) -> None:
    model = STLPIPS(weights=weights)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    own = model.state_dict()
    assert set(own) == set(state)
    assert all(torch.equal(own[k], state[k]) for k in state)
    assert not any(p.requires_grad for p in model.parameters()) and not model.training


@pytest.mark.shared_data
def test_real_photo_behaviour(weights: Path, photos64) -> None:
    astro, cat = photos64
    ref = astro[:, :64, :64]
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(ref.shape, generator=g)
    batch = torch.stack(
        [
            ref,  # identical
            (ref + 0.05 * noise).clamp(0, 1),  # sigma = 0.05 Gaussian noise
            (ref + 0.3 * noise).clamp(0, 1),  # sigma = 0.3 Gaussian noise
            astro[:, :64, 1:65],  # the same scene shifted by one pixel
            cat[:, :64, :64],  # a different photo
        ]
    )
    # the five pairs, then two of them reversed (symmetry), in one call
    both = stlpips(
        torch.cat([batch, ref.expand(2, -1, -1, -1)]),
        torch.cat([ref.expand(5, -1, -1, -1), batch[[1, 4]]]),
        weights=weights,
    )
    d = both[:5]
    print("ST-LPIPS identical, noise 0.05, noise 0.3, 1-px shift, other photo:", d.tolist())
    assert both.dtype == torch.float64 and both.shape == (7,)
    identical, small, large, shift, other = d.tolist()
    assert abs(identical) < 1e-6
    assert 0 < small < large
    assert shift < 0.1 * other
    np.testing.assert_allclose(both[5:].numpy(), d[[1, 4]].numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.shared_data
def test_grayscale_and_env_var(weights: Path, photos64, monkeypatch: pytest.MonkeyPatch) -> None:
    astro, cat = photos64
    gray = torch.stack([astro[:, :32, :32], cat[:, :32, :32]]).mean(1, keepdim=True)
    other = gray.flip(0)
    np.testing.assert_allclose(
        stlpips(gray, other, weights=weights).numpy(),
        stlpips(gray.expand(-1, 3, -1, -1), other.expand(-1, 3, -1, -1), weights=weights).numpy(),
        rtol=1e-5,
        atol=1e-7,
    )
    monkeypatch.setenv(st.WEIGHTS_ENV, str(weights))
    assert torch.equal(stlpips(gray, other), stlpips(gray, other, weights=weights))


@pytest.mark.shared_data
def test_size_limit(weights: Path) -> None:
    m = st.STLPIPS_MIN_SIZE
    small = torch.rand(1, 3, m - 1, m)
    with pytest.raises(DataError, match=rf"at least {m}x{m}"):
        stlpips(small, small, weights=weights)
    ok = torch.rand(1, 3, m, m)
    assert stlpips(ok, ok.flip(-1), weights=weights).shape == (1,)
