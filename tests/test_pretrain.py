"""``[pretrain]``: FedAvg rounds on other clients' rows before the attacked round, on real digits."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from gradinv.cli.common import dry_run_rows
from gradinv.config import PretrainConfig, apply_overrides, parse_config, to_nested
from gradinv.data import load_digits_dataset
from gradinv.errors import ConfigError
from gradinv.experiment import build_scenario, dry_run, run_experiment, simulate
from gradinv.fl.training import FederatedConfig, train_federated
from gradinv.models import build_model
from gradinv.types import TrainingConfig

TRAINING: dict[str, Any] = {"protocol": "fedavg", "batch_size": 8, "epochs": 1, "lr": 0.5}


def config(pretrain: dict[str, Any] | None = None, **sections: Any) -> Any:
    doc: dict[str, Any] = {
        "data": {"source": "digits", "num_images": 4, "image_size": 8},
        "model": {"name": "mlp"},
        "training": dict(TRAINING),
        "server": {"num_clients": 2},
        "attack": {"name": "dlg", "iterations": 2},
    }
    doc.update(sections)
    if pretrain is not None:
        doc["pretrain"] = pretrain
    return parse_config(doc)


def updates(cfg: Any) -> list[dict[str, torch.Tensor]]:
    truth = simulate(build_scenario(cfg), threat=cfg.threat.resolve(), attack=cfg.attack.build())
    return [dict(u.update.params) for u in truth.round.updates]


def same_updates(a: list[dict[str, torch.Tensor]], b: list[dict[str, torch.Tensor]]) -> bool:
    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x) for x, y in zip(a, b)
    )


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_default_is_no_pretraining_and_the_old_path() -> None:
    """No section, an explicit rounds = 0, and a test set on the untrained model all give the round
    exactly as before; the default section does not show in the nested config (trial keys unchanged)."""
    noise = [{"name": "gaussian-noise", "sigma": 0.01}]
    plain = config(defenses=noise)
    assert plain.pretrain == PretrainConfig() and plain.pretrain.rounds == 0
    assert "pretrain" not in to_nested(plain)
    base = updates(plain)
    assert same_updates(base, updates(config({"rounds": 0}, defenses=noise)))
    with_test = config({"test_images": 64}, defenses=noise)  # evaluating the initial model changes nothing
    assert same_updates(base, updates(with_test))
    sc = build_scenario(plain)
    assert sc.pretraining is not None and not sc.pretraining.trained and sc.pretraining.train_indices == ()
    fresh = build_model("mlp", num_classes=10, in_channels=1, image_size=8, seed=0)
    assert same_weights(sc.model, fresh)


def test_two_rounds_equal_train_federated_directly() -> None:
    """The oracle: the documented rows (one seeded permutation of the rows the attacked round's
    clients do not hold: test rows first, then training rows), split and rounds through
    train_federated by hand give the same weights."""
    p = {"rounds": 2, "clients": 4, "images_per_client": 20, "test_images": 50, "seed": 3}
    cfg = config(p)
    sc = build_scenario(cfg)
    pre = sc.pretraining
    assert pre is not None and pre.trained and len(pre.history) == 2

    ds = load_digits_dataset()
    used = sorted(i for idx in sc.client_indices for i in idx)
    pool = np.setdiff1d(np.arange(len(ds)), used)
    perm = np.random.default_rng(3).permutation(pool)
    test_rows, train_rows = sorted(perm[:50].tolist()), sorted(perm[50:130].tolist())
    assert pre.test_indices == tuple(test_rows) and pre.train_indices == tuple(train_rows)
    assert not set(train_rows) & set(test_rows) and not (set(train_rows) | set(test_rows)) & set(used)

    model = build_model("mlp", num_classes=10, in_channels=1, image_size=8, seed=0)
    fed = train_federated(
        model,
        ds.to_batch(train_rows, image_size=8, normalization=sc.batches[0].normalization),
        ds.to_batch(test_rows, image_size=8, normalization=sc.batches[0].normalization),
        TrainingConfig(**TRAINING),
        FederatedConfig(num_clients=4, rounds=2, seed=3),
    )
    assert same_weights(sc.model, fed.model)
    assert pre.test_accuracy == fed.final_accuracy
    # the attacked round starts from the trained model
    truth = simulate(sc)
    assert same_weights(truth.model, fed.model)


def test_accuracy_rises_and_is_reported() -> None:
    cfg = config({"rounds": 4, "clients": 5, "images_per_client": 40, "test_images": 300})
    res = run_experiment(cfg, device="cpu")
    sc = res.scenario
    assert sc["pretrain_rounds"] == 4
    history = sc["train_history"]
    assert len(history) == 4 and sc["test_accuracy"] == history[-1]
    assert sc["test_accuracy"] > 0.3  # chance is 0.1 on ten digits
    assert res.timing["pretrain_seconds"] > 0
    untrained = run_experiment(apply_overrides(cfg, {"pretrain.rounds": 0}), device="cpu").scenario
    assert untrained["pretrain_rounds"] == 0 and untrained["train_history"] == []
    assert isinstance(untrained["test_accuracy"], float) and untrained["test_accuracy"] < sc["test_accuracy"]
    plain = run_experiment(config(), device="cpu")
    assert plain.scenario["test_accuracy"] is None and plain.timing["pretrain_seconds"] == 0.0


def test_checkpoints_of_one_training() -> None:
    """Same seeds: the model after R rounds is a longer training's model after its first R rounds
    (the training-stage study attacks checkpoints of one training), same test set."""
    one = build_scenario(config({"rounds": 1, "clients": 3, "test_images": 40})).pretraining
    three = build_scenario(config({"rounds": 3, "clients": 3, "test_images": 40})).pretraining
    assert one is not None and three is not None
    assert one.test_indices == three.test_indices and one.train_indices == three.train_indices
    assert one.accuracy_history == three.accuracy_history[:1]
    assert one.history[0].train_loss == three.history[0].train_loss


def test_defended_training_applies_the_defense() -> None:
    noise = [{"name": "gaussian-noise", "sigma": 0.05}]
    p = {"rounds": 2, "clients": 3}
    defended = build_scenario(config(p, defenses=noise)).model
    undefended = build_scenario(config({**p, "defended": False}, defenses=noise)).model
    none = build_scenario(config(p)).model
    assert not same_weights(defended, undefended)
    assert same_weights(undefended, none)  # defended = false: training clients run no defense
    again = build_scenario(config(p, defenses=noise)).model
    assert same_weights(defended, again)  # deterministic


def test_fedsgd_pretraining_and_dirichlet_split() -> None:
    cfg = config(
        {"rounds": 2, "clients": 4, "clients_per_round": 2, "split": "dirichlet", "alpha": 0.5},
        # batch_size is the victim's batch; the training clients take one gradient over all theirs
        training={"protocol": "fedsgd", "batch_size": 4},
    )
    pre = build_scenario(cfg).pretraining
    assert pre is not None and pre.trained
    assert [len(h.clients) for h in pre.history] == [2, 2] and pre.accuracy_history == []


def test_not_enough_rows_is_one_clear_error() -> None:
    with pytest.raises(ConfigError) as e:
        build_scenario(config({"rounds": 1, "clients": 100, "images_per_client": 20, "test_images": 10}))
    msg = str(e.value)
    assert "2010 rows" in msg and "1789 of its 1797 rows" in msg
    assert "Lower [pretrain] clients, images_per_client or test_images" in msg
    with pytest.raises(ConfigError, match="1789 of its 1797"):  # the dry run checks it too
        dry_run(config({"test_images": 5000}))


def test_dry_run_selects_rows_but_does_not_train() -> None:
    plan = dry_run(config({"rounds": 3, "test_images": 20}))
    pre = plan.scenario.pretraining
    assert pre is not None and not pre.trained and pre.rounds == 3 and len(pre.train_indices) == 320
    assert pre.test_accuracy is None and not plan.checked.problems
    fresh = build_model("mlp", num_classes=10, in_channels=1, image_size=8, seed=0)
    assert same_weights(plan.scenario.model, fresh)
    rows = {row[0].strip(): row[1] for row in dry_run_rows(plan)}
    assert rows["pretraining"].startswith("3 FedAvg round(s) on 320 training / 20 test rows first")


def test_typos_and_overrides() -> None:
    typo = r"Unknown key 'round' in \[pretrain\]\. Did you mean 'rounds'\?.*Valid keys: alpha, clients"
    with pytest.raises(ConfigError, match=typo):
        config({"round": 3})
    with pytest.raises(ConfigError, match=r"Did you mean .pretrain.\?"):
        parse_config({"pretrian": {"rounds": 3}})
    with pytest.raises(ConfigError, match="clients_per_round"):
        config({"clients": 2, "clients_per_round": 3})
    with pytest.raises(ConfigError, match="split"):
        config({"split": "noniid"})
    cfg = apply_overrides(config(), {"pretrain.rounds": 3, "pretrain.test_images": 10})
    assert cfg.pretrain.rounds == 3 and cfg.pretrain.test_images == 10
    assert to_nested(cfg)["pretrain"]["rounds"] == 3 and parse_config(to_nested(cfg)) == cfg
    with pytest.raises(ConfigError, match="Did you mean 'rounds'"):
        apply_overrides(config(), {"pretrain.rouns": 3})


def test_training_runs_on_past_the_attacked_round() -> None:
    """``total_rounds``: the attacked round is the one after ``rounds`` (the same updates as a training
    that stops there), the final accuracy that of the model after ``total_rounds`` (the same as a
    training of that many rounds)."""
    on = config({"rounds": 2, "total_rounds": 4, "test_images": 50})
    stop = config({"rounds": 2, "test_images": 50})
    longer = config({"rounds": 4, "test_images": 50})
    assert same_updates(updates(on), updates(stop))
    pre_on = build_scenario(on).pretraining
    pre_stop = build_scenario(stop).pretraining
    pre_longer = build_scenario(longer).pretraining
    assert pre_on is not None and pre_stop is not None and pre_longer is not None
    assert pre_on.test_accuracy == pre_stop.test_accuracy == pre_stop.final_accuracy
    assert pre_on.final_accuracy == pre_longer.test_accuracy
    assert pre_on.final_accuracy != pre_on.test_accuracy
    assert len(pre_on.history) == 4
    with pytest.raises(ConfigError, match=r"`total_rounds` to be an int >= 2, but got 1"):
        config({"rounds": 2, "total_rounds": 1})
    plan = dry_run(on)
    rows = {row[0].strip(): row[1] for row in dry_run_rows(plan)}
    assert rows["pretraining"].startswith("2 FedAvg round(s) (4 in all: the final accuracy after the last)")


def test_training_from_the_initial_model_for_utility_only() -> None:
    """``rounds = 0`` with ``total_rounds``: the attacked model is the initial one; training still runs."""
    cfg = config({"rounds": 0, "total_rounds": 2, "test_images": 50})
    sc = build_scenario(cfg)
    fresh = build_model("mlp", num_classes=10, in_channels=1, image_size=8, seed=0)
    assert same_weights(sc.model, fresh)
    pre = sc.pretraining
    assert pre is not None and pre.trained and len(pre.history) == 2
    two = build_scenario(config({"rounds": 2, "test_images": 50})).pretraining
    assert two is not None and pre.final_accuracy == two.test_accuracy
