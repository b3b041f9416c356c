"""Oracle tests of the passive analytic attacks: R-GAP, SPEAR and the Cocktail Party Attack.

Each attack runs on real images (scikit-image photos, the bundled samples) after a real FL round and
is compared against the exact inputs; the building blocks are checked against autograd, explicit
convolutions and synthetic mixtures with known sources."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradinv.attacks import create_attack
from gradinv.attacks.cocktail_party import (
    CocktailPartyConfig,
    finite_differences,
    scale_sources,
    unmix_gradient,
    whiten,
)
from gradinv.attacks.rgap import (
    activation_inverse,
    conv_gradient_map,
    layer_matrix,
    rgap_chain,
    solve_classifier,
)
from gradinv.attacks.spear import SpearConfig, spear_recover
from gradinv.data import load_samples
from gradinv.errors import AttackRefused, ConfigError
from gradinv.metrics import MetricsConfig, match, psnr
from gradinv.metrics.evaluate import evaluate
from gradinv.models import build_model
from gradinv.threat import get_threat_model
from gradinv.types import AttackerView, ModelUpdate, Normalization, TrainingConfig, UpdateKind
from tests.helpers import photo_batch, simulate_view


def _matched(rec: torch.Tensor, truth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    m = match(rec, truth)
    return rec[m.recon_index], truth[m.truth_index]


# --------------------------------------------------------------------------------------------------
# R-GAP
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stride", "padding", "kernel", "size"), [(1, 1, 3, 5), (2, 1, 3, 6), (2, 2, 4, 7), (3, 0, 2, 8)]
)
def test_conv_gradient_map_matches_autograd(stride, padding, kernel, size):
    g = torch.Generator().manual_seed(stride + size)
    x = torch.randn(1, 3, size, size, generator=g, dtype=torch.float64)
    w = torch.zeros(4, 3, kernel, kernel, dtype=torch.float64, requires_grad=True)
    out = F.conv2d(x, w, stride=stride, padding=padding)
    gout = torch.randn(out.shape, generator=g, dtype=torch.float64)
    (out * gout).sum().backward()
    m = conv_gradient_map(gout[0], (size, size), (kernel, kernel), (stride, stride), (padding, padding))
    for c in range(3):  # the same map for every input channel
        assert torch.allclose(m @ x[0, c].flatten(), w.grad[:, c].flatten(), atol=1e-12)


def test_layer_matrix_is_the_convolution():
    model = build_model("rgap-cnn6", num_classes=10, image_size=8, seed=0)
    layers = rgap_chain(model, (3, 8, 8))
    assert [layer.name for layer in layers] == [f"body.{i}" for i in range(0, 12, 2)] + ["fc"]
    x = torch.randn(3, 8, 8, dtype=torch.float64)
    conv = layers[1]
    a = layer_matrix(conv)
    h = layers[0].module(x[None].float()).double()  # a real input of the second layer
    expected = F.conv2d(h, conv.module.weight.double(), None, conv.module.stride, conv.module.padding)
    assert torch.allclose(a @ h.flatten(), expected.flatten(), atol=1e-10)


@pytest.mark.parametrize("act", [nn.LeakyReLU(0.2), nn.Sigmoid(), nn.Tanh(), nn.Identity()])
def test_activation_inverse_round_trips(act):
    z = torch.linspace(-3, 3, 12, dtype=torch.float64)  # avoids the kink at 0
    z_back, d, known = activation_inverse(act, act(z))
    assert known.all()
    assert torch.allclose(z_back, z, atol=1e-9)
    zz = z.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(act(zz).sum(), zz)  # element-wise derivative by autograd
    assert torch.allclose(d, auto, atol=1e-9)


def test_solve_classifier_with_and_without_bias():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(10, 50, generator=g, dtype=torch.float64) * 0.1
    x = torch.rand(50, generator=g, dtype=torch.float64)
    y = 7
    for b in (None, torch.randn(10, generator=g, dtype=torch.float64) * 0.1):
        logits = w @ x + (b if b is not None else 0)
        grad = torch.softmax(logits, 0) - F.one_hot(torch.tensor(y), 10).double()
        xr, gr, _ = solve_classifier(w, b, torch.outer(grad, x), grad if b is not None else None)
        assert torch.allclose(xr, x, atol=1e-7) and int(torch.argmin(gr)) == y


@pytest.mark.parametrize(("conv_bias", "fc_bias"), [(False, True), (True, True), (False, False)])
def test_rgap_recovers_a_photo_on_tiny_cnn6(photos, conv_bias, fc_bias):
    batch = photo_batch(photos, [1], labels=[3], size=8)
    model = build_model("rgap-cnn6", num_classes=10, image_size=8, seed=0, bias=conv_bias)
    if not fc_bias:  # the paper's bias-free classifier: the softmax scalar equation
        model.fc = nn.Linear(model.fc.in_features, 10, bias=False)
    _, view = simulate_view(model, [batch])
    res = create_attack("rgap").reconstruct(view, device="cpu")
    assert float(psnr(res.reconstruction.images, batch.images)) > 60
    assert res.reconstruction.labels.tolist() == [3]
    assert sum("deficiency 0" in n for n in res.notes) == 6
    assert any(("bias gradient" if fc_bias else "scalar equation") in n for n in res.notes)


def test_rgap_inverts_sigmoid_lenet_and_one_fedavg_step(photos):
    batch = photo_batch(photos, [0], labels=[5], size=16)
    model = build_model("lenet", num_classes=10, image_size=16, seed=0)
    training = TrainingConfig("fedavg", epochs=1, batch_size=1, lr=0.01)
    _, view = simulate_view(model, [batch], training, threat="C")
    assert view.update.kind is UpdateKind.DELTA
    res = create_attack("rgap").reconstruct(view, device="cpu")
    assert float(psnr(res.reconstruction.images, batch.images)) > 40


def test_rgap_rank_deficiency_matches_the_jacobian_rank():
    """A 3 -> 1 channel stride-2 convolution under-determines its input; the reported deficiency equals
    the unknowns minus the rank of the stacked forward and gradient Jacobians (autograd oracle)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 1, 2, stride=2, bias=False), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(16, 4)
    )
    x = torch.rand(1, 3, 8, 8)
    y = torch.tensor([2])
    grads = torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters()))
    view = AttackerView(
        threat=get_threat_model("B"),
        model=model,
        update=ModelUpdate(UpdateKind.GRADIENT, dict(zip([n for n, _ in model.named_parameters()], grads))),
        num_samples=1,
        input_shape=(3, 8, 8),
        num_classes=4,
        normalization=Normalization.identity(3),
    )
    res = create_attack("rgap").reconstruct(view, device="cpu")
    note = next(n for n in res.notes if n.startswith("layer 0:"))
    # oracle: rank of d(forward, weight-gradient)/dx at the true input, by autograd
    x64 = x.double()
    model = model.double()
    conv = model[0]
    z = conv(x64)
    g_out = torch.autograd.grad(F.cross_entropy(model[1:](z), y), z)[0]

    def constraints(inp: torch.Tensor) -> torch.Tensor:
        w = conv.weight.detach().clone().requires_grad_(True)
        out = F.conv2d(inp, w, stride=2)
        (gw,) = torch.autograd.grad((out * g_out).sum(), w, create_graph=True)
        return torch.cat([out.flatten(), gw.flatten()])

    jac = torch.autograd.functional.jacobian(constraints, x64).reshape(-1, 192)
    rank = int(torch.linalg.matrix_rank(jac))
    assert f"rank {rank} (deficiency {192 - rank})" in note
    assert 192 - rank > 0


