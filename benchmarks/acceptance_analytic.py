"""Acceptance measurements of the passive analytic attacks on real images (the first 200 CIFAR-10
training images from ../shared when present, else the bundled photos). Prints JSON.

* R-GAP on its 6-layer CNN (``rgap-cnn6``), B = 1, FedSGD, 32x32: PSNR, label, rank deficiency per
  layer. Acceptance: PSNR >= 30 dB.
* Cocktail Party on a 2-layer FC network (``mlp``, hidden = [256], ReLU), B = 64, FedSGD: mean PSNR
  after Hungarian matching, per batch of 64 consecutive images, for unnormalised inputs (the model's
  default) and CIFAR-normalised inputs. Acceptance: mean PSNR >= 20 dB.
* SPEAR on the same network (first layer Linear(3072, 256) + ReLU), B in 1..16: exactly recovered
  images (PSNR >= 60 dB or max pixel error < 1/255), labels. Acceptance: exact at B <= 16.

    python benchmarks/acceptance_analytic.py --rgap-images 3 --cpa-batches 3 --spear-batches 3
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from _common import cifar_or_samples, emit, machine
from gradinv.attacks import create_attack
from gradinv.fl import run_round
from gradinv.metrics import MetricsConfig
from gradinv.metrics.evaluate import evaluate
from gradinv.models import build_model
from gradinv.threat import observe
from gradinv.types import Batch, GroundTruth, TrainingConfig


def view_for(model, batch: Batch, threat: str = "B"):
    tr = TrainingConfig()
    truth = GroundTruth(model, (batch,), tr, run_round(model, [batch], tr), num_classes=10)
    return observe(truth, threat)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def rgap(ds, n_images: int) -> dict:
    rows = []
    for idx in range(n_images):
        batch = ds.to_batch([idx], image_size=32)
        model = build_model("rgap-cnn6", num_classes=10, seed=0)
        view = view_for(model, batch)
        start = time.perf_counter()
        res = create_attack("rgap").reconstruct(view, device="cpu")
        ev = evaluate(res.reconstruction, batch, MetricsConfig(lpips="off", stlpips="off"))
        deficiency = [int(n.split("deficiency ")[1].split(")")[0]) for n in res.notes if "deficiency" in n]
        rows.append(
            {
                "index": idx,
                "psnr": ev.mean("psnr"),
                "ssim": ev.mean("ssim"),
                "label_correct": res.reconstruction.labels.tolist() == batch.labels.tolist(),
                "rank_deficiency_per_layer": deficiency,
                "seconds": time.perf_counter() - start,
            }
        )
        log(f"rgap image {idx}: psnr {rows[-1]['psnr']:.1f}")
    ps = [r["psnr"] for r in rows]
    return {
        "model": "rgap-cnn6 (seed 0), 32x32, FedSGD, B = 1, threat B",
        "images": rows,
        "psnr_min": min(ps),
        "psnr_mean": float(np.mean(ps)),
        "fraction_psnr_ge_30": float(np.mean([p >= 30 for p in ps])),
    }


def cocktail(ds, n_batches: int, normalizations: list[str]) -> dict:
    out: dict = {"model": "mlp hidden [256] ReLU (seed 0), 32x32, FedSGD, B = 64, threat B"}
    for norm in normalizations:
        rows = []
        for k in range(n_batches):
            idx = list(range(64 * k, 64 * (k + 1)))
            if idx[-1] >= len(ds):
                break
            batch = ds.to_batch(idx, image_size=32, normalization=norm)
            model = build_model("mlp", num_classes=10, seed=0, hidden=[256])
            view = view_for(model, batch)
            start = time.perf_counter()
            res = create_attack("cocktail-party").reconstruct(view, device="cpu")
            ev = evaluate(res.reconstruction, batch, MetricsConfig(lpips="off", stlpips="off"))
            ps = ev.metrics["psnr"].per_image
            rows.append(
                {
                    "indices": [idx[0], idx[-1]],
                    "psnr_mean": float(np.mean(ps)),
                    "psnr_median": float(np.median(ps)),
                    "psnr_min": float(np.min(ps)),
                    "fraction_psnr_ge_20": float(np.mean([p >= 20 for p in ps])),
                    "ssim_mean": ev.mean("ssim"),
                    "notes": list(res.notes),
                    "seconds": time.perf_counter() - start,
                }
            )
            log(f"cocktail-party {norm} batch {k}: mean psnr {rows[-1]['psnr_mean']:.2f}")
        out[f"normalization_{norm}"] = {
            "batches": rows,
            "psnr_mean_over_batches": float(np.mean([r["psnr_mean"] for r in rows])),
        }
    return out


def spear(ds, sizes: list[int], normalizations: list[str], max_samples: int, n_batches: int) -> dict:
    out: dict = {
        "model": "mlp hidden [256] ReLU (seed 0), 32x32, FedSGD, threat B",
        "max_samples": max_samples,
    }
    for norm in normalizations:
        rows = []
        for b, k in [(b, k) for b in sizes for k in range(n_batches)]:
            if b * (k + 1) > len(ds):
                continue
            batch = ds.to_batch(list(range(b * k, b * (k + 1))), image_size=32, normalization=norm)
            model = build_model("mlp", num_classes=10, seed=0, hidden=[256])
            view = view_for(model, batch)
            start = time.perf_counter()
            res = create_attack("spear", max_samples=max_samples).reconstruct(view, device="cpu")
            ev = evaluate(res.reconstruction, batch, MetricsConfig(lpips="off", stlpips="off"))
            err = (ev.matched_images - batch.images[ev.matching.truth_index]).abs().amax(dim=(1, 2, 3))
            ps = torch.tensor(ev.metrics["psnr"].per_image)
            exact = (ps >= 60) | (err < 1 / 255)
            rows.append(
                {
                    "batch_size": b,
                    "indices": [b * k, b * (k + 1) - 1],
                    "exact": int(exact.sum()),
                    "psnr_min": float(ps.min()),
                    "max_pixel_error": float(err.max()),
                    "label_accuracy": ev.mean("label_accuracy") if "label_accuracy" in ev.metrics else None,
                    "row_subsets_sampled": res.iterations,
                    "verified": any(n.startswith("verified") for n in res.notes),
                    "seconds": time.perf_counter() - start,
                }
            )
            log(f"spear {norm} B={b} batch {k}: exact {rows[-1]['exact']}/{b} in {rows[-1]['seconds']:.1f}s")
        out[f"normalization_{norm}"] = rows
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rgap-images", type=int, default=3)
    p.add_argument("--cpa-batches", type=int, default=3)
    p.add_argument("--cpa-normalizations", nargs="+", default=["none", "cifar10"])
    p.add_argument("--spear-batch-sizes", type=int, nargs="+", default=[1, 4, 8, 12, 16])
    p.add_argument("--spear-normalizations", nargs="+", default=["cifar10", "none"])
    p.add_argument("--spear-max-samples", type=int, default=2_000_000)
    p.add_argument("--spear-batches", type=int, default=1, help="disjoint batches per batch size")
    p.add_argument("--skip", nargs="*", default=[], choices=["rgap", "cocktail-party", "spear"])
    a = p.parse_args()
    ds, source = cifar_or_samples()
    out: dict = {"benchmark": "acceptance_analytic", "machine": machine(), "data": source}
    if "spear" not in a.skip:
        out["spear"] = spear(
            ds, a.spear_batch_sizes, a.spear_normalizations, a.spear_max_samples, a.spear_batches
        )
    if "cocktail-party" not in a.skip:
        out["cocktail_party"] = cocktail(ds, a.cpa_batches, a.cpa_normalizations)
    if "rgap" not in a.skip:
        out["rgap"] = rgap(ds, a.rgap_images)
    emit(out)


if __name__ == "__main__":
    main()
