"""GRNN (generator-parameter attack) and Learning to Invert (trained inversion network): oracle-style
checks on small seeded models and real images (scikit-image photos, scikit-learn digits)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradinv.attacks import create_attack
from gradinv.attacks.lti import count_sketch, infer_defense
from gradinv.data import load_digits_dataset, load_samples
from gradinv.defenses import create_defense
from gradinv.errors import AttackRefused, ConfigError
from gradinv.fl import run_round
from gradinv.fl.hooks import DefenseChain
from gradinv.metrics import psnr
from gradinv.models import build_model
from gradinv.threat import observe
from gradinv.types import GroundTruth, TrainingConfig


def _photo_truth(size: int = 16, model: str = "lenet") -> tuple[GroundTruth, object]:
    ds = load_samples()
    batch = ds.to_batch([3], image_size=size)
    m = build_model(model, num_classes=ds.num_classes, image_size=size, seed=0)
    tr = TrainingConfig()
    return GroundTruth(m, (batch,), tr, run_round(m, [batch], tr), num_classes=ds.num_classes), batch


# -- GRNN ------------------------------------------------------------------------------------------


def test_grnn_recovers_a_real_photo_on_dlgs_sigmoid_lenet():
    truth, batch = _photo_truth()
    view = observe(truth, "B")
    start = create_attack("grnn", iterations=1).reconstruct(view, device="cpu")  # the random generator
    result = create_attack("grnn", iterations=150).reconstruct(view, device="cpu")
    p0 = float(psnr(start.reconstruction.images, batch.images).mean())
    p = float(psnr(result.reconstruction.images, batch.images).mean())
    assert p > p0 + 6 and p > 18, (p0, p)
    assert result.reconstruction.labels.tolist() == batch.labels.tolist()  # the label branch
    assert result.reconstruction.label_method.startswith("generated")
    assert result.loss_history[-1] < result.loss_history[0] / 10
    assert any("random init" in n for n in result.notes)


def test_grnn_restarts_are_batched_candidates_and_the_best_is_returned():
    truth, _ = _photo_truth(size=8)
    view = observe(truth, "B")
    r = create_attack("grnn", iterations=5, restarts=3, width=4, noise_dim=8).reconstruct(view, device="cpu")
    rec = r.reconstruction
    assert rec.candidates.shape == (3, 1, 3, 8, 8)
    assert len(set(rec.candidate_losses)) == 3  # three different generators
    assert r.best_candidate == int(np.argmin(rec.candidate_losses))
    assert torch.equal(rec.images, rec.candidates[r.best_candidate])


def test_grnn_with_recovered_labels_and_ctrl_c_keeps_the_best_generator():
    truth, batch = _photo_truth(size=8)
    view = observe(truth, "B")

    def interrupt(step: int, total: int, loss: float) -> None:
        if step == 3:
            raise KeyboardInterrupt

    r = create_attack("grnn", iterations=50, labels="auto", width=4, noise_dim=8).reconstruct(
        view, progress=interrupt, device="cpu"
    )
    assert r.interrupted and r.iterations == 3
    assert torch.isfinite(r.reconstruction.images).all()
    assert r.reconstruction.labels.tolist() == batch.labels.tolist()  # iDLG-style recovery, B = 1


def test_grnn_needs_basic_knowledge_only():
    truth, _ = _photo_truth(size=8)
    attack = create_attack("grnn", iterations=1)
    assert attack.check(observe(truth, "B")) == []  # no surrogate data needed
    with pytest.raises(AttackRefused, match="basic knowledge"):
        attack.reconstruct(observe(truth, "A"), device="cpu")
    with pytest.raises(ConfigError, match="wd"):
        create_attack("grnn", wd=-1.0)
    with pytest.raises(ConfigError, match="labels"):
        create_attack("grnn", labels="nope")


# -- Learning to Invert ----------------------------------------------------------------------------


def _digits_truths(targets: list[int], *, defense: str | None, n: int = 1, surrogate: int = 800):
    ds = load_digits_dataset()
    rest = ds.exclude(targets)
    sur = rest.subset(np.arange(surrogate))
    m = build_model("lenet", num_classes=10, in_channels=1, image_size=8, seed=0)
    tr = TrainingConfig()
    hooks = DefenseChain.of([create_defense(defense)]) if defense else None
    out = []
    for s in range(0, len(targets), n):
        batch = ds.to_batch(targets[s : s + n], image_size=8, channels=1)
        rnd = run_round(m, [batch], tr, hooks=hooks)
        out.append((GroundTruth(m, (batch,), tr, rnd, num_classes=10, surrogate=sur), batch))
    return out, sur


_LTI_FAST = {"surrogate_samples": 800, "epochs": 30, "hidden": 256, "features": 1024, "lr": 1e-3}


def test_lti_beats_the_mean_image_under_signsgd():
    truths, sur = _digits_truths([0, 1, 2], defense="signsgd")
    mean_image = sur.to_batch(image_size=8, channels=1).images.mean(0, keepdim=True)
    lti_mse, mean_mse = [], []
    for truth, batch in truths:
        view = observe(truth, "D")
        r = create_attack("lti", **_LTI_FAST).reconstruct(view, device="cpu")
        assert any("signsgd" in n and "inferred" in n for n in r.notes)
        assert any("count-sketch" in n for n in r.notes)  # 8026 update entries -> 1024 features
        lti_mse.append(float((r.reconstruction.images - batch.images).pow(2).mean()))
        mean_mse.append(float((mean_image - batch.images).pow(2).mean()))
    assert np.mean(lti_mse) < 0.5 * np.mean(mean_mse), (lti_mse, mean_mse)


def test_lti_predicts_n_images_for_a_batch_and_ctrl_c_keeps_the_network():
    ((truth, _),), _ = _digits_truths([5, 6], defense=None, n=2, surrogate=200)
    view = observe(truth, "D")
    calls = []

    def interrupt(step: int, total: int, loss: float) -> None:
        calls.append(step)
        if step == 2:
            raise KeyboardInterrupt

    r = create_attack("lti", surrogate_samples=200, epochs=20, hidden=32, features=256).reconstruct(
        view, progress=interrupt, device="cpu"
    )
    assert r.interrupted and calls == [1, 2] and r.iterations == 2
    assert r.reconstruction.images.shape == (2, 1, 8, 8)
    assert torch.isfinite(r.reconstruction.images).all()
    assert any("none, inferred" in n for n in r.notes)


def test_lti_is_refused_without_surrogate_data():
    ((truth, _),), _ = _digits_truths([7], defense=None, surrogate=50)
    attack = create_attack("lti", epochs=1)
    with pytest.raises(AttackRefused, match="surrogate"):
        attack.reconstruct(observe(truth, "C"), device="cpu")
    assert attack.check(observe(truth, "D")) == []


def test_infer_defense_reads_sign_and_sparsity_off_the_update():
    g = torch.Generator().manual_seed(0)
    raw = {"w": torch.randn(30, generator=g), "b": torch.randn(5, generator=g)}
    sign = {k: torch.where(v >= 0, 1.0, -1.0) * 0.3 for k, v in raw.items()}
    assert infer_defense(sign)[:2] == ("signsgd", {"scale": "mean"})
    assert infer_defense({k: v.sign() for k, v in sign.items()})[:2] == ("signsgd", {"scale": "none"})
    sparse = {"w": torch.zeros(30), "b": raw["b"]}
    name, opts, _ = infer_defense(sparse)
    assert name == "topk" and opts["ratio"] == pytest.approx(5 / 35)
    assert infer_defense(raw)[0] is None


def test_count_sketch_is_a_fixed_linear_map():
    v, w = torch.randn(2, 500), torch.randn(2, 500)
    sk = count_sketch(500, 64, seed=3)
    assert sk(v).shape == (2, 64)
    assert torch.allclose(sk(v + w), sk(v) + sk(w), atol=1e-5)
    assert torch.equal(count_sketch(500, 64, seed=3)(v), sk(v))
    assert torch.equal(count_sketch(50, 64, seed=3)(v[:, :50]), v[:, :50])  # no compression needed


def test_lti_config_is_validated():
    with pytest.raises(ConfigError, match="defense"):
        create_attack("lti", defense="signsdg")
    with pytest.raises(ConfigError, match="defense_options"):
        create_attack("lti", defense="auto", defense_options={"ratio": 0.1})
    with pytest.raises(ConfigError, match="holdout"):
        create_attack("lti", holdout=1.0)
    with pytest.raises(ConfigError, match="ratio"):
        create_attack("lti", defense="topk", defense_options={"ratio": 2.0})
    assert create_attack("lti", defense="topk", defense_options={"ratio": 0.01}).config.defense == "topk"
