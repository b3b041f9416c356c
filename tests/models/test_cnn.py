"""The configurable CNN of Du et al.'s Table 4 (model ``cnn``): every variant's shape, closed-form
sizes, what each option removes, errors, seeded dropout, and a gradient-matching attack on it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call, vmap

from gradinv.config import parse_config
from gradinv.errors import ConfigError
from gradinv.experiment import run_experiment
from gradinv.fl import local_update
from gradinv.models import SeededDropout, build_model, count_parameters, find_classifier, reseed
from gradinv.models.cnn import TABLE4
from gradinv.types import TrainingConfig
from tests.helpers import photo_batch

#: Side length of the classifier's input feature map per Table-4 variant for 32x32 and 8x8 images,
#: counted by hand (conv: s + 2 p - k + 1; max-pool: floor(s / 2); two blocks).
SIDES = {
    "none": (8, 2),  # 32 -> 32 -> 16 -> 16 -> 8;  8 -> 8 -> 4 -> 4 -> 2
    "remove-relu": (8, 2),
    "remove-dropout": (8, 2),
    "remove-maxpool": (32, 8),  # no pooling: the convs keep the size
    "kernel-4": (7, 1),  # 32 -> 31 -> 15 -> 14 -> 7;  8 -> 7 -> 3 -> 2 -> 1
    "remove-bias": (8, 2),
    "kernel-2": (8, 2),  # 32 -> 33 -> 16 -> 17 -> 8;  8 -> 9 -> 4 -> 5 -> 2
    "kernel-1": (9, 3),  # 32 -> 34 -> 17 -> 19 -> 9;  8 -> 10 -> 5 -> 7 -> 3
    "padding-2": (9, 3),  # 32 -> 34 -> 17 -> 19 -> 9;  8 -> 10 -> 5 -> 7 -> 3
    "padding-3": (11, 5),  # 32 -> 36 -> 18 -> 22 -> 11;  8 -> 12 -> 6 -> 10 -> 5
}


def test_table4_names_the_paper_columns() -> None:
    assert len(TABLE4) == 10 and TABLE4["none"] == {}
    assert set(SIDES) == set(TABLE4)


@pytest.mark.parametrize("variant", sorted(TABLE4))
@pytest.mark.parametrize(("channels", "size"), [(3, 32), (1, 8)])
def test_every_table4_variant_outputs_logits(variant: str, channels: int, size: int) -> None:
    model = build_model(
        "cnn", num_classes=7, in_channels=channels, image_size=size, seed=0, **TABLE4[variant]
    )
    side = SIDES[variant][0 if size == 32 else 1]
    assert model.fc.in_features == 32 * side * side
    x = torch.rand(3, channels, size, size, generator=torch.Generator().manual_seed(0))
    for mode in (model.train(), model.eval()):
        out = mode(x)
        assert out.shape == (3, 7) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_what_each_option_builds() -> None:
    kinds = {name: type(m) for name, m in build_model("cnn", num_classes=10).body.named_children()}
    assert kinds == {
        "conv0": nn.Conv2d,
        "act0": nn.ReLU,
        "pool0": nn.MaxPool2d,
        "conv1": nn.Conv2d,
        "act1": nn.ReLU,
        "pool1": nn.MaxPool2d,
        "dropout": SeededDropout,
    }

    def body(**opts: object) -> list[nn.Module]:
        return list(build_model("cnn", num_classes=10, **opts).body.children())  # type: ignore[arg-type]

    assert not any(isinstance(m, nn.ReLU) for m in body(activation="identity"))
    assert sum(isinstance(m, nn.Identity) for m in body(activation="identity")) == 2
    assert not any(isinstance(m, SeededDropout) for m in body(dropout=0))
    assert not any(isinstance(m, nn.MaxPool2d) for m in body(pool="none"))
    assert sum(isinstance(m, nn.Tanh) for m in body(activation="tanh", depth=3)) == 3
    convs = [m for m in body(kernel_size=4, padding=2, width=5) if isinstance(m, nn.Conv2d)]
    assert [(c.kernel_size, c.padding, c.out_channels) for c in convs] == [((4, 4), (2, 2), 5)] * 2
    drop = next(m for m in body(dropout=0.1) if isinstance(m, SeededDropout))
    assert drop.p == pytest.approx(0.1)


def test_parameter_counts_closed_form() -> None:
    # standard model, 32x32 RGB: two 3x3 convs with bias, 32 x 8 x 8 features
    c, w, k, classes = 3, 32, 3, 10
    expected = (c * w * k * k + w) + (w * w * k * k + w) + (w * 8 * 8 * classes + classes)
    assert count_parameters(build_model("cnn", num_classes=classes)) == expected == 30634
    # 4x4 kernels, no bias, width 8, depth 3, 32x32 gray: 32 -> 31 -> 15 -> 14 -> 7 -> 6 -> 3
    c, w, k = 1, 8, 4
    expected = c * w * k * k + 2 * (w * w * k * k) + w * 3 * 3 * classes
    model = build_model(
        "cnn", num_classes=classes, in_channels=1, kernel_size=4, bias=False, width=8, depth=3
    )
    assert model.fc.in_features == 72 and count_parameters(model) == expected == 2896


def test_remove_bias_removes_every_bias() -> None:
    with_bias = build_model("cnn", num_classes=10, seed=0)
    model = build_model("cnn", num_classes=10, seed=0, **TABLE4["remove-bias"])
    assert not any("bias" in name for name, _ in model.named_parameters())
    assert all(getattr(m, "bias", None) is None for m in model.modules())
    assert find_classifier(model) == ("fc.weight", None)
    assert count_parameters(with_bias) - count_parameters(model) == 32 + 32 + 10


def _linear_net(**opts: object) -> nn.Module:
    opts = {"activation": "identity", "bias": False, "pool": "none", **opts}
    return build_model("cnn", num_classes=5, image_size=8, seed=1, **opts).double().eval()  # type: ignore[arg-type]


def test_identity_activation_makes_the_network_linear() -> None:
    gen = torch.Generator().manual_seed(2)
    x, y = torch.randn(2, 3, 3, 8, 8, generator=gen, dtype=torch.float64)
    net = _linear_net()
    with torch.no_grad():
        assert torch.allclose(net(-2.5 * x), -2.5 * net(x), atol=1e-12)  # f(a x) = a f(x), a < 0 too
        assert torch.allclose(net(x + 3 * y), net(x) + 3 * net(y), atol=1e-12)
        # max-pooling keeps positive homogeneity; dropout (same mask after reseed) too
        pooled = _linear_net(pool="max").train()
        reseed(pooled, 0)
        fx = pooled(x)
        reseed(pooled, 0)
        assert torch.allclose(pooled(0.5 * x), 0.5 * fx, atol=1e-12)
        # the oracle can fail: with ReLU, or with biases, the network is not linear
        assert not torch.allclose(_linear_net(activation="relu")(-x), -_linear_net(activation="relu")(x))
        assert not torch.allclose(_linear_net(bias=True)(2 * x), 2 * _linear_net(bias=True)(x))


@pytest.mark.parametrize(
    ("size", "opts"),
    [
        (8, {"kernel_size": 5, "padding": 0}),  # 8 -> 4 -> 2 -> (5x5 on 2x2) nothing
        (8, {"depth": 4}),  # 8 -> 4 -> 2 -> 1 -> 0
        (4, {"kernel_size": 6, "pool": "none"}),  # 4 + 2 - 6 + 1 = 1 -> 1 + 2 - 6 + 1 = -2
        ((32, 5), {"padding": 0}),  # the narrow side: 5 -> 3 -> 1 -> nothing
    ],
)
def test_impossible_combination_is_one_config_error(size: object, opts: dict[str, object]) -> None:
    with pytest.raises(
        ConfigError, match=r"model 'cnn'.*kernel_size = \d+, padding = \d+, pool = '\w+', depth"
    ):
        build_model("cnn", num_classes=10, image_size=size, **opts)  # type: ignore[arg-type]


def test_smallest_images() -> None:
    assert build_model("cnn", num_classes=2, image_size=4)(torch.zeros(1, 3, 4, 4)).shape == (1, 2)
    assert build_model(
        "cnn", num_classes=2, image_size=4, pool="none", kernel_size=1, padding=0
    ).fc.in_features
    assert build_model("cnn", num_classes=2, image_size=(4, 9)).fc.in_features == 32 * 1 * 2


@pytest.mark.parametrize(
    ("opts", "match"),
    [
        ({"kernel": 3}, r"Unknown option 'kernel'.*Did you mean 'kernel_size'.*Valid options of 'cnn'"),
        ({"dropuot": 0.1}, r"Did you mean 'dropout'"),
        ({"activation": "gelu"}, r"`activation` to be one of identity, leaky_relu, relu, sigmoid, tanh"),
        ({"pool": "avg"}, r"`pool` to be 'max' or 'none'"),
        ({"dropout": 1.0}, r"`dropout` to be a probability in \[0, 1\)"),
        ({"dropout": -0.1}, r"`dropout`"),
        ({"dropout": True}, r"`dropout`"),
        ({"bias": "no"}, r"`bias` to be true or false"),
        ({"kernel_size": 0}, r"`kernel_size` to be an int >= 1"),
        ({"padding": -1}, r"`padding` to be an int >= 0"),
        ({"width": 0}, r"`width` to be an int >= 1"),
        ({"depth": 1.5}, r"`depth` to be an int >= 1"),
    ],
)
def test_bad_options(opts: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_model("cnn", num_classes=10, **opts)  # type: ignore[arg-type]


def test_dropout_masks_are_seeded_and_leave_the_global_rng_alone() -> None:
    model = build_model("cnn", num_classes=10, image_size=8, seed=0, dropout=0.5).train()
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    state = torch.random.get_rng_state()
    with torch.no_grad():
        reseed(model, 7)
        first, second = model(x), model(x)
        reseed(model, 7)
        again = model(x)
        model.eval()
        e1, e2 = model(x), model(x)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert not torch.equal(first, second)  # a fresh mask per pass
    assert torch.equal(first, again)  # the same stream after the same seed
    assert torch.equal(e1, e2)  # no dropout in eval mode
    drop = SeededDropout(0.25)
    kept = drop(torch.ones(10_000)).unique().tolist()
    assert kept == [0.0, pytest.approx(1 / 0.75)]


def test_dropout_under_vmap_draws_per_candidate() -> None:
    model = build_model("cnn", num_classes=10, image_size=8, seed=0).train()
    params = {k: v.detach() for k, v in model.named_parameters()}
    xs = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(4)).expand(3, 2, 3, 8, 8)
    runs = []
    for _ in range(2):
        reseed(model, 1)
        runs.append(vmap(lambda xi: functional_call(model, params, (xi,)), randomness="different")(xs))
    assert not torch.equal(runs[0][0], runs[0][1]) and torch.equal(runs[0], runs[1])


def test_client_updates_are_reproducible_with_dropout(photos: np.ndarray) -> None:
    model = build_model("cnn", num_classes=10, image_size=8, seed=0)
    batch = photo_batch(photos, [0, 1], labels=[1, 2], size=8)
    training = TrainingConfig(seed=3)  # FedSGD in train mode: dropout is active
    state = torch.random.get_rng_state()
    a, a2, b = (local_update(model, batch, training, client_id=k) for k in (0, 0, 1))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(v, a2.update.params[k]) for k, v in a.update.params.items())
    assert not torch.equal(a.update.params["fc.weight"], b.update.params["fc.weight"])  # other masks


def test_gradient_matching_runs_on_the_standard_model() -> None:
    cfg = parse_config(
        {
            "data": {"source": "samples", "indices": [3], "image_size": 8},
            "model": {"name": "cnn", "seed": 0, "width": 4},
            "threat": {"model": "B"},
            "metrics": {"lpips": "off", "stlpips": "off"},
            "attack": {"name": "dlg", "iterations": 2, "max_iter": 3, "restarts": 2},
        }
    )
    runs = [run_experiment(cfg, device="cpu") for _ in range(2)]
    r = runs[0]
    assert 1 <= len(r.result.loss_history) <= 2
    assert torch.isfinite(torch.tensor(r.result.loss_history)).all()
    rec = r.result.reconstruction.images
    assert rec.shape == r.truth.images.shape == (1, 3, 8, 8) and torch.isfinite(rec).all()
    assert "psnr" in r.evaluation.metrics
    assert torch.equal(rec, runs[1].result.reconstruction.images)  # seeded dropout: the same run twice
