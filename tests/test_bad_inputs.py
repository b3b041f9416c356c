"""The front door: every bad input is one clear error (exit code 2 or a GradinvError), no traceback.

Each row is one bad input, as a new user would type it: CLI flags, TOML configs, data files, model
checkpoints, output folders and Python API misuse. Every message must say what was expected, what
was got, and how to fix it; the needles below pin the part that matters for each input. No row runs
an attack: every error comes before the attack (and an output-folder error before any work at all).
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from gradinv.cli.app import main
from gradinv.errors import GradinvError

# --------------------------------------------------------------------------------------------------
# Bad files, made once
# --------------------------------------------------------------------------------------------------


def _write(d: Path, name: str, text: str) -> None:
    (d / name).write_text(text, encoding="utf-8")


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    (d / "afile").write_text("a regular file, not a folder")
    # configs
    _write(d, "malformed.toml", "[data\nsource = ")
    (d / "binary.toml").write_bytes(bytes(range(128, 256)) * 2)
    _write(d, "section.toml", "[dat]\nsource = 'samples'\n")
    _write(d, "key.toml", "[data]\nsourse = 'samples'\n")
    _write(d, "type_int.toml", "[data]\nnum_images = 'four'\n")
    _write(d, "type_float_for_int.toml", "[attack]\nname = 'dlg'\niterations = 3.5\n")
    _write(d, "type_bool.toml", "[training]\nshuffle = 'yes'\n")
    _write(d, "not_table.toml", "data = 3\n")
    _write(d, "metric_nan.toml", "[metrics]\npsnr_threshold = nan\n")
    _write(d, "attack_nan.toml", "[attack]\nname = 'inverting-gradients'\ntv = nan\n")
    _write(d, "attack_inf.toml", "[attack]\nname = 'dlg'\nlr = inf\n")
    _write(d, "defense_name.toml", "[[defenses]]\nname = 'qsgdd'\n")
    _write(d, "defense_inf.toml", "[[defenses]]\nname = 'gaussian-noise'\nsigma = inf\n")
    _write(d, "defense_negative.toml", "[[defenses]]\nname = 'gaussian-noise'\nsigma = -1.0\n")
    _write(d, "defense_bits.toml", "[[defenses]]\nname = 'qsgd'\nbits = 0\n")
    _write(d, "model_option.toml", "[model]\nname = 'convnet'\nwidht = 3\n")
    _write(d, "num_classes.toml", "[model]\nnum_classes = -3\n")
    # frontier: a config of the earlier runner, and study files
    _write(d, "f_legacy.toml", "[fl]\nnum_clients = 4\n[attack]\nname = 'idlg'\n[data]\nsource = 'samples'\n")
    _write(d, "f_study_typo.toml", "[studdy]\nname = 'x'\n")
    _write(
        d,
        "f_frontier_axis.toml",
        "[study]\nname = 'x'\nrows = ['defense']\n[study.frontier]\naxis = 'defence'\n"
        "[[axes]]\nname = 'defense'\nkey = 'attack.iterations'\nvalues = [1, 2]\n",
    )
    # npz files
    (d / "random.npz").write_bytes(rng.integers(0, 256, 512, dtype=np.uint8).tobytes())
    (d / "empty.npz").write_bytes(b"")
    with (d / "single.npz").open("wb") as f:
        np.save(f, img)
    np.savez(d / "keys.npz", images=img, labels=np.arange(6))
    np.savez(d / "shape.npz", x=np.zeros((2, 5), np.uint8), y=np.zeros(2, np.int64))
    np.savez(d / "float.npz", x=img / 255.0, y=np.arange(6))
    np.savez(d / "range.npz", x=img.astype(np.int64) + 100, y=np.arange(6))
    np.savez(d / "count.npz", x=img, y=np.arange(5))
    np.savez(d / "ylabels_float.npz", x=img, y=np.arange(6.0))
    np.savez(d / "zero.npz", x=img[:0], y=np.arange(0))
    np.savez(d / "negative.npz", x=img, y=np.arange(6) - 2)
    np.savez(d / "classes.npz", x=img, y=np.arange(6), classes=np.array(["a", "b"]))
    np.savez(d / "objects.npz", x=img, y=np.arange(6), classes=np.array(["a", 1, None], dtype=object))
    (d / "npzdir.npz").mkdir()
    # folders
    (d / "emptydir").mkdir()
    (d / "textdir").mkdir()
    (d / "textdir" / "notes.txt").write_text("no images here")
    (d / "corrupt").mkdir()
    (d / "corrupt" / "a.png").write_bytes(b"not a png")
    # CIFAR files that are not CIFAR pickles
    cifar = d / "cifar" / "cifar-10-batches-py"
    cifar.mkdir(parents=True)
    for name in (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"):
        (cifar / name).write_bytes(b"DEADBEEF" * 8)
    # checkpoints
    from gradinv.models import build_model

    lenet = build_model("lenet", seed=0, num_classes=10)
    torch.save(lenet.state_dict(), d / "lenet.pt")
    torch.save({k: torch.full_like(v, float("nan")) for k, v in lenet.state_dict().items()}, d / "nan.pt")
    (d / "empty.pt").write_bytes(b"")
    (d / "text.pt").write_text("hello, I am not a checkpoint")
    torch.save(torch.nn.Linear(2, 2).state_dict(), d / "linear.pt")
    (d / "truncated.pt").write_bytes((d / "linear.pt").read_bytes()[:100])
    torch.save([1, 2, 3], d / "list.pt")
    torch.save({"epoch": 3}, d / "dict.pt")
    return d


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in an empty folder (default outputs land there) without a $GRADINV_DATA."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GRADINV_DATA", raising=False)


def _unwritable_dir(tmp: Path) -> Path | None:
    """A folder this process cannot create or write to, or None where there is none (root)."""
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        locked = tmp / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        return locked / "out"
    sys_dir = Path("/sys/gradinv-test-out")
    if Path("/sys").is_dir() and not sys_dir.exists():
        try:
            sys_dir.mkdir()
        except OSError:
            return sys_dir
        sys_dir.rmdir()
    return None


# --------------------------------------------------------------------------------------------------
# The CLI table: (id, argv with {d} for the folder of bad files, needles in the message)
# --------------------------------------------------------------------------------------------------

DRY = "--dry-run"

CLI_CASES: list[tuple[str, list[str], tuple[str, ...]]] = [
    # flags
    ("iterations-not-int", ["attack", "--iterations", "abc", DRY], ("--iterations", "an integer", "'abc'")),
    ("iterations-zero", ["attack", "--iterations", "0", DRY], ("--iterations", ">= 1", "got 0")),
    ("iterations-negative", ["attack", "--iterations", "-5", DRY], (">= 1", "got -5")),
    ("restarts-zero", ["attack", "--restarts", "0", DRY], ("--restarts", ">= 1")),
    ("indices-not-ints", ["attack", "--indices", "1,x", DRY], ("comma-separated integers", "'x'", "0,3,7")),
    ("num-images-negative", ["attack", "--num-images", "-3", DRY], ("--num-images", ">= 1", "-3")),
    ("image-size-zero", ["attack", "--image-size", "0", DRY], ("--image-size", ">= 1")),
    ("num-classes-zero", ["attack", "--num-classes", "0", DRY], ("--num-classes", ">= 2")),
    ("batch-size-zero", ["attack", "--batch-size", "0", DRY], ("--batch-size", ">= 1")),
    ("epochs-negative", ["attack", "--protocol", "fedavg", "--epochs", "-1", DRY], ("--epochs", ">= 1")),
    ("clients-zero", ["attack", "--clients", "0", DRY], ("--clients", ">= 1")),
    ("data-seed-not-int", ["attack", "--data-seed", "x", DRY], ("--data-seed", "an integer")),
    ("lr-not-number", ["attack", "--lr", "abc", DRY], ("--lr", "a number", "'abc'")),
    ("lr-inf", ["attack", "--lr", "inf", DRY], ("--lr", "finite", "'inf'")),
    ("lr-nan", ["attack", "--lr", "nan", DRY], ("--lr", "finite", "'nan'")),
    ("device-unknown", ["attack", "--device", "tpu", DRY], ("--device", "auto, cpu, cuda", "'tpu'")),
    ("set-no-equals", ["attack", "--set", "foo", DRY], ("SECTION.KEY=VALUE", "'foo'")),
    ("set-no-section", ["attack", "--set", "iterations=3", DRY], ("SECTION.KEY=VALUE", "attack.iterations")),
    ("set-unknown-section", ["attack", "--set", "bogus.key=3", DRY], ("Unknown section [bogus]", "[data]")),
    ("set-key-typo", ["attack", "--set", "attack.iteratons=3", DRY], ("Did you mean 'iterations'",)),
    ("set-attack-lr-inf", ["attack", "--attack", "dlg", "--set", "attack.lr=inf", DRY], ("`lr`", "finite")),
    ("set-momentum-nan", ["attack", "--set", "training.momentum=nan", DRY], ("`momentum`", "finite")),
    ("set-weight-decay-ninf", ["attack", "--set", "training.weight_decay=-inf", DRY], ("finite", "-inf")),
    ("set-training-lr-negative", ["attack", "--set", "training.lr=-1", DRY], ("`lr`", "-1")),
    ("set-victim-out-of-range", ["attack", "--set", "server.victim=5", DRY], ("`victim`", "[0, 1)")),
    (
        "set-indices-out-of-range",
        ["attack", "--set", "data.indices=[1,100]", DRY],
        ("`indices`", "10 images"),
    ),
    ("set-seed-negative", ["attack", "--set", "data.seed=-1", DRY], ("seed", ">= 0", "-1")),
    ("set-seed-not-int", ["attack", "--set", "data.seed=1.5", DRY], ("`seed`", "int", "1.5")),
    # registry names and the threat model
    ("attack-unknown", ["attack", "--attack", "dlgg", DRY], ("Unknown attack 'dlgg'", "Did you mean 'dlg'")),
    (
        "model-unknown",
        ["attack", "--model", "lenett", DRY],
        ("Unknown model 'lenett'", "Did you mean 'lenet'"),
    ),
    ("threat-unknown", ["attack", "--threat", "Z", DRY], ("Unknown threat model 'Z'", "B (Informed")),
    ("threat-flag-typo", ["attack", "--threat", "B+labelz", DRY], ("'labelz'", "Did you mean 'labels'")),
    ("protocol-typo", ["attack", "--protocol", "fedsgdd", DRY], ("'fedsgdd'", "Did you mean 'fedsgd'")),
    (
        "attack-key-of-other-attack",
        ["attack", "--attack", "dlg", "--labels", "yin", DRY],
        ("'labels'", "dlg"),
    ),
    (
        "attack-needs-active-server",
        ["attack", "--attack", "robbing-the-fed", "--threat", "B", "--image-size", "8"],
        ("active manipulation", 'model = "F"'),
    ),
    (
        "attack-needs-basic-knowledge",
        ["attack", "--attack", "inverting-gradients", "--threat", "A", "--image-size", "8"],
        ("basic knowledge", "threat model"),
    ),
    # config files
    ("config-missing", ["attack", "--config", "{d}/none.toml"], ("TOML config file", "does not exist")),
    ("config-is-directory", ["attack", "--config", "{d}"], ("TOML config file", "is a directory")),
    ("config-malformed", ["attack", "--config", "{d}/malformed.toml"], ("valid TOML", "line 1")),
    ("config-binary", ["attack", "--config", "{d}/binary.toml"], ("UTF-8 TOML", "binary")),
    ("config-section-typo", ["attack", "--config", "{d}/section.toml"], ("[dat]", "Did you mean 'data'")),
    ("config-key-typo", ["attack", "--config", "{d}/key.toml"], ("'sourse'", "Did you mean 'source'")),
    ("config-int-as-text", ["attack", "--config", "{d}/type_int.toml", DRY], ("`num_images`", "'four'")),
    ("config-float-for-int", ["attack", "--config", "{d}/type_float_for_int.toml"], ("`iterations`", "3.5")),
    ("config-bool-as-text", ["attack", "--config", "{d}/type_bool.toml"], ("`shuffle`", "bool", "'yes'")),
    ("config-section-not-table", ["attack", "--config", "{d}/not_table.toml"], ("[data]", "table")),
    ("config-threshold-nan", ["attack", "--config", "{d}/metric_nan.toml"], ("`psnr_threshold`", "finite")),
    ("config-attack-nan", ["attack", "--config", "{d}/attack_nan.toml"], ("`tv`", "finite", "nan")),
    ("config-attack-inf", ["attack", "--config", "{d}/attack_inf.toml"], ("`lr`", "finite", "inf")),
    ("config-defense-unknown", ["attack", "--config", "{d}/defense_name.toml"], ("Did you mean 'qsgd'",)),
    ("config-defense-inf", ["attack", "--config", "{d}/defense_inf.toml"], ("`sigma`", "finite")),
    ("config-defense-negative", ["attack", "--config", "{d}/defense_negative.toml"], ("`sigma`", ">= 0")),
    ("config-defense-range", ["attack", "--config", "{d}/defense_bits.toml"], ("`bits`", "[1, 16]")),
    ("config-model-option-typo", ["attack", "--config", "{d}/model_option.toml"], ("Did you mean 'width'",)),
    (
        "config-num-classes-negative",
        ["attack", "--config", "{d}/num_classes.toml", DRY],
        ("num_classes = -3",),
    ),
    # data sources
    (
        "npz-random-bytes",
        ["attack", "--source", "npz:{d}/random.npz", DRY],
        ("not a zip archive", "np.savez"),
    ),
    ("npz-empty-file", ["attack", "--source", "npz:{d}/empty.npz", DRY], ("empty (0 bytes)", "np.savez")),
    ("npz-single-array", ["attack", "--source", "npz:{d}/single.npz", DRY], (".npy", "np.savez")),
    ("npz-missing-keys", ["attack", "--source", "npz:{d}/keys.npz", DRY], ("['x', 'y']", "'images'")),
    ("npz-wrong-shape", ["attack", "--source", "npz:{d}/shape.npz", DRY], ("(N, H, W, C)", "(2, 5)")),
    ("npz-float-images", ["attack", "--source", "npz:{d}/float.npz", DRY], ("uint8", "float64", "* 255")),
    (
        "npz-values-out-of-range",
        ["attack", "--source", "npz:{d}/range.npz", DRY],
        ("uint8", "int64", "0..255"),
    ),
    ("npz-label-count", ["attack", "--source", "npz:{d}/count.npz", DRY], ("6 images and 5 labels",)),
    (
        "npz-float-labels",
        ["attack", "--source", "npz:{d}/ylabels_float.npz", DRY],
        ("integer label", "float"),
    ),
    (
        "npz-no-images",
        ["attack", "--source", "npz:{d}/zero.npz", DRY],
        ("at least one image", "(0, 8, 8, 3)"),
    ),
    ("npz-negative-labels", ["attack", "--source", "npz:{d}/negative.npz", DRY], ("0..K-1", "-2")),
    ("npz-too-few-class-names", ["attack", "--source", "npz:{d}/classes.npz", DRY], ("`classes`", "2 name")),
    ("npz-object-array", ["attack", "--source", "npz:{d}/objects.npz", DRY], ("not objects",)),
    ("npz-is-directory", ["attack", "--source", "npz:{d}/npzdir.npz", DRY], ("is a directory", "folder:DIR")),
    ("npz-missing", ["attack", "--source", "npz:{d}/none.npz", DRY], ("none.npz", "does not exist")),
    ("folder-missing", ["attack", "--source", "folder:{d}/nodir", DRY], ("image folder", "does not exist")),
    ("folder-is-file", ["attack", "--source", "folder:{d}/afile", DRY], ("is a file", "npz:PATH")),
    ("folder-empty", ["attack", "--source", "folder:{d}/emptydir", DRY], ("it is empty", "subdirectory")),
    ("folder-no-images", ["attack", "--source", "folder:{d}/textdir", DRY], ("notes.txt", "no image files")),
    ("folder-corrupt-image", ["attack", "--source", "folder:{d}/corrupt", DRY], ("a.png", "Remove the file")),
    ("cifar-missing", ["attack", "--source", "cifar10:{d}/nodir", DRY], ("cifar-10-batches-py", "MD5")),
    ("cifar-corrupt", ["attack", "--source", "cifar10:{d}/cifar", DRY], ("data_batch_1", "damaged")),
    ("cifar-no-dir", ["attack", "--source", "cifar10", DRY], ("cifar10:DIR", "$GRADINV_DATA")),
    ("source-unknown", ["attack", "--source", "imagenet:/x", DRY], ("unknown source 'imagenet'", "npz:PATH")),
    ("source-extra-arg", ["attack", "--source", "samples:3", DRY], ("takes no argument",)),
    ("source-no-path", ["attack", "--source", "npz:", DRY], ("give a path after 'npz:'",)),
    ("source-empty", ["attack", "--source", "", DRY], ("it is empty",)),
    ("batch-larger-than-data", ["attack", "--num-images", "11", DRY], ("num_images", "10")),
    ("labels-beyond-classes", ["attack", "--num-classes", "3", "--indices", "7", DRY], ("num_classes >= 8",)),
    # checkpoints
    ("checkpoint-missing", ["attack", "--checkpoint", "{d}/none.pt", DRY], ("none.pt", "does not exist")),
    ("checkpoint-empty", ["attack", "--checkpoint", "{d}/empty.pt", DRY], ("empty (0 bytes)", "torch.save")),
    ("checkpoint-text", ["attack", "--checkpoint", "{d}/text.pt", DRY], ("text file", "torch.save")),
    (
        "checkpoint-truncated",
        ["attack", "--checkpoint", "{d}/truncated.pt", DRY],
        ("truncated", "torch.save"),
    ),
    ("checkpoint-not-state-dict", ["attack", "--checkpoint", "{d}/list.pt", DRY], ("state_dict", "a list")),
    ("checkpoint-dict-no-tensors", ["attack", "--checkpoint", "{d}/dict.pt", DRY], ("state_dict", "'epoch'")),
    ("checkpoint-architecture", ["attack", "--checkpoint", "{d}/linear.pt", DRY], ("LeNet", "missing keys")),
    # output folders: refused before any work
    ("out-is-file", ["attack", "--out", "{d}/afile", "--image-size", "8"], ("--out", "is a file")),
    ("out-under-file", ["attack", "--out", "{d}/afile/run", "--image-size", "8"], ("lies under", "afile")),
    ("dry-run-out-under-file", ["attack", "--out", "{d}/afile/run", DRY], ("lies under",)),
    ("demo-out-under-file", ["demo", "--quick", "--out", "{d}/afile/demo"], ("lies under",)),
    ("frontier-out-under-file", ["frontier", "--out", "{d}/afile/f"], ("lies under",)),
    # frontier (an alias of `study run frontier`)
    (
        "frontier-legacy-config",
        ["frontier", "-c", "{d}/f_legacy.toml", DRY],
        ("earlier frontier runner", "[fl]"),
    ),
    ("frontier-study-missing", ["frontier", "-c", "{d}/none.toml", DRY], ("none.toml",)),
    ("frontier-section-typo", ["frontier", "{d}/f_study_typo.toml", DRY], ("Did you mean 'study'",)),
    ("frontier-axis-typo", ["frontier", "{d}/f_frontier_axis.toml", DRY], ("frontier axis", "'defence'")),
    ("frontier-binary-config", ["frontier", "-c", "{d}/binary.toml", DRY], ("UTF-8 TOML",)),
    ("frontier-set-malformed", ["frontier", "--set", "rounds", DRY], ("SECTION.KEY",)),
    ("frontier-both", ["frontier", "frontier", "-c", "{d}/f_legacy.toml", DRY], ("one study",)),
    # vet
    ("vet-nothing", ["vet"], ("--model NAME", "neither")),
    ("vet-checkpoint-missing", ["vet", "--checkpoint", "{d}/none.pt"], ("does not exist",)),
    ("vet-checkpoint-text", ["vet", "--checkpoint", "{d}/text.pt"], ("text file",)),
    ("vet-not-state-dict", ["vet", "--checkpoint", "{d}/list.pt"], ("state_dict",)),
    ("vet-model-unknown", ["vet", "--model", "lenett"], ("Did you mean 'lenet'",)),
    ("vet-num-classes-text", ["vet", "--model", "lenet", "--num-classes", "x"], ("an integer", "'x'")),
    ("vet-num-classes-one", ["vet", "--model", "lenet", "--num-classes", "1"], ("--num-classes", ">= 2")),
    ("vet-option-malformed", ["vet", "--model", "lenet", "--option", "width"], ("KEY=VALUE",)),
    ("vet-option-unknown", ["vet", "--model", "lenet", "--option", "widht=3"], ("'widht'",)),
    (
        "vet-nan-update",
        ["vet", "--model", "lenet", "--checkpoint", "{d}/lenet.pt", "--update", "{d}/nan.pt"],
        ("--update", "NaN or inf"),
    ),
    ("vet-nan-checkpoint", ["vet", "--checkpoint", "{d}/nan.pt"], ("--checkpoint", "NaN or inf")),
    ("vet-update-missing", ["vet", "--model", "lenet", "--update", "{d}/none.pt"], ("does not exist",)),
]


def _check_message(err: str, needles: tuple[str, ...]) -> None:
    assert "Traceback" not in err, err
    assert "<class '" not in err, err  # a Python type printed instead of words
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, f"expected exactly one error line, got:\n{err}"
    msg = lines[0]
    # the template: what was expected and what was got (registry misses: "Unknown X … Valid Xs")
    assert ("Expected" in msg and "but" in msg) or "Unknown" in msg or "requires" in msg or "needs" in msg, (
        msg
    )
    for needle in needles:
        assert needle in err, f"{needle!r} not in:\n{err}"


@pytest.mark.parametrize(("argv", "needles"), [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_bad_cli_input_is_one_clear_error(argv, needles, bad, capsys, monkeypatch):
    import gradinv.experiment
    import gradinv.studies.engine

    def no_attack(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the attack ran although the input was bad")

    # the bad input must be caught before the attack runs (an output-folder error before any work)
    monkeypatch.setattr(gradinv.experiment.Attack, "reconstruct", no_attack)
    monkeypatch.setattr(gradinv.studies.engine, "run_study", no_attack)
    code = main([a.replace("{d}", str(bad)) for a in argv])
    out, err = capsys.readouterr()
    assert code == 2, f"exit code {code}\nstdout:\n{out}\nstderr:\n{err}"
    _check_message(err, needles)


def test_unwritable_out_dir_is_refused_before_work(tmp_path, capsys, monkeypatch):
    import gradinv.experiment

    target = _unwritable_dir(tmp_path)
    if target is None:
        pytest.skip("no unwritable folder here (running as root without /sys)")
    monkeypatch.setattr(gradinv.experiment, "run_experiment", lambda *a, **k: pytest.fail("work started"))
    code = main(["attack", "--out", str(target), "--image-size", "8"])
    err = capsys.readouterr().err
    assert code == 2
    _check_message(err, ("writable output directory", "--out DIR"))


def test_cli_table_has_60_distinct_inputs():
    ids = [c[0] for c in CLI_CASES]
    argvs = {tuple(c[1]) for c in CLI_CASES}
    assert len(set(ids)) == len(ids) and len(argvs) == len(ids) and len(ids) + len(API_CASES) >= 60


def test_console_script_error_has_no_traceback(bad):
    """The real entry point (a subprocess, once): exit code 2 and one line on stderr."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "gradinv.cli.app", "attack", "--iterations", "abc"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: Expected --iterations to be an integer >= 1, but got 'abc'. "
        "Write a whole number, e.g. --iterations 1."
    )


