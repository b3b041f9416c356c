"""Threat models A–H, the attacker's view, and refusals that explain themselves."""

from __future__ import annotations

import pytest
import torch

from gradinv.attacks import create_attack
from gradinv.errors import AttackRefused, ConfigError
from gradinv.models import build_model
from gradinv.threat import (
    BASIC_FIELDS,
    LEVELS,
    THREAT_MODELS,
    Knowledge,
    Source,
    check_requirements,
    get_threat_model,
    threat_model_from_levels,
    weakest_granting,
)
from gradinv.types import TrainingConfig
from tests.helpers import photo_batch, simulate_view, tiny_lenet

K = Knowledge
# The table of the issue / Carletti et al. (USENIX Security 2025), typed independently of the code.
TABLE = {
    "A": "1000000",
    "B": "1100000",
    "C": "1110000",
    "D": "1111000",
    "E": "1111100",
    "F": "1110010",
    "G": "1111010",
    "H": "1111011",
}
ORDER = [
    K.MODEL_UPDATES,
    K.BASIC_KNOWLEDGE,
    K.TRAINING_DETAILS,
    K.SURROGATE_DATA,
    K.CLIENT_DATA_DISTRIBUTION,
    K.ACTIVE_MANIPULATION,
    K.CLIENT_SELECTION,
]


@pytest.mark.parametrize("tid", sorted(TABLE))
def test_table_matches_paper(tid):
    flags = {k for k, bit in zip(ORDER, TABLE[tid]) if bit == "1"}
    assert THREAT_MODELS[tid].grants == frozenset(flags)


def test_lookup_and_custom_models():
    assert get_threat_model("b").id == "B"
    tm = get_threat_model("B+labels")
    assert tm.allows(K.LABELS) and not get_threat_model("B").allows(K.LABELS)
    assert get_threat_model("E").allows(K.LABELS)  # via the label histogram
    assert not get_threat_model("E-client_data_distribution").allows(K.CLIENT_DATA_DISTRIBUTION)
    with pytest.raises(ConfigError, match="Valid threat models"):
        get_threat_model("Z")
    with pytest.raises(ConfigError, match="Did you mean 'labels'"):
        get_threat_model("B+lables")


def test_levels_and_weakest():
    assert threat_model_from_levels([0]).grants == LEVELS[0] == {K.MODEL_UPDATES, K.BASIC_KNOWLEDGE}
    assert threat_model_from_levels([0, 3, 4]).allows(K.CLIENT_DATA_DISTRIBUTION)
    assert weakest_granting({K.MODEL_UPDATES}).id == "A"
    assert weakest_granting({K.TRAINING_DETAILS}).id == "C"
    assert weakest_granting({K.CLIENT_DATA_DISTRIBUTION}).id == "E"
    assert weakest_granting({K.ACTIVE_MANIPULATION}).id == "F"
    assert weakest_granting({K.ACTIVE_MANIPULATION, K.SURROGATE_DATA}).id == "G"
    assert weakest_granting({K.CLIENT_SELECTION}).id == "H"
    assert weakest_granting({K.CLIENT_SELECTION, K.CLIENT_DATA_DISTRIBUTION}) is None


def test_view_removes_what_is_not_granted(photos):
    model = build_model("convnet", num_classes=10, width=4)
    batch = photo_batch(photos, [0, 1], labels=[4, 7])
    tr = TrainingConfig("fedavg", epochs=2, batch_size=1, lr=0.01, seed=9)
    _, a = simulate_view(model, [batch], tr, threat="A")
    assert a.num_samples is None and a.normalization is None and a.class_names == ()
    assert a.training is None and a.label_counts is None and a.bn_statistics is None
    # what the model itself reveals: the label space, and the input shape the architecture fixes
    assert a.num_classes == 10 and a.fact("num_classes").source is Source.MODEL
    assert a.input_shape == (3, 32, 32) and a.fact("input_shape").source is Source.ASSUMED  # 27-35 fit
    assert a.fact("num_samples").source is Source.UNKNOWN
    _, b = simulate_view(model, [batch], tr, threat="B")
    assert b.num_samples == 2 and b.input_shape == (3, 32, 32) and b.num_classes == 10
    assert {f.field: f.source for f in b.facts} == dict.fromkeys(BASIC_FIELDS, Source.GRANTED)
    assert b.training is None and b.label_counts is None and b.bn_statistics is None
    _, c = simulate_view(model, [batch], tr, threat="C")
    assert c.training is not None and c.training.lr == 0.01 and c.training.seed is None  # seed is private
    _, e = simulate_view(model, [batch], tr, threat="E")
    assert e.label_counts.tolist() == [0, 0, 0, 0, 1, 0, 0, 1, 0, 0]
    assert e.known_labels.tolist() == [4, 7]
    assert len(e.bn_statistics) == 8  # one per BatchNorm layer of ConvNet
    # the BN statistics are the batch's: layer 0 sees conv0(x)
    conv = model.model.conv0
    out = conv(batch.images)
    torch.testing.assert_close(e.bn_statistics[0].mean, out.mean(dim=(0, 2, 3)), rtol=1e-5, atol=1e-6)
    _, bl = simulate_view(model, [batch], tr, threat="B+labels")
    assert bl.known_labels.tolist() == [4, 7] and bl.bn_statistics is None
    # the view's model is a copy: attacks cannot reach the truth through it
    assert e.model is not model


def test_server_sees_victim_update_only_under_plain_mean(photos):
    model = tiny_lenet()
    batches = [photo_batch(photos, [0]), photo_batch(photos, [1, 2])]
    truth, view = simulate_view(model, batches, victim=1)
    assert view.num_samples == 2 and view.aggregated_over == 1
    for k, v in view.update.params.items():
        assert torch.equal(v, truth.round.updates[1].update.params[k])


def test_refusal_names_missing_knowledge_and_weakest_model(photos):
    _, view = simulate_view(tiny_lenet(), [photo_batch(photos, [0])], threat="A")
    with pytest.raises(AttackRefused) as e:
        create_attack("inverting-gradients", iterations=1).reconstruct(view, device="cpu")
    msg = str(e.value)
    assert "basic knowledge" in msg and "threat model A (Eavesdropper)" in msg and '"B"' in msg
    _, view_b = simulate_view(tiny_lenet(), [photo_batch(photos, [0])], threat="B")
    problems = create_attack("inverting-gradients", labels="known").check(view_b)
    assert (
        len(problems) == 1 and "labels" in problems[0] and '"E"' in problems[0] and "B+labels" in problems[0]
    )
    assert check_requirements("x", [], get_threat_model("A")) == []
