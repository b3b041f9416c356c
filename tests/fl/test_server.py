"""The server as one object: honest aggregation, a malicious server crafting models and running
sybils, in a single round and inside multi-round training."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from gradinv.attacks import create_attack
from gradinv.data import load_digits_dataset
from gradinv.errors import AttackRefused
from gradinv.fl import MaliciousServer, Server, run_round
from gradinv.fl.training import FederatedConfig, VictimClient, train_federated
from gradinv.models import build_model
from gradinv.threat import Knowledge, ThreatModel, observe
from gradinv.types import Batch, CraftView, TrainingConfig


@pytest.fixture(scope="module")
def digits() -> Batch:
    ds = load_digits_dataset()
    order = np.random.default_rng(0).permutation(len(ds))
    return ds.to_batch(np.sort(order[:240]), image_size=8)


def _mlp() -> nn.Module:
    return build_model(
        "mlp", num_classes=10, in_channels=1, image_size=8, hidden=(16,), seed=0, init="default"
    )


class Crafter:
    """A test double of an active attack: sends every client but the victim a model with zero
    weights, and controls the client ``sybil``."""

    title = "test crafter"

    def __init__(self, sybil: int | None = None) -> None:
        self.sybil = sybil
        self.calls: list[CraftView] = []

    def check_threat(self, threat: ThreatModel) -> list[str]:
        return [] if threat.allows(Knowledge.ACTIVE_MANIPULATION) else ["needs active manipulation"]

    def craft(self, knowledge: CraftView) -> tuple[nn.Module, ...]:
        self.calls.append(knowledge)
        zero = copy.deepcopy(knowledge.model)
        with torch.no_grad():
            for p in zero.parameters():
                p.zero_()
        return tuple(knowledge.model if k == knowledge.victim else zero for k in range(knowledge.num_clients))

    def sybil_clients(self, knowledge: CraftView) -> tuple[int, ...]:
        return () if self.sybil is None else (self.sybil,)


def test_honest_server_is_the_plain_round(digits):
    batches = [digits.subset(list(range(k * 10, (k + 1) * 10))) for k in range(3)]
    tr = TrainingConfig("fedsgd")
    a = run_round(_mlp(), batches, tr, aggregator="mean")
    b = run_round(_mlp(), batches, tr, server=Server("mean"))
    for name, t in a.aggregate.params.items():
        assert torch.equal(t, b.aggregate.params[name])
    assert b.client_models is None and b.reveals_individual


def test_malicious_server_crafts_and_its_sybils_send_zeros(digits):
    batches = [digits.subset(list(range(k * 10, (k + 1) * 10))) for k in range(3)]
    crafter = Crafter(sybil=2)
    server = MaliciousServer(crafter, "F", num_classes=10)
    model = _mlp()
    rnd = run_round(model, batches, TrainingConfig("fedsgd"), server=server, victim=1)
    assert rnd.client_models is not None and rnd.client_models[1] is crafter.calls[0].model
    assert crafter.calls[0].victim == 1 and crafter.calls[0].num_clients == 3
    sybil = rnd.updates[2].update
    assert all(float(t.abs().sum()) == 0 for t in sybil.params.values())
    assert rnd.updates[2].info.get("sybil") == 1.0
    honest = run_round(model, batches[1:2], TrainingConfig("fedsgd")).updates[0].update
    for name, t in honest.params.items():  # the victim trained on the model the server sent it
        assert torch.allclose(t, rnd.updates[1].update.params[name])


def test_a_malicious_server_is_refused_before_any_work_without_active_manipulation():
    with pytest.raises(AttackRefused, match="active manipulation"):
        MaliciousServer(create_attack("robbing-the-fed", bins=16), "B", num_classes=10)


def test_sybils_may_not_include_the_victim(digits):
    batches = [digits.subset(list(range(k * 10, (k + 1) * 10))) for k in range(2)]
    server = MaliciousServer(Crafter(sybil=0), "F", num_classes=10)
    with pytest.raises(AttackRefused, match="other than the victim"):
        run_round(_mlp(), batches, TrainingConfig("fedsgd"), server=server, victim=0)


def test_an_active_attacker_acts_in_the_round_it_chose_during_training(digits):
    """Robbing the Fed as the server of round 1 of a 3-round FedAvg run: rounds 0 and 2 are honest;
    in round 1 the victim receives the imprint model and its images come back."""
    attack = create_attack("robbing-the-fed", bins=64)
    server = MaliciousServer(attack, "F", num_classes=10, rounds={1})
    victim = digits.subset([200, 201, 202])
    fed = train_federated(
        _mlp(),
        digits.subset(list(range(0, 120))),
        None,
        TrainingConfig("fedsgd"),
        FederatedConfig(num_clients=3, rounds=3),
        victims=[VictimClient(victim, round=1)],
        server=server,
    )
    truth = fed.victim_truth
    assert truth is not None and truth.client_models is not None
    assert truth.victim_model is not truth.model  # the crafted imprint model
    honest = train_federated(
        _mlp(),
        digits.subset(list(range(0, 120))),
        None,
        TrainingConfig("fedsgd"),
        FederatedConfig(num_clients=3, rounds=1),
    )
    # round 0 was honest: both runs start from the same global model after it
    first = dict(honest.model.named_parameters())
    for name, p in truth.model.named_parameters():
        assert torch.allclose(p, first[name])
    rec = attack.reconstruct(observe(truth, "F"), device="cpu").reconstruction
    err = ((rec.images[:, None] - victim.images[None]) ** 2).flatten(2).mean(-1).min(0).values
    assert int((err < 1e-4).sum()) >= 2  # the imprint recovers the victim's images (near) exactly
