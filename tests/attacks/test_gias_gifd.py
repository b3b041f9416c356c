"""GIAS and GIFD on the tiny seeded generator: recovery of generator-made images (oracle: the images
of a known latent), GIAS's fine-tuning never worsening the gradient distance, GIFD's l1-ball
constraint checked against the norm, the surrogate-data requirement, Ctrl-C."""

from __future__ import annotations

import pytest
import torch

from gradinv.attacks import create_attack
from gradinv.attacks.gias import gradient_distances
from gradinv.attacks.gifd import GIFD, GIFDConfig, l1_ball, search_features
from gradinv.errors import AttackRefused, ConfigError
from gradinv.fl import run_round
from gradinv.metrics import psnr
from gradinv.models import build_model
from gradinv.models.generators import build_generator, load_generator, save_generator, to_model_input
from gradinv.threat import observe
from gradinv.types import Batch, GroundTruth, Normalization, TrainingConfig

SIZE = 16
N = 2


@pytest.fixture(scope="module")
def generator_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny seeded DCGAN of the contract rows (latent 16, width 4) with its BatchNorm running
    statistics set from 512 of its own latents and its last layer scaled by 3, so that its images
    differ visibly between latents (freshly initialised, they are all nearly 0.5 gray)."""
    gen = build_generator("dcgan32", seed=0, nz=16, ngf=4)
    for m in gen.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average
            m.reset_running_stats()
    gen.train()
    with torch.no_grad():
        gen(torch.randn(512, 16, generator=torch.Generator().manual_seed(0)))
        gen.main[-2].weight.mul_(3.0)
    gen.eval()
    return str(save_generator(gen, tmp_path_factory.mktemp("gen") / "tiny.pt", trained_on="nothing (tests)"))


def _images(path: str, z: torch.Tensor) -> torch.Tensor:
    """The images of latents ``z`` ``(..., N, 16)`` of generator file ``path`` at SIZE x SIZE in [0, 1]."""
    gen = load_generator(path)
    with torch.no_grad():
        lead = z.shape[:-1]
        x = to_model_input(gen(z.reshape(-1, z.shape[-1])), (3, SIZE, SIZE), Normalization.identity(3))
    return x.reshape(*lead, 3, SIZE, SIZE)


@pytest.fixture(scope="module")
def truth(generator_file: str) -> GroundTruth:
    z = torch.randn(N, 16, generator=torch.Generator().manual_seed(123))
    batch = Batch(
        _images(generator_file, z), torch.arange(N), Normalization.identity(3), source="tiny generator"
    )
    model = build_model("lenet", num_classes=10, image_size=SIZE, seed=0)
    tr = TrainingConfig()
    return GroundTruth(model, (batch,), tr, run_round(model, [batch], tr), num_classes=10)


@pytest.fixture(scope="module")
def params(generator_file: str):
    def make(**extra: object) -> dict[str, object]:
        return {"generator": generator_file, "restarts": 2, "lr": 0.1, "seed": 0, **extra}

    return make


def _start_psnr(path: str, truth: GroundTruth) -> float:
    """PSNR of the attacks' random-latent start (candidate 0 of seed 0)."""
    z0 = torch.randn(2, N, 16, generator=torch.Generator().manual_seed(0))
    return _psnr(_images(path, z0)[0], truth)


def _psnr(images: torch.Tensor, truth: GroundTruth) -> float:
    return float(psnr(images, truth.batches[0].images).mean())


def _distance(params, attack_name: str, truth: GroundTruth, images: torch.Tensor) -> float:
    """The attack's own gradient distance of reconstructed images (the oracle of stage 2)."""
    attack = create_attack(attack_name, **params())
    setup, y, _, matcher, _ = attack._prepare(observe(truth, "D"), torch.device("cpu"), "auto")
    return float(gradient_distances(setup, matcher, y, setup.normalization.apply(images)[None])[0])


def test_gias_recovers_generator_images_and_finetuning_never_hurts(truth, params, generator_file):
    view = observe(truth, "D")
    start = _start_psnr(generator_file, truth)
    latent = create_attack("gias", **params(iterations=150, finetune_iterations=0)).reconstruct(view)
    tuned = create_attack("gias", **params(iterations=150, finetune_iterations=40, finetune_lr=1e-3))
    result = tuned.reconstruct(view)
    rec = result.reconstruction
    assert rec.candidates is not None and rec.candidates.shape == (2, N, 3, SIZE, SIZE)
    assert len(rec.candidate_losses) == 2
    assert _psnr(latent.reconstruction.images, truth) > start + 10.0
    assert _psnr(rec.images, truth) > start + 10.0
    d1 = _distance(params, "gias", truth, latent.reconstruction.images)
    d2 = _distance(params, "gias", truth, rec.images)
    assert d2 <= d1 + 1e-6
    assert any("generator: " in n for n in result.notes)
    assert any("stage 2 generator fine-tuning" in n for n in result.notes)


