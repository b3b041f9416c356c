"""MixUp and InstaHide: mixed images and labels in closed form, coefficient distributions and
constraints, sign flips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from gradinv.defenses import DefenseChain, create_defense
from gradinv.defenses.instahide import instahide_plan, instahide_signs
from gradinv.defenses.mixup import mixup_plan
from gradinv.errors import ConfigError
from gradinv.fl.client import StepContext
from gradinv.types import TrainingConfig


def _ctx(model, seed=7):
    params = [p for p in model.parameters() if p.requires_grad]
    return StepContext(model, params, TrainingConfig(), 0, 0, 4, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("per_sample", [False, True])
def test_mixup_images_and_labels_are_the_closed_form(lenet, batch, per_sample):
    x, y = batch.model_input(), batch.labels
    d = create_defense("mixup", alpha=0.4, per_sample=per_sample)
    mx, my = DefenseChain.of([d]).on_batch(x, y, _ctx(lenet))
    # replay the same draws from the same client generator
    idx, w = mixup_plan(4, alpha=0.4, per_sample=per_sample, generator=torch.Generator().manual_seed(7))
    lam, perm = w[:, 0], idx[:, 1]
    assert torch.equal(idx[:, 0], torch.arange(4)) and sorted(perm.tolist()) == [0, 1, 2, 3]
    if not per_sample:
        assert (lam == lam[0]).all()
    onehot = F.one_hot(y, 10).double()
    want_y = lam[:, None] * onehot + (1 - lam[:, None]) * onehot[perm]
    want_x = lam.float()[:, None, None, None] * x + (1 - lam.float())[:, None, None, None] * x[perm]
    torch.testing.assert_close(my.double(), want_y)
    torch.testing.assert_close(mx, want_x)
    torch.testing.assert_close(my.sum(1), torch.ones(4))


def test_mixup_lambda_follows_beta():
    lam = mixup_plan(3000, alpha=0.3, per_sample=True, generator=torch.Generator().manual_seed(0))[1][:, 0]
    assert stats.kstest(lam.numpy(), stats.beta(0.3, 0.3).cdf).pvalue > 1e-3
    assert stats.kstest(lam.numpy(), stats.beta(2.0, 2.0).cdf).pvalue < 1e-6  # the test can fail


def test_mixup_keeps_soft_labels(lenet, batch):
    probs = F.softmax(torch.randn(4, 10, generator=torch.Generator().manual_seed(1)), dim=1)
    _, my = DefenseChain.of([create_defense("mixup")]).on_batch(batch.model_input(), probs, _ctx(lenet))
    torch.testing.assert_close(my.sum(1), torch.ones(4))


def test_instahide_coefficients_indices_and_signs():
    idx, lam = instahide_plan(50, k=4, upper=0.65, generator=torch.Generator().manual_seed(0))
    assert idx.shape == lam.shape == (50, 4)
    assert torch.equal(idx[:, 0], torch.arange(50))
    for j in range(1, 4):
        assert sorted(idx[:, j].tolist()) == list(range(50))  # permutations of the batch
    torch.testing.assert_close(lam.sum(1), torch.ones(50, dtype=torch.float64))
    assert (lam >= 0).all() and (lam <= 0.65).all()
    s = instahide_signs((2000,), generator=torch.Generator().manual_seed(0))
    assert set(s.unique().tolist()) == {-1.0, 1.0}
    assert abs(float(s.mean())) < 5 / np.sqrt(2000)


def test_instahide_images_and_labels_are_the_closed_form(lenet, batch):
    x, y = batch.model_input(), batch.labels
    d = create_defense("instahide", k=3, upper=0.8)
    mx, my = DefenseChain.of([d]).on_batch(x, y, _ctx(lenet))
    g = torch.Generator().manual_seed(7)  # replay: coefficients first, then the sign mask
    idx, lam = instahide_plan(4, k=3, upper=0.8, generator=g)
    signs = instahide_signs(x.shape, generator=g)
    naive_x = torch.zeros_like(x)
    naive_y = torch.zeros(4, 10, dtype=torch.float64)
    for n in range(4):
        for j in range(3):
            naive_x[n] += float(lam[n, j]) * x[idx[n, j]]
            naive_y[n, y[idx[n, j]]] += lam[n, j]
    torch.testing.assert_close(mx, signs * naive_x)
    torch.testing.assert_close(my.double(), naive_y)
    assert set(torch.unique(torch.sign(mx[mx != 0]) * torch.sign(naive_x[mx != 0])).tolist()) == {-1.0, 1.0}


def test_instahide_k1_without_flip_is_identity(lenet, batch):
    x, y = batch.model_input(), batch.labels
    mx, my = DefenseChain.of([create_defense("instahide", k=1, sign_flip=False)]).on_batch(x, y, _ctx(lenet))
    torch.testing.assert_close(mx, x)
    torch.testing.assert_close(my, F.one_hot(y, 10).float())


def test_data_defense_config_validation():
    with pytest.raises(ConfigError, match="upper"):
        create_defense("instahide", k=4, upper=0.2)
    with pytest.raises(ConfigError, match="alpha"):
        create_defense("mixup", alpha=0.0)
