"""Label-count recovery accuracy on real CIFAR-10 images with duplicate labels (untrained models).
Prints JSON.

For every model, batch size B and trial (a seeded victim batch of composition ``duplicates``):
one FedSGD round, the attacker's view under threat model B, and every count-aware label method
(plus ``auto``) run through ``LABEL_METHODS[...].recover(view, grads)``. Reported per setting: the
mean label-count accuracy (``gradinv.metrics.label_accuracy``: the fraction of true labels the
recovered multiset accounts for) and the fraction of batches recovered exactly.

Further sections:

* ``ilrg_conditions``: iLRG where its paper's conditions hold (100 classes, so ``B p_c << k_c``;
  and a batch of one repeated image with uneven labels, so features and softmax outputs are shared
  and the linear system is exact).
* ``fedavg``: Geng et al. (and the scale-free LLG) on FedAvg deltas (N = 16, E in {1, 2}, local batch
  4, lr in {0.001, 0.01}).

Data: ``../shared/data/cifar10_train_png_200.npz`` (or ``--data``); falls back to the bundled photos.

    OMP_NUM_THREADS=1 python benchmarks/bench_labels.py --trials 10
    python benchmarks/bench_labels.py --models lenet resnet20 --batch-sizes 8 --trials 3   # quick
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from _common import cifar_or_samples, emit, machine
from gradinv.attacks.labels import LABEL_METHODS, resolve_labels
from gradinv.attacks.optimization import target_gradient
from gradinv.data import load_npz, select_indices
from gradinv.fl import run_round
from gradinv.metrics import label_accuracy
from gradinv.models import build_model
from gradinv.models.registry import MODELS
from gradinv.threat import observe
from gradinv.types import Batch, GroundTruth, TrainingConfig

METHODS = ("llg", "llg-star", "llg-plus", "ilrg", "ilrg-refined", "geng", "auto")
#: duplicates per class for each batch size (CIFAR-10 has 10 classes: B = 32 needs >= 4 per class)
DUPLICATES = {8: 2, 16: 2, 32: 4}


@dataclass
class Tally:
    acc: list[float]
    exact: list[bool]
    seconds: list[float]

    def summary(self) -> dict:
        return {
            "label_accuracy": float(np.mean(self.acc)),
            "exact_batches": float(np.mean(self.exact)),
            "min_label_accuracy": float(np.min(self.acc)),
            "seconds_per_call": float(np.mean(self.seconds)),
        }


def view_of(model: torch.nn.Module, batch: Batch, training: TrainingConfig, num_classes: int):
    rnd = run_round(model, [batch], training)
    truth = GroundTruth(model, (batch,), training, rnd, num_classes=num_classes)
    view = observe(truth, "C")  # basic knowledge + training details (B plus lr/E/B; labels not granted)
    return view, target_gradient(view).grads


def score(methods: tuple[str, ...], view, grads, true: torch.Tensor, tallies: dict[str, Tally]) -> None:
    for m in methods:
        t0 = time.perf_counter()
        try:
            pred, _ = resolve_labels(m, view, grads)
        except Exception as e:  # a refusal counts as a miss, and is reported
            print(f"  {m}: {type(e).__name__}: {e}", file=sys.stderr)
            pred = torch.zeros(0, dtype=torch.long)
        dt = time.perf_counter() - t0
        acc = label_accuracy(pred, true).value if len(pred) else 0.0
        same = len(pred) == len(true) and torch.equal(torch.sort(pred).values, torch.sort(true).values)
        tallies.setdefault(m, Tally([], [], [])).acc.append(acc)
        tallies[m].exact.append(bool(same))
        tallies[m].seconds.append(dt)


def _progress(key: str, tallies: dict[str, Tally]) -> None:
    print(key, {m: round(t.summary()["label_accuracy"], 3) for m, t in tallies.items()}, file=sys.stderr)


def fedsgd_section(ds, models: list[str], sizes: list[int], trials: int, composition: str) -> dict:
    out: dict = {}
    for name in models:
        spec = MODELS.get(name)
        for b in sizes:
            tallies: dict[str, Tally] = {}
            for trial in range(trials):
                model = build_model(name, num_classes=10, seed=trial)
                dup = DUPLICATES.get(b, 2)
                idx = select_indices(
                    ds.labels, num_images=b, seed=trial, composition=composition, duplicates=dup
                )
                batch = ds.to_batch(idx, image_size=32, normalization=spec.default_normalization)
                view, grads = view_of(model, batch, TrainingConfig(), 10)
                score(METHODS, view, grads, batch.labels, tallies)
            key = f"{name}_B{b}_{composition}"
            out[key] = {m: t.summary() for m, t in tallies.items()}
            _progress(key, tallies)
    return out


def ilrg_conditions(ds, trials: int) -> dict:
    """iLRG where the paper's approximation holds."""
    out: dict = {}
    # (a) 100 classes (labels drawn in [0, 100)), untrained ResNet-20: B p_c ~ 0.08 << k_c.
    tallies: dict[str, Tally] = {}
    for trial in range(trials):
        model = build_model("resnet20", num_classes=100, seed=trial)
        gen = np.random.default_rng(trial)
        idx = gen.choice(len(ds.labels), size=8, replace=False).tolist()
        batch = ds.to_batch(idx, image_size=32, normalization="cifar10")
        classes = gen.choice(100, size=4, replace=False)
        labels = torch.as_tensor(np.repeat(classes, 2), dtype=torch.long)
        batch = Batch(batch.images, labels, batch.normalization, (), batch.indices, batch.source)
        view, grads = view_of(model, batch, TrainingConfig(), 100)
        score(("ilrg", "ilrg-refined", "llg-plus"), view, grads, labels, tallies)
    out["resnet20_100classes_B8"] = {m: t.summary() for m, t in tallies.items()}
    # (b) every sample is the same image (shared features and softmax outputs: iLRG's system is exact
    # for any counts), 10 classes, B = 32 with uneven duplicate labels, LeNet.
    tallies = {}
    for trial in range(trials):
        model = build_model("lenet", num_classes=10, seed=trial)
        gen = np.random.default_rng(trial)
        batch = ds.to_batch([int(gen.integers(len(ds.labels)))] * 32, image_size=32)
        labels = torch.as_tensor(
            np.sort(gen.choice(10, size=32, p=gen.dirichlet(np.ones(10)))), dtype=torch.long
        )
        batch = Batch(batch.images, labels, batch.normalization, (), batch.indices, batch.source)
        view, grads = view_of(model, batch, TrainingConfig(), 10)
        score(("ilrg", "ilrg-refined", "llg-plus"), view, grads, labels, tallies)
    out["lenet_one_image_B32"] = {m: t.summary() for m, t in tallies.items()}
    return out