# --------------------------------------------------------------------------------------------------
# Python API misuse: (id, call, needles)
# --------------------------------------------------------------------------------------------------


def _from_mapping(data: dict[str, Any]) -> Any:
    from dataclasses import dataclass

    from gradinv.settings import from_mapping

    @dataclass(frozen=True)
    class Cfg:
        lr: float = 0.1
        steps: int = 10
        scale: float | None = None

    return from_mapping(Cfg, data, section="demo")


def _cifar_bad_md5(d: Path) -> Any:
    from gradinv.data import cifar

    fake = d / "fake.tar.gz"
    if not fake.exists():
        with tarfile.open(fake, "w:gz") as tar:
            tar.add(d / "afile", arcname="afile")
    spec = cifar.ARCHIVES["cifar10"]
    cifar.ARCHIVES["cifar10"] = dataclasses.replace(spec, url=fake.as_uri())  # a mirror with a bad file
    try:
        return cifar.load_cifar(d / "cifar-download", download=True)
    finally:
        cifar.ARCHIVES["cifar10"] = spec


def _malicious_cifar_pickle() -> Any:
    from gradinv.data.cifar import restricted_unpickle

    class Evil:
        def __reduce__(self) -> Any:
            return (os.system, ("echo pwned",))

    return restricted_unpickle(pickle.dumps(Evil()))


