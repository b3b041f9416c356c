"""The one attack-and-score stage: the same numbers as the steps composed by hand, the target chosen by
``Attack.target``, refusals before any work, and metrics switched on failing before the attack."""

from __future__ import annotations

import pytest

from gradinv.attacks import create_attack
from gradinv.attacks.base import Attack
from gradinv.data import load_samples
from gradinv.errors import AttackRefused, MetricUnavailable
from gradinv.fl import run_round
from gradinv.metrics import MetricsConfig
from gradinv.metrics.evaluate import evaluate
from gradinv.models import build_model
from gradinv.pipeline import attack_and_score, check_attack, scoring_target
from gradinv.threat import observe
from gradinv.types import GroundTruth, TrainingConfig


@pytest.fixture(scope="module")
def truth() -> GroundTruth:
    batch = load_samples().to_batch([1, 2], image_size=16)
    model = build_model("lenet", num_classes=10, in_channels=3, image_size=16, seed=0)
    tr = TrainingConfig("fedsgd")
    return GroundTruth(model, (batch,), tr, run_round(model, [batch], tr), num_classes=10)


def test_the_stage_equals_the_steps_composed_by_hand(truth):
    options = MetricsConfig(lpips="off", stlpips="off")
    params = {"iterations": 3, "seed": 1, "labels": "yin"}
    scored = attack_and_score(truth, create_attack("idlg", **params), "B", options)
    by_hand = create_attack("idlg", **params).reconstruct(observe(truth, "B"), device="cpu")
    ev = evaluate(by_hand.reconstruction, truth.batch, options)
    assert scored.evaluation.metrics["psnr"].per_image == ev.metrics["psnr"].per_image
    assert scored.result.iterations == by_hand.iterations and scored.threat.id == "B"
    assert scored.target.indices == truth.batch.indices and not scored.interrupted


def test_a_refusal_names_the_missing_knowledge_and_runs_nothing(truth, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("the attack must not run")

    monkeypatch.setattr(Attack, "reconstruct", boom)
    checked = check_attack(truth, create_attack("inverting-gradients"), "A")
    assert not checked.ok and "basic knowledge" in " ".join(checked.problems)
    with pytest.raises(AttackRefused, match="basic knowledge"):
        attack_and_score(truth, create_attack("inverting-gradients"), "A")


def test_lpips_switched_on_without_weights_fails_before_the_attack(truth, monkeypatch, tmp_path):
    def boom(*a, **k):
        raise AssertionError("the attack must not run")

    monkeypatch.setattr(Attack, "reconstruct", boom)
    options = MetricsConfig(lpips="on", lpips_weights=str(tmp_path / "missing.pth"))
    with pytest.raises(MetricUnavailable, match=r"missing\.pth"):
        attack_and_score(truth, create_attack("idlg"), "B", options)


def test_the_target_follows_attack_target():
    """Under secure aggregation the server sees the sum of every client: a passive attack is scored
    on all their samples, an attack that isolates the victim (``target = "victim"``) on the victim's."""
    photos = load_samples()
    batches = [photos.to_batch([k], image_size=16) for k in range(3)]
    model = build_model("mlp", num_classes=10, in_channels=3, image_size=16, hidden=(8,), seed=0)
    tr = TrainingConfig("fedsgd")
    rnd = run_round(model, batches, tr, aggregator="secure")
    truth = GroundTruth(model, tuple(batches), tr, rnd, num_classes=10, victim=1)
    assert scoring_target(truth, create_attack("inconsistent-models")).indices == batches[1].indices
    assert scoring_target(truth, create_attack("idlg")).size == 3
