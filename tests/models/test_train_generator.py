"""DCGAN training (gradinv.models.train_generator) and the ``gradinv train-generator`` command, on
real photos (scikit-image, via ``load_samples``) and scikit-learn digits with tiny widths."""

from __future__ import annotations

import math

import pytest
import torch

from gradinv.cli.app import main
from gradinv.data import ImageDataset, load_digits_dataset, load_samples
from gradinv.errors import ConfigError, DataError
from gradinv.models import train_generator as tg
from gradinv.models.generators import build_generator, load_generator
from gradinv.models.train_generator import (
    DCGANDiscriminator,
    DCGANTraining,
    adversarial_step,
    dcgan_init,
    train_dcgan,
    training_images,
)

TINY = {"nz": 8, "ngf": 4, "batch_size": 5}


@pytest.fixture(scope="module")
def samples() -> ImageDataset:
    return load_samples()


def _states_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_training_images_are_resized_to_the_tanh_range(samples, monkeypatch):
    x = training_images(samples, image_size=32)
    monkeypatch.setattr(tg, "_CHUNK_VALUES", 3 * 128 * 128 * 3)  # chunks of 3 images: the same result
    assert torch.equal(training_images(samples, image_size=32), x)
    assert x.shape == (10, 3, 32, 32) and x.min() >= -1.0 and x.max() <= 1.0
    assert x.min() < -0.9 and x.max() > 0.9  # real photos span the range: scaled, not just shifted
    sub = training_images(samples, image_size=32, max_images=4, seed=1)
    assert sub.shape[0] == 4
    assert torch.equal(sub, training_images(samples, image_size=32, max_images=4, seed=1))
    assert any(torch.equal(sub[0], row) for row in x)  # a subset of the same images


def test_one_epoch_trains_and_the_file_loads_back(samples, tmp_path):
    seen = []
    r = train_dcgan(samples, epochs=1, progress=lambda s, t, loss: seen.append((s, t, loss)), **TINY)
    assert (r.steps, r.images, r.epochs_completed, r.interrupted) == (2, 10, 1, False)
    assert [s for s, _, _ in seen] == [1, 2] and {t for _, t, _ in seen} == {2}
    assert len(r.losses) == 1 and r.losses[0].steps == 2
    assert all(math.isfinite(v) for v in r.losses[0].to_dict().values())
    assert not r.generator.training and not any(p.requires_grad for p in r.generator.parameters())
    path = r.save(tmp_path / "G.pt", trained_on="samples")
    g = load_generator(str(path))
    assert _states_equal(g, r.generator) and g.image_shape == (3, 32, 32) and g.latent_dim == 8
    z = torch.randn(3, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(g(z), r.generator(z))
    payload = torch.load(path, weights_only=True)
    assert payload["trained_on"] == "samples" and payload["epochs"] == 1
    assert payload["training"]["config"]["ngf"] == 4 and len(payload["training"]["losses"]) == 1


def test_same_seed_same_weights_and_the_global_rng_is_left_alone(samples):
    state = torch.random.get_rng_state()
    a = train_dcgan(samples, epochs=1, seed=3, **TINY)
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.manual_seed(123)  # the caller's RNG does not change the result
    b = train_dcgan(samples, epochs=1, seed=3, **TINY)
    c = train_dcgan(samples, epochs=1, seed=4, **TINY)
    assert _states_equal(a.generator, b.generator) and a.losses == b.losses
    assert not _states_equal(a.generator, c.generator)


def _pair(channels: int = 3, image_size: int = 32) -> tuple[torch.nn.Module, torch.nn.Module]:
    rng = torch.Generator().manual_seed(0)
    g = build_generator("dcgan32", seed=0, nz=8, ngf=4, channels=channels, image_size=image_size)
    d = DCGANDiscriminator(channels=channels, ndf=4, image_size=image_size)
    return dcgan_init(g, rng).train(), dcgan_init(d, rng).train()


def test_the_discriminator_learns_to_tell_real_from_generated(samples):
    g, d = _pair()
    real = training_images(samples, image_size=32)
    z = torch.randn(10, 8, generator=torch.Generator().manual_seed(1))
    g_opt = torch.optim.Adam(g.parameters(), lr=0.0)  # the generator stands still
    d_opt = torch.optim.Adam(d.parameters(), lr=2e-3, betas=(0.5, 0.999))
    steps = [adversarial_step(g, d, g_opt, d_opt, real, z) for _ in range(15)]
    assert abs(steps[0].discriminator - 2 * math.log(2)) < 0.1  # chance at the N(0, 0.02) init
    assert steps[-1].discriminator < 0.6 * steps[0].discriminator
    assert steps[-1].real_score > 0.6 > 0.4 > steps[-1].fake_score


def test_the_generator_learns_to_fool_a_fixed_discriminator(samples):
    g, d = _pair()
    real = training_images(samples, image_size=32)
    z = torch.randn(10, 8, generator=torch.Generator().manual_seed(1))
    d_pre = torch.optim.Adam(d.parameters(), lr=2e-3, betas=(0.5, 0.999))
    frozen = torch.optim.Adam(g.parameters(), lr=0.0)
    for _ in range(10):  # first make the discriminator separate the two
        adversarial_step(g, d, frozen, d_pre, real, z)
    g_opt = torch.optim.Adam(g.parameters(), lr=2e-3, betas=(0.5, 0.999))
    d_still = torch.optim.Adam(d.parameters(), lr=0.0)
    steps = [adversarial_step(g, d, g_opt, d_still, real, z) for _ in range(15)]
    assert steps[-1].generator < 0.7 * steps[0].generator
    assert steps[-1].fake_score > steps[0].fake_score + 0.1


def test_gray_digits_at_64(tmp_path):
    r = train_dcgan(load_digits_dataset(), image_size=64, epochs=1, max_images=20, nz=8, ngf=4, batch_size=10)
    assert r.generator.image_shape == (1, 64, 64) and r.images == 20 and r.steps == 2
    assert load_generator(str(r.save(tmp_path / "d.pth", trained_on="digits"))).image_shape == (1, 64, 64)


def test_ctrl_c_keeps_what_was_trained(samples):
    def stop(step: int, total: int, loss: float) -> None:
        if step == 3:
            raise KeyboardInterrupt

    r = train_dcgan(samples, epochs=3, progress=stop, **TINY)
    assert r.interrupted and r.steps == 3 and r.epochs_completed == 1
    assert [e.steps for e in r.losses] == [2, 1]  # the partial second epoch is kept


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"image_size": 48}, "`image_size`"),
        ({"epochs": 0}, "`epochs`"),
        ({"batch_size": 0}, "`batch_size`"),
        ({"lr": -1e-3}, "`lr`"),
        ({"lr": float("nan")}, "`lr`"),
        ({"beta1": 1.0}, "`beta1`"),
        ({"max_images": 0}, "`max_images`"),
        ({"seed": -1}, "`seed`"),
    ],
)
def test_bad_settings_are_refused(options, needle):
    with pytest.raises(ConfigError, match=needle):
        DCGANTraining(**options)


