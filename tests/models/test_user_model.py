"""Models named by an import path (``pkg.mod:factory`` or ``path/to/file.py:factory``): how the factory is
found and called, its options in the config, seeding, checkpoints, the errors for bad factories, and
that registered names keep working."""

from __future__ import annotations

import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from gradinv.config import apply_overrides, parse_config
from gradinv.errors import ConfigError, GradinvError, ModelError
from gradinv.experiment import build_scenario
from gradinv.models import MODELS, build_model
from gradinv.models.user import is_import_path

# A small user model file: a linear classifier over flattened images, whose factories record what they got.
NETS = '''
"""A user's models."""

import torch
from torch import nn

CALLS = []


class TinyNet(nn.Module):
    def __init__(self, num_classes, in_channels, image_size, width):
        super().__init__()
        h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
        self.width = width
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * h * w, width), nn.ReLU())
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(self.body(x))


def make(num_classes, in_channels, image_size, width=4):
    """A tiny user network.

    More text that is not the description."""
    given = dict(num_classes=num_classes, in_channels=in_channels, image_size=image_size, width=width)
    CALLS.append(("make", given))
    return TinyNet(num_classes, in_channels, image_size, width)


def make_classes_only(num_classes):
    CALLS.append(("make_classes_only", dict(num_classes=num_classes)))
    return TinyNet(num_classes, 1, 8, 3)


def make_kwargs(width=2, **kwargs):
    CALLS.append(("make_kwargs", dict(kwargs, width=width)))
    return TinyNet(kwargs["num_classes"], kwargs["in_channels"], kwargs["image_size"], width)


def make_dict(num_classes):
    return {"weight": torch.zeros(num_classes)}


def make_none(num_classes):
    return None


def make_class(num_classes):
    return TinyNet


def make_broken(num_classes):
    raise RuntimeError("factory exploded")


def make_rgb_mlp(num_classes):
    """An MLP written for 32x32 RGB images only."""
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, num_classes))


def make_wrong_logits(num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes + 1))


NOT_A_FUNCTION = 3
'''


def write(folder: Path, text: str, stem: str = "nets") -> Path:
    path = folder / f"{stem}.py"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def nets(tmp_path: Path) -> Path:
    return write(tmp_path, NETS)


def calls_of(model: nn.Module) -> list[tuple[str, dict[str, Any]]]:
    """The CALLS list of the module the model's class was loaded from."""
    return sys.modules[type(model).__module__].CALLS


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def digits_config(model: dict[str, Any]) -> Any:
    return parse_config({"data": {"source": "digits", "num_images": 2, "image_size": 8}, "model": model})


# 1. what reads as an import path


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("lenet", False),
        ("resnet20", False),
        ("rgap-cnn6", False),
        ("pkg.mod:make", True),
        ("mod:make", True),
        ("nets/cnn.py:make", True),
        ("cnn.py:make_model", True),
        ("a:1b", False),
        ("pkg.mod:", False),
        (":make", False),
        ("pkg.mod:make-model", False),
    ],
)
def test_is_import_path(name: str, expected: bool) -> None:
    assert is_import_path(name) is expected


# 2. a factory in a file


def test_file_factory_gets_the_shape_arguments_it_names(nets: Path) -> None:
    model = build_model(f"{nets}:make", num_classes=7, in_channels=1, image_size=8, seed=0)
    assert type(model).__name__ == "TinyNet" and type(model).__module__ != __name__
    assert model(torch.zeros(3, 1, 8, 8)).shape == (3, 7)
    assert model.training  # returned in training mode, like registered models
    assert calls_of(model)[-1] == ("make", {"num_classes": 7, "in_channels": 1, "image_size": 8, "width": 4})


def test_factory_naming_only_num_classes_gets_only_num_classes(nets: Path) -> None:
    model = build_model(f"{nets}:make_classes_only", num_classes=5, in_channels=1, image_size=8)
    assert calls_of(model)[-1] == ("make_classes_only", {"num_classes": 5})


