"""Client-side vetting: the honest set passes with no finding, every model crafted by a malicious-server
attack is flagged; each check against a hand-built oracle (closed-form binomial, naive comparisons)."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from gradinv.attacks import ATTACKS, create_attack
from gradinv.data import ImageDataset
from gradinv.errors import ModelError
from gradinv.fl import apply_update, run_round
from gradinv.models import INIT_SCHEMES, MODELS, build_model
from gradinv.models.imprint import ImprintBlock, ImprintModel
from gradinv.threat import observe_server
from gradinv.types import ModelUpdate, TrainingConfig
from gradinv.vetting import checks, vet
from tests.helpers import photo_batch

# --------------------------------------------------------------------------------------------------
# The honest set
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("init", sorted(INIT_SCHEMES))
@pytest.mark.parametrize("name", MODELS.names())
def test_untrained_models_of_every_architecture_and_init_pass(name, init):
    model = build_model(name, num_classes=10, init=init, seed=3)
    report = vet(model, architecture=name if init == "default" else None)
    assert report.clean, report.format()
    assert "consistency" in report.skipped


@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["resnet20", "resnet56"])
def test_trained_cifar_resnets_pass(shared, name):
    path = next((shared / "weights").glob(f"cifar10_{name}-*.th"))
    model = build_model(name, num_classes=10, checkpoint=path)
    report = vet(model, architecture=name)
    assert report.clean, report.format()


@pytest.mark.parametrize(
    ("name", "options", "training"),
    [
        ("lenet", {}, TrainingConfig("fedavg", epochs=2, batch_size=2, lr=0.1)),
        ("mlp", {"hidden": [64]}, TrainingConfig("fedavg", epochs=1, batch_size=2, lr=0.05, momentum=0.9)),
        ("convnet", {"width": 8}, TrainingConfig("fedsgd", lr=0.2)),
    ],
)
def test_models_after_honest_fedavg_rounds_pass(photos, name, options, training):
    """Four clients on real photos, three rounds of run_round + apply_update: the received model, its
    change since the previous round, the identical models of the others and a client's own update
    raise nothing."""
    model = build_model(name, num_classes=10, image_size=16, seed=0, **options)
    batches = [photo_batch(photos, [2 * k, 2 * k + 1], labels=[k, k + 4], size=16) for k in range(4)]
    previous = model
    for _ in range(3):
        rnd = run_round(model, batches, training)
        previous, model = model, apply_update(model, rnd.aggregate)
    own = run_round(model, batches[:1], training).updates[0].update
    report = vet(
        model,
        previous=previous,
        others=[copy.deepcopy(model) for _ in range(3)],
        architecture=name,
        architecture_options={"image_size": 16, **options},
        update=own,
    )
    assert report.clean, report.format()
    assert not report.skipped


# --------------------------------------------------------------------------------------------------
# Every malicious model is flagged
# --------------------------------------------------------------------------------------------------


def _craft(
    attack_name: str, model: nn.Module, photos: np.ndarray, *, threat: str = "F", clients: int = 1, **cfg
):
    batch = photo_batch(photos, [0, 1, 2, 3], labels=[3, 3, 1, 8])
    surrogate = ImageDataset(np.ascontiguousarray(photos[:, ::-1]), np.full(len(photos), 3), (), "flipped")
    knowledge = observe_server(
        model,
        threat,
        batches=(batch,) * clients,
        training=TrainingConfig(),
        num_classes=10,
        surrogate=surrogate,
    )
    attack = create_attack(attack_name, **cfg)
    return attack.craft(knowledge), batch


MALICIOUS = [
    (
        "robbing-the-fed",
        "lenet",
        {},
        "F",
        {"bins": 50},
        {"parallel-rows", "monotone-bias", "constant-weights"},
    ),
    ("robbing-the-fed", "resnet20", {}, "F", {"bins": 50, "structure": "sparse"}, {"parallel-rows"}),
    (
        "robbing-the-fed",
        "mlp",
        {},
        "G",
        {"bins": 50, "measurements": ["brightness", "top"]},
        {"parallel-rows"},
    ),
    ("trap-weights", "mlp", {}, "F", {}, {"sign-balanced-rows", "sparse-activations"}),
    (
        "trap-weights",
        "mlp",
        {"hidden": [48]},
        "G",
        {"calibrate": True},
        {"sign-balanced-rows"},  # calibrated on surrogate photos: not sparse on the seeded probes
    ),
    ("fishing", "lenet", {}, "F", {"target_class": 3}, {"zero-weights", "saturating-bias", "extreme-bias"}),
    ("fishing", "mlp", {}, "G", {"mode": "feature", "target_class": 3}, {"zero-weights", "saturating-bias"}),
    (
        "fishing",
        "resnet20",
        {},
        "G",
        {"mode": "feature", "target_class": 3},
        {"zero-weights", "saturating-bias"},
    ),
]


@pytest.mark.parametrize(("attack", "model", "options", "threat", "cfg", "kinds"), MALICIOUS)
def test_every_crafted_model_is_flagged(photos, attack, model, options, threat, cfg, kinds):
    honest = build_model(model, num_classes=10, seed=0, **options)
    crafted, _batch = _craft(attack, honest, photos, threat=threat, **cfg)
    alone = vet(crafted[0])
    assert kinds <= alone.kinds(), alone.format()
    full = vet(crafted[0], previous=honest, architecture=model, architecture_options=options)
    assert kinds <= full.kinds()
    if attack == "robbing-the-fed":
        arch = [f for f in full.findings if f.kind == "architecture-change"]
        assert (
            arch
            and "nested under 'body.'" in arch[0].evidence
            and "imprint.linear0.weight" in arch[0].evidence
        )
    else:  # parameters changed in place: a targeted, large edit of the previous model
        assert full.kinds() & {"large-jump", "localized-change"} or attack == "trap-weights"
    json.dumps(full.to_dict())


def test_crafted_updates_are_flagged(photos):
    """The victim's own update on a sparse imprint model: almost every bin row is zero."""
    crafted, batch = _craft(
        "robbing-the-fed", build_model("lenet", num_classes=10, seed=0), photos, bins=200, structure="sparse"
    )
    update = run_round(crafted[0], [batch], TrainingConfig()).updates[0].update
    assert "sparse-update-rows" in vet(crafted[0], update=update).kinds()


