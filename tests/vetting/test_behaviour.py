"""Behaviour-based vetting on malicious models written independently of ``gradinv.attacks`` (this file
must not import it): trap weights the common way (Boenisch et al., EuroS&P 2023: uniform magnitudes,
each entry negative with probability 1/2, negatives scaled x3, so rows are mostly negative and not
exactly half) on an MLP's first Linear and on the first conv of ResNet-20 / ConvNet, and a Robbing
the Fed imprint (Fowl et al., ICLR 2022: identical rows measuring mean brightness, biases at Gaussian
quantiles) in front of an MLP. Honest models (several seeds and init schemes, and models trained on
real digits from ``sklearn.datasets.load_digits``) pass with no finding.

Measured with these helpers (seeded probes of :func:`gradinv.vetting.behaviour.noise_probes`; the
numbers and how they were taken are in ``docs/malicious_server_and_vetting.md``): the share of
rarely firing units (rate < 5%) of the input layer is at most 0.50 for untrained models of every
registered architecture x init scheme x seeds 0-2, at most 0.72 for models trained on digits (on
the probes and on the digits), and 0.86-1.00 for the x3 trap weights below (1.00 on MLPs, also
x1.2); the largest correlation between two honest Linear units over the probes is 0.90, and above
0.99999 between imprint bins (also jittered to a row cosine of 0.9996, which ``parallel-rows``
misses). Thresholds: 80% rare units, correlation 0.999, a rise of 40 points since the previous
model.
"""

from __future__ import annotations

import copy
import math
from statistics import NormalDist

import pytest
import torch
from sklearn.datasets import load_digits
from torch import Tensor, nn

from gradinv.cli.app import main
from gradinv.models import INIT_SCHEMES, build_model
from gradinv.vetting import behaviour, checks, vet
from tests.helpers import photo_batch

# --------------------------------------------------------------------------------------------------
# Independent malicious constructions (not gradinv.attacks)
# --------------------------------------------------------------------------------------------------


def trap(layer: nn.Module, negative_scale: float = 3.0, seed: int = 0) -> None:
    """Trap weights written the common way: uniform magnitudes, random signs (binomial, not exactly
    half negative per row), negative entries scaled up, zero bias."""
    gen = torch.Generator().manual_seed(seed)
    w = layer.weight
    fan_in = w[0].numel()
    magnitude = torch.rand(w.shape, generator=gen) / math.sqrt(fan_in)
    negative = torch.rand(w.shape, generator=gen) < 0.5
    with torch.no_grad():
        w.copy_(torch.where(negative, -negative_scale * magnitude, magnitude))
        if layer.bias is not None:
            layer.bias.zero_()


class Imprint(nn.Module):
    """Bins of mean brightness in front of ``body``: ``x + W2 relu(W1 x + b)`` with identical rows
    ``W1_i = 1 / D`` (plus ``jitter`` of relative size to disguise them) and cut-offs ``-b_i`` at the
    ``i / (k + 1)`` quantiles of N(0.47, 0.125^2)."""

    def __init__(self, body: nn.Module, shape: tuple[int, int, int], bins: int = 32, jitter: float = 0.0):
        super().__init__()
        d = shape[0] * shape[1] * shape[2]
        gen = torch.Generator().manual_seed(1)
        self.bins = nn.Linear(d, bins)
        self.out = nn.Linear(bins, d, bias=False)
        dist = NormalDist(0.47, 0.125)
        with torch.no_grad():
            rows = torch.full((bins, d), 1.0 / d)
            self.bins.weight.copy_(rows * (1 + jitter * torch.randn(bins, d, generator=gen)))
            self.bins.bias.copy_(torch.tensor([-dist.inv_cdf((i + 1) / (bins + 1)) for i in range(bins)]))
            self.out.weight.fill_(1e-3)
        self.body = body

    def forward(self, x: Tensor) -> Tensor:
        z = x.flatten(1)
        out: Tensor = self.body((z + self.out(torch.relu(self.bins(z)))).view_as(x))
        return out


def first_layer(model: nn.Module) -> nn.Module:
    return next(m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))


