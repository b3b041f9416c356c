"""Label recovery against oracles: closed-form gradients, hand-simulated selections, the true label
multiset of real images with duplicate labels, and FedAvg updates from the client simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from gradinv.attacks.labels import (
    LABEL_METHODS,
    ClassifierGradient,
    ClassifierStatistics,
    auto_label_method,
    classifier_gradient,
    counts_to_labels,
    geng_counts,
    geng_fedavg_counts,
    ilrg_counts,
    ilrg_refined_counts,
    llg_greedy,
    llg_labels,
    llg_plus_labels,
    resolve_labels,
    round_counts,
)
from gradinv.attacks.optimization import target_gradient
from gradinv.errors import AttackRefused, DataError
from gradinv.fl.client import sgd_step
from gradinv.metrics import label_accuracy
from gradinv.models import build_model
from gradinv.types import Batch, Normalization, TrainingConfig, UpdateKind
from tests.helpers import photo_batch, simulate_view

COUNT_AWARE = ("llg", "llg-star", "llg-plus", "ilrg", "ilrg-refined", "geng")


def _multiset(x: torch.Tensor) -> list[int]:
    return sorted(int(v) for v in x)


def _analytic_gradient(feats: torch.Tensor, labels: torch.Tensor, w: torch.Tensor, b: torch.Tensor):
    """The classifier gradient of the mean cross-entropy, from its closed form (p - y) a^T / n."""
    p = torch.softmax(feats @ w.T + b, dim=-1)
    y = torch.nn.functional.one_hot(labels, w.shape[0]).double()
    return (p - y).T @ feats / len(labels), (p - y).mean(dim=0)


# --------------------------------------------------------------------------------------------------
# Counts, rounding and the LLG selection
# --------------------------------------------------------------------------------------------------


def test_round_counts_sums_to_n_and_is_nearest():
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        c, n = int(torch.randint(2, 12, (1,), generator=g)), int(torch.randint(1, 40, (1,), generator=g))
        true = torch.multinomial(torch.ones(c), n, replacement=True, generator=g)
        counts = torch.bincount(true, minlength=c).double()
        noisy = counts + 0.45 * (2 * torch.rand(c, generator=g, dtype=torch.float64) - 1)
        k = round_counts(noisy, n)
        assert int(k.sum()) == n and (k >= 0).all()
        assert torch.equal(k, counts.long())  # within +-0.45 of integers summing to n: exact
        wild = 3 * torch.randn(c, generator=g, dtype=torch.float64)
        assert int(round_counts(wild, n).sum()) == n and (round_counts(wild, n) >= 0).all()
    assert counts_to_labels(torch.tensor([0, 3, 1])).tolist() == [1, 1, 1, 2]
    with pytest.raises(DataError, match="non-negative"):
        counts_to_labels(torch.tensor([1, -1]))
    with pytest.raises(DataError, match="finite"):
        round_counts(torch.tensor([math.nan]), 1)


def _naive_llg(g: list[float], n: int, m: float, s: list[float]) -> list[int]:
    """Wainakh et al.'s Algorithm 1 written out with Python lists."""
    g = list(g)
    out = []
    neg = sorted((v, i) for i, v in enumerate(g) if v < 0)[:n]
    for _, i in neg:
        out.append(i)
        g[i] -= m
    g = [v - o for v, o in zip(g, s)]
    while len(out) < n:
        i = min(range(len(g)), key=lambda j: (g[j], j))
        out.append(i)
        g[i] -= m
    return sorted(out)


def test_llg_greedy_matches_naive_loop():
    g = torch.Generator().manual_seed(1)
    for _ in range(50):
        c, n = 10, int(torch.randint(1, 30, (1,), generator=g))
        rows = torch.randn(c, generator=g, dtype=torch.float64)
        off = torch.rand(c, generator=g, dtype=torch.float64) * 0.3
        m = -float(torch.rand(1, generator=g)) - 0.05
        got = llg_greedy(rows, n, impact=m, offset=off).tolist()
        assert got == _naive_llg(rows.tolist(), n, m, off.tolist())
    with pytest.raises(AttackRefused, match="negative per-sample impact"):
        llg_greedy(torch.tensor([1.0, 2.0]), 2, impact=0.5)