def test_an_empty_dataset_is_refused(samples):
    with pytest.raises(DataError, match="empty"):
        train_dcgan(samples.subset([]), epochs=1, **TINY)


CLI_TINY = ["--epochs", "1", "--batch-size", "5", "--ngf", "4", "--nz", "8", "--no-progress"]


def test_cli_trains_and_saves(tmp_path, capsys):
    out = tmp_path / "sub" / "G.pt"
    assert main(["train-generator", "--data", "samples", "--out", str(out), *CLI_TINY]) == 0
    stdout = capsys.readouterr().out
    assert f'generator = "{out}"' in stdout and "2 step(s) on 10 image(s)" in stdout
    g = load_generator(str(out))
    assert g.latent_dim == 8 and g.image_shape == (3, 32, 32)
    assert torch.load(out, weights_only=True)["trained_on"] == "samples"


def test_cli_ctrl_c_saves_and_exits_130(tmp_path, capsys, monkeypatch):
    calls = []
    real_step = tg.adversarial_step

    def step_then_stop(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return real_step(*args, **kwargs)

    monkeypatch.setattr(tg, "adversarial_step", step_then_stop)
    out = tmp_path / "G.pt"
    assert main(["train-generator", "--data", "samples", "--out", str(out), *CLI_TINY]) == 130
    assert "interrupted" in capsys.readouterr().err
    training = torch.load(out, weights_only=True)["training"]
    assert training["interrupted"] and training["steps"] == 1
    load_generator(str(out))


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--data", "npz:/nonexistent/x.npz"], "/nonexistent/x.npz"),
        (["--data", "sample"], "Did you mean 'samples'"),
        (["--data", "samples", "--image-size", "48"], "Expected --image-size to be one of 32, 64"),
        (["--data", "samples", "--epochs", "0"], "Expected --epochs to be an integer >= 1"),
        (["--data", "samples", "--lr", "fast"], "Expected --lr to be a number"),
        (["--data", "samples", "--lr", "0"], "Expected --lr to be a finite number > 0"),
    ],
)
def test_cli_bad_input_is_one_clear_error(args, needle, tmp_path, capsys):
    out = tmp_path / "G.pt"
    code = main(["train-generator", "--out", str(out), *args, *CLI_TINY])
    err = capsys.readouterr().err
    assert code == 2 and needle in err, err
    assert "Traceback" not in err and not out.exists()


def test_cli_refuses_an_out_path_attacks_cannot_read(tmp_path, capsys):
    assert main(["train-generator", "--data", "samples", "--out", str(tmp_path / "G"), *CLI_TINY]) == 2
    assert "Expected --out to name a .pt or .pth file" in capsys.readouterr().err
    (tmp_path / "dir.pt").mkdir()
    assert main(["train-generator", "--data", "samples", "--out", str(tmp_path / "dir.pt"), *CLI_TINY]) == 2
    assert "is a directory" in capsys.readouterr().err
