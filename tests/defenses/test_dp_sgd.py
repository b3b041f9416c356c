"""DP-SGD: per-sample clipping against a naive per-sample loop, noise scale, ε against Opacus'
accountant called directly, BatchNorm refusal and replacement."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from opacus.accountants import RDPAccountant

from gradinv.defenses import DefenseChain, create_defense
from gradinv.defenses.dp_sgd import clip_and_noise, dp_epsilon, per_sample_gradients
from gradinv.errors import ConfigError, ModelError
from gradinv.fl import local_update
from gradinv.fl.client import StepContext
from gradinv.models import build_model
from gradinv.types import TrainingConfig


def naive_dp_gradient(model, x, y, clip):
    """Oracle: one autograd call per sample, clip its whole gradient, average."""
    params = [p for p in model.parameters() if p.requires_grad]
    total = [torch.zeros_like(p) for p in params]
    for i in range(x.shape[0]):
        loss = F.cross_entropy(model(x[i : i + 1]), y[i : i + 1])
        g = torch.autograd.grad(loss, params)
        norm = torch.sqrt(sum((t.double() ** 2).sum() for t in g))
        factor = min(1.0, clip / (float(norm) + 1e-6))
        total = [a + factor * b for a, b in zip(total, g)]
    return [t / x.shape[0] for t in total]


def _step_ctx(model, n, seed=0):
    params = [p for p in model.parameters() if p.requires_grad]
    return StepContext(model, params, TrainingConfig(), 0, 0, n, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("clip", [0.05, 1e6])
def test_per_sample_clipping_matches_a_naive_loop(lenet, batch, clip):
    x, y = batch.model_input(), batch.labels
    hooks = DefenseChain.of([create_defense("dp-sgd", noise_multiplier=0.0, max_grad_norm=clip)])
    got = hooks.gradients(x, y, _step_ctx(lenet, 4))
    want = naive_dp_gradient(lenet, x, y, clip)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-7)
    if clip > 1e5:  # no clipping: the plain mean-loss gradient
        plain = torch.autograd.grad(F.cross_entropy(lenet(x), y), list(lenet.parameters()))
        for g, w in zip(got, plain):
            torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-7)


def test_per_sample_gradients_with_soft_labels(lenet, batch):
    x = batch.model_input()
    probs = F.softmax(torch.randn(4, 10, generator=torch.Generator().manual_seed(0)), dim=1)
    params = list(lenet.parameters())
    ps = per_sample_gradients(lenet, params, x, probs)
    for i in range(4):
        g = torch.autograd.grad(F.cross_entropy(lenet(x[i : i + 1]), probs[i : i + 1]), params)
        for a, b in zip(ps, g):
            torch.testing.assert_close(a[i], b, rtol=1e-4, atol=1e-7)


def test_noise_has_scale_sigma_c_over_b(lenet, batch):
    x, y = batch.model_input(), batch.labels
    params = list(lenet.parameters())
    ps = per_sample_gradients(lenet, params, x, y)
    clean, _ = clip_and_noise(ps, max_grad_norm=0.5, noise_multiplier=0.0, generator=torch.Generator())
    noisy, _ = clip_and_noise(
        ps, max_grad_norm=0.5, noise_multiplier=2.0, generator=torch.Generator().manual_seed(1)
    )
    diff = torch.cat([(a - b).reshape(-1) for a, b in zip(noisy, clean)]).double()
    assert float(diff.std()) == pytest.approx(2.0 * 0.5 / 4, rel=0.05)  # ~8k entries


def test_epsilon_matches_opacus_accountant(lenet, photos):
    from tests.helpers import photo_batch

    b = photo_batch(photos, list(range(8)), size=16)
    training = TrainingConfig(protocol="fedavg", batch_size=2, epochs=2, lr=0.05)
    d = create_defense("dp-sgd", noise_multiplier=1.1, max_grad_norm=1.0, delta=1e-4)
    upd = local_update(lenet, b, training, hooks=DefenseChain.of([d]))
    acc = RDPAccountant()
    for _ in range(8):  # U = E * ceil(N / B) = 8 steps at q = B / N = 0.25
        acc.step(noise_multiplier=1.1, sample_rate=0.25)
    assert upd.info["dp-sgd.steps"] == 8 and upd.info["dp-sgd.sample_rate"] == 0.25
    assert upd.info["dp-sgd.epsilon"] == pytest.approx(acc.get_epsilon(delta=1e-4), rel=1e-9)
    assert upd.info["dp-sgd.delta"] == 1e-4
    # a second round of the same client composes: 16 steps in total
    upd2 = local_update(lenet, b, training, hooks=DefenseChain.of([d]))
    for _ in range(8):
        acc.step(noise_multiplier=1.1, sample_rate=0.25)
    assert upd2.info["dp-sgd.epsilon_cumulative"] == pytest.approx(acc.get_epsilon(delta=1e-4), rel=1e-9)
    assert upd2.info["dp-sgd.epsilon"] == pytest.approx(upd.info["dp-sgd.epsilon"])


def test_fedsgd_epsilon_is_one_full_batch_step(lenet, batch):
    d = create_defense("dp-sgd", noise_multiplier=2.0, max_grad_norm=1.0)
    upd = local_update(lenet, batch, TrainingConfig(), hooks=DefenseChain.of([d]))
    acc = RDPAccountant()
    acc.step(noise_multiplier=2.0, sample_rate=1.0)
    assert upd.info["dp-sgd.epsilon"] == pytest.approx(acc.get_epsilon(delta=1e-5), rel=1e-9)
    assert dp_epsilon(noise_multiplier=0.0, sample_rate=1.0, steps=1, delta=1e-5) == float("inf")


def test_batchnorm_is_refused_with_opacus_reason_or_replaced(batch):
    model = build_model("convnet", num_classes=10, image_size=16, width=2, seed=0)
    d = create_defense("dp-sgd")
    with pytest.raises(ModelError, match=r"BatchNorm.*replace_batchnorm"):
        d.transform_model(model)
    with pytest.raises(ModelError, match="BatchNorm"):
        local_update(model, batch, TrainingConfig(), hooks=DefenseChain.of([d]))
    fixed_d = create_defense("dp-sgd", replace_batchnorm=True)
    fixed = fixed_d.transform_model(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fixed.modules())
    assert any(isinstance(m, torch.nn.GroupNorm) for m in fixed.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # original untouched
    upd = local_update(fixed, batch, TrainingConfig(), hooks=DefenseChain.of([fixed_d]))
    upd.update.check_matches(fixed)


def test_config_validation():
    for bad in ({"noise_multiplier": -1.0}, {"max_grad_norm": 0.0}, {"delta": 1.0}, {"accountant": "x"}):
        with pytest.raises(ConfigError, match="Expected"):
            create_defense("dp-sgd", **bad)
