"""Robbing the Fed, trap weights and fishing against oracles: the true images, naive binning of the
true measurements, per-sample autograd gradients, numpy / scikit-image references; real photos."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage.metrics import peak_signal_noise_ratio
from torch import nn

from gradinv.attacks import create_attack
from gradinv.attacks._imprint import count_exact, measurement_vector, quantile_edges
from gradinv.attacks.fishing import _features
from gradinv.attacks.trap_weights import calibrated_scales, first_linear, trap_rows
from gradinv.config import parse_config
from gradinv.data import ImageDataset
from gradinv.errors import AttackRefused
from gradinv.experiment import run_experiment
from gradinv.fl import run_round
from gradinv.models import build_model, find_classifier
from gradinv.models.imprint import find_imprint
from gradinv.threat import observe, observe_server
from gradinv.types import GroundTruth, TrainingConfig
from tests.helpers import photo_batch

FEDSGD = TrainingConfig()


def crafted_round(attack, model, batches, training=FEDSGD, threat="F", surrogate=None):
    """Craft, run the round on the crafted models, observe: the experiment pipeline without configs."""
    knowledge = observe_server(
        model, threat, batches=tuple(batches), training=training, num_classes=10, surrogate=surrogate
    )
    models = attack.craft(knowledge)
    rnd = run_round(list(models), batches, training)
    truth = GroundTruth(
        model, tuple(batches), training, rnd, num_classes=10, client_models=tuple(models), surrogate=surrogate
    )
    return truth, observe(truth, threat)


def _body(size: int = 32) -> nn.Module:
    """A small model behind the imprint block (its architecture does not matter to the attack)."""
    return build_model("mlp", num_classes=10, image_size=size, hidden=(32,), seed=0)


def _bins_of(values: torch.Tensor, interior: list[float]) -> list[int]:
    """Naive binning: the number of cut-offs below each value."""
    return [sum(1 for c in interior if float(v) > c) for v in values]


def _singletons(bins: list[int]) -> set[int]:
    return {i for i, b in enumerate(bins) if bins.count(b) == 1}


# --------------------------------------------------------------------------------------------------
# Robbing the Fed
# --------------------------------------------------------------------------------------------------


def test_rtf_recovers_one_photo_exactly(photos):
    batch = photo_batch(photos, [2])
    attack = create_attack("robbing-the-fed", bins=64)
    _, view = crafted_round(attack, build_model("lenet", num_classes=10, seed=0), [batch])
    rec = attack.reconstruct(view, device="cpu").reconstruction.images
    assert count_exact(rec, batch.images).count == 1
    assert float((rec - batch.images).abs().max()) < 1e-4


def test_rtf_exact_images_are_the_samples_alone_in_their_bin(photos):
    """Oracle: naive binning of the true brightness with the crafted cut-offs. Exactly the samples
    alone in a bin come back exactly; shared bins give mixtures, not images."""
    batch = photo_batch(photos, list(range(8)))
    attack = create_attack("robbing-the-fed", bins=10, measurements=["brightness"])
    _truth, view = crafted_round(attack, build_model("lenet", num_classes=10, seed=0), [batch])
    layout = find_imprint(view.model)[1].layout
    interior = list(layout.edges[0][1:-1])
    brightness = batch.images.double().mean(dim=(1, 2, 3))
    alone = _singletons(_bins_of(brightness, interior))
    assert 0 < len(alone) < 8  # both cases occur on these photos
    result = attack.reconstruct(view, device="cpu")
    exact = count_exact(result.reconstruction.images, batch.images)
    assert exact.count == len(alone)
    assert {i for i in range(8) if exact.psnr[i] >= 60} == alone
    assert any("non-empty bins" in n for n in result.notes)


def test_rtf_bin_differences_are_per_sample_gradient_sums(photos):
    """Oracle: per-sample autograd. Consecutive row differences of the imprint layer's gradient equal
    the summed gradients of the samples whose brightness falls between the two cut-offs."""
    batch = photo_batch(photos, [0, 1, 2, 3, 4], size=16)
    attack = create_attack("robbing-the-fed", bins=6, measurements=["brightness"])
    truth, view = crafted_round(attack, build_model("lenet", num_classes=10, image_size=16, seed=0), [batch])
    crafted = truth.client_models[0]
    gw = view.update.params["imprint.linear0.weight"].double()
    diffs = gw.clone()
    diffs[:-1] -= gw[1:]
    interior = list(find_imprint(crafted)[1].layout.edges[0][1:-1])
    bins = _bins_of(batch.images.double().mean(dim=(1, 2, 3)), interior)
    expected = torch.zeros_like(diffs)
    for n in range(batch.size):
        m = copy.deepcopy(crafted)
        loss = F.cross_entropy(m(batch.images[n : n + 1]), batch.labels[n : n + 1]) / batch.size
        expected[bins[n]] += torch.autograd.grad(loss, m.imprint.linear0.weight)[0][bins[n]].double()
    scale = float(expected.abs().max())
    assert scale > 0 and len(set(bins)) >= 3
    torch.testing.assert_close(diffs, expected, rtol=1e-4, atol=1e-4 * scale)


def test_rtf_sparse_bins_survive_fedavg(photos):
    """Two-sided bins under FedAvg with several local steps and momentum: every sample alone in its
    bin (naive binning) is still recovered exactly from the weight delta."""
    batch = photo_batch(photos, list(range(8)))
    training = TrainingConfig("fedavg", epochs=2, batch_size=2, lr=0.05, momentum=0.9)
    attack = create_attack("robbing-the-fed", bins=24)
    _truth, view = crafted_round(attack, _body(), [batch], training)
    layout = find_imprint(view.model)[1].layout
    assert layout.structure == "sparse" and view.update.kind.value == "delta"
    alone = _singletons(_bins_of(batch.images.double().mean(dim=(1, 2, 3)), list(layout.edges[0][1:-1])))
    exact = count_exact(attack.reconstruct(view, device="cpu").reconstruction.images, batch.images)
    assert len(alone) >= 4 and {i for i in range(8) if exact.psnr[i] >= 60} >= alone


def test_rtf_two_measurements_separate_shared_bins(photos):
    """With the same number of rows, splitting the bins between brightness and left-half brightness
    recovers every sample that is alone in a bin of either measurement (naive oracle), and more than
    brightness alone on these photos."""
    batch = photo_batch(photos, list(range(8)))
    model = _body()
    single = create_attack("robbing-the-fed", bins=10, measurements=["brightness"])
    _, view = crafted_round(single, model, [batch])
    one = count_exact(single.reconstruct(view, device="cpu").reconstruction.images, batch.images).count
    double = create_attack("robbing-the-fed", bins=10, measurements=["brightness", "left"])
    _, view = crafted_round(double, model, [batch])
    layout = find_imprint(view.model)[1].layout
    alone: set[int] = set()
    for g, name in enumerate(layout.names):
        values = batch.images.double().flatten(1) @ measurement_vector(name, (3, 32, 32)).reshape(-1)
        alone |= _singletons(_bins_of(values, list(layout.edges[g][1:-1])))
    two = count_exact(double.reconstruct(view, device="cpu").reconstruction.images, batch.images).count
    assert two >= len(alone) and two > one


def test_quantile_cutoffs_match_numpy_quantiles():
    values = torch.from_numpy(np.random.default_rng(0).normal(0.4, 0.1, 1000))
    got = np.array(quantile_edges(values, 10))
    ref = np.quantile(values.numpy(), np.arange(1, 10) / 10)
    assert np.abs(got - ref).max() < 0.015


def test_count_exact_psnr_matches_scikit_image(photos):
    truth = photo_batch(photos, [0, 1, 2]).images
    noisy = (truth + 0.02 * torch.randn_like(truth)).clamp(0, 1)
    rec = torch.cat([noisy[[2, 0]], truth[1:2] + 1e-5])
    ec = count_exact(rec, truth)
    for i in (0, 2):
        ref = peak_signal_noise_ratio(truth[i].double().numpy(), noisy[i].double().numpy(), data_range=1.0)
        assert ec.psnr[i] == pytest.approx(ref, rel=1e-9)
    assert ec.count == 1 and ec.max_error[1] < 1e-4


def test_rtf_refusals_name_the_missing_knowledge(photos):
    batch = photo_batch(photos, [0])
    model = build_model("lenet", num_classes=10, seed=0)
    with pytest.raises(AttackRefused, match="surrogate data"):
        crafted_round(create_attack("robbing-the-fed", cutoffs="surrogate"), model, [batch], threat="F")
    with pytest.raises(AttackRefused, match="active manipulation"):
        crafted_round(create_attack("robbing-the-fed"), model, [batch], threat="E")


@pytest.mark.shared_data
def test_rtf_acceptance_on_cifar10(shared):
    """Paper 003, Table IV: 1000 bins, FedSGD, CIFAR-10: >= 60/64 exact at B = 64 and 64/64 at B = 1
    (here: one image of the batch of one)."""
    source = f"npz:{shared / 'data' / 'cifar10_train_png_200.npz'}"
    for indices, need in ((list(range(64)), 60), ([7], 1)):
        cfg = parse_config(
            {
                "data": {"source": source, "indices": indices, "image_size": 32},
                "model": {"name": "mlp", "hidden": [32]},
                "threat": {"model": "F"},
                "attack": {"name": "robbing-the-fed", "bins": 1000},
                "metrics": {"lpips": "off", "stlpips": "off"},
            }
        )
        r = run_experiment(cfg, device="cpu")
        assert count_exact(r.result.reconstruction.images, r.truth.images).count >= need


# --------------------------------------------------------------------------------------------------
# Trap weights
# --------------------------------------------------------------------------------------------------


def test_trap_rows_are_half_negative_with_a_scaled_positive_half():
    gen = torch.Generator().manual_seed(1)
    magnitudes = torch.rand(16, 300, generator=gen) - 0.5
    rows = trap_rows(magnitudes, generator=torch.Generator().manual_seed(0), scale=0.9)
    assert ((rows < 0).sum(dim=1) == 150).all()
    pos = rows > 0
    torch.testing.assert_close(rows[pos], 0.9 * magnitudes.abs().double()[pos])
    torch.testing.assert_close(rows[~pos], -magnitudes.abs().double()[~pos])


def test_calibrated_scales_reach_the_target_rate(photos):
    images = torch.tensor(photos, dtype=torch.float64).permute(0, 3, 1, 2).flatten(1) / 255
    rows = trap_rows(torch.rand(32, images.shape[1]), generator=torch.Generator().manual_seed(0))
    scales = calibrated_scales(rows, images, 0.25)
    fired = [
        sum(float((torch.where(r > 0, r * s, r) * x).sum()) > 0 for x in images) for r, s in zip(rows, scales)
    ]  # naive loop over rows and images
    assert all(f in (1, 2, 3) for f in fired) and abs(np.mean(fired) - 2) <= 0.5


def test_trap_weights_recover_the_samples_owning_a_neuron(photos):
    """Oracle: the crafted layer's pre-activations on the true batch. Every sample that alone fires some
    neuron is recovered exactly (and nothing else claims to be exact)."""
    batch = photo_batch(photos, [0, 1, 2, 3, 4, 5])
    model = build_model("mlp", num_classes=10, hidden=(512,), seed=0)
    attack = create_attack("trap-weights")
    truth, view = crafted_round(attack, model, [batch])
    _, layer = first_linear(truth.client_models[0])
    fired = layer(batch.model_input().flatten(1)) > 0  # (B, rows)
    single = fired.sum(dim=0) == 1
    owners = {int(torch.nonzero(fired[:, i]).flatten()[0]) for i in torch.nonzero(single).flatten().tolist()}
    assert 2 <= len(owners) <= 6
    result = attack.reconstruct(view, device="cpu")
    exact = count_exact(result.reconstruction.images, batch.images)
    assert {i for i in range(6) if exact.psnr[i] >= 60} >= owners
    assert result.reconstruction.images.shape == batch.images.shape


def test_trap_weights_refuse_models_starting_with_a_convolution(photos):
    with pytest.raises(AttackRefused, match="first layer is a fully connected"):
        crafted_round(
            create_attack("trap-weights"), build_model("lenet", num_classes=10), [photo_batch(photos, [0])]
        )


# --------------------------------------------------------------------------------------------------
# Fishing
# --------------------------------------------------------------------------------------------------


def _body_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor, scale: float) -> dict[str, torch.Tensor]:
    classifier = set(find_classifier(model))
    loss = F.cross_entropy(model(x), y) * scale
    names = [n for n, _ in model.named_parameters() if n not in classifier]
    grads = torch.autograd.grad(loss, [dict(model.named_parameters())[n] for n in names], allow_unused=True)
    return {
        n: (g if g is not None else torch.zeros_like(dict(model.named_parameters())[n]))
        for n, g in zip(names, grads)
    }


def test_class_fishing_isolates_the_target_class_gradient(photos):
    """Oracle: per-sample autograd. The batch gradient of every layer before the classifier is the target
    sample's own gradient divided by the batch size; the class count comes from the bias gradient."""
    batch = photo_batch(photos, [0, 1, 2, 3], labels=[5, 2, 7, 9], size=16)
    attack = create_attack("fishing", target_class=2)
    truth, view = crafted_round(attack, build_model("lenet", num_classes=10, image_size=16, seed=0), [batch])
    crafted = copy.deepcopy(truth.client_models[0])
    expected = _body_grads(crafted, batch.model_input()[1:2], batch.labels[1:2], 1 / 4)
    for name, g in expected.items():
        torch.testing.assert_close(view.update.params[name], g, rtol=1e-5, atol=1e-8)
    assert attack._count(view, view.model._fishing_plan, view.update.params["fc.bias"]) == 1