def test_llg_and_llg_plus_on_the_average_sample_model():
    # every sample has feature sum S and uniform softmax: g_c = S (1/C - k_c/n), Wainakh et al.'s model
    c, s = 10, 3.0
    stats = ClassifierStatistics(torch.full((4, 1), s, dtype=torch.float64), torch.full((4, c), 1 / c))
    for counts, llg_exact in (
        ([3, 0, 2, 0, 1, 0, 0, 2, 0, 0], True),
        ([1, 1, 0, 0, 4, 0, 0, 0, 0, 2], False),
    ):
        k = torch.tensor(counts, dtype=torch.float64)
        n = int(k.sum())
        cg = ClassifierGradient((s * (1 / c - k / n))[:, None].float(), None)
        truth = counts_to_labels(k.long()).tolist()
        # LLG+ measures the true impact (1/C - 1) S / n and offset S / C on the dummy statistics
        assert llg_plus_labels(cg, n, stats).tolist() == truth
        # LLG's impact from the gradient, (1 + 1/C) sum_{g<0} g / n, underestimates it by the factor
        # (1 - P/C)(1 + 1/C) with P present classes: exact in the first case, one label off in the second
        assert (llg_labels(cg, n).tolist() == truth) is llg_exact
        assert label_accuracy(llg_labels(cg, n), counts_to_labels(k.long())).value >= 7 / 8


# --------------------------------------------------------------------------------------------------
# iLRG: exact under its conditions (closed form) and on autograd gradients
# --------------------------------------------------------------------------------------------------


def test_ilrg_exact_when_all_samples_share_features():
    # shared features: dW_c / db_c is exactly the feature vector and every softmax output is equal,
    # so the linear system is exact for any n and duplicate pattern, even n >> classes
    g = torch.Generator().manual_seed(2)
    c, f = 10, 16
    w = 0.3 * torch.randn(c, f, generator=g, dtype=torch.float64)
    b = 0.1 * torch.randn(c, generator=g, dtype=torch.float64)
    a = torch.rand(f, generator=g, dtype=torch.float64)
    for counts in ([5, 0, 0, 12, 1, 0, 3, 0, 9, 2], [1, 0, 0, 0, 0, 0, 0, 0, 0, 0], [4] * 10):
        labels = counts_to_labels(torch.tensor(counts))
        gw, gb = _analytic_gradient(a.expand(len(labels), f), labels, w, b)
        kf = ilrg_counts(gw, gb, w, b, len(labels))
        torch.testing.assert_close(kf, torch.tensor(counts, dtype=torch.float64), atol=1e-8, rtol=0)
        assert ilrg_refined_counts(gw, gb, w, b, len(labels)).tolist() == counts


def test_ilrg_refined_recovers_when_ilrg_sees_no_absent_class():
    # 6 classes, 12 samples with class-specific features: n p_c ~ k_c, so iLRG's class features are
    # contaminated and it misses the absent class; the refinement (trying absent classes) is exact
    counts = torch.tensor([3, 3, 2, 2, 2, 0])
    labels = counts_to_labels(counts)
    for seed in (3, 4, 15, 20):
        g = torch.Generator().manual_seed(seed)
        w = 0.3 * torch.randn(6, 12, generator=g, dtype=torch.float64)
        b = torch.zeros(6, dtype=torch.float64)
        centers = torch.rand(6, 12, generator=g, dtype=torch.float64)
        feats = centers[labels] + 0.05 * torch.rand(12, 12, generator=g, dtype=torch.float64)
        gw, gb = _analytic_gradient(feats, labels, w, b)
        k0 = round_counts(ilrg_counts(gw, gb, w, b, 12), 12)
        assert (k0 > 0).all() and not torch.equal(k0, counts)
        assert torch.equal(ilrg_refined_counts(gw, gb, w, b, 12), counts)


def test_ilrg_exact_on_real_images_many_classes(photos):
    # the paper's regime: untrained ReLU network, 100 classes (n p_c << k_c), B <= feature dimension
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 256), nn.ReLU(), nn.Linear(256, 100))
    labels = [7, 7, 7, 42, 42, 99, 3, 3]
    batch = photo_batch(photos, list(range(8)), labels)
    x = batch.model_input()
    loss = nn.functional.cross_entropy(net(x), batch.labels)
    grads = dict(
        zip([n for n, _ in net.named_parameters()], torch.autograd.grad(loss, list(net.parameters())))
    )
    cg = classifier_gradient(net, grads)
    w, b = net[3].weight.detach(), net[3].bias.detach()
    k = round_counts(ilrg_counts(cg.weight, cg.bias, w, b, 8), 8)
    assert counts_to_labels(k).tolist() == sorted(labels)
    with pytest.raises(AttackRefused, match="bias"):
        ilrg_counts(cg.weight, None, w, None, 8)


