"""Every registered attack through one contract, on tiny scenarios with tiny budgets.

Rows live in ``tests/attacks/contract_cases_*.py`` (one file per attack family; each defines
``CASES``, a list of ``{"config": <experiment config dict>, "refuse_under": <threat id>}``; ``None``
for an attack that runs under every threat model, even A, which the row then checks). Every
registered attack needs at least one row; the run goes through the whole pipeline (crafting for
active attacks, the round, the threat-gated view, the attack, matched evaluation)."""

from __future__ import annotations

import dataclasses
import importlib
import math
import typing
from pathlib import Path

import pytest
import torch

from gradinv.attacks import ATTACKS
from gradinv.config import apply_overrides, parse_config
from gradinv.errors import AttackRefused, ConfigError
from gradinv.experiment import run_experiment
from gradinv.settings import from_mapping

HERE = Path(__file__).parent
ROWS = [
    case
    for f in sorted(HERE.glob("contract_cases_*.py"))
    for case in importlib.import_module(f"tests.attacks.{f.stem}").CASES
]


def _id(case: dict) -> str:
    return case["config"]["attack"]["name"]


def test_every_attack_has_a_contract_row():
    covered = {_id(c) for c in ROWS}
    assert covered == set(ATTACKS.names()), f"missing rows: {set(ATTACKS.names()) - covered}"


@pytest.mark.parametrize("case", ROWS, ids=_id)
def test_contract(case):
    cfg = parse_config(case["config"])
    cls = ATTACKS.get(cfg.attack.name)
    assert cls.paper and cls.family and cls.title
    r = run_experiment(cfg, device="cpu")
    # the tiny budget is what ran (iteration counts, not seconds: the machine may be loaded)
    assert not r.result.interrupted
    if cls.family == "optimization":
        assert 1 <= len(r.result.loss_history) <= r.attack.config.iterations
    rec = r.result.reconstruction
    assert rec.images.ndim == 4 and rec.images.shape[1:] == r.truth.images.shape[1:]
    assert float(rec.images.min()) >= 0 and float(rec.images.max()) <= 1
    assert torch.isfinite(rec.images).all()
    assert r.result.iterations >= 0 and r.result.attack == cls.name
    assert dict(r.result.parameters) == r.attack.config.to_dict()
    assert "psnr" in r.evaluation.metrics and "mse" in r.evaluation.metrics
    if case["refuse_under"] is None:  # runs under A, the weakest threat model (e.g. DLG, paper 004)
        weakest = run_experiment(apply_overrides(cfg, {"threat.model": "A"}), device="cpu")
        assert weakest.result.reconstruction.images.shape[1:] == r.truth.images.shape[1:]
        return
    weaker = apply_overrides(cfg, {"threat.model": case["refuse_under"]})
    with pytest.raises(AttackRefused, match="requires"):
        run_experiment(weaker, device="cpu")


@pytest.mark.parametrize("case", [c for c in ROWS if ATTACKS.get(_id(c)).family == "optimization"], ids=_id)
def test_ctrl_c_returns_best_so_far(case):
    cfg = apply_overrides(parse_config(case["config"]), {"attack.iterations": 50})

    def interrupt(step: int, total: int, loss: float) -> None:
        if step == 2:
            raise KeyboardInterrupt

    r = run_experiment(cfg, progress=interrupt, device="cpu")
    assert r.result.interrupted
    assert torch.isfinite(r.result.reconstruction.images).all()


def _float_fields(config_cls: type) -> list[str]:
    """The config fields that take a float (alone, optional or in a tuple)."""
    hints = typing.get_type_hints(config_cls)

    def takes_float(tp: object) -> bool:
        return tp is float or any(takes_float(a) for a in typing.get_args(tp))

    return [f.name for f in dataclasses.fields(config_cls) if f.init and takes_float(hints[f.name])]


FLOAT_OPTIONS = [(name, key) for name, cls in ATTACKS.items() for key in _float_fields(cls.config_cls)]


@pytest.mark.parametrize(("name", "key"), FLOAT_OPTIONS, ids=[f"{n}.{k}" for n, k in FLOAT_OPTIONS])
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan], ids=["inf", "-inf", "nan"])
def test_non_finite_numbers_are_refused_when_the_config_is_built(name, key, value):
    cls = ATTACKS.get(name).config_cls
    default = getattr(cls(), key)
    bad = (value,) * len(default) if isinstance(default, tuple) and default else value
    if isinstance(default, str):  # a name or a list of numbers (layer_weights)
        bad = (1.0, value)
    with pytest.raises(ConfigError, match=f"`{key}`"):
        from_mapping(cls, {key: bad}, section="attack")
    with pytest.raises(ConfigError, match=rf"`{key}` to be a finite number"):
        cls(**{key: bad})  # built directly, not from a TOML table


OPTIMIZATION = [name for name, cls in ATTACKS.items() if cls.family == "optimization"]
SHARED_RANGES = [
    ("iterations", 0),
    ("restarts", 0),
    ("max_iter", 0),
    ("history_size", 0),
    ("lr", 0.0),
    ("lr", -1.0),
    ("tv", -1e-3),
    ("sigma_scale", 0.0),
    ("labels", "nope"),
    ("distance", "l3"),
]


@pytest.mark.parametrize("name", OPTIMIZATION)
def test_shared_objective_options_are_checked_by_every_optimization_attack(name):
    cls = ATTACKS.get(name).config_cls
    keys = {f.name for f in dataclasses.fields(cls)}
    checked = [(k, v) for k, v in SHARED_RANGES if k in keys]
    assert {"iterations", "lr", "distance", "sigma_scale"} <= {k for k, _ in checked}
    for key, value in checked:
        with pytest.raises(ConfigError, match=key):
            from_mapping(cls, {key: value}, section="attack")