def _surrogate(photos: np.ndarray, label: int) -> ImageDataset:
    """Flipped and rotated copies of the photos, all labelled ``label`` (the server's own images)."""
    imgs = np.concatenate([photos[:, ::-1], photos[:, :, ::-1], np.rot90(photos, 1, axes=(1, 2))])
    return ImageDataset(np.ascontiguousarray(imgs), np.full(len(imgs), label), (), "surrogate")


def test_feature_fishing_keeps_only_open_gates_of_the_target_class(photos):
    """Oracle: per-sample autograd. The batch gradient is the sum over the target-class samples whose
    gated feature is open (read off the crafted model), and some target-class samples are shut out."""
    labels = [3, 3, 3, 3, 1, 8]
    batch = photo_batch(photos, [0, 1, 2, 3, 4, 5], labels=labels)
    attack = create_attack("fishing", mode="feature", target_class=3, quantile=0.5)
    model = build_model("mlp", num_classes=10, hidden=(64,), seed=0)
    truth, view = crafted_round(attack, model, [batch], threat="G", surrogate=_surrogate(photos, 3))
    crafted = copy.deepcopy(truth.client_models[0]).eval()
    plan = crafted._fishing_plan
    with torch.no_grad():
        feature = _features(crafted, batch.model_input())[:, plan.feature]
    open_ = [i for i in range(6) if labels[i] == 3 and float(feature[i]) > 0]
    assert 1 <= len(open_) < 4
    expected = None
    for i in open_:
        g = _body_grads(crafted, batch.model_input()[i : i + 1], batch.labels[i : i + 1], 1 / 6)
        expected = g if expected is None else {k: expected[k] + g[k] for k in g}
    for name, g in expected.items():
        torch.testing.assert_close(view.update.params[name], g, rtol=1e-5, atol=1e-8)


