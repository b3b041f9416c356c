"""GRNN and Learning to Invert on real CIFAR-10 images (issue 14, acceptance lines 3-4). Prints one
JSON object.

* ``lti``: Learning to Invert against Inverting Gradients under signSGD (the client sends the scaled
  sign of its gradient), B = 1, 32x32 held-out CIFAR-10 test images (cifar10_test_jpeg_3k.npz), the
  surrogate set drawn from cifar10_train_jpeg_10k.npz, FedSGD, threat model D (IG runs on the same
  view). LTI infers the defense from the update's form and trains its inversion network per target.
* ``grnn``: GRNN against Inverting Gradients (same iteration budget, threat model B) on DLG's
  Sigmoid LeNet, on Du et al.'s CNN with ReLU (paper 003, §III-C2: GRNN fails there) and on the same
  CNN with Sigmoid (the control: same architecture, other activation); untrained models, B = 1.

Mean PSNR and SSIM (after Hungarian matching), per image and overall, with wall-clock seconds. Runs
with one torch thread (a shared 2-core machine).

    python benchmarks/bench_grnn_lti.py lti --images 8 --surrogate 2000 --epochs 30
    python benchmarks/bench_grnn_lti.py grnn --images 4 --iterations 500
    python benchmarks/bench_grnn_lti.py all --quick
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np
import torch

from _common import emit, machine, shared_dir
from acceptance_optimization import _score
from gradinv.attacks import create_attack
from gradinv.data import load_npz
from gradinv.defenses import create_defense
from gradinv.fl import run_round
from gradinv.fl.hooks import DefenseChain
from gradinv.metrics import MetricsConfig
from gradinv.metrics.evaluate import evaluate
from gradinv.models import MODELS, build_model
from gradinv.threat import observe
from gradinv.types import GroundTruth, Reconstruction, TrainingConfig

#: the GRNN models: (label, registered name, options)
GRNN_MODELS = {
    "lenet-sigmoid": ("lenet", {}),
    "cnn-relu": ("cnn", {"activation": "relu", "dropout": 0.0}),
    "cnn-sigmoid": ("cnn", {"activation": "sigmoid", "dropout": 0.0}),
}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _data(name: str) -> Any:
    d = shared_dir()
    if d is None:
        raise SystemExit("This benchmark needs ../shared/data (set GRADINV_SHARED).")
    return load_npz(d / "data" / name)


def _targets(n: int, seed: int) -> list[int]:
    return sorted(np.random.default_rng(seed).choice(3000, size=n, replace=False).tolist())


def _summary(rows: list[dict[str, Any]], keys: list[str]) -> dict[str, Any]:
    return {
        k: {m: float(np.mean([r[k][m] for r in rows])) for m in ("psnr", "ssim", "seconds")} for k in keys
    }


def lti(a: argparse.Namespace) -> dict[str, Any]:
    test, train = _data("cifar10_test_jpeg_3k.npz"), _data("cifar10_train_jpeg_10k.npz")
    rng = np.random.default_rng(a.seed)
    surrogate = train.subset(np.sort(rng.choice(len(train), size=a.surrogate, replace=False)))
    norm = MODELS.get(a.model).default_normalization
    model = build_model(a.model, num_classes=10, seed=a.seed)
    tr = TrainingConfig()
    mean_image = Reconstruction(surrogate.to_batch(image_size=32).images.mean(0, keepdim=True))
    rows = []
    for i in _targets(a.images, a.seed):
        batch = test.to_batch([i], image_size=32, normalization=norm)
        base = evaluate(mean_image, batch, MetricsConfig(lpips="off", stlpips="off")).metrics
        hooks = DefenseChain.of([create_defense("signsgd")])
        rnd = run_round(model, [batch], tr, hooks=hooks)
        truth = GroundTruth(model, (batch,), tr, rnd, num_classes=10, surrogate=surrogate)
        view = observe(truth, "D")
        row: dict[str, Any] = {"index": i}
        row["mean_image"] = {
            "psnr": float(base["psnr"].mean),
            "ssim": float(base["ssim"].mean),
            "seconds": 0.0,
        }
        t = time.perf_counter()
        lt = create_attack(
            "lti",
            surrogate_samples=a.surrogate,
            epochs=a.epochs,
            hidden=a.hidden,
            features=a.features,
            seed=a.seed,
        )
        r = lt.reconstruct(view, device="cpu")
        row["lti"] = {**_score(r, batch), "seconds": time.perf_counter() - t}
        row["lti_notes"] = list(r.notes)
        t = time.perf_counter()
        ig = create_attack(
            "inverting-gradients", iterations=a.ig_iterations, restarts=a.ig_restarts, seed=a.seed
        )
        row["inverting_gradients"] = {**_score(ig.reconstruct(view, device="cpu"), batch)}
        row["inverting_gradients"]["seconds"] = time.perf_counter() - t
        _log(f"lti {i}: LTI {row['lti']['psnr']:.2f} dB, IG {row['inverting_gradients']['psnr']:.2f} dB")
        rows.append(row)
    return {
        "setting": {
            "model": a.model,
            "defense": "signsgd (scale mean)",
            "images": a.images,
            "surrogate": a.surrogate,
            "epochs": a.epochs,
            "hidden": a.hidden,
            "features": a.features,
            "ig_iterations": a.ig_iterations,
            "ig_restarts": a.ig_restarts,
            "threat": "D",
            "B": 1,
        },
        "mean": _summary(rows, ["lti", "inverting_gradients", "mean_image"]),
        "rows": rows,
    }


def grnn(a: argparse.Namespace) -> dict[str, Any]:
    test = _data("cifar10_test_jpeg_3k.npz")
    tr = TrainingConfig()
    out: dict[str, Any] = {
        "setting": {"images": a.images, "iterations": a.iterations, "width": a.width, "threat": "B", "B": 1}
    }
    for label in a.models.split(","):
        name, options = GRNN_MODELS[label]
        norm = MODELS.get(name).default_normalization
        model = build_model(name, num_classes=10, seed=a.seed, **options)
        rows = []
        for i in _targets(a.images, a.seed):
            batch = test.to_batch([i], image_size=32, normalization=norm)
            truth = GroundTruth(model, (batch,), tr, run_round(model, [batch], tr), num_classes=10)
            view = observe(truth, "B")
            row: dict[str, Any] = {"index": i}
            for key, attack in (
                ("grnn", create_attack("grnn", iterations=a.iterations, width=a.width, seed=a.seed)),
                (
                    "inverting_gradients",
                    create_attack("inverting-gradients", iterations=a.iterations, seed=a.seed),
                ),
            ):
                t = time.perf_counter()
                res = attack.reconstruct(view, device="cpu")
                row[key] = {**_score(res, batch), "seconds": time.perf_counter() - t}
            g, ig = row["grnn"]["psnr"], row["inverting_gradients"]["psnr"]
            _log(f"grnn {label} {i}: GRNN {g:.2f} dB, IG {ig:.2f} dB")
            rows.append(row)
        out[label] = {
            "model": name,
            "options": options,
            "mean": _summary(rows, ["grnn", "inverting_gradients"]),
            "rows": rows,
        }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("lti", "grnn", "all"))
    p.add_argument("--quick", action="store_true", help="a tiny budget (checks that everything runs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--model", default="lenet", help="LTI's model")
    p.add_argument("--surrogate", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--features", type=int, default=2048)
    p.add_argument("--ig-iterations", type=int, default=1000)
    p.add_argument("--ig-restarts", type=int, default=1)
    p.add_argument("--iterations", type=int, default=500, help="GRNN's and IG's iterations")
    p.add_argument("--width", type=int, default=32, help="GRNN's generator width (ngf)")
    p.add_argument("--models", default=",".join(GRNN_MODELS))
    a = p.parse_args()
    if a.quick:
        a.images, a.surrogate, a.epochs, a.hidden, a.features = 1, 100, 2, 32, 256
        a.ig_iterations, a.iterations, a.width = 5, 5, 4
    torch.set_num_threads(1)
    out: dict[str, Any] = {"benchmark": "bench_grnn_lti", "machine": machine(), "args": vars(a)}
    if a.what in ("lti", "all"):
        out["lti"] = lti(a)
    if a.what in ("grnn", "all"):
        out["grnn"] = grnn(a)
    emit(out)


if __name__ == "__main__":
    main()
