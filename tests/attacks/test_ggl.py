"""GGL (Li et al., CVPR 2022): oracle recovery of a generated image, the adaptive top-k simulation,
threat-model gating, determinism, Ctrl-C and config validation, on tiny seeded models."""

from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path

import pytest
import torch

from gradinv.attacks import create_attack
from gradinv.attacks.ggl import GGLConfig, _simulation, infer_defense, latent_kl
from gradinv.data import get_normalization
from gradinv.defenses import DefenseChain, create_defense
from gradinv.errors import AttackRefused, ConfigError
from gradinv.fl import run_round
from gradinv.models import build_model
from gradinv.models.generators import build_generator, load_generator, save_generator
from gradinv.threat import observe
from gradinv.types import AttackerView, Batch, GroundTruth, TrainingConfig
from tests.attacks._tiny_generator import tiny_generator_file

LATENT = 8


@cache
def _generator_file() -> str:
    """A tiny DCGAN-32 (latent 8, width 4) whose BatchNorm statistics are calibrated on 256 random
    latents, so that its images vary (the uncalibrated random generator's are nearly constant)."""
    gen = build_generator("dcgan32", seed=1, nz=LATENT, ngf=4)
    for m in gen.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average over the calibration pass
    gen.train()
    with torch.no_grad():
        gen(torch.randn(256, LATENT, generator=torch.Generator().manual_seed(0)))
    gen.eval()
    folder = Path(tempfile.mkdtemp(prefix="gradinv-ggl-test-"))
    return str(save_generator(gen, folder / "g.pt", trained_on="random latents (BN calibrated)"))


def _truth_image() -> torch.Tensor:
    gen = load_generator(_generator_file())
    z = torch.randn(1, LATENT, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        return ((gen(z) + 1) / 2).clamp(0, 1)


def _view(threat: str = "D", defense: tuple[str, dict] | None = None) -> tuple[AttackerView, torch.Tensor]:
    img = _truth_image()
    batch = Batch(img, torch.tensor([3]), get_normalization("none", channels=3))
    model = build_model("lenet", num_classes=10, seed=0)
    tr = TrainingConfig()
    hooks = DefenseChain.of([create_defense(defense[0], **defense[1])]) if defense else None
    truth = GroundTruth(model, (batch,), tr, run_round(model, [batch], tr, hooks=hooks), num_classes=10)
    return observe(truth, threat), img


def _attack(**params):
    # the tiny generator's images differ little, so cosine distances are ~1e-3 here: the KL weight
    # is scaled down with them (at the default 0.1 the prior term outweighs the match)
    opts = {"generator": _generator_file(), "iterations": 25, "population": 12, "seed": 0, "kl_weight": 1e-3}
    opts.update(params)
    return create_attack("ggl", **opts)


def _mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b) ** 2).mean())


def _start_image() -> torch.Tensor:
    gen = load_generator(_generator_file())
    with torch.no_grad():
        return ((gen(torch.zeros(1, LATENT)) + 1) / 2).clamp(0, 1)


@pytest.mark.parametrize(
    "params", [{}, {"distance": "l2", "kl_weight": 0.1}], ids=["cosine", "paper-l2-kl0.1"]
)
def test_recovers_an_image_of_the_generator_much_better_than_the_start(params):
    view, img = _view()
    r = _attack(**params).reconstruct(view, device="cpu")
    rec = r.reconstruction
    assert rec.candidates is not None and rec.candidates.shape[:2] == (4, 1)
    assert list(rec.candidate_losses) == sorted(rec.candidate_losses)  # best latents, best first
    assert r.loss_history[-1] < 0.5 * r.loss_history[0]
    assert _mse(rec.images, img) < 0.25 * _mse(_start_image(), img)
    assert any("adaptive auto: no sparsification" in n for n in r.notes)


def test_adaptive_topk_masks_the_dummy_gradient_with_the_observed_support():
    view, _ = _view(defense=("topk", {"ratio": 0.1}))
    attack = _attack(adaptive="auto")
    setup, y, _, matcher, _ = attack._prepare(view, torch.device("cpu"), "auto")
    simulate, note = _simulation(attack.config, setup, matcher.indices)
    assert simulate.mode == "topk" and "exactly zero" in note
    observed = [setup.target[i] for i in matcher.indices]
    dummy = setup.sim.gradient(torch.rand(1, 3, 32, 32), y)
    masked = simulate([dummy[i] for i in matcher.indices])
    for m, t, d in zip(masked, observed, dummy):
        assert torch.equal(m != 0, (t != 0) & (d != 0))  # exactly the observed support (where d != 0)
    kept = sum(int((t != 0).sum()) for t in observed) / sum(t.numel() for t in observed)
    assert kept == pytest.approx(0.1, abs=0.01)


