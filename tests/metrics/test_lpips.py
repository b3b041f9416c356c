"""LPIPS plumbing: official architecture with a RANDOM AlexNet backbone (the ImageNet weights are not
available offline) and the vendored lin weights; weight resolution and its error messages.

The oracle is a naive re-computation from the torchvision-layout ``features`` sequence that was
saved: run layer by layer, cut after each ReLU, normalise, square, weight with the lin file, average,
sum."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import gradinv.metrics.functional.lpips as lp
from gradinv.errors import DataError, MetricUnavailable, ModelError
from gradinv.metrics import LPIPS, lpips

LIN_FILE = Path(lp.__file__).parent / "weights" / "lpips_alex_v0.1.pth"


def _torchvision_alexnet_features() -> nn.Sequential:
    """torchvision's ``alexnet().features`` layout (indices 0..12), freshly initialised."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
    )  # fmt: skip


@pytest.fixture(scope="module")
def backbone(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, nn.Sequential]:
    torch.manual_seed(123)
    features = _torchvision_alexnet_features().eval()
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state["classifier.1.weight"] = torch.zeros(8, 8)  # ignored
    path = tmp_path_factory.mktemp("alexnet") / "alexnet_random.pth"
    torch.save(state, path)
    return path, features


@pytest.fixture(autouse=True)
def _isolated_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No user cache or environment variable can interfere."""
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    monkeypatch.delenv(lp.BACKBONE_ENV, raising=False)
    monkeypatch.delenv("GRADINV_WEIGHTS", raising=False)
    return hub


@pytest.fixture(scope="module")
def images(photos: np.ndarray) -> torch.Tensor:
    """Four real 32x32 photo crops (LPIPS needs at least 31x31)."""
    return torch.from_numpy(photos[:4]).permute(0, 3, 1, 2).float() / 255.0


def _noisy(x: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (x + sigma * torch.randn(x.shape, generator=g)).clamp(0, 1)


def _naive_lpips(features: nn.Sequential, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    lin = torch.load(LIN_FILE, map_location="cpu", weights_only=True)
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    cut_after = {1, 4, 7, 9, 11}  # the five ReLUs
    total = torch.zeros(a.shape[0], dtype=torch.float64)
    ha, hb = ((2 * a - 1) - shift) / scale, ((2 * b - 1) - shift) / scale
    stage = 0
    with torch.no_grad():
        for i, layer in enumerate(features):
            if i > 11:
                break
            ha, hb = layer(ha), layer(hb)
            if i in cut_after:
                na = ha / (ha.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                nb = hb / (hb.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                w = lin[f"lin{stage}.model.1.weight"].flatten()
                per_pixel = ((na - nb) ** 2 * w.view(1, -1, 1, 1)).sum(1)
                total += per_pixel.mean(dim=(1, 2)).double()
                stage += 1
    return total


def test_vendored_lin_weights_have_expected_shapes() -> None:
    state = torch.load(LIN_FILE, map_location="cpu", weights_only=True)
    expected = {f"lin{i}.model.1.weight": (1, c, 1, 1) for i, c in enumerate((64, 192, 384, 256, 256))}
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    assert all((v >= 0).all() and v.sum() > 0 for v in state.values())  # calibrated, non-negative
    assert (LIN_FILE.parent / "LICENSE-lpips.txt").read_text().count("BSD") >= 1


def test_matches_naive_recomputation(backbone, images: torch.Tensor) -> None:
    path, features = backbone
    noisy = _noisy(images, 0.1)
    got = lpips(noisy, images, backbone_weights=path)
    assert got.dtype == torch.float64 and got.shape == (len(images),)
    np.testing.assert_allclose(
        got.numpy(), _naive_lpips(features, noisy, images).numpy(), rtol=1e-5, atol=1e-7
    )


def test_module_loads_both_weight_files(backbone) -> None:
    path, features = backbone
    model = LPIPS(backbone_weights=path)
    assert torch.equal(getattr(model.net.slice3, "6").weight, features[6].weight)
    lin = torch.load(LIN_FILE, map_location="cpu", weights_only=True)
    assert all(torch.equal(model.lins[i].model[1].weight, lin[f"lin{i}.model.1.weight"]) for i in range(5))
    assert not any(p.requires_grad for p in model.parameters()) and not model.training


def test_identity_symmetry_and_monotonicity(backbone, images: torch.Tensor) -> None:
    path, _ = backbone
    assert lpips(images, images, backbone_weights=path).abs().max() < 1e-12
    a, b = _noisy(images, 0.1, seed=1), images.flip(0)
    np.testing.assert_allclose(
        lpips(a, b, backbone_weights=path).numpy(), lpips(b, a, backbone_weights=path).numpy(), rtol=1e-5
    )
    small = lpips(_noisy(images, 0.05), images, backbone_weights=path)
    large = lpips(_noisy(images, 0.3), images, backbone_weights=path)
    assert (small < large).all(), (small, large)


def test_grayscale_is_replicated(backbone, images: torch.Tensor) -> None:
    path, _ = backbone
    gray = images.mean(1, keepdim=True)
    other = _noisy(gray, 0.1)
    np.testing.assert_allclose(
        lpips(other, gray, backbone_weights=path).numpy(),
        lpips(other.expand(-1, 3, -1, -1), gray.expand(-1, 3, -1, -1), backbone_weights=path).numpy(),
        rtol=1e-6,
    )


def test_gradient_flows_to_inputs(backbone, images: torch.Tensor) -> None:
    path, _ = backbone
    x = _noisy(images[:2], 0.1).requires_grad_(True)
    lpips(x, images[:2], backbone_weights=path).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_env_var_and_hub_cache(
    backbone, images, monkeypatch: pytest.MonkeyPatch, _isolated_hub: Path
) -> None:
    path, _ = backbone
    a, b = _noisy(images[:2], 0.1), images[:2]
    expected = lpips(a, b, backbone_weights=path)
    monkeypatch.setenv(lp.BACKBONE_ENV, str(path))
    assert lp.resolve_lpips_backbone() == path
    assert torch.equal(lpips(a, b), expected)
    monkeypatch.delenv(lp.BACKBONE_ENV)
    cached = _isolated_hub / "checkpoints" / lp.ALEXNET_FILE
    cached.parent.mkdir(parents=True)
    cached.write_bytes(path.read_bytes())
    assert lp.resolve_lpips_backbone() == cached
    assert torch.equal(lpips(a, b), expected)


def test_missing_backbone_names_paths_and_alternative(_isolated_hub: Path, images: torch.Tensor) -> None:
    with pytest.raises(MetricUnavailable) as info:
        lpips(images, images)
    msg = str(info.value)
    for needle in (str(_isolated_hub / "checkpoints" / lp.ALEXNET_FILE), lp.BACKBONE_ENV, lp.ALEXNET_URL,
                   "ST-LPIPS", "NOT LPIPS", "download=True"):  # fmt: skip
        assert needle in msg, needle


def test_missing_explicit_and_env_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nope.pth"
    with pytest.raises(MetricUnavailable, match=r"does not exist.*backbone_weights=.*nope\.pth"):
        LPIPS(backbone_weights=missing)
    monkeypatch.setenv(lp.BACKBONE_ENV, str(missing))
    with pytest.raises(MetricUnavailable, match=rf"\${lp.BACKBONE_ENV}=.*nope\.pth"):
        LPIPS()


def test_download(backbone, monkeypatch: pytest.MonkeyPatch, _isolated_hub: Path) -> None:
    path, _ = backbone
    calls: list[dict] = []

    def offline(url: str, **kwargs: object) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(MetricUnavailable, match=r"download failed.*no network"):
        lp.resolve_lpips_backbone(download=True)

    def fake(url: str, **kwargs: object) -> dict:
        calls.append({"url": url, **kwargs})
        target = _isolated_hub / "checkpoints" / lp.ALEXNET_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
        return {}

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake)
    assert lp.resolve_lpips_backbone(download=True) == _isolated_hub / "checkpoints" / lp.ALEXNET_FILE
    assert calls == [{"url": lp.ALEXNET_URL, "check_hash": True, "map_location": "cpu", "weights_only": True}]


def test_wrong_backbone_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 11, 11)}, bad)
    with pytest.raises(ModelError, match="missing"):
        LPIPS(backbone_weights=bad)
    wrong_shape = {f"features.{k}": v for k, v in _torchvision_alexnet_features().state_dict().items()}
    wrong_shape["features.0.weight"] = torch.zeros(64, 3, 5, 5)
    torch.save(wrong_shape, bad)
    with pytest.raises(ModelError, match="size mismatch"):
        LPIPS(backbone_weights=bad)


def test_input_errors(backbone) -> None:
    path, _ = backbone
    small = torch.rand(1, 3, lp.LPIPS_MIN_SIZE - 1, 40)
    with pytest.raises(DataError, match=rf"at least {lp.LPIPS_MIN_SIZE}x{lp.LPIPS_MIN_SIZE}"):
        lpips(small, small, backbone_weights=path)
    ok = torch.rand(1, 3, lp.LPIPS_MIN_SIZE, lp.LPIPS_MIN_SIZE)
    assert lpips(ok, ok.flip(-1), backbone_weights=path).shape == (1,)
    two = torch.rand(1, 2, 32, 32)
    with pytest.raises(DataError, match=r"1 \(grayscale\) or 3 \(RGB\) channels.*got 2"):
        lpips(two, two, backbone_weights=path)
    with pytest.raises(DataError, match="same shape"):
        lpips(ok, torch.rand(2, 3, 31, 31), backbone_weights=path)
