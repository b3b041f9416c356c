"""Every registered defense through one contract: ``gradinv.fl.local_update`` with FedSGD and FedAvg
on a tiny LeNet and real photos gives a finite update of the model's shapes, with info reported.

Adding a defense: add a row to ``ROWS`` (its name and small, fast parameters)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch

from gradinv.config import parse_config
from gradinv.defenses import DEFENSES, DefenseChain, DefenseConfig, UpdateDefense, create_defense
from gradinv.errors import ConfigError
from gradinv.experiment import build_scenario, simulate
from gradinv.fl import local_update
from gradinv.settings import from_mapping
from gradinv.types import TrainingConfig, UpdateKind

ROWS: dict[str, dict] = {
    "clipping": {"bound": 0.01},
    "dp-sgd": {"noise_multiplier": 0.5, "max_grad_norm": 1.0},
    "gaussian-noise": {"sigma": 0.01, "clip_norm": 1.0},
    "instahide": {"k": 2, "upper": 0.9},
    "mixup": {"alpha": 0.5},
    "precode": {"latent_dim": 8},
    "pruning": {"ratio": 0.5},
    "qsgd": {"bits": 2, "bucket_size": 64},
    "signsgd": {},
    "soteria": {"ratio": 0.5},
    "topk": {"ratio": 0.2},
}

TRAININGS = {
    "fedsgd": TrainingConfig(),
    "fedavg": TrainingConfig(protocol="fedavg", epochs=2, batch_size=2, lr=0.05, momentum=0.5),
}


def test_every_defense_has_a_contract_row():
    assert set(ROWS) == set(DEFENSES.names()), f"missing rows: {set(DEFENSES.names()) - set(ROWS)}"


@pytest.mark.parametrize("name", sorted(ROWS))
def test_metadata_and_config_round_trip(name):
    cls = DEFENSES.get(name)
    assert (
        cls.name == name and cls.title and cls.paper and cls.stage in ("model", "data", "training", "update")
    )
    d = cls(**ROWS[name])
    again = from_mapping(cls.config_cls, {k: v for k, v in d.config.to_dict().items() if v is not None})
    assert again == d.config
    desc = cls.describe()
    assert desc["name"] == name and desc["description"] and isinstance(desc["parameters"], dict)
    with pytest.raises(ConfigError, match="Unknown key"):
        cls(not_a_parameter=1)


@pytest.mark.parametrize("protocol", sorted(TRAININGS))
@pytest.mark.parametrize("name", sorted(ROWS))
def test_contract(name, protocol, lenet, batch):
    training = TRAININGS[protocol]
    d = create_defense(name, **ROWS[name])
    model = d.transform_model(lenet)
    torch.manual_seed(0)
    plain = local_update(model, batch, training)
    torch.manual_seed(0)
    up = local_update(model, batch, training, hooks=DefenseChain.of([d]))
    up.update.check_matches(model)
    assert up.update.kind is (UpdateKind.GRADIENT if protocol == "fedsgd" else UpdateKind.DELTA)
    for k, t in up.update.params.items():
        assert torch.isfinite(t).all() and t.dtype == plain.update.params[k].dtype
    assert up.num_samples == batch.size and up.local_steps == training.local_steps(batch.size)
    assert math.isfinite(up.train_loss)
    assert up.info and all(k.startswith(f"{name}.") for k in up.info)
    assert all(isinstance(v, float) and not math.isnan(v) for v in up.info.values())
    if name != "precode":  # every defense changes what the client sends
        assert any(not torch.equal(up.update.params[k], plain.update.params[k]) for k in plain.update.params)


def test_defenses_from_a_config_through_a_round():
    cfg = parse_config(
        {
            "data": {"source": "samples", "indices": [0, 1, 2], "image_size": 16},
            "model": {"name": "lenet", "seed": 0},
            "training": {"protocol": "fedavg", "batch_size": 1, "lr": 0.01},
            "server": {"num_clients": 2},
            "defenses": [
                {"name": "precode", "latent_dim": 8},
                {"name": "mixup"},
                {"name": "dp-sgd", "noise_multiplier": 1.0},
                {"name": "qsgd", "bits": 2},
            ],
        }
    )
    sc = build_scenario(cfg)
    assert [d.name for d in sc.defenses] == ["precode", "mixup", "dp-sgd", "qsgd"]
    assert hasattr(sc.model.fc, "bottleneck")  # the model-stage defense changed the global model
    truth = simulate(sc)
    for u in truth.round.updates:
        u.update.check_matches(sc.model)
        assert u.info["dp-sgd.steps"] == 3 and u.info["dp-sgd.epsilon"] > 0
        assert u.info["qsgd.bits"] == 2 and "mixup.mean_lambda" in u.info
    assert len(truth.round.updates) == 2


def test_two_training_defenses_are_refused():
    with pytest.raises(ConfigError, match="at most one"):
        DefenseChain.of([create_defense("dp-sgd"), create_defense("dp-sgd")])


def test_gradinv_list_shows_every_defense(capsys):
    import json

    from gradinv.cli.app import main

    assert main(["list", "defenses", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["defenses"]
    assert [d["name"] for d in listed] == DEFENSES.names()
    assert all(d["stage"] and d["paper"] and "parameters" in d for d in listed)
    assert main(["list", "defenses"]) == 0
    text = capsys.readouterr().out
    assert all(name in text for name in DEFENSES.names())


def test_the_config_class_is_the_type_argument():
    @dataclass(frozen=True)
    class _Cfg(DefenseConfig):
        level: int = 3

    class _Typed(UpdateDefense[_Cfg]):
        name = "test-typed"
        title = "typed"
        paper = "-"

    class _Sub(_Typed):  # keeps its parent's config class
        pass

    assert _Typed.config_cls is _Cfg and _Sub.config_cls is _Cfg
    assert _Sub(level=5).config == _Cfg(level=5)
    assert _Typed.describe()["parameters"] == {"level": 3}
    with pytest.raises(ConfigError, match="Unknown key"):
        _Typed(levels=1)
    assert "test-typed" not in DEFENSES  # only @register_defense registers
