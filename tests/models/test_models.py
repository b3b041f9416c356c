"""Every registered model: shapes, classifier placement, closed-form sizes, seeding, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from gradinv.errors import ConfigError, ModelError
from gradinv.models import (
    MODELS,
    ModelShape,
    ModelSpec,
    build_model,
    count_parameters,
    default_normalization,
    find_classifier,
)
from gradinv.models.registry import NORMALIZATIONS

ALL = MODELS.names()
FAST = {"convnet": {"width": 4}, "mlp": {"hidden": (16,)}}  # keep the big defaults out of the loop


def _images(photos: np.ndarray, channels: int, size: int) -> torch.Tensor:
    x = torch.from_numpy(photos[:4]).permute(0, 3, 1, 2).float() / 255
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.mean(1, keepdim=True) if channels == 1 else x


def _last_parameterised(model: nn.Module) -> nn.Module:
    return [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))][-1]


def test_registry_names_and_specs() -> None:
    assert ALL == [
        "cnn",
        "convnet",
        "lenet",
        "mlp",
        "resnet18",
        "resnet20",
        "resnet32",
        "resnet56",
        "rgap-cnn6",
    ]
    for name in ALL:
        spec = MODELS.get(name)
        assert spec.name == name and spec.description and spec.paper
        assert spec.default_normalization in NORMALIZATIONS
        assert default_normalization(name) == spec.default_normalization
    assert default_normalization("resnet56") == "imagenet"
    assert default_normalization("lenet") == "none"


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize(("channels", "size", "classes"), [(3, 32, 10), (1, 28, 7)])
def test_builds_outputs_logits_from_a_final_linear(
    photos: np.ndarray, name: str, channels: int, size: int, classes: int
) -> None:
    model = build_model(
        name, num_classes=classes, in_channels=channels, image_size=size, seed=0, **FAST.get(name, {})
    )
    assert model.training
    last = _last_parameterised(model)
    assert isinstance(last, nn.Linear) and last.bias is not None and last.out_features == classes
    w_name, b_name = find_classifier(model)
    params = dict(model.named_parameters())
    assert params[w_name] is last.weight and b_name is not None and params[b_name] is last.bias

    seen: list[torch.Tensor] = []
    last.register_forward_hook(lambda _m, _i, out: seen.append(out))
    x = _images(photos, channels, size)
    out = model.eval()(x)
    assert out.shape == (4, classes) and torch.isfinite(out).all()
    assert torch.equal(out, seen[0])  # the output is the classifier's output: logits, no softmax


def test_lenet_closed_forms() -> None:
    c, k, classes = 3, 5, 10
    conv_params = (c * 12 * k * k + 12) + 2 * (12 * 12 * k * k + 12)
    fc_in = 12 * math.ceil(32 / 4) * math.ceil(32 / 4)
    assert fc_in == 768
    model = build_model("lenet", num_classes=classes)
    assert count_parameters(model) == conv_params + fc_in * classes + classes == 15826
    for h, w in [(28, 28), (31, 17), (1, 1)]:
        net = build_model("lenet", num_classes=2, in_channels=1, image_size=(h, w))
        assert net.fc.in_features == 12 * math.ceil(h / 4) * math.ceil(w / 4)


def test_convnet_closed_forms() -> None:
    w = 8
    model = build_model("convnet", num_classes=10, width=w)
    assert model.model.linear.in_features == 36 * w
    widths = [(3, w), (w, 2 * w), (2 * w, 2 * w), (2 * w, 4 * w)] + [(4 * w, 4 * w)] * 4
    expected = sum(ci * co * 9 + co + 2 * co for ci, co in widths) + 36 * w * 10 + 10
    assert count_parameters(model) == expected
    # 28 -> 9 -> 3 after the two stride-3 max-pools; 40 -> 13 -> 4
    assert (
        build_model("convnet", num_classes=2, image_size=40, width=2).model.linear.in_features == 4 * 2 * 16
    )


def _cifar_resnet_params(n: int, classes: int = 10) -> int:
    total = 3 * 16 * 9 + 2 * 16
    cin = 16
    for c in (16, 32, 64):
        total += cin * c * 9 + c * c * 9 + 4 * c  # first block (option-A shortcut: no parameters)
        total += (n - 1) * (2 * c * c * 9 + 4 * c)
        cin = c
    return total + 64 * classes + classes


@pytest.mark.parametrize(("name", "n"), [("resnet20", 3), ("resnet32", 5), ("resnet56", 9)])
def test_cifar_resnet_parameter_counts(name: str, n: int) -> None:
    model = build_model(name, num_classes=10)
    assert count_parameters(model) == _cifar_resnet_params(n)
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) + 1 == 6 * n + 2  # depth = convs + fc


def test_resnet18_parameter_count() -> None:
    def block(cin: int, c: int, proj: bool) -> int:
        return cin * c * 9 + c * c * 9 + 4 * c + (cin * c + 2 * c if proj else 0)

    total = 3 * 64 * 9 + 2 * 64 + 512 * 10 + 10
    cin = 64
    for c in (64, 128, 256, 512):
        total += block(cin, c, cin != c) + block(c, c, False)
        cin = c
    assert count_parameters(build_model("resnet18", num_classes=10)) == total == 11173962


def test_mlp_options() -> None:
    model = build_model("mlp", num_classes=3, in_channels=1, image_size=8, hidden=[5, 4], activation="tanh")
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 5), (5, 4), (4, 3)]
    assert sum(isinstance(m, nn.Tanh) for m in model.modules()) == 2
    logistic = build_model("mlp", num_classes=3, image_size=4, hidden=())
    assert count_parameters(logistic) == 3 * 4 * 4 * 3 + 3


def test_seed_reproducible_and_global_rng_untouched() -> None:
    state = torch.get_rng_state()
    a = build_model("convnet", num_classes=10, width=4, seed=3)
    b = build_model("convnet", num_classes=10, width=4, seed=3)
    c = build_model("convnet", num_classes=10, width=4, seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["model.conv0.weight"], sc["model.conv0.weight"])
    assert not torch.equal(sa["model.linear.weight"], sc["model.linear.weight"])


def test_unseeded_build_uses_global_rng() -> None:
    torch.manual_seed(5)
    a = build_model("lenet", num_classes=2)
    torch.manual_seed(5)
    b = build_model("lenet", num_classes=2)
    c = build_model("lenet", num_classes=2)
    assert torch.equal(a.fc.weight, b.fc.weight) and not torch.equal(b.fc.weight, c.fc.weight)


def test_unknown_model_name() -> None:
    with pytest.raises(ConfigError, match=r"Unknown model 'lenett'\. Did you mean 'lenet'\?.*resnet20"):
        build_model("lenett", num_classes=10)


def test_unknown_option() -> None:
    with pytest.raises(
        ConfigError, match=r"'widht'.*Did you mean 'width'.*Valid options of 'convnet': width"
    ):
        build_model("convnet", num_classes=10, widht=8)
    with pytest.raises(ConfigError, match="'lenet' takes no options"):
        build_model("lenet", num_classes=10, width=8)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_classes": 1}, "num_classes.*>= 2"),
        ({"num_classes": 10, "in_channels": 0}, "in_channels.*>= 1"),
        ({"num_classes": 10, "image_size": 0}, "image_size"),
        ({"num_classes": 10, "image_size": (32,)}, "image_size"),
        ({"num_classes": 10, "seed": -1}, "seed"),
        ({"num_classes": 10, "init": "xavier"}, "Unknown initialisation scheme 'xavier'"),
        ({"num_classes": 10, "width": 0}, "width.*>= 1"),
    ],
)
def test_bad_config(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_model("convnet", **kwargs)  # type: ignore[arg-type]


def test_bad_mlp_options() -> None:
    with pytest.raises(ConfigError, match=r"activation.*relu, sigmoid, tanh.*'gelu'"):
        build_model("mlp", num_classes=10, activation="gelu")
    with pytest.raises(ConfigError, match="hidden"):
        build_model("mlp", num_classes=10, hidden="64")


def test_image_too_small_for_convnet() -> None:
    with pytest.raises(
        ModelError, match=r"image size that fits model 'convnet' \(at least 9x9\).*4x4.*image_size"
    ):
        build_model("convnet", num_classes=10, image_size=4, width=2)
    assert build_model("convnet", num_classes=10, image_size=9, width=2)(torch.zeros(2, 3, 9, 9)).shape == (
        2,
        10,
    )


def test_lenet_has_no_minimum_size() -> None:
    # stride-2 convolutions with padding 2 map any H >= 1 to ceil(H / 2): LeNet fits every size
    net = build_model("lenet", num_classes=3, image_size=4)
    assert net.fc.in_features == 12 and net(torch.zeros(1, 3, 4, 4)).shape == (1, 3)


def test_dummy_forward_failure_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    def fixed_32(shape: ModelShape) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(shape.in_channels * 32 * 32, shape.num_classes))

    spec = ModelSpec("fixed", fixed_32, "fixed input size", "-", "default", "none")  # no declared minimum
    monkeypatch.setitem(MODELS._items, "fixed", spec)
    assert build_model("fixed", num_classes=2)(torch.zeros(1, 3, 32, 32)).shape == (1, 2)
    with pytest.raises(
        ModelError, match=r"fits model 'fixed'.*but got 16x16.*zeros \(2, 3, 16, 16\).*image_size = 32"
    ):
        build_model("fixed", num_classes=2, image_size=16)
    declared = ModelSpec(
        "fixed", fixed_32, "fixed", "-", "default", "none", min_image_size=32, min_image_reason="fixed input"
    )
    monkeypatch.setitem(MODELS._items, "fixed", declared)  # a declared minimum is checked before building
    with pytest.raises(ModelError, match=r"at least 32x32\), but got 16x16: fixed input\. Use image_size"):
        build_model("fixed", num_classes=2, image_size=16)


@pytest.mark.parametrize("name", MODELS.names())
def test_min_image_size_trains_one_image_and_smaller_is_refused(name: str) -> None:
    """At ``min_image_size`` a client can train on a single image (train mode, forward + backward);
    one pixel less is one clear ModelError at build time, not a raw BatchNorm ValueError later."""
    spec = MODELS.get(name)
    size = spec.min_image_size
    model = build_model(name, num_classes=10, image_size=size, seed=0).train()
    model(torch.rand(1, 3, size, size)).sum().backward()
    if size > 1:
        with pytest.raises(
            ModelError, match=rf"fits model '{name}' \(at least {size}x{size}\).*Use image_size"
        ):
            build_model(name, num_classes=10, image_size=size - 1, seed=0)
        with pytest.raises(ModelError, match=rf"at least {size}x{size}"):
            build_model(name, num_classes=10, image_size=(size, size - 1), seed=0)
