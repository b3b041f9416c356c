"""Multi-round FedAvg (gradinv.fl.training) against a hand-written FedAvg loop, on real digits."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gradinv.data import load_digits_dataset
from gradinv.data.partition import partition
from gradinv.defenses import Defense, DefenseConfig
from gradinv.errors import ConfigError
from gradinv.fl import local_update
from gradinv.fl.training import (
    FederatedConfig,
    VictimClient,
    evaluate_accuracy,
    load_training_checkpoint,
    train_federated,
)
from gradinv.models import build_model
from gradinv.threat import observe
from gradinv.types import Batch, ModelUpdate, TrainingConfig


@pytest.fixture(scope="module")
def digits() -> tuple[Batch, Batch]:
    ds = load_digits_dataset()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(ds))
    return ds.to_batch(np.sort(order[:600]), image_size=8), ds.to_batch(np.sort(order[1400:]), image_size=8)


def _mlp(seed: int = 0) -> torch.nn.Module:
    return build_model(
        "mlp", num_classes=10, in_channels=1, image_size=8, hidden=(16,), seed=seed, init="default"
    )


TRAIN = TrainingConfig("fedavg", epochs=1, batch_size=16, lr=0.1, shuffle=False)


def _manual_fedavg(model, train: Batch, training: TrainingConfig, cfg: FederatedConfig):
    """Hand-written FedAvg: local_update per client, then W += server_lr * sum_k n_k d_k / sum_k n_k
    written out per tensor (no gradinv aggregation code)."""
    parts = partition(train.labels.numpy(), cfg.num_clients, scheme=cfg.split, alpha=cfg.alpha, seed=cfg.seed)
    clients = [train.subset(torch.from_numpy(p)) for p in parts.clients]
    w = copy.deepcopy(model)
    for t in range(cfg.rounds):
        ids = cfg.participants(t).tolist()
        tr = replace(training, seed=cfg.round_seed(training.seed, t))
        updates = [local_update(w, clients[k], tr, client_id=k) for k in ids]
        total = sum(u.num_samples for u in updates)
        with torch.no_grad():
            for name, p in w.named_parameters():
                mean = sum(u.update.params[name] * u.num_samples for u in updates) / total
                p.add_(cfg.server_lr * mean)
            for name, b in w.named_buffers():
                if b.is_floating_point():
                    b.add_(sum(u.update.buffers[name] * u.num_samples for u in updates) / total)
    return w


@pytest.mark.parametrize(
    ("model_name", "training", "sampling"),
    [
        ("mlp", TRAIN, {}),
        ("mlp", replace(TRAIN, shuffle=True, momentum=0.5), {"clients_per_round": 2, "server_lr": 0.7}),
        ("convnet", replace(TRAIN, batch_size=32), {"split": "dirichlet", "alpha": 0.5}),
    ],
)
def test_loop_equals_hand_written_fedavg(digits, model_name, training, sampling):
    train, _ = digits
    if model_name == "convnet":  # BatchNorm: buffer deltas are averaged too
        train = load_digits_dataset().to_batch(range(300), image_size=9)
        model = build_model("convnet", num_classes=10, in_channels=1, image_size=9, width=2, seed=0)
    else:
        model = _mlp()
    cfg = FederatedConfig(num_clients=3, rounds=2, seed=4, **sampling)
    res = train_federated(model, train, None, training, cfg)
    oracle = _manual_fedavg(model, train, training, cfg)
    got, want = res.model.state_dict(), oracle.state_dict()
    assert set(got) == set(want)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-6)
    assert [h.clients for h in res.history] == [tuple(cfg.participants(t).tolist()) for t in range(2)]
    assert not torch.equal(next(iter(model.parameters())), next(iter(res.model.parameters())))


def test_evaluate_accuracy_matches_a_direct_count(digits):
    _, test = digits
    model = _mlp(3)
    with torch.no_grad():
        logits = model(test.model_input())
    want_acc = float((logits.argmax(1) == test.labels).float().mean())
    want_loss = float(F.cross_entropy(logits, test.labels))
    for bs in (7, 1000):
        s = evaluate_accuracy(model, test, batch_size=bs)
        assert s.accuracy == pytest.approx(want_acc) and s.loss == pytest.approx(want_loss, rel=1e-5)
    assert model.training  # mode restored


def test_accuracy_increases_on_real_digits(digits):
    train, test = digits
    model = _mlp()
    before = evaluate_accuracy(model, test).accuracy
    logs = []
    cfg = FederatedConfig(num_clients=6, rounds=16, fraction=0.5, eval_every=4)
    res = train_federated(model, train, test, replace(TRAIN, shuffle=True, lr=0.5), cfg, progress=logs.append)
    assert [h.round for h in logs] == list(range(16))
    assert all(len(h.clients) == 3 for h in logs)
    assert [h.evaluated for h in logs] == [False, False, False, True] * 4
    assert res.final_accuracy == pytest.approx(evaluate_accuracy(res.model, test).accuracy)
    assert before < 0.2 and res.final_accuracy > 0.85, (before, res.final_accuracy)
    curve = [a for _, a in res.accuracy_curve]
    assert curve[-1] > curve[0]


def test_deterministic_with_seeds(digits):
    train, test = digits
    cfg = FederatedConfig(num_clients=4, rounds=2, clients_per_round=2, seed=1)
    tr = replace(TRAIN, shuffle=True)
    a = train_federated(_mlp(), train, test, tr, cfg)
    b = train_federated(_mlp(), train, test, tr, cfg)
    c = train_federated(_mlp(), train, test, tr, replace(cfg, seed=2))
    for (k, x), (_, y) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert torch.equal(x, y), k
    assert any(not torch.equal(x, y) for x, y in zip(a.model.parameters(), c.model.parameters()))


def test_model_stage_defense_is_deterministic_whatever_the_global_rng(digits):
    """PRECODE inserts new layers and samples in every forward pass: two runs agree even when the
    caller's global RNG differs (the regression: its layers were initialised from that RNG)."""
    from gradinv.defenses import create_defense

    train, test = digits
    cfg = FederatedConfig(num_clients=4, rounds=2, clients_per_round=2, seed=1)
    runs = []
    for rng in (0, 1):
        torch.manual_seed(rng)
        runs.append(
            train_federated(
                _mlp(), train, test, TRAIN, cfg, defenses=[create_defense("precode", latent_dim=8)]
            )
        )
    for (k, x), (_, y) in zip(runs[0].model.state_dict().items(), runs[1].model.state_dict().items()):
        assert torch.equal(x, y), k
    assert runs[0].final_accuracy == runs[1].final_accuracy