def test_factory_with_kwargs_gets_all_three(nets: Path) -> None:
    model = build_model(f"{nets}:make_kwargs", num_classes=3, in_channels=2, image_size=(6, 4))
    name, got = calls_of(model)[-1]
    assert name == "make_kwargs"
    # a non-square size arrives as (H, W); width is an option, not a shape argument
    assert got == {"num_classes": 3, "in_channels": 2, "image_size": (6, 4), "width": 2}
    assert model(torch.zeros(1, 2, 6, 4)).shape == (1, 3)


def test_relative_file_path_starts_at_the_working_directory(
    nets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(nets.parent.parent)
    model = build_model(f"{nets.parent.name}/nets.py:make", num_classes=4, in_channels=1, image_size=8)
    assert type(model).__name__ == "TinyNet"


def test_spec_of_a_user_model(nets: Path) -> None:
    spec = MODELS.get(f"{nets}:make")
    assert spec.user and spec.options == ("width",)
    assert spec.description == "A tiny user network"
    assert str(nets.resolve()) in spec.paper
    assert f"{nets}:make" not in list(MODELS)  # resolved, never registered


# 3. a module on sys.path


def test_module_on_sys_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    modname = f"user_nets_{uuid.uuid4().hex[:8]}"
    write(tmp_path, NETS, stem=modname)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        model = build_model(f"{modname}:make", num_classes=6, in_channels=1, image_size=8, width=5)
        assert type(model).__module__ == modname
        assert sys.modules[modname].CALLS[-1] == (
            "make",
            {"num_classes": 6, "in_channels": 1, "image_size": 8, "width": 5},
        )
    finally:
        sys.modules.pop(modname, None)


# 4. the factory's other parameters are model options


def test_options_from_the_model_table_and_overrides(nets: Path) -> None:
    cfg = digits_config({"name": f"{nets}:make", "width": 6})
    assert dict(cfg.model.options) == {"width": 6}
    sc = build_scenario(cfg)
    assert sc.model.width == 6 and sc.model.head.in_features == 6
    assert sc.model(sc.batches[0].images).shape == (2, 10)  # digits: 1x8x8 images, ten classes

    cfg2 = apply_overrides(cfg, {"model.width": 9})
    assert dict(cfg2.model.options) == {"width": 9}
    assert build_scenario(cfg2).model.head.in_features == 9


def test_default_option_when_unset(nets: Path) -> None:
    sc = build_scenario(digits_config({"name": f"{nets}:make"}))
    assert sc.model.width == 4


def test_unknown_option_is_refused_with_the_valid_keys(nets: Path) -> None:
    with pytest.raises(ConfigError, match=r"Unknown key 'widht'.*Did you mean 'width'\?.*Valid keys:.*width"):
        digits_config({"name": f"{nets}:make", "widht": 6})
    with pytest.raises(ConfigError, match=r"Unknown option 'depth'.*Valid options of .*: width"):
        build_model(f"{nets}:make", num_classes=3, in_channels=1, image_size=8, depth=2)


def test_switching_to_a_user_model_by_override(nets: Path) -> None:
    cfg = apply_overrides(digits_config({"name": "mlp", "hidden": [8]}), {"model.name": f"{nets}:make"})
    assert cfg.model.name == f"{nets}:make" and dict(cfg.model.options) == {}


# 5. construction is seeded


def test_construction_is_seeded(nets: Path) -> None:
    def build(seed: int) -> dict[str, torch.Tensor]:
        return weights(build_model(f"{nets}:make", num_classes=3, in_channels=1, image_size=8, seed=seed))

    state = torch.random.get_rng_state()
    a, b, c = build(3), build(3), build(4)
    assert same(a, b)
    assert not same(a, c)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG is left alone


def test_scenario_seed_from_the_model_table(nets: Path) -> None:
    a = build_scenario(digits_config({"name": f"{nets}:make", "seed": 1})).model
    b = build_scenario(digits_config({"name": f"{nets}:make", "seed": 1})).model
    c = build_scenario(digits_config({"name": f"{nets}:make", "seed": 2})).model
    assert same(weights(a), weights(b)) and not same(weights(a), weights(c))


def test_user_initialisation_is_kept_unless_init_is_set(nets: Path) -> None:
    cls = type(build_model(f"{nets}:make", num_classes=2, in_channels=1, image_size=8))
    kept = build_model(f"{nets}:make", num_classes=3, in_channels=1, image_size=8, seed=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        plain = cls(3, 1, 8, 4)
    assert same(weights(kept), weights(plain))  # exactly what the factory built under the seed
    reinit = build_model(f"{nets}:make", num_classes=3, in_channels=1, image_size=8, seed=0, init="uniform")
    assert not same(weights(kept), weights(reinit))  # an explicit init scheme re-initialises


# 6. checkpoints


def test_checkpoint_through_build_scenario(nets: Path, tmp_path: Path) -> None:
    src = build_model(f"{nets}:make", num_classes=10, in_channels=1, image_size=8, seed=7, width=5)
    saved = weights(src)
    path = tmp_path / "w.pt"
    torch.save(src.state_dict(), path)

    fresh = build_scenario(digits_config({"name": f"{nets}:make", "width": 5, "seed": 0})).model
    assert not same(weights(fresh), saved)
    loaded = build_scenario(
        digits_config({"name": f"{nets}:make", "width": 5, "seed": 0, "checkpoint": str(path)})
    ).model
    assert same(weights(loaded), saved)


def test_checkpoint_of_other_width_names_the_shape_mismatch(nets: Path, tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    torch.save(
        build_model(f"{nets}:make", num_classes=10, in_channels=1, image_size=8, width=5).state_dict(), path
    )
    cfg = digits_config({"name": f"{nets}:make", "width": 3, "checkpoint": str(path)})
    with pytest.raises(
        ModelError, match=r"TinyNet.*mismatches.*'body\.1\.weight' of shape \(3, 64\) but got \(5, 64\)"
    ):
        build_scenario(cfg)


def test_checkpoint_of_other_architecture_names_the_keys(nets: Path, tmp_path: Path) -> None:
    path = tmp_path / "mlp.pt"
    torch.save(build_model("mlp", num_classes=10, in_channels=1, image_size=8).state_dict(), path)
    with pytest.raises(
        ModelError, match=r"Expected a checkpoint for TinyNet.*missing keys.*body\.1\.weight.*unexpected"
    ):
        build_model(f"{nets}:make", num_classes=10, in_channels=1, image_size=8, checkpoint=path)


# 7. bad input: one clear gradinv error each


@pytest.mark.parametrize(
    ("factory", "pattern"),
    [
        (
            "make_dict",
            r"return a torch\.nn\.Module, but it returned a dict \(\{'weight'.*Return the model itself",
        ),
        ("make_none", r"return a torch\.nn\.Module, but it returned None \(None\)\. Return the model itself"),
        (
            "make_class",
            r"return a torch\.nn\.Module, but it returned a type \(<class .*TinyNet'>\).*not a class",
        ),
        (
            "make_broken",
            r"called as make_broken\(num_classes=3\), but it raised RuntimeError: factory exploded",
        ),
    ],
)
def test_factory_returning_no_module(nets: Path, factory: str, pattern: str) -> None:
    with pytest.raises(ModelError, match=pattern):
        build_model(f"{nets}:{factory}", num_classes=3, in_channels=1, image_size=8)


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.py"
    with pytest.raises(ModelError, match=r"Expected a Python file for model .*'.*nope\.py' does not exist"):
        build_model(f"{missing}:make", num_classes=3)
    with pytest.raises(ModelError, match=r"is a directory"):
        build_model(f"{tmp_path}/:make", num_classes=3)


def test_file_raising_at_import(tmp_path: Path) -> None:
    path = write(tmp_path, "import torch\nraise ImportError('needs torchvision 9')\n", stem="bad")
    with pytest.raises(
        ModelError, match=r"to import cleanly, but running it raised ImportError: needs torchvision 9"
    ):
        build_model(f"{path}:make", num_classes=3)
    assert not [
        m for m in sys.modules if m.startswith("gradinv_user_model_bad_")
    ]  # no half-loaded module kept


def test_missing_attribute_lists_callables(nets: Path) -> None:
    with pytest.raises(
        ModelError, match=r"define a model factory 'mak', but it does not\. Did you mean 'make'\?"
    ) as err:
        build_model(f"{nets}:mak", num_classes=3)
    msg = str(err.value)
    assert "Callables it defines: " in msg and "make_kwargs" in msg and "TinyNet" in msg
    assert "NOT_A_FUNCTION" not in msg and "CALLS" not in msg


def test_attribute_not_callable(nets: Path) -> None:
    with pytest.raises(ModelError, match=r"'NOT_A_FUNCTION' is a int\. Point at a function or class"):
        build_model(f"{nets}:NOT_A_FUNCTION", num_classes=3)


def test_module_not_importable() -> None:
    name = f"no_such_pkg_{uuid.uuid4().hex[:8]}"
    with pytest.raises(
        ModelError, match=rf"importable module '{name}\.nets'.*cannot find '{name}'.*PYTHONPATH"
    ):
        build_model(f"{name}.nets:make", num_classes=3)


def test_module_raising_at_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    modname = f"user_bad_{uuid.uuid4().hex[:8]}"
    write(tmp_path, "raise RuntimeError('broken module')\n", stem=modname)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(
        ModelError, match=r"to import cleanly, but importing it raised RuntimeError: broken module"
    ):
        build_model(f"{modname}:make", num_classes=3)


def test_forward_failing_on_the_data_shape(nets: Path) -> None:
    cfg = digits_config({"name": f"{nets}:make_rgb_mlp"})
    with pytest.raises(
        ModelError, match=r"accept the data's images of shape \(1, 8, 8\).*data\.image_size=32"
    ) as err:
        build_scenario(cfg)
    assert "data.channels=3" in str(err.value)


def test_wrong_number_of_logits(nets: Path) -> None:
    with pytest.raises(ModelError, match=r"output logits of shape \(2, 10\).*but got \(2, 11\).*num_classes"):
        build_scenario(digits_config({"name": f"{nets}:make_wrong_logits"}))


def test_errors_are_gradinv_errors(nets: Path) -> None:
    # the CLI prints GradinvErrors without a traceback: bad user models must never escape as other errors
    for name in (f"{nets}:make_none", f"{nets}:missing", f"{nets.parent}/absent.py:make"):
        with pytest.raises(GradinvError):
            build_model(name, num_classes=3, in_channels=1, image_size=8)


# 8. registered names are unchanged


def test_registered_names_still_work() -> None:
    spec = MODELS.get("lenet")
    assert not spec.user
    assert build_model("lenet", num_classes=10, seed=0)(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
    assert parse_config({"model": {"name": "mlp", "hidden": [8]}}).model.options == {"hidden": [8]}


def test_unknown_plain_name_mentions_import_paths() -> None:
    with pytest.raises(
        ConfigError, match=r"Unknown model 'lenett'\. Did you mean 'lenet'\?.*import path"
    ) as err:
        build_model("lenett", num_classes=10)
    assert "'package.module:factory'" in str(err.value) and "'path/to/file.py:factory'" in str(err.value)
    with pytest.raises(ConfigError, match=r"Unknown model 'nosuchnet'.*path/to/file\.py:factory"):
        parse_config({"model": {"name": "nosuchnet"}})