def test_rgap_refusals(photos):
    batch = photo_batch(photos, [0, 1], size=32)
    _, view = simulate_view(build_model("rgap-cnn6", num_classes=10, seed=0), [batch])
    with pytest.raises(AttackRefused, match="single sample"):
        create_attack("rgap").reconstruct(view)
    one = photo_batch(photos, [0], size=32)
    _, view = simulate_view(build_model("convnet", num_classes=10, width=4, seed=0), [one])
    with pytest.raises(AttackRefused, match=r"got BatchNorm2d at model\.model\.bn0"):
        create_attack("rgap").reconstruct(view)

    class Pooled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv0 = nn.Conv2d(3, 4, 3, padding=1)
            self.act0 = nn.LeakyReLU(0.2)
            self.pool0 = nn.MaxPool2d(2)
            self.fc = nn.Linear(4 * 16 * 16, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.pool0(self.act0(self.conv0(x))).flatten(1))

    _, view = simulate_view(Pooled(), [one])
    with pytest.raises(AttackRefused, match=r"without pooling; got MaxPool2d at model\.pool0"):
        create_attack("rgap").reconstruct(view)

    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.act = nn.LeakyReLU(0.2)
            self.fc = nn.Linear(3 * 32 * 32, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc((x + self.act(self.conv(x))).flatten(1))

    _, view = simulate_view(Residual(), [one])
    with pytest.raises(AttackRefused, match="chain of its layers in registration order"):
        create_attack("rgap").reconstruct(view)
    _, view = simulate_view(
        build_model("lenet", num_classes=10, seed=0), [one], TrainingConfig("fedavg", epochs=2, lr=0.01), "C"
    )
    with pytest.raises(AttackRefused, match="2 local steps"):
        create_attack("rgap").reconstruct(view)


# --------------------------------------------------------------------------------------------------
# SPEAR
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("b", [1, 5, 8])
def test_spear_recover_synthetic_batches_exactly(b):
    """Closed-form oracle: a random ReLU layer and random sparse output gradients."""
    g = torch.Generator().manual_seed(b)
    w = torch.randn(60, 20, generator=g, dtype=torch.float64) / 4
    bias = torch.randn(60, generator=g, dtype=torch.float64) / 4
    x = torch.randn(b, 20, generator=g, dtype=torch.float64)
    z = x @ w.T + bias
    gz = torch.randn(b, 60, generator=g, dtype=torch.float64) * (z > 0)
    out = spear_recover(gz.T @ x, gz.sum(0), w, bias, b, SpearConfig(max_samples=200_000))
    assert out.verified and out.found == out.rank == b
    dist = torch.cdist(out.inputs, x)
    assert float(dist.min(dim=1).values.max()) < 1e-8
    assert len(set(dist.argmin(dim=1).tolist())) == b


def test_spear_exact_on_photos_with_labels():
    ds = load_samples()
    batch = ds.to_batch(list(range(6)), image_size=16, normalization="imagenet")
    model = build_model("mlp", num_classes=10, image_size=16, hidden=[200], seed=0)
    _, view = simulate_view(model, [batch])
    res = create_attack("spear").reconstruct(view, device="cpu")
    rec, truth = _matched(res.reconstruction.images, batch.images)
    assert float((rec - truth).abs().max()) < 1 / 255
    assert float(psnr(rec, truth).min()) > 60
    assert sorted(res.reconstruction.labels.tolist()) == sorted(batch.labels.tolist())
    assert any(n.startswith("verified") for n in res.notes)


def test_spear_one_fedavg_step_and_refusals(photos):
    batch = photo_batch(photos, [0, 2, 4], labels=[1, 2, 3], size=8)
    model = build_model("mlp", num_classes=10, image_size=8, hidden=[64], seed=0)
    _, view = simulate_view(model, [batch], TrainingConfig("fedavg", epochs=1, lr=0.05), "C")
    res = create_attack("spear").reconstruct(view, device="cpu")
    rec, truth = _matched(res.reconstruction.images, batch.images)
    assert float((rec - truth).abs().max()) < 1 / 255

    sig = build_model("mlp", num_classes=10, image_size=8, hidden=[64], activation="sigmoid", seed=0)
    _, view = simulate_view(sig, [batch])
    with pytest.raises(AttackRefused, match="needs a ReLU right after"):
        create_attack("spear").reconstruct(view)
    _, view = simulate_view(build_model("lenet", num_classes=10, image_size=8, seed=0), [batch])
    with pytest.raises(AttackRefused, match=r"got Conv2d at model\.body\.0"):
        create_attack("spear").reconstruct(view)
    nobias = build_model("mlp", num_classes=10, image_size=8, hidden=[64], seed=0)
    nobias.net[1] = nn.Linear(192, 64, bias=False)
    _, view = simulate_view(nobias, [batch])
    with pytest.raises(AttackRefused, match="has no bias"):
        create_attack("spear").reconstruct(view)
    _, view = simulate_view(model, [batch], TrainingConfig("fedavg", epochs=3, lr=0.05), "C")
    with pytest.raises(AttackRefused, match="3 local steps"):
        create_attack("spear").reconstruct(view)


def test_spear_reports_an_unverified_budget(photos):
    batch = photo_batch(photos, list(range(8)), labels=[0] * 8, size=8)
    model = build_model("mlp", num_classes=10, image_size=8, hidden=[64], seed=0)
    _, view = simulate_view(model, [batch])
    res = create_attack("spear", max_samples=10, chunk=10).reconstruct(view, device="cpu")
    assert res.iterations == 10 and res.reconstruction.images.shape == batch.images.shape
    assert any(n.startswith("NOT verified") for n in res.notes)
    with pytest.raises(ConfigError, match="zero_tol"):
        create_attack("spear", zero_tol=2.0)


# --------------------------------------------------------------------------------------------------
# Cocktail Party
# --------------------------------------------------------------------------------------------------


def test_whitening_and_differences_commute_with_mixing():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2 * 5 * 5, generator=g, dtype=torch.float64)
    a = torch.randn(7, 3, generator=g, dtype=torch.float64)
    assert torch.allclose(finite_differences(a @ x, (2, 5, 5)), a @ finite_differences(x, (2, 5, 5)))
    z, _ = whiten(a @ x, 5)  # rank 3: only 3 components survive
    assert z.shape == (3, 50) and torch.allclose(z @ z.T / 50, torch.eye(3, dtype=torch.float64), atol=1e-9)