def test_checkpoint_and_resume_give_the_uninterrupted_run(digits, tmp_path):
    train, test = digits
    tr = replace(TRAIN, shuffle=True)
    cfg = FederatedConfig(num_clients=4, rounds=3, clients_per_round=2)
    full = train_federated(_mlp(), train, test, tr, cfg, checkpoint_dir=tmp_path / "full")
    state, doc = load_training_checkpoint(tmp_path / "full")
    for k, v in full.model.state_dict().items():
        assert torch.equal(state[k], v)
    assert doc["completed_rounds"] == 3 and len(doc["history"]) == 3
    assert json.loads((tmp_path / "full" / "history.json").read_text())["final_accuracy"] == pytest.approx(
        full.final_accuracy
    )
    train_federated(_mlp(), train, test, tr, replace(cfg, rounds=2), checkpoint_dir=tmp_path / "part")
    # the fingerprint holds the number of rounds: resuming into a longer run is a different set-up
    with pytest.raises(ConfigError, match="same training set-up"):
        train_federated(_mlp(), train, test, tr, cfg, checkpoint_dir=tmp_path / "part", resume=True)


def _stop_after(n: int):
    seen = []

    def cb(log) -> None:
        seen.append(log)
        if len(seen) > n:
            raise KeyboardInterrupt

    return cb