def test_gifd_recovers_generator_images(truth, params, generator_file):
    view = observe(truth, "D")
    start = _start_psnr(generator_file, truth)
    result = create_attack("gifd", **params(iterations=150, feature_iterations=20)).reconstruct(view)
    assert _psnr(result.reconstruction.images, truth) > start + 10.0
    assert result.reconstruction.candidates is not None
    assert result.reconstruction.candidates.shape == (2, N, 3, SIZE, SIZE)
    assert any("feature stages" in n for n in result.notes)


def test_l1_ball_against_the_norm():
    delta = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(1))
    norms = delta.abs().flatten(1).sum(-1)
    radius = torch.stack([norms[0] * 2, norms[1] / 2, norms[2] / 10])
    out = l1_ball(delta, radius)
    assert torch.equal(out[0], delta[0])  # inside: unchanged
    assert torch.allclose(out.abs().flatten(1).sum(-1)[1:], radius[1:])  # outside: onto the surface
    assert torch.allclose(out[1] / out[1].norm(), delta[1] / delta[1].norm())  # same direction


def test_gifd_features_stay_in_the_l1_ball(truth, params):
    cfg = GIFDConfig(**params(feature_iterations=15, feature_lr=0.5, feature_radius=0.02))
    attack = GIFD(cfg)
    setup, y, _, matcher, _ = attack._prepare(observe(truth, "D"), torch.device("cpu"), "auto")
    generator = attack._generator(torch.device("cpu"))
    latents = torch.randn(2, N, 16, generator=torch.Generator().manual_seed(0))
    stages = search_features(setup, generator, matcher, y, latents, cfg)
    assert [s.stage for s in stages] == [1, 2, 3]
    for s in stages:
        dev = (s.feature - s.start).abs().flatten(2).sum(-1)
        assert torch.allclose(s.radius, 0.02 * s.start.abs().flatten(2).sum(-1))
        assert (dev <= s.radius * (1 + 1e-5)).all()
        assert (dev >= 0.9 * s.radius).any()  # the constraint is active: the step size reaches it
    # each stage starts from the previous one's result
    assert torch.allclose(
        stages[1].start, generator.stages()[1](stages[0].feature.flatten(0, 1)).reshape(stages[1].start.shape)
    )


@pytest.mark.parametrize("name", ["gias", "gifd"])
def test_refused_without_surrogate_data_and_accepted_with_it(truth, params, name):
    attack = create_attack(name, **params(iterations=1))
    with pytest.raises(AttackRefused, match="surrogate"):
        attack.reconstruct(observe(truth, "C"))
    assert attack.check(observe(truth, "D")) == []


@pytest.mark.parametrize("name", ["gias", "gifd"])
def test_ctrl_c_returns_best_so_far(truth, params, name):
    def interrupt(step: int, total: int, loss: float) -> None:
        assert total == 50 + (10 if name == "gias" else 30)
        if step == 3:
            raise KeyboardInterrupt

    extra = {"finetune_iterations": 10} if name == "gias" else {"feature_iterations": 10}
    r = create_attack(name, **params(iterations=50, **extra)).reconstruct(
        observe(truth, "D"), progress=interrupt
    )
    assert r.interrupted and r.iterations == 3
    assert torch.isfinite(r.reconstruction.images).all()
    assert any("skipped" in n for n in r.notes)


@pytest.mark.parametrize(
    ("name", "key", "value"),
    [
        ("gias", "finetune_iterations", -1),
        ("gias", "finetune_lr", 0.0),
        ("gias", "param_penalty", -1.0),
        ("gias", "latent_prior", -0.1),
        ("gias", "init", "zeros"),
        ("gifd", "feature_radius", 0.0),
        ("gifd", "feature_iterations", 0),
        ("gifd", "feature_stages", (2, 1)),
        ("gifd", "feature_stages", (0,)),
    ],
)
def test_config_checks(params, name, key, value):
    with pytest.raises(ConfigError, match=key):
        create_attack(name, **params(**{key: value}))


def test_feature_stages_beyond_the_generator_are_refused(truth, params):
    with pytest.raises(ConfigError, match="feature_stages"):
        create_attack("gifd", **params(iterations=1, feature_stages=(1, 4))).reconstruct(observe(truth, "D"))
