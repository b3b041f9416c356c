"""Acceptance measurements of the foundation issue on real images (CIFAR-10 from ../shared when
present, else the bundled photos). Prints JSON.

* DLG with the issue's example config (sigmoid LeNet, FedSGD, B = 1, 32x32, threat B,
  iterations = 300): PSNR and label per image, for restarts = 1 (the paper) and the default.
* iDLG label accuracy at B = 1 over 20 images; Yin et al. at B = 8 with unique labels.

    python benchmarks/acceptance_foundation.py --dlg-images 5 --restarts 1 4
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from _common import cifar_or_samples, emit, machine
from gradinv.attacks import create_attack
from gradinv.attacks.labels import LABEL_METHODS, classifier_gradient
from gradinv.data import select_indices
from gradinv.fl import local_update, run_round
from gradinv.metrics import psnr
from gradinv.models import build_model
from gradinv.threat import observe
from gradinv.types import GroundTruth, TrainingConfig


def view_for(model, batch, threat="B"):
    tr = TrainingConfig()
    truth = GroundTruth(model, (batch,), tr, run_round(model, [batch], tr), num_classes=10)
    return observe(truth, threat)


def dlg(ds, n_images: int, restarts: list[int], iterations: int) -> dict:
    out: dict = {}
    for k in restarts:
        rows = []
        for idx in range(n_images):
            batch = ds.to_batch([idx], image_size=32)
            model = build_model("lenet", num_classes=10, seed=0)
            view = view_for(model, batch)
            start = time.perf_counter()
            res = create_attack("dlg", iterations=iterations, restarts=k).reconstruct(view, device="cpu")
            value = float(psnr(res.reconstruction.images, batch.images))
            print(
                f"dlg restarts={k} image {idx}: psnr {value:.2f}",
                file=sys.stderr,
                flush=True,
            )
            rows.append(
                {
                    "index": idx,
                    "psnr": float(psnr(res.reconstruction.images, batch.images)),
                    "label_correct": res.reconstruction.labels.tolist() == batch.labels.tolist(),
                    "seconds": time.perf_counter() - start,
                    "evaluations": res.iterations,
                }
            )
        ps = [r["psnr"] for r in rows]
        out[f"restarts_{k}"] = {
            "images": rows,
            "psnr_min": min(ps),
            "psnr_mean": float(np.mean(ps)),
            "fraction_psnr_ge_30": float(np.mean([p >= 30 for p in ps])),
            "label_accuracy": float(np.mean([r["label_correct"] for r in rows])),
        }
    return out


def labels(ds) -> dict:
    res: dict = {}
    # iDLG at B = 1 over 20 images, on several untrained models
    for name in ("lenet", "convnet", "resnet20"):
        model = build_model(name, num_classes=10, seed=0)
        correct = 0
        for idx in range(20):
            batch = ds.to_batch([idx], image_size=32)
            g = local_update(model, batch, TrainingConfig()).update.params
            pred = LABEL_METHODS.get("idlg").fn(classifier_gradient(model, g), 1)
            correct += int(pred.item() == batch.labels.item())
        res[f"idlg_b1_{name}"] = correct / 20
    # Yin at B = 8 with unique labels, 10 batches
    for name in ("lenet", "convnet", "resnet18", "resnet20"):
        model = build_model(name, num_classes=10, seed=0)
        accs = []
        for seed in range(10):
            idx = select_indices(ds.labels, num_images=8, seed=seed, composition="unique")
            batch = ds.to_batch(idx, image_size=32)
            g = local_update(model, batch, TrainingConfig()).update.params
            pred = LABEL_METHODS.get("yin").fn(classifier_gradient(model, g), 8)
            accs.append(len(set(pred.tolist()) & set(batch.labels.tolist())) / 8)
        res[f"yin_b8_unique_{name}"] = float(np.mean(accs))
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--dlg-images", type=int, default=5)
    p.add_argument("--restarts", type=int, nargs="+", default=[1, 4])
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--skip-dlg", action="store_true")
    a = p.parse_args()
    ds, source = cifar_or_samples()
    out = {"benchmark": "acceptance_foundation", "machine": machine(), "data": source}
    out["labels"] = labels(ds)
    if not a.skip_dlg:
        out["dlg"] = dlg(ds, a.dlg_images, a.restarts, a.iterations)
    emit(out)


if __name__ == "__main__":
    main()