def test_unmix_synthetic_mixture_recovers_independent_sources():
    """Known sources (sparse, independent) and mixing: ICA finds every source (up to sample noise)."""
    g = torch.Generator().manual_seed(3)
    b, m, n = 6, 40, 4000
    u = torch.rand(b, n, generator=g, dtype=torch.float64)
    sources = torch.sign(u - 0.5) * torch.log1p(-2 * (u - 0.5).abs()).neg()  # Laplace samples
    sources = sources + 0.2 * torch.arange(b, dtype=torch.float64)[:, None]  # different means
    mixing = torch.randn(m, b, generator=g, dtype=torch.float64)
    out = unmix_gradient(
        mixing @ sources, mixing.sum(1), b, CocktailPartyConfig(domain="raw", iterations=100)
    )
    corr = torch.corrcoef(torch.cat([out.inputs, sources]))[:b, b:].abs()
    assert sorted(corr.argmax(dim=1).tolist()) == list(range(b))
    assert float(corr.max(dim=1).values.min()) > 0.99
    rel = torch.cdist(out.inputs, sources).min(dim=1).values / sources.norm(dim=1).mean()
    assert float(rel.max()) < 0.1


def test_bias_projection_fixes_scale_and_sign_exactly():
    """Closed form: with exact unmixing vectors (rows of the mixing's pseudo-inverse, arbitrarily
    rescaled and sign-flipped), dividing by the bias projection returns the sources exactly."""
    g = torch.Generator().manual_seed(4)
    sources = torch.rand(4, 3 * 6 * 6, generator=g, dtype=torch.float64)  # images in [0, 1]
    mixing = torch.randn(30, 4, generator=g, dtype=torch.float64)
    unmixing = torch.diag(torch.tensor([2.0, -0.5, 3.0, -1.0], dtype=torch.float64)) @ torch.linalg.pinv(
        mixing
    )
    grad_w, grad_b = mixing @ sources, mixing.sum(1)
    out, how = scale_sources(unmixing @ grad_w, unmixing @ grad_b, None, (3, 6, 6), image=True)
    assert how == ["bias"] * 4
    assert torch.allclose(out, sources, atol=1e-10)


