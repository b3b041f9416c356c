"""PRECODE: the bottleneck's place and shapes, stochasticity, the KL term against
torch.distributions, and that the client's gradient includes it."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from gradinv.defenses import DefenseChain, auxiliary_loss, create_defense
from gradinv.defenses.precode import VariationalBottleneck
from gradinv.errors import ConfigError
from gradinv.fl import local_update
from gradinv.fl.client import StepContext
from gradinv.models import build_model, reseed
from gradinv.types import TrainingConfig


def test_bottleneck_sits_before_the_classifier(lenet, batch):
    m = create_defense("precode", latent_dim=16).transform_model(lenet)
    assert isinstance(m.fc.bottleneck, VariationalBottleneck)
    assert m.fc.bottleneck.encoder.in_features == 192 and m.fc.bottleneck.encoder.out_features == 32
    assert m.fc.bottleneck.decoder.out_features == 192
    assert torch.equal(m.fc.classifier.weight, lenet.fc.weight)  # the classifier is kept
    assert isinstance(lenet.fc, torch.nn.Linear)  # the input model is not modified
    x = batch.model_input()
    assert m(x).shape == lenet(x).shape == (4, 10)
    conv = build_model("convnet", num_classes=10, image_size=16, width=2, seed=0)
    mc = create_defense("precode", latent_dim=8).transform_model(conv)
    assert mc(x).shape == (4, 10) and isinstance(mc.model.linear.bottleneck, VariationalBottleneck)
    with pytest.raises(ConfigError, match=r"nn\.Linear"):
        create_defense("precode", layer="body.0").transform_model(lenet)


def test_bottleneck_is_stochastic_in_train_mode(lenet, batch):
    x = batch.model_input()
    m = create_defense("precode", latent_dim=16, sample_in_eval=False).transform_model(lenet)
    m.train()
    assert not torch.allclose(m(x), m(x))
    m.eval()
    a, b = m(x), m(x)
    assert torch.equal(a, b)  # z = mu in eval mode when sample_in_eval is false
    vb = m.fc.bottleneck
    h = m.flatten(m.body(x))
    mu = vb.encoder(h)[:, :16]
    torch.testing.assert_close(a, m.fc.classifier(vb.decoder(mu)))
    m2 = create_defense("precode", latent_dim=16).transform_model(lenet).eval()  # authors: sample always
    assert not torch.allclose(m2(x), m2(x))


def test_kl_term_matches_torch_distributions(lenet, batch):
    m = create_defense("precode", latent_dim=16, beta=0.01).transform_model(lenet).train()
    m(batch.model_input())
    mu, std = m.fc.bottleneck._stats
    kl = kl_divergence(Normal(mu, std), Normal(torch.zeros_like(mu), torch.ones_like(std))).sum(1)
    want = 0.01 * kl / math.log(2)
    torch.testing.assert_close(auxiliary_loss(m, per_sample=True), want)
    torch.testing.assert_close(auxiliary_loss(m), want.mean())
    assert auxiliary_loss(lenet) is None


def test_client_gradient_includes_the_kl_term(lenet, batch):
    d = create_defense("precode", latent_dim=16, beta=0.5)
    m = d.transform_model(lenet).train()
    params = [p for p in m.parameters() if p.requires_grad]
    x, y = batch.model_input(), batch.labels
    ctx = StepContext(m, params, TrainingConfig(), 0, 0, 4, torch.Generator())
    reseed(m, 5)
    got = DefenseChain.of([d]).gradients(x, y, ctx)
    reseed(m, 5)  # the same epsilon draw
    loss = F.cross_entropy(m(x), y) + auxiliary_loss(m)
    want = torch.autograd.grad(loss, params)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)
    reseed(m, 5)
    ce_only = torch.autograd.grad(F.cross_entropy(m(x), y), params)
    assert not torch.allclose(got[0], ce_only[0])  # the encoder's gradient carries the KL term


def test_precode_with_dp_sgd_uses_dp_sgd_gradient(lenet, batch):
    pre, dp = create_defense("precode", latent_dim=8), create_defense("dp-sgd", noise_multiplier=0.5)
    chain = DefenseChain.of([pre, dp])
    assert chain.gradient_order == [1, 0]
    m = pre.transform_model(lenet)
    upd = local_update(m, batch, TrainingConfig(), hooks=chain)
    upd.update.check_matches(m)
    assert upd.info["dp-sgd.steps"] == 1 and upd.info["precode.kl_loss"] == 0.0
