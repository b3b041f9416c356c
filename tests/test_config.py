"""TOML configs: defaults, strict keys with suggestions, overrides, and the issue's example file."""

from __future__ import annotations

import numpy as np
import pytest

from gradinv.config import ExperimentConfig, apply_overrides, load_config, parse_config, to_nested
from gradinv.errors import ConfigError

EXAMPLE = """
[data]
source = "npz:{npz}"
indices = [3]
image_size = 32
[model]
name = "lenet"
num_classes = 10
[training]
protocol = "fedsgd"
batch_size = 1
[threat]
model = "B"
[attack]
name = "dlg"
iterations = 300
"""


def test_issue_example_parses(tmp_path, photos):
    npz = tmp_path / "images.npz"
    np.savez(npz, x=photos, y=np.arange(len(photos)))
    path = tmp_path / "exp.toml"
    path.write_text(EXAMPLE.format(npz=npz))
    cfg = load_config(path)
    assert cfg.data.indices == (3,) and cfg.model.name == "lenet" and cfg.training.batch_size == 1
    assert cfg.attack.name == "dlg" and cfg.attack.params == {"iterations": 300}
    assert cfg.threat.resolve().id == "B"
    assert parse_config(to_nested(cfg)) == cfg  # round trip


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ({"dta": {}}, "Unknown section [dta]. Did you mean 'data'?"),
        ({"data": {"sorce": "samples"}}, "Unknown key 'sorce' in [data]. Did you mean 'source'?"),
        ({"attack": {"name": "dlg", "iteratons": 3}}, "Unknown key 'iteratons' in [attack] for attack 'dlg'"),
        ({"attack": {"name": "dlgg"}}, "Unknown attack 'dlgg'. Did you mean 'dlg'?"),
        ({"model": {"name": "convnet", "widht": 8}}, "Unknown key 'widht' in [model] for model 'convnet'"),
        ({"model": {"name": "lenett"}}, "Valid models:"),
        ({"training": {"protocol": "fedprox"}}, "one of 'fedsgd', 'fedavg'"),
        ({"training": {"lr": "fast"}}, "Expected `lr` in [training] to be float"),
        ({"data": {"indices": 3}}, "`indices` in [data]"),
        ({"attack": {"name": "inverting-gradients", "labels": "guess"}}, "Expected `labels` to be one of"),
        ({"server": {"num_clients": 2, "victim": 2}}, "Expected `victim` in [0, 2)"),
        ({"server": {"victim": -1}}, "Expected `victim` to be an int >= 0, but got -1"),
        ({"server": {"images_per_client": 0}}, "Expected `images_per_client` to be an int >= 1, but got 0"),
        ({"server": {"num_clients": 0}}, "Expected `num_clients` to be an int >= 1, but got 0"),
        ({"model": {"num_classes": 0}}, "Expected `num_classes` to be an int >= 2 or unset"),
        ({"model": {"num_classes": 1}}, "but got num_classes = 1"),
        ({"model": {"seed": -2}}, "Expected `seed` to be an int >= 0, but got -2"),
        ({"data": {"surrogate_images": -1}}, "Expected `surrogate_images` to be an int >= 0, but got -1"),
        ({"data": {"seed": -1}}, "Expected `seed` to be an int >= 0, but got -1"),
        ({"data": {"num_images": 0}}, "Expected `num_images` to be an int >= 1, but got 0"),
        ({"data": {"indices": [0, -3]}}, "Expected `indices` to be an int >= 0, but got -3"),
        ({"data": {"channels": 0}}, "Expected `channels` to be an int >= 1, but got 0"),
        ({"threat": {"model": "Q"}}, None),
    ],
)
def test_bad_configs_name_the_problem(doc, needle):
    if needle is None:  # threat models are resolved when used
        with pytest.raises(ConfigError, match="Valid threat models"):
            parse_config(doc).threat.resolve()
        return
    with pytest.raises(ConfigError) as e:
        parse_config(doc)
    assert needle in str(e.value)
    if "Unknown key" in needle:
        assert "Valid keys:" in str(e.value)


def test_overrides_revalidate_and_switch_attacks():
    cfg = parse_config({"attack": {"name": "dlg", "iterations": 5, "max_iter": 3}})
    cfg2 = apply_overrides(cfg, {"attack.iterations": 7, "data.num_images": 2, "threat.model": "C"})
    assert cfg2.attack.params == {"iterations": 7, "max_iter": 3} and cfg2.data.num_images == 2
    cfg3 = apply_overrides(cfg, {"attack.name": "inverting-gradients"})
    assert cfg3.attack.params == {}  # another attack does not inherit dlg's keys
    with pytest.raises(ConfigError, match="Unknown key 'bogus'"):
        apply_overrides(cfg, {"data.bogus": 1})
    assert ExperimentConfig().to_dict()["training"]["protocol"] == "fedsgd"


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="Expected a TOML config file"):
        load_config(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[data\nsource=")
    with pytest.raises(ConfigError, match="valid TOML"):
        load_config(bad)


def test_python_api_validates_like_the_file():
    """The dataclasses check their ranges themselves (not only the TOML parser)."""
    from gradinv.config import DataConfig, ModelConfig, ServerConfig

    with pytest.raises(ConfigError, match="`num_classes`"):
        ModelConfig(num_classes=0)
    with pytest.raises(ConfigError, match="`surrogate_images`"):
        DataConfig(surrogate_images=-5)
    with pytest.raises(ConfigError, match="`images_per_client`"):
        ServerConfig(images_per_client=0)
    with pytest.raises(ConfigError, match="`seed`"):
        DataConfig(seed=True)  # type: ignore[arg-type]
    assert (
        ModelConfig(num_classes=2).num_classes == 2 and DataConfig(surrogate_images=0).surrogate_images == 0
    )
