"""``gradinv vet``: exit codes 0 (clean) / 1 (findings) / 2 (bad input), JSON output, safe loading."""

from __future__ import annotations

import copy
import json
import pickle

import pytest
import torch

from gradinv.attacks import create_attack
from gradinv.cli.app import main
from gradinv.models import build_model
from gradinv.threat import observe_server
from gradinv.types import TrainingConfig
from tests.helpers import photo_batch


@pytest.fixture
def honest(tmp_path):
    model = build_model("lenet", num_classes=10, seed=0)
    path = tmp_path / "received.pt"
    torch.save({"state_dict": model.state_dict(), "round": torch.tensor(3)}, path)
    return model, path


def test_honest_checkpoint_exits_0(honest, tmp_path, capsys):
    model, path = honest
    prev = tmp_path / "prev.pt"
    torch.save(model.state_dict(), prev)
    others = [tmp_path / f"c{i}.pt" for i in range(2)]
    for o in others:
        torch.save(copy.deepcopy(model).state_dict(), o)
    code = main(
        [
            "vet",
            "--model",
            "lenet",
            "--checkpoint",
            str(path),
            "--previous",
            str(prev),
            "--others",
            *map(str, others),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "no findings" in out and "architecture" in out


def test_crafted_checkpoint_exits_1_with_json_evidence(photos, tmp_path, capsys):
    model = build_model("lenet", num_classes=10, seed=0)
    batch = photo_batch(photos, [0])
    knowledge = observe_server(model, "F", batches=(batch,), training=TrainingConfig(), num_classes=10)
    (crafted,) = create_attack("robbing-the-fed", bins=20).craft(knowledge)
    path = tmp_path / "received.pt"
    torch.save(crafted.state_dict(), path)
    code = main(["vet", "--model", "lenet", "--checkpoint", str(path), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and not report["clean"]
    kinds = {f["kind"] for f in report["findings"]}
    assert {"architecture-change", "parallel-rows", "monotone-bias"} <= kinds
    assert all(f["evidence"] and f["severity"] in ("high", "medium") for f in report["findings"])


def test_fresh_model_without_checkpoint_and_model_options(capsys):
    assert main(["vet", "--model", "convnet", "--option", "width=8", "--image-size", "16"]) == 0
    assert "no findings" in capsys.readouterr().out


class _Payload:  # a pickled Python object: torch.load(weights_only=True) must refuse it
    pass


@pytest.mark.parametrize(
    "args",
    [
        ["vet"],  # neither --model nor --checkpoint
        ["vet", "--model", "nosuchnet"],
        ["vet", "--checkpoint", "{missing}"],
        ["vet", "--checkpoint", "{pickle}"],
        ["vet", "--model", "lenet", "--option", "width"],
    ],
)
def test_bad_input_exits_2(args, tmp_path, capsys):
    bad = tmp_path / "evil.pt"
    with open(bad, "wb") as f:
        pickle.dump({"w": _Payload()}, f, protocol=2)
    args = [a.format(missing=tmp_path / "none.pt", pickle=bad) for a in args]
    assert main(args) == 2
    assert "error:" in capsys.readouterr().err


def test_update_file_is_checked(honest, tmp_path, capsys):
    model, path = honest
    update = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    upd = tmp_path / "update.pt"
    torch.save(update, upd)
    assert main(["vet", "--checkpoint", str(path), "--update", str(upd)]) == 1
    assert "zero-update" in capsys.readouterr().out