def fedavg_section(ds, trials: int) -> dict:
    out: dict = {}
    for name in ("lenet", "resnet20"):
        spec = MODELS.get(name)
        for epochs, lr in ((1, 0.001), (2, 0.001), (1, 0.01), (2, 0.01)):
            tallies: dict[str, Tally] = {}
            for trial in range(trials):
                model = build_model(name, num_classes=10, seed=trial)
                idx = select_indices(ds.labels, num_images=16, seed=trial, composition="duplicates")
                batch = ds.to_batch(idx, image_size=32, normalization=spec.default_normalization)
                tr = TrainingConfig(protocol="fedavg", epochs=epochs, batch_size=4, lr=lr)
                view, grads = view_of(model, batch, tr, 10)
                score(("geng", "llg", "ilrg-refined", "auto"), view, grads, batch.labels, tallies)
            key = f"{name}_N16_E{epochs}_B4_lr{lr:g}"
            out[key] = {m: t.summary() for m, t in tallies.items()}
            _progress(key, tallies)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["lenet", "convnet", "resnet18", "resnet20"])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16, 32])
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--composition", default="duplicates")
    p.add_argument("--data", default=None, help="an .npz of images (default: CIFAR-10 from ../shared)")
    p.add_argument("--skip-extra", action="store_true", help="only the FedSGD table")
    a = p.parse_args()
    torch.manual_seed(0)
    if a.data:
        ds, source = load_npz(a.data), a.data
    else:
        ds, source = cifar_or_samples()
    start = time.perf_counter()
    out: dict = {
        "benchmark": "bench_labels",
        "machine": machine(),
        "data": source,
        "threat_model": "C (labels not granted)",
        "trials": a.trials,
        "duplicates_per_class": {str(k): v for k, v in DUPLICATES.items()},
        "methods": {m: LABEL_METHODS.get(m).paper for m in METHODS if m in LABEL_METHODS},
    }
    out["fedsgd"] = fedsgd_section(ds, a.models, a.batch_sizes, a.trials, a.composition)
    if not a.skip_extra:
        out["ilrg_conditions"] = ilrg_conditions(ds, a.trials)
        out["fedavg"] = fedavg_section(ds, a.trials)
    out["total_seconds"] = time.perf_counter() - start
    emit(out)


if __name__ == "__main__":
    main()
