"""Same seed, same machine -> the same report.json, bit for bit (everything but timestamps and timings).

Each case runs ``gradinv attack`` twice in this process on real photos, with randomness everywhere it
can enter: the victim batch drawn with ``data.seed``, several batched restarts, a stochastic defense
(PRECODE's variational bottleneck samples in every forward pass) and Gaussian noise on the update.
The first case leaves ``attack.batching = "auto"`` (a fixed rule, not a timing: it used to time vmap
against a per-candidate loop, and since the two paths differ in the last bits, the choice flipped
with the machine's load); the others pin each path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from gradinv.cli.app import main

CASES = {
    "dlg-precode-noise": (
        '[data]\nsource = "samples"\nnum_images = 2\nseed = 3\nimage_size = 16\n'
        '[model]\nname = "lenet"\n[threat]\nmodel = "B"\n'
        '[[defenses]]\nname = "precode"\nlatent_dim = 16\n'
        '[[defenses]]\nname = "gaussian-noise"\nsigma = 0.01\n'
        '[attack]\nname = "dlg"\niterations = 2\nmax_iter = 4\nrestarts = 2\n'
    ),
    "dlg-vmap": (
        '[data]\nsource = "samples"\nnum_images = 2\nseed = 3\nimage_size = 16\n'
        '[model]\nname = "lenet"\n[threat]\nmodel = "B"\n'
        '[attack]\nname = "dlg"\niterations = 2\nmax_iter = 4\nrestarts = 2\nbatching = "vmap"\n'
    ),
    "ig-fedavg-loop": (
        '[data]\nsource = "samples"\nindices = [4]\nimage_size = 16\n'
        '[model]\nname = "convnet"\nwidth = 8\n'
        '[training]\nprotocol = "fedavg"\nepochs = 1\nbatch_size = 1\n[threat]\nmodel = "C"\n'
        '[attack]\nname = "inverting-gradients"\niterations = 4\nrestarts = 2\nbatching = "loop"\n'
    ),
}

#: what may differ between two runs: when they ran and how long they took
VOLATILE = ("created", "timing")


def _run(config: Path, out: Path) -> dict[str, Any]:
    assert (
        main(["attack", "--config", str(config), "--out", str(out), "--device", "cpu", "--no-progress"]) == 0
    )
    doc: dict[str, Any] = json.loads((out / "report.json").read_text(encoding="utf-8"))
    return doc


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_seed_gives_a_bit_identical_report(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "exp.toml"
    config.write_text(CASES[case], encoding="utf-8")
    first, second = _run(config, tmp_path / "a"), _run(config, tmp_path / "b")
    capsys.readouterr()
    assert set(first) == set(second)
    assert first["metrics"] == second["metrics"]  # identical floats, not approximately equal ones
    assert first["metrics"]["psnr"]["per_image"]  # something was compared
    for key in set(first) - set(VOLATILE):
        assert first[key] == second[key], key
    assert set(first["timing"]) == set(second["timing"])
    png_a = np.asarray(Image.open(tmp_path / "a" / "reconstruction.png"))
    png_b = np.asarray(Image.open(tmp_path / "b" / "reconstruction.png"))
    np.testing.assert_array_equal(png_a, png_b)