@pytest.mark.skipif(
    "inconsistent-models" not in ATTACKS, reason="inconsistent-models attack not in this tree"
)
@pytest.mark.parametrize("name", ["lenet", "resnet20"])
def test_inconsistent_models_are_flagged(photos, name):
    """Pasquini et al.: the victim gets the real model (flagged only by comparison with the others);
    every other client gets a silenced model (flagged on its own, and by its zero update)."""
    honest = build_model(name, num_classes=10, seed=0)
    models, batch = _craft("inconsistent-models", honest, photos, threat="H", clients=3)
    victim, silenced = models[0], models[1]
    assert vet(victim).clean  # a faithful copy of the global model: nothing to see alone
    assert "inconsistent-models" in vet(victim, others=models[1:]).kinds()
    assert {"zero-weights", "extreme-bias"} <= vet(silenced).kinds()
    update = run_round(silenced, [batch], TrainingConfig()).updates[0].update
    assert "isolated-update" in vet(silenced, update=update).kinds()


@pytest.mark.skipif("sybil-ddp" not in ATTACKS, reason="sybil-ddp attack not in this tree")
def test_sybil_models_are_honest_copies_and_cannot_be_flagged(photos):
    """A documented limit: the sybil attack changes who takes part, not the model, so every received
    model is the global model bit for bit and vetting it finds nothing."""
    honest = build_model("mlp", num_classes=10, seed=0)
    models, _ = _craft("sybil-ddp", honest, photos, threat="H", clients=3)
    for m in models:
        assert vet(m, previous=honest, others=[x for x in models if x is not m]).clean


# --------------------------------------------------------------------------------------------------
# Single checks against oracles
# --------------------------------------------------------------------------------------------------


def test_parallel_rows_and_sorted_offsets():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(12, 40, generator=gen)
    assert not checks.check_parallel_rows({"l.weight": w})
    w[3:8] = w[2] * torch.tensor([0.5, 2.0, 3.0, 4.0, 5.0])[:, None]
    bias = torch.randn(12, generator=gen)
    bias[2:8] = -torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]) * w[2:8].norm(dim=1)
    (f,) = checks.check_parallel_rows({"l.weight": w, "l.bias": bias})
    assert f.numbers["parallel_rows"] == 6 and f.numbers["sorted_offsets"] == 1.0


