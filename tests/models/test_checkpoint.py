"""Saving and loading weights: roundtrips, accepted layouts, the errors for bad files, and the trained
CIFAR-10 ResNet checkpoints in ../shared (strict load, accuracy on real images)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from gradinv.errors import ModelError
from gradinv.models import build_model, load_checkpoint, save_checkpoint

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


class _TrainingConfig:
    """A custom class that torch.load(weights_only=True) must refuse to unpickle."""

    lr = 0.1


def _same(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_roundtrip(tmp_path: Path) -> None:
    src = build_model("convnet", num_classes=10, width=2, seed=0)
    src.train()(torch.randn(4, 3, 32, 32))  # move the BN running statistics away from their init
    path = save_checkpoint(src, tmp_path / "sub" / "w.pt")
    dst = build_model("convnet", num_classes=10, width=2, seed=1)
    assert not _same(src, dst)
    assert load_checkpoint(dst, path) is dst and _same(src, dst)
    via_build = build_model("convnet", num_classes=10, width=2, seed=2, checkpoint=path)
    assert _same(src, via_build)


@pytest.mark.parametrize("wrapper", ["state_dict", "model_state_dict", "model"])
def test_wrapped_and_prefixed_state_dicts(tmp_path: Path, wrapper: str) -> None:
    src = build_model("lenet", num_classes=10, seed=0)
    prefixed = {f"module.{k}": v for k, v in src.state_dict().items()}
    torch.save({wrapper: prefixed, "best_prec1": 91.0, "epoch": 3}, tmp_path / "w.th")
    dst = load_checkpoint(build_model("lenet", num_classes=10, seed=1), tmp_path / "w.th")
    assert _same(src, dst)


def test_missing_num_batches_tracked_is_tolerated(tmp_path: Path) -> None:
    src = build_model("resnet20", num_classes=10, seed=0)
    torch.save({k: v for k, v in src.state_dict().items() if "num_batches" not in k}, tmp_path / "w.pt")
    dst = load_checkpoint(build_model("resnet20", num_classes=10, seed=1), tmp_path / "w.pt")
    assert torch.equal(dst.layer3[2].conv2.weight, src.layer3[2].conv2.weight)


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pt"
    with pytest.raises(
        ModelError, match=r"Expected a checkpoint file at '.*nope\.pt', but it does not exist"
    ):
        load_checkpoint(nn.Linear(2, 2), missing)
    with pytest.raises(ModelError, match="is a directory"):
        load_checkpoint(nn.Linear(2, 2), tmp_path)


@pytest.mark.parametrize("kind", ["random bytes", "text", "npz", "truncated"])
def test_unreadable_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "w.pt"
    if kind == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(2000))
    elif kind == "text":
        path.write_text("weights go here\n")
    elif kind == "npz":
        np.savez(path.with_suffix(".npz"), w=np.zeros(3))
        path.with_suffix(".npz").rename(path)
    else:
        save_checkpoint(nn.Linear(50, 50), path)
        path.write_bytes(path.read_bytes()[:1500])
    with pytest.raises(ModelError, match=r"Expected a PyTorch checkpoint written by torch\.save at .*w\.pt"):
        load_checkpoint(nn.Linear(2, 2), path)


def test_custom_class_refused_by_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    torch.save({"state_dict": nn.Linear(2, 2).state_dict(), "config": _TrainingConfig()}, path)
    with pytest.raises(ModelError, match=r"_TrainingConfig.*weights_only=True.*state_dict\(\)"):
        load_checkpoint(nn.Linear(2, 2), path)


def test_not_a_state_dict(tmp_path: Path) -> None:
    torch.save([torch.zeros(2)], tmp_path / "w.pt")
    with pytest.raises(ModelError, match=r"Expected a state_dict.*holds a list"):
        load_checkpoint(nn.Linear(2, 2), tmp_path / "w.pt")
    torch.save({"epoch": 3, "optimizer": {"lr": torch.tensor(0.1)}}, tmp_path / "w.pt")
    with pytest.raises(ModelError, match=r"holds a dict with keys \['epoch', 'optimizer'\]"):
        load_checkpoint(nn.Linear(2, 2), tmp_path / "w.pt")


def test_mismatched_keys_named(tmp_path: Path) -> None:
    path = save_checkpoint(build_model("lenet", num_classes=10), tmp_path / "lenet.pt")
    mlp = build_model("mlp", num_classes=10, hidden=(4,))
    with pytest.raises(
        ModelError, match=r"checkpoint for MLP.*missing keys \(net\.1\.weight.*unexpected.*body\.0\.weight"
    ):
        load_checkpoint(mlp, path)


def test_mismatched_shapes_named(tmp_path: Path) -> None:
    path = save_checkpoint(build_model("lenet", num_classes=10), tmp_path / "lenet.pt")
    with pytest.raises(
        ModelError, match=r"'fc\.weight' of shape \(5, 768\) but got \(10, 768\).*num_classes"
    ):
        load_checkpoint(build_model("lenet", num_classes=5), path)
    with pytest.raises(ModelError, match=r"'fc\.weight' of shape \(5, 768\)"):
        load_checkpoint(build_model("lenet", num_classes=5), path, strict=False)


def test_non_strict_loads_the_matching_part(tmp_path: Path) -> None:
    src = build_model("lenet", num_classes=10, seed=0)
    state = {k: v for k, v in src.state_dict().items() if not k.startswith("fc.")}
    state["extra.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "w.pt")
    dst = build_model("lenet", num_classes=10, seed=1)
    fc_before = dst.fc.weight.clone()
    with pytest.raises(ModelError, match=r"2 missing keys.*1 unexpected"):
        load_checkpoint(dst, tmp_path / "w.pt")
    load_checkpoint(dst, tmp_path / "w.pt", strict=False)
    assert torch.equal(dst.body[0].weight, src.body[0].weight) and torch.equal(dst.fc.weight, fc_before)


@pytest.mark.shared_data
@pytest.mark.parametrize(("name", "file"), [("resnet20", "12fca82f"), ("resnet56", "4bfd9763")])
def test_trained_cifar_resnet_accuracy(shared: Path, name: str, file: str) -> None:
    data = np.load(shared / "data" / "cifar10_test_jpeg_3k.npz")
    # the file is sorted by class: take the first 50 test images of every class (500 in all)
    keep = data["within_class_index"] < 50
    x = torch.from_numpy(data["x"][keep]).permute(0, 3, 1, 2).float() / 255
    y = torch.from_numpy(data["y"][keep])
    assert len(y) == 500 and torch.bincount(y).tolist() == [50] * 10

    model = build_model(
        name, num_classes=10, checkpoint=shared / "weights" / f"cifar10_{name}-{file}.th"
    ).eval()
    with torch.no_grad():
        accuracy = (model((x - IMAGENET_MEAN) / IMAGENET_STD).argmax(1) == y).float().mean().item()
    # published 91.8% / 93.6% on lossless images; JPEG costs ~10 points (measured: 79.8% / 83.0%)
    assert accuracy >= 0.75, f"{name}: {accuracy:.1%} on 500 JPEG CIFAR-10 test images"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path: Path, bad: float) -> None:
    """A diverged checkpoint is refused at load time, not later as a misleading attack failure."""
    src = build_model("lenet", num_classes=10, seed=0)
    state = src.state_dict()
    state["fc.weight"][0, :3] = bad
    torch.save(state, tmp_path / "w.pt")
    dst = build_model("lenet", num_classes=10, seed=1)
    before = dst.fc.weight.clone()
    with pytest.raises(ModelError, match=r"Expected finite weights.*'fc\.weight' \(3 of 7680 values\)"):
        load_checkpoint(dst, tmp_path / "w.pt")
    assert torch.equal(dst.fc.weight, before)  # nothing was loaded
    with pytest.raises(ModelError, match="lower learning rate"):
        build_model("lenet", num_classes=10, checkpoint=tmp_path / "w.pt")