def test_resume_after_interrupt_equals_uninterrupted(digits, tmp_path):
    train, test = digits
    tr = replace(TRAIN, shuffle=True)
    cfg = FederatedConfig(num_clients=4, rounds=3, clients_per_round=2)
    full = train_federated(_mlp(), train, test, tr, cfg)
    with pytest.raises(KeyboardInterrupt):
        train_federated(_mlp(), train, test, tr, cfg, checkpoint_dir=tmp_path, progress=_stop_after(1))
    _, doc = load_training_checkpoint(tmp_path)
    assert doc["completed_rounds"] == 2
    logs = []
    resumed = train_federated(
        _mlp(), train, test, tr, cfg, checkpoint_dir=tmp_path, resume=True, progress=logs.append
    )
    assert [h.round for h in logs] == [2]  # only the missing round ran
    assert len(resumed.history) == 3
    for x, y in zip(full.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


@dataclass(frozen=True)
class _ZeroCfg(DefenseConfig):
    pass


class _ZeroUpdate(Defense):
    """Test defense: counts its calls, zeroes every update (so training cannot move the model)."""

    name: ClassVar[str] = "test-zero"
    title: ClassVar[str] = "zero"
    stage: ClassVar[str] = "update"  # type: ignore[misc]
    paper: ClassVar[str] = "-"
    config_cls: ClassVar[type[DefenseConfig]] = _ZeroCfg
    calls = 0
    transforms = 0

    def on_update(self, update, ctx):
        type(self).calls += 1
        return ModelUpdate(
            update.kind, {k: torch.zeros_like(v) for k, v in update.params.items()}, update.buffers
        )

    def transform_model(self, model, *, generator=None):
        type(self).transforms += 1
        return model


def test_defenses_run_on_every_participating_client(digits):
    train, test = digits
    _ZeroUpdate.calls = _ZeroUpdate.transforms = 0
    model = _mlp()
    cfg = FederatedConfig(num_clients=5, rounds=3, clients_per_round=2)
    res = train_federated(model, train, test, TRAIN, cfg, defenses=[_ZeroUpdate()])
    assert _ZeroUpdate.calls == 3 * 2 and _ZeroUpdate.transforms == 1
    for x, y in zip(model.parameters(), res.model.parameters()):
        assert torch.equal(x, y)


def test_victims_join_their_round_and_their_updates_are_observable(digits):
    train, test = digits
    ds = load_digits_dataset()
    v1, v2 = ds.to_batch([1700], image_size=8), ds.to_batch([1701, 1702], image_size=8)
    cfg = FederatedConfig(num_clients=4, rounds=3, clients_per_round=2)
    victims = [VictimClient(v1, round=1), VictimClient(v2, round=1)]
    res = train_federated(_mlp(), train, test, TRAIN, cfg, victims=victims)
    assert len(res.victim_truths) == 2 and res.victim_truth is res.victim_truths[0]
    assert res.history[1].clients[-2:] == (4, 5) and len(res.history[1].clients) == 4
    assert 4 not in res.history[0].clients and 4 not in res.history[2].clients
    for truth, batch, cid in zip(res.victim_truths, (v1, v2), (4, 5)):
        assert torch.equal(truth.batch.images, batch.images)
        assert truth.round.total_samples == res.history[1].num_samples
        oracle = local_update(truth.model, batch, truth.training, client_id=cid)
        for k, v in oracle.update.params.items():
            torch.testing.assert_close(truth.victim_update.update.params[k], v)
        view = observe(truth, "C")
        assert view.num_samples == batch.size and view.training is not None and view.training.seed is None
    with pytest.raises(ConfigError, match="victim's round"):
        train_federated(_mlp(), train, test, TRAIN, cfg, victims=[VictimClient(v1, round=3)])
    with pytest.raises(ConfigError, match="distinct victim client ids"):
        train_federated(_mlp(), train, test, TRAIN, cfg, victims=[VictimClient(v1, client_id=2)])


def test_config_validation():
    with pytest.raises(ConfigError, match="either"):
        FederatedConfig(clients_per_round=2, fraction=0.5)
    with pytest.raises(ConfigError, match=r"\[1, num_clients=3\]"):
        FederatedConfig(num_clients=3, clients_per_round=4)
    with pytest.raises(ConfigError, match="Unknown aggregation"):
        FederatedConfig(aggregation="median-of-means")
    with pytest.raises(ConfigError, match="rounds"):
        FederatedConfig(rounds=0)
    assert math.isfinite(FederatedConfig().round_seed(None, 3))