def test_adaptive_beats_non_adaptive_under_topk():
    view, img = _view(defense=("topk", {"ratio": 0.1}))
    adaptive = _attack(adaptive="topk").reconstruct(view, device="cpu").reconstruction.images
    plain = _attack(adaptive="off").reconstruct(view, device="cpu").reconstruction.images
    assert _mse(adaptive, img) < 0.5 * _mse(plain, img)


def test_infer_defense_reads_sign_sparsity_and_nothing():
    g = [torch.randn(4, 5), torch.randn(5)]
    assert infer_defense(g)[0] == "off"
    assert infer_defense([torch.where(t.abs() > 1.5, t, torch.zeros_like(t)) for t in g])[0] == "topk"
    assert infer_defense([t.sign() * 0.3 for t in g])[0] == "sign"


def test_refused_under_c_naming_surrogate_knowledge_and_accepted_under_d():
    view_c, _ = _view("C")
    with pytest.raises(AttackRefused, match="surrogate"):
        _attack(iterations=1).reconstruct(view_c, device="cpu")
    view_d, _ = _view("D")
    assert _attack(iterations=1).check(view_d) == []


def test_same_seed_same_result_and_other_seed_differs():
    view, _ = _view()
    a = _attack(iterations=4).reconstruct(view, device="cpu")
    b = _attack(iterations=4).reconstruct(view, device="cpu")
    c = _attack(iterations=4, seed=1).reconstruct(view, device="cpu")
    assert torch.equal(a.reconstruction.images, b.reconstruction.images)
    assert a.loss_history == b.loss_history
    assert not torch.equal(a.reconstruction.images, c.reconstruction.images)


def test_the_search_leaves_numpys_global_rng_as_it_found_it():
    import numpy as np

    view, _ = _view()
    np.random.seed(123)
    expected = np.random.rand(3)
    np.random.seed(123)
    _attack(iterations=2).reconstruct(view, device="cpu")  # cma seeds numpy's global generator
    np.testing.assert_array_equal(np.random.rand(3), expected)


def test_ctrl_c_returns_the_best_so_far_and_progress_counts_generations():
    view, _ = _view()
    steps: list[tuple[int, int]] = []

    def progress(step: int, total: int, loss: float) -> None:
        steps.append((step, total))
        if step == 3:
            raise KeyboardInterrupt

    r = _attack(iterations=50).reconstruct(view, progress=progress, device="cpu")
    assert r.interrupted and r.iterations == 3 and steps == [(1, 50), (2, 50), (3, 50)]
    assert torch.isfinite(r.reconstruction.images).all()


def test_polish_never_loses_the_cma_optimum_and_sign_and_noise_modes_run():
    view, _ = _view()
    base = _attack(iterations=3).reconstruct(view, device="cpu")
    polished = _attack(iterations=3, polish=3).reconstruct(view, device="cpu")
    assert min(polished.reconstruction.candidate_losses) <= min(base.reconstruction.candidate_losses) + 1e-6
    view_s, _ = _view(defense=("signsgd", {}))
    r = _attack(iterations=2, adaptive="auto").reconstruct(view_s, device="cpu")
    assert any(n.startswith("adaptive auto: every update tensor") for n in r.notes)
    view_n, _ = _view(defense=("gaussian-noise", {"sigma": 1e-2}))
    runs = [_attack(iterations=2, adaptive="noise", noise_sigma=1e-2).reconstruct(view_n) for _ in range(2)]
    assert runs[0].loss_history == runs[1].loss_history  # the noise draws are seeded
    assert any("N(0, 0.01^2) added" in n for n in runs[0].notes)


def test_kl_regulariser_is_zero_at_the_prior_moments():
    assert float(latent_kl(torch.tensor([[1.0, -1.0], [2.0, -2.0]]))) == pytest.approx(
        0.5 * (4 - 1 - torch.log(torch.tensor(4.0)).item())
    )


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"population": 1}, "population"),
        ({"sigma0": 0.0}, "sigma0"),
        ({"adaptive": "magic"}, "adaptive"),
        ({"adaptive": "noise"}, "noise_sigma"),
        ({"keep": 0}, "keep"),
        ({"kl_weight": -1.0}, "kl_weight"),
    ],
)
def test_config_errors_name_the_option(params, key):
    with pytest.raises(ConfigError, match=key):
        GGLConfig(generator=tiny_generator_file(), **params)