# --------------------------------------------------------------------------------------------------
# Real images with duplicate labels, through the FL simulation and the attacker's view
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def duplicate_batches(photos) -> list[Batch]:
    """B = 8 real photos with duplicate labels (3 + 2 + 2 + 1)."""
    return [
        photo_batch(photos, list(range(8)), [2, 2, 2, 5, 5, 8, 8, 0]),
        photo_batch(photos, list(range(8)), [1, 1, 4, 4, 4, 4, 9, 9]),
    ]


@pytest.mark.parametrize("model_name", ["lenet", "resnet20"])
def test_count_aware_methods_on_real_images_with_duplicates(model_name, duplicate_batches):
    accs: dict[str, list[float]] = {m: [] for m in (*COUNT_AWARE, "auto")}
    for i, batch in enumerate(duplicate_batches):
        model = build_model(model_name, num_classes=10, seed=i)
        _, view = simulate_view(model, [batch])
        grads = target_gradient(view).grads
        for m in accs:
            pred, used = resolve_labels(m, view, grads)
            assert len(pred) == 8 and used == (m if m != "auto" else "ilrg-refined")
            assert torch.equal(pred, torch.sort(pred).values)
            accs[m].append(label_accuracy(pred, batch.labels).value)
    mean = {m: float(np.mean(v)) for m, v in accs.items()}
    assert mean["ilrg-refined"] == 1.0 and mean["auto"] == 1.0, mean
    assert mean["ilrg"] >= 0.875 and mean["geng"] >= 0.875 and mean["llg-plus"] >= 0.875, mean
    assert mean["llg"] >= 0.5, mean  # LLG misses existence when counts exceed n / C (see bench_labels)


@pytest.mark.shared_data
def test_count_aware_methods_on_cifar_duplicates(shared):
    from gradinv.data import load_npz, select_indices

    ds = load_npz(shared / "data" / "cifar10_train_png_200.npz")
    idx = select_indices(ds.labels, num_images=16, seed=3, composition="duplicates", duplicates=2)
    batch = ds.to_batch(idx, image_size=32, normalization="cifar10")
    _, view = simulate_view(build_model("resnet20", num_classes=10, seed=0), [batch])
    grads = target_gradient(view).grads
    pred, _ = resolve_labels("ilrg-refined", view, grads)
    assert _multiset(pred) == _multiset(batch.labels)
    assert label_accuracy(resolve_labels("llg-plus", view, grads)[0], batch.labels).value >= 0.8


# --------------------------------------------------------------------------------------------------
# Geng et al. on FedAvg updates
# --------------------------------------------------------------------------------------------------


def test_geng_fedavg_one_step_equals_fedsgd_formula():
    g = torch.Generator().manual_seed(4)
    rows = torch.randn(10, generator=g, dtype=torch.float64) * 0.01
    start = ClassifierStatistics(torch.rand(6, 5, generator=g, dtype=torch.float64), torch.full((6, 10), 0.1))
    end = ClassifierStatistics(torch.rand(6, 5, generator=g, dtype=torch.float64), torch.full((6, 10), 0.3))
    tr = TrainingConfig(protocol="fedavg", epochs=1, batch_size=8, lr=0.05)
    got = geng_fedavg_counts(-0.05 * rows, 8, tr, start=start, end=end)
    want = geng_counts(rows, 8, mean_probs=start.mean_probs, mean_feature_sum=start.mean_feature_sum)
    torch.testing.assert_close(got, want)


def test_geng_fedavg_recovers_summed_gradients_under_momentum():
    # constant per-step gradient g: SGD with momentum gives delta; the summed gradients U g come back
    c, u, lr, mu = 5, 6, 0.1, 0.9
    g = torch.linspace(-1, 1, c, dtype=torch.float64)
    w = torch.zeros(c, dtype=torch.float64)
    bufs: list[torch.Tensor | None] = [None]
    for _ in range(u):
        sgd_step([w], [g], bufs, lr=lr, momentum=mu)
    stats = ClassifierStatistics(
        torch.ones(2, 1, dtype=torch.float64), torch.full((2, c), 0.2, dtype=torch.float64)
    )
    tr = TrainingConfig(protocol="fedavg", epochs=2, batch_size=2, lr=lr, momentum=mu)  # N = 6: U = 2 * 3
    kf = geng_fedavg_counts(w, 6, tr, start=stats, end=stats)
    # k = N / (E U_e) (sum_s p - G / O) with G = U g, O = 1
    torch.testing.assert_close(kf, (6 / 6) * (u * 0.2 - u * g))


