"""The generator registry: architectures that load the shipped weights strictly, stages that compose
to the forward pass, safe self-describing files, resizing into the model's input space, and errors
that name the file and the config key."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from gradinv.errors import ConfigError, ModelError
from gradinv.models.generators import (
    GENERATORS,
    build_generator,
    load_generator,
    save_generator,
    to_model_input,
)
from gradinv.types import Normalization


@pytest.mark.parametrize(
    ("name", "options", "shapes"),
    [
        ("began32-celeba", {}, [(128, 8, 8), (128, 16, 16), (64, 32, 32), (3, 32, 32)]),
        ("dcgan64-digiface", {"ngf": 8}, [(64, 4, 4), (32, 8, 8), (16, 16, 16), (8, 32, 32), (3, 64, 64)]),
        ("dcgan32", {"ngf": 8}, [(32, 4, 4), (16, 8, 8), (8, 16, 16), (3, 32, 32)]),
    ],
)
def test_stages_compose_to_the_forward_pass(name: str, options: dict, shapes: list) -> None:
    g = build_generator(name, seed=0, **options)
    z = torch.randn(3, g.latent_dim, generator=torch.Generator().manual_seed(1))
    assert [tuple(s) for s in g.stage_shapes()] == shapes
    x = g(z).detach()
    assert x.shape == (3, *g.image_shape) and float(x.abs().max()) <= 1.0
    for stage in range(len(shapes)):
        torch.testing.assert_close(g.run_from(stage, g.features(stage, z)), x)


def test_seeded_builds_are_identical_and_leave_the_global_rng_alone() -> None:
    state = torch.random.get_rng_state()
    a, b = build_generator("dcgan32", seed=3, ngf=4), build_generator("dcgan32", seed=3, ngf=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(v, w), k


def test_a_saved_generator_loads_back_frozen_and_equal(tmp_path: Path) -> None:
    g = build_generator("dcgan32", seed=0, nz=16, ngf=4)
    path = save_generator(g, tmp_path / "g.pt", trained_on="test")
    loaded = load_generator(str(path))
    assert loaded.options == {"nz": 16, "ngf": 4, "channels": 3, "image_size": 32}
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    z = torch.randn(2, 16, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(loaded(z), g(z))
    began = build_generator("began32-celeba", seed=0)
    z62 = torch.randn(2, 62, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(load_generator(str(save_generator(began, tmp_path / "b.pt")))(z62), began(z62))


def test_to_model_input_resizes_converts_channels_and_normalises() -> None:
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    norm = Normalization((0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
    x = to_model_input(images, (3, 32, 32), norm)
    oracle = (F.avg_pool2d((images + 1) / 2, 2) - torch.tensor([0.5, 0.4, 0.3]).view(3, 1, 1)) / torch.tensor(
        [0.2, 0.25, 0.3]
    ).view(3, 1, 1)
    torch.testing.assert_close(x, oracle)
    gray = to_model_input(images[:, :, :32, :32], (1, 32, 32), Normalization.identity(1))
    torch.testing.assert_close(gray, ((images[:, :, :32, :32] + 1) / 2).mean(1, keepdim=True))
    k = to_model_input(images.reshape(1, 2, 3, 64, 64), (3, 16, 16), Normalization.identity(3))
    assert k.shape == (1, 2, 3, 16, 16)
    images.requires_grad_(True)
    to_model_input(images, (3, 48, 48), norm).sum().backward()  # bilinear upsampling, differentiable
    assert images.grad is not None and bool(torch.isfinite(images.grad).all())


def test_errors_name_the_file_and_the_config_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRADINV_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    with pytest.raises(ModelError, match=r"began32_celeba_generator\.pth[\s\S]*generator_weights"):
        load_generator("began32-celeba")
    with pytest.raises(ModelError, match=r"ships no weights[\s\S]*train-generator"):
        load_generator("dcgan32")
    with pytest.raises(ConfigError, match="dcgan64-digiface"):
        load_generator("dcgan-64")  # a typo: the valid names are listed
    with pytest.raises(ModelError, match=r"`generator`[\s\S]*no such file"):
        load_generator(str(tmp_path / "missing.pt"))
    plain = tmp_path / "plain.pt"
    torch.save(build_generator("dcgan32", ngf=4).state_dict(), plain)
    with pytest.raises(ModelError, match="generator_weights"):
        load_generator(str(plain))  # a bare state_dict: give the architecture's name and the file
    wrong = tmp_path / "wrong.pth"
    torch.save(build_generator("dcgan32", ngf=4).state_dict(), wrong)
    misfit = r"'began32-celeba' \(config key `generator_weights`\)[\s\S]*missing keys"
    with pytest.raises(ModelError, match=misfit):
        load_generator("began32-celeba", weights=wrong)
    assert set(GENERATORS) >= {"began32-celeba", "dcgan64-digiface", "dcgan32"}


@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["began32-celeba", "dcgan64-digiface"])
def test_the_shipped_weights_load_strictly_and_make_faces(shared: Path, name: str) -> None:
    g = load_generator(name, weights=shared / "weights" / GENERATORS.get(name).weights)
    z = torch.randn(16, g.latent_dim, generator=torch.Generator().manual_seed(0))
    x = (g(z) + 1) / 2
    # trained generators make varied, structured images: distinct samples with spatially smooth
    # content (neighbouring pixels correlate far more than in noise); an untrained one does not
    spread = float(x.flatten(1).std(0).mean())
    corr = torch.corrcoef(torch.stack([x[..., :, :-1].flatten(), x[..., :, 1:].flatten()]))[0, 1]
    assert spread > 0.05 and float(corr) > 0.8, (spread, float(corr))


def test_a_generative_attack_reports_missing_weights_before_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gradinv.attacks import create_attack
    from gradinv.data import load_samples
    from gradinv.fl.rounds import simulate_round
    from gradinv.models import build_model
    from gradinv.threat import observe
    from gradinv.types import TrainingConfig

    monkeypatch.delenv("GRADINV_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    batch = load_samples().to_batch([1], image_size=16)
    model = build_model("lenet", num_classes=10, image_size=16, seed=0)
    truth = simulate_round(model, [batch], TrainingConfig(), num_classes=10)
    view = observe(truth, "D")
    (problem,) = create_attack("gias").check(view)
    assert "cannot load its generator" in problem and "generator_weights" in problem
    from tests.attacks._tiny_generator import tiny_generator_file

    assert create_attack("gias", generator=tiny_generator_file()).check(view) == []