@pytest.fixture(scope="module")
def digits() -> tuple[Tensor, Tensor]:
    d = load_digits()
    return torch.tensor(d.data, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0, torch.tensor(d.target)


def train_on_digits(model: nn.Module, x: Tensor, y: Tensor, steps: int, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (32,), generator=gen)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


# --------------------------------------------------------------------------------------------------
# Honest models pass
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mlp", "lenet", "cnn", "resnet20", "rgap-cnn6", "convnet"])
def test_untrained_input_layers_fire_broadly(name):
    """Seeds 0-2 x every init scheme: the share of rarely firing input units stays far below 80%
    (measured max 0.47, ConvNet default init), and no finding is raised."""
    options = {"width": 16} if name == "convnet" else {}
    worst = 0.0
    for init in sorted(INIT_SCHEMES):
        for seed in range(3):
            model = build_model(name, num_classes=10, init=init, seed=seed, **options)
            acts = behaviour.activity(model, behaviour.noise_probes((3, 32, 32)))
            worst = max(worst, max(a.rare_fraction for a in acts.values()))
            assert not behaviour.check_sparse_activations(acts, "probes")
            assert not behaviour.check_binning(acts, "probes")
    assert worst <= 0.5


@pytest.mark.parametrize(("name", "steps"), [("mlp", 40), ("mlp", 300), ("cnn", 300), ("convnet", 40)])
def test_models_trained_on_real_digits_pass(digits, name, steps):
    """Trained on sklearn's digits: no finding on the probes, on the digits themselves, or against
    the model of 20 steps earlier (an honest round)."""
    x, y = digits
    options = {"width": 8} if name == "convnet" else {}
    size = 16 if name == "convnet" else 8
    xs = nn.functional.interpolate(x, size=(size, size), mode="bilinear") if size != 8 else x
    model = build_model(name, num_classes=10, in_channels=1, image_size=size, seed=0, **options)
    train_on_digits(model, xs, y, steps - 20)
    previous = copy.deepcopy(model)
    train_on_digits(model, xs, y, 20, seed=1)
    report = vet(model, previous=previous, data=xs[:256])
    assert report.clean, report.format()
    assert "behaviour" in report.checks


def test_honest_state_dict_with_architecture_runs_the_behaviour_checks():
    model = build_model("mlp", num_classes=10, image_size=8, seed=0)
    report = vet(model.state_dict(), architecture="mlp", architecture_options={"image_size": 8})
    assert report.clean and "behaviour" in report.checks
    alone = vet(model.state_dict())
    assert "behaviour" in alone.skipped and alone.clean


# --------------------------------------------------------------------------------------------------
# Independent malicious models are flagged
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "options", "negative_scale"),
    [("mlp", {}, 3.0), ("mlp", {}, 1.2), ("resnet20", {}, 3.0), ("convnet", {"width": 16}, 3.0)],
)
def test_common_trap_weights_are_flagged(photos, name, options, negative_scale):
    """The issue's trap: the parameter checks miss it (no row is exactly half negative); the
    behaviour check sees its units fire for almost no input, on the probes and on real photos."""
    model = build_model(name, num_classes=10, seed=0, **options)
    trap(first_layer(model), negative_scale)
    report = vet(model)
    assert "sparse-activations" in report.kinds(), report.format()
    assert "sign-balanced-rows" not in report.kinds()
    (f,) = [f for f in report.findings if f.kind == "sparse-activations"]
    assert f.numbers["rare_fraction"] >= 0.8 and "threshold 80%" in f.evidence
    on_data = vet(model, data=photo_batch(photos, list(range(8))).images)
    assert "sparse-activations" in on_data.kinds()


def test_trap_planted_in_a_trained_model_shifts_its_activity(digits):
    """Previous global model trained on digits; the server plants traps in its first layer."""
    x, y = digits
    previous = train_on_digits(
        build_model("mlp", num_classes=10, in_channels=1, image_size=8, seed=0), x, y, 100
    )
    received = copy.deepcopy(previous)
    trap(received.net[1])
    report = vet(received, previous=previous, data=x[:256])
    assert {"activation-shift", "sparse-activations"} <= report.kinds(), report.format()
    (f,) = [f for f in report.findings if f.kind == "activation-shift"]
    assert f.numbers["rare_fraction"] - f.numbers["previous_rare_fraction"] >= 0.4


@pytest.mark.parametrize("jitter", [0.0, 0.02])
def test_imprint_bins_in_front_of_an_mlp_are_flagged(jitter):
    """Robbing the Fed written by hand; with jitter its rows are no longer parallel to 1e-4, so the
    parameter check ``parallel-rows`` misses it while the probes still show bins."""
    model = Imprint(build_model("mlp", num_classes=10, seed=0), (3, 32, 32), jitter=jitter)
    report = vet(model)
    assert "binning-activations" in report.kinds(), report.format()
    (f,) = [f for f in report.findings if f.kind == "binning-activations"]
    assert f.numbers["largest_group"] >= 4
    parallel = {p for f in report.findings if f.kind == "parallel-rows" for p in f.parameters}
    assert ("bins.weight" in parallel) == (jitter == 0)
    if jitter == 0:
        assert f.numbers["nested"] == 1.0


def test_cli_flags_a_trap_checkpoint(tmp_path, capsys):
    model = build_model("mlp", num_classes=10, seed=0)
    trap(model.net[1])
    path = tmp_path / "received.pt"
    torch.save(model.state_dict(), path)
    assert main(["vet", "--model", "mlp", "--checkpoint", str(path)]) == 1
    assert "sparse-activations" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------------
# Oracles
# --------------------------------------------------------------------------------------------------


def test_rates_against_a_naive_count():
    layer = nn.Linear(5, 3)
    x = torch.rand(40, 5)
    (a,) = behaviour.activity(nn.Sequential(layer, nn.ReLU(), nn.Linear(3, 2)), x).values()
    naive = [
        sum(float(layer.weight[u].detach() @ x[i] + layer.bias[u].detach()) > 0 for i in range(40)) / 40
        for u in range(3)
    ]
    assert a.rates.tolist() == pytest.approx(naive)
    assert a.name == "0"


def test_input_shape_is_guessed_and_modes_are_restored():
    model = build_model("cnn", num_classes=10, in_channels=1, image_size=28, seed=0).train()
    assert behaviour.infer_input_shape(model) == (1, 28, 28)
    assert behaviour.infer_input_shape(build_model("mlp", num_classes=10, image_size=8, seed=0)) == (3, 8, 8)
    behaviour.activity(model, torch.rand(4, 1, 28, 28))
    assert all(m.training for m in model.modules())
    assert checks  # the parameter checks stay importable alongside