@pytest.mark.parametrize("epochs", [1, 2])
def test_geng_on_fedavg_updates_of_real_images(epochs, duplicate_batches):
    batch = duplicate_batches[0]
    tr = TrainingConfig(protocol="fedavg", epochs=epochs, batch_size=4, lr=0.001)
    _, view = simulate_view(build_model("resnet20", num_classes=10, seed=0), [batch], tr, threat="C")
    assert view.update.kind is UpdateKind.DELTA
    grads = target_gradient(view).grads
    pred, method = resolve_labels("auto", view, grads)
    assert method == "geng"
    assert label_accuracy(pred, batch.labels).value >= 0.875
    _, blind = simulate_view(build_model("resnet20", num_classes=10, seed=0), [batch], tr, threat="B")
    with pytest.raises(AttackRefused, match="training details"):
        resolve_labels("geng", blind, target_gradient(blind).grads)
    assert resolve_labels("auto", blind, target_gradient(blind).grads)[1] == "llg"


# --------------------------------------------------------------------------------------------------
# Strategy resolution and backwards compatibility
# --------------------------------------------------------------------------------------------------


def test_auto_strategy_and_known_labels(photos):
    one = photo_batch(photos, [3], [6])
    model = build_model("lenet", num_classes=10, seed=0)
    _, view = simulate_view(model, [one])
    grads = target_gradient(view).grads
    assert auto_label_method(view, grads) == "bias-sign"
    assert resolve_labels("auto", view, grads)[0].tolist() == [6]
    _, known = simulate_view(model, [one], threat="B+labels")
    assert resolve_labels("auto", known, target_gradient(known).grads) == (known.known_labels, "known")
    # no classifier bias: idlg for B = 1, llg-plus for B > 1
    nobias = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 32), nn.ReLU(), nn.Linear(32, 10, bias=False))
    _, v1 = simulate_view(nobias, [one])
    assert auto_label_method(v1, target_gradient(v1).grads) == "idlg"
    _, v8 = simulate_view(nobias, [photo_batch(photos, list(range(8)), [0, 0, 1, 1, 2, 2, 3, 3])])
    assert auto_label_method(v8, target_gradient(v8).grads) == "llg-plus"
    with pytest.raises(AttackRefused, match="bias"):
        resolve_labels("ilrg", v8, target_gradient(v8).grads)


def test_registry_metadata_and_simple_api_still_work(photos):
    for name in COUNT_AWARE:
        m = LABEL_METHODS.get(name)
        assert m.count_aware and m.description and m.paper and m.assumption
    for name in ("idlg", "bias-sign", "yin"):
        assert LABEL_METHODS.get(name).fn is not None and not LABEL_METHODS.get(name).count_aware
    batch = photo_batch(photos, [0, 1, 2], [4, 1, 7])
    model = build_model("lenet", num_classes=10, seed=0)
    _, view = simulate_view(model, [batch])
    cg = classifier_gradient(view.model, view.update.params)
    assert LABEL_METHODS.get("bias-sign").fn(cg, 3).tolist() == [1, 4, 7]  # type: ignore[misc]
    with pytest.raises(AttackRefused, match="count-aware"):
        LABEL_METHODS.get("yin").fn(cg, 11)  # type: ignore[misc]


def test_ilrg_needs_the_gradient_scale_llg_does_not(duplicate_batches):
    batch = duplicate_batches[1]
    _, view = simulate_view(build_model("lenet", num_classes=10, seed=0), [batch])
    grads = target_gradient(view).grads
    scaled = {k: 7.5 * v for k, v in grads.items()}
    assert torch.equal(resolve_labels("llg", view, grads)[0], resolve_labels("llg", view, scaled)[0])
    assert _multiset(resolve_labels("ilrg-refined", view, grads)[0]) == _multiset(batch.labels)


def test_identity_normalization_dummy_inputs_in_image_range():
    from gradinv.attacks.labels import dummy_inputs

    x = dummy_inputs((3, 8, 8), Normalization.identity(3), num=5, seed=1)
    assert x.shape == (5, 3, 8, 8) and x.min() >= 0 and x.max() <= 1
    y = dummy_inputs((3, 8, 8), Normalization((0.5,) * 3, (0.25,) * 3), num=5, seed=1)
    torch.testing.assert_close(y, (x - 0.5) / 0.25)