def _shape_mismatch(d: Path) -> Any:
    from gradinv.models import build_model, load_checkpoint

    return load_checkpoint(build_model("lenet", seed=0, num_classes=5), d / "lenet.pt")


def _zip_not_npz(d: Path) -> Any:
    from gradinv.data import load_npz

    path = d / "images.zip.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("photo.png", b"not really")
    return load_npz(path)


API_CASES: list[tuple[str, Callable[[Path], Any], tuple[str, ...]]] = [
    ("settings-nan", lambda d: _from_mapping({"lr": float("nan")}), ("`lr` in [demo]", "finite", "nan")),
    ("settings-inf", lambda d: _from_mapping({"lr": float("inf")}), ("finite", "inf")),
    ("settings-optional-inf", lambda d: _from_mapping({"scale": float("-inf")}), ("`scale`", "finite")),
    ("settings-huge-int", lambda d: _from_mapping({"lr": 10**400}), ("`lr`", "finite")),
    ("settings-typo", lambda d: _from_mapping({"stpes": 3}), ("Did you mean 'steps'",)),
    ("settings-bool-for-int", lambda d: _from_mapping({"steps": True}), ("`steps`", "True")),
    (
        "create-attack-inf",
        lambda d: __import__("gradinv.attacks", fromlist=["x"]).create_attack("dlg", lr=float("inf")),
        ("`lr`", "finite"),
    ),
    (
        "create-defense-range",
        lambda d: __import__("gradinv.defenses", fromlist=["x"]).create_defense("qsgd", bits=0),
        ("`bits`",),
    ),
    (
        "build-model-classes",
        lambda d: __import__("gradinv.models", fromlist=["x"]).build_model("lenet", num_classes=0),
        ("`num_classes`", ">= 2"),
    ),
    (
        "threat-unknown",
        lambda d: __import__("gradinv.threat", fromlist=["x"]).get_threat_model("Q"),
        ("Unknown threat model 'Q'",),
    ),
    (
        "parse-config-negative-size",
        lambda d: __import__("gradinv.config", fromlist=["x"]).parse_config({"data": {"image_size": -1}}),
        ("`image_size`", ">= 1"),
    ),
    (
        "override-without-section",
        lambda d: __import__("gradinv.config", fromlist=["x"]).apply_overrides(
            __import__("gradinv.config", fromlist=["x"]).ExperimentConfig(), {"iterations": 3}
        ),
        ("section.key",),
    ),
    (
        "select-negative-seed",
        lambda d: __import__("gradinv.data", fromlist=["x"]).select_indices(
            np.arange(10), num_images=2, seed=-1
        ),
        ("seed", ">= 0"),
    ),
    (
        "check-labels",
        lambda d: __import__("gradinv.data", fromlist=["x"]).check_labels(np.array([0, 4, 5]), 4),
        ("0..3", "4, 5", "num_classes >= 6"),
    ),
    (
        "check-labels-no-classes",
        lambda d: __import__("gradinv.data", fromlist=["x"]).check_labels(np.array([0]), 0),
        ("num_classes = 0", "leave it unset"),
    ),
    ("cifar-bad-md5", _cifar_bad_md5, ("MD5", "c58f30108f718f92721af3b95e74349a")),
    ("cifar-malicious-pickle", lambda d: _malicious_cifar_pickle(), ("refused for safety",)),
    ("checkpoint-shape-mismatch", _shape_mismatch, ("mismatches", "num_classes")),
    ("npz-zip-without-arrays", _zip_not_npz, ("['x', 'y']",)),
    (
        "dataset-float-images",
        lambda d: __import__("gradinv.data", fromlist=["x"]).ImageDataset(
            np.zeros((2, 4, 4, 3)), np.zeros(2)
        ),
        ("uint8", "float64"),
    ),
    (
        "out-dir-under-file",
        lambda d: __import__("gradinv.cli.common", fromlist=["x"]).prepare_out_dir(d / "afile" / "x"),
        ("lies under",),
    ),
]


@pytest.mark.parametrize(("call", "needles"), [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_bad_api_input_raises_gradinv_error(call, needles, bad):
    with pytest.raises(GradinvError) as info:
        call(bad)
    msg = str(info.value)
    assert ("Expected" in msg and "but" in msg) or "Unknown" in msg, msg
    for needle in needles:
        assert needle in msg, f"{needle!r} not in: {msg}"