def test_half_negative_rows_against_the_binomial_closed_form():
    fan_in, rows = 64, 40
    p0 = math.comb(fan_in, fan_in // 2) / 2**fan_in  # naive closed form
    gen = torch.Generator().manual_seed(1)
    w = torch.rand(rows, fan_in, generator=gen)
    for r in range(rows):
        w[r, torch.randperm(fan_in, generator=gen)[: fan_in // 2]] *= -1
    (f,) = checks.check_sign_balance({"fc.weight": w})
    expected = math.log10(p0**rows)  # all rows exact: P(X >= rows) = p0^rows
    assert f.numbers["log10_chance"] == pytest.approx(expected, rel=1e-6)
    honest = torch.randn(rows, fan_in, generator=gen)
    assert not checks.check_sign_balance({"fc.weight": honest})


def test_monotone_bias_and_saturating_classifier_bias():
    assert checks.check_monotone_bias({"a.bias": torch.arange(20.0)})
    assert not checks.check_monotone_bias({"a.bias": torch.randn(20)})
    state = {"fc.weight": torch.randn(10, 8), "fc.bias": torch.zeros(10)}
    assert not checks.check_classifier_bias(state)
    state["fc.bias"][1:] = 25.0
    (f,) = checks.check_classifier_bias(state)
    assert f.numbers["spread"] == 25.0 and "class(es) [0]" in f.evidence


def test_architecture_change_names_the_inserted_block():
    body = build_model("mlp", num_classes=10, image_size=8, seed=0)
    crafted = ImprintModel(ImprintBlock((3, 8, 8), bins=5), copy.deepcopy(body))
    report = vet(crafted, previous=body)
    (f,) = [f for f in report.findings if f.kind == "architecture-change"]
    assert "nested under 'body.'" in f.evidence and "imprint.linear1 (Linear)" in f.evidence
    assert f.numbers["added"] == 4 and f.numbers["missing"] == 0
    reshaped = build_model("mlp", num_classes=10, image_size=8, hidden=(32,), seed=0)
    kinds = [
        f.kind for f in vet(reshaped, architecture="mlp", architecture_options={"image_size": 8}).findings
    ]
    assert kinds == ["architecture-change"]


def test_consistency_is_bit_exact():
    model = build_model("lenet", num_classes=10, seed=0)
    same = [copy.deepcopy(model), copy.deepcopy(model)]
    assert vet(model, others=same).clean
    with torch.no_grad():
        same[1].fc.weight[0, 0] += 1e-6
    (f,) = vet(model, others=same).findings
    assert f.kind == "inconsistent-models" and f.numbers["inconsistent_clients"] == 1
    assert f.parameters == ("fc.weight",)


def test_change_since_previous_and_update_checks():
    prev = build_model("mlp", num_classes=10, image_size=8, hidden=(64, 32), seed=0)
    moved = copy.deepcopy(prev)
    with torch.no_grad():
        moved.net[5].weight.mul_(-3.0)  # one tensor replaced, far beyond a training step
    kinds = {f.kind for f in checks.check_change(moved.state_dict(), prev.state_dict())}
    assert kinds == {"localized-change", "large-jump"}
    zero = {k: torch.zeros_like(v) for k, v in prev.state_dict().items()}
    assert [f.kind for f in checks.check_update(zero)] == ["zero-update"]
    sparse = {k: torch.randn_like(v) for k, v in zero.items()}
    sparse["net.1.weight"][4:] = 0  # 60 of 64 rows silent
    assert [f.kind for f in checks.check_update(sparse)] == ["sparse-update-rows"]
    only_bias = dict(zero, **{"net.5.bias": torch.ones(10)})
    assert "isolated-update" in {f.kind for f in checks.check_update(only_bias)}
    report = vet(prev, update=ModelUpdate("gradient", {k: v for k, v in sparse.items()}))
    assert report.kinds() == {"sparse-update-rows"}


def test_bad_input_is_a_clear_error():
    with pytest.raises(ModelError, match=r"nn\.Module or a state_dict"):
        vet("model.pt")  # type: ignore[arg-type]
    with pytest.raises(ModelError, match="empty"):
        vet({})


def test_non_finite_models_and_updates_are_refused():
    """NaN or inf anywhere vet() is given is one clear error naming the tensor (not a finding)."""
    from gradinv.errors import UpdateError

    model = build_model("mlp", num_classes=10, image_size=8, seed=0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["net.1.weight"][0, 0] = float("nan")
    with pytest.raises(ModelError, match=r"finite numbers in the received model.*'net\.1\.weight' \(1 of"):
        vet(state)
    with pytest.raises(ModelError, match="previous model"):
        vet(model, previous=state)
    with pytest.raises(ModelError, match="model #1 of others"):
        vet(model, others=[model, state])
    grads = {k: torch.zeros_like(v) for k, v in model.named_parameters()}
    grads["net.1.bias"][2] = float("inf")
    with pytest.raises(UpdateError, match=r"finite numbers in the update.*'net\.1\.bias'"):
        vet(model, update=grads)
    assert vet(model, previous=model.state_dict()).clean  # finite inputs still pass