def test_fishing_a_batch_is_the_single_image_problem(photos):
    """The isolated gradient of a batch of four is a quarter of the target's own: Inverting Gradients
    (same seed and budget) follows the same path, so both reconstructions agree."""
    model = build_model("mlp", num_classes=10, image_size=16, hidden=(32,), seed=0)
    outs = []
    for idx, labels in (([0, 1, 2, 3], [5, 2, 7, 9]), ([1], [2])):
        batch = photo_batch(photos, idx, labels=labels, size=16)
        attack = create_attack("fishing", target_class=2, iterations=40)
        _, view = crafted_round(attack, model, [batch])
        outs.append(attack.reconstruct(view, device="cpu").reconstruction)
    assert outs[0].labels.tolist() == [2] and outs[0].images.shape == (1, 3, 16, 16)
    assert float((outs[0].images - outs[1].images).abs().max()) < 1e-3
    target = photo_batch(photos, [1], size=16).images
    assert abs(float(F.mse_loss(outs[0].images, target)) - float(F.mse_loss(outs[1].images, target))) < 1e-4


def test_fishing_reports_an_absent_target_class_and_refuses_feature_mode_on_sigmoids(photos):
    batch = photo_batch(photos, [0, 1], labels=[1, 4], size=16)
    model = build_model("lenet", num_classes=10, image_size=16, seed=0)
    attack = create_attack("fishing", target_class=6, iterations=5)
    _, view = crafted_round(attack, model, [batch])
    result = attack.reconstruct(view, device="cpu")
    assert result.iterations == 0 and any("no sample isolated" in n for n in result.notes)
    feature = create_attack("fishing", mode="feature", target_class=1)
    with pytest.raises(AttackRefused, match="ReLU"):
        crafted_round(feature, model, [batch], threat="G", surrogate=_surrogate(photos, 1))
    with pytest.raises(AttackRefused, match="surrogate data"):
        crafted_round(feature, model, [batch], threat="F")


def test_fishing_counts_several_target_samples_and_inverts_them_together(photos):
    batch = photo_batch(photos, [0, 1, 2], labels=[4, 4, 0], size=16)
    attack = create_attack("fishing", target_class=4, iterations=2)
    model = build_model("mlp", num_classes=10, image_size=16, hidden=(32,), seed=0)
    _, view = crafted_round(attack, model, [batch])
    result = attack.reconstruct(view, device="cpu")
    assert result.reconstruction.images.shape[0] == 2 and result.reconstruction.labels.tolist() == [4, 4]
    assert math.isfinite(float(result.reconstruction.images.sum()))
