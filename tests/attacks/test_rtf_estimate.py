"""Robbing the Fed's self-assessment at B = 16 with known collisions: the note is labelled an estimate
and is an upper bound on the true exact count; the report's ``exact`` metric equals ``count_exact``."""

from __future__ import annotations

import pytest
import torch

from gradinv.attacks import create_attack
from gradinv.attacks._imprint import count_exact
from gradinv.attacks.robbing_the_fed import Decoded, estimate_exact
from gradinv.metrics.evaluate import evaluate
from gradinv.types import Batch, TrainingConfig
from tests.attacks.test_malicious import _body, crafted_round
from tests.helpers import photo_batch


def _colliding_batch(photos) -> tuple[Batch, set[int]]:
    """16 images: the 8 photos; mirror images of photos 0, 1, 3 and 6 (same brightness, other left
    half); copies of photos 2 and 5 with pixels shuffled inside each half (same brightness and left
    half: no measurement separates them); photos 7 and 0 darkened. Returns the batch and the indices
    that share a bin in every measurement (never recovered exactly). Photo 4 (the Hubble deep field,
    nearly black) is not duplicated: a mixture of it and a shuffled copy is within 60 dB of both."""
    base = photo_batch(photos, list(range(8)))
    x = base.images
    gen = torch.Generator().manual_seed(0)

    def shuffled(img: torch.Tensor) -> torch.Tensor:
        out = img.clone()
        w = img.shape[-1] // 2
        for sl in (slice(0, w), slice(w, None)):
            half = img[:, :, sl].reshape(3, -1)
            out[:, :, sl] = half[:, torch.randperm(half.shape[1], generator=gen)].reshape(3, img.shape[1], -1)
        return out

    extra = (
        [x[i].flip(-1) for i in (0, 1, 3, 6)] + [shuffled(x[2]), shuffled(x[5])] + [x[7] * 0.7, x[0] * 0.8]
    )
    images = torch.cat([x, torch.stack(extra)])
    labels = torch.arange(16) % 10
    batch = Batch(images, labels, base.normalization, base.class_names, tuple(range(16)), "photos")
    return batch, {2, 5, 12, 13}


def _estimate_note(notes: tuple[str, ...]) -> str:
    found = [n for n in notes if "exact" in n]
    assert len(found) == 1, notes
    return found[0]


@pytest.mark.parametrize("measurements", [["brightness"], ["brightness", "left"]])
def test_rtf_estimate_is_labelled_and_bounds_the_true_count(photos, measurements) -> None:
    batch, inseparable = _colliding_batch(photos)
    attack = create_attack("robbing-the-fed", bins=1000, measurements=measurements)
    _, view = crafted_round(attack, _body(), [batch])
    result = attack.reconstruct(view, device="cpu")
    rec = result.reconstruction.images
    true = count_exact(rec, batch.images)
    # the known collisions are not recovered; with one measurement the mirrored pairs collide too
    assert all(true.psnr[i] < 60 for i in inseparable)
    assert true.count <= (8 if len(measurements) == 1 else 12)
    note = _estimate_note(result.notes)
    assert note.startswith("estimated exact recoveries: at most ") and "upper bound" in note
    assert "without ground truth" in note
    upper = int(note.split("at most ")[1].split(" ")[0])
    assert true.count <= upper < 16  # the collisions are visible in the bin counts
    # the report's count is the same function's, and the MSE-matched PSNR may not show it
    ev = evaluate(result.reconstruction, batch)
    assert ev.metrics["exact"].mean == true.count
    assert sum(p >= 60 for p in ev.metrics["psnr"].per_image) <= true.count


def test_estimate_counts_collisions_in_the_bin_counts() -> None:
    """One measurement: m occupied bins for B samples hold at most m - 1 lone samples when m < B, and
    no more than the candidates consistent with one sample."""
    d = Decoded(torch.zeros(14, 4), 0, (14,), 14, residual=(14,), residual_consistent=(14,))
    assert estimate_exact(d, 16).upper == 13
    d = Decoded(torch.zeros(14, 4), 0, (14,), 11, residual=(14,), residual_consistent=(11,))
    assert estimate_exact(d, 16).upper == 11
    d = Decoded(torch.zeros(16, 4), 0, (16,), 16, residual=(16,), residual_consistent=(16,))
    assert estimate_exact(d, 16).upper == 16
    # two measurements: 14 confirmed, nothing left, 16 samples: a confirmed output is a mixture
    d = Decoded(torch.zeros(14, 4), 14, (15, 15), 0, residual=(0, 0), residual_consistent=(0, 0))
    assert estimate_exact(d, 16).upper == 13
    assert estimate_exact(d, None).upper == 14


def test_rtf_estimate_under_fedavg_is_still_an_upper_bound(photos) -> None:
    """Several local steps move the rows, so two samples of one bin can both come back: the bin-count
    bound does not hold there and the estimate falls back to the number of outputs."""
    batch = photo_batch(photos, list(range(8)))
    training = TrainingConfig("fedavg", epochs=2, batch_size=2, lr=0.05, momentum=0.9)
    attack = create_attack("robbing-the-fed", bins=24, measurements=["brightness"])
    _, view = crafted_round(attack, _body(), [batch], training)
    result = attack.reconstruct(view, device="cpu")
    note = _estimate_note(result.notes)
    assert "upper bound" in note and "local steps" in note
    upper = int(note.split("at most ")[1].split(" ")[0])
    assert count_exact(result.reconstruction.images, batch.images).count <= upper