def test_cocktail_party_on_photos():
    ds = load_samples()
    batch = ds.to_batch(list(range(10)), image_size=16)
    model = build_model("mlp", num_classes=10, image_size=16, hidden=[256], seed=0)
    _, view = simulate_view(model, [batch])
    res = create_attack("cocktail-party").reconstruct(view, device="cpu")
    ev = evaluate(res.reconstruction, batch, MetricsConfig(lpips="off", stlpips="off"))
    assert ev.mean("psnr") > 22
    assert min(ev.metrics["psnr"].per_image) > 15


def test_cocktail_party_feature_inversion_on_a_conv_net():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 8 * 8, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )
    batch = load_samples().to_batch([0, 2, 4, 6, 8, 9], image_size=8, normalization="imagenet")
    _, view = simulate_view(model, [batch])
    attack = create_attack("cocktail-party", feature_iterations=300)
    res = attack.reconstruct(view, device="cpu")
    assert res.reconstruction.images.shape == batch.images.shape
    assert any("feature maps' finite differences, images from feature inversion" in n for n in res.notes)
    # the unmixed features match the true ones (oracle: the layer's input on the true batch)
    features = model[:3](batch.model_input()).double().detach()
    grads = view.update.params
    out = unmix_gradient(grads["3.weight"], grads["3.bias"], 6, attack.config, spatial_shape=(32, 8, 8))
    corr = torch.corrcoef(torch.cat([out.inputs, features]))[:6, 6:].abs().max(dim=1).values
    assert int((corr > 0.99).sum()) >= 4 and float(corr.min()) > 0.8
    # feature inversion: the images' features point where the recovered features do
    rec_features = model[:3](batch.normalization.apply(res.reconstruction.images)).double().detach()
    cos = F.cosine_similarity(rec_features[:, None], out.inputs[None], dim=2).max(dim=1).values
    assert float(cos.median()) > 0.9


def test_cocktail_party_refuses_a_narrow_layer(photos):
    batch = photo_batch(photos, list(range(8)), labels=[0] * 8, size=8)
    model = build_model("mlp", num_classes=10, image_size=8, hidden=[4], seed=0)
    _, view = simulate_view(model, [batch])
    with pytest.raises(AttackRefused, match="at least B output units"):
        create_attack("cocktail-party").reconstruct(view)
    with pytest.raises(AttackRefused, match=r"Linear layers: net\.1, net\.3"):
        create_attack("cocktail-party", layer="fc").reconstruct(view)
