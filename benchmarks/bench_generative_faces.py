"""GIAS and GIFD against Inverting Gradients on held-out real faces at the same wall-clock budget
(issue 14, acceptance line 1). Prints one JSON object.

Faces: the aligned CelebA images of ``--data`` (default ../shared/data/celeba_aligned_32.npz),
center-cropped to 178x178 and resized to 32x32 (bicubic, antialiased), label of face ``i`` =
``i % 10``. Models: untrained (seeded) ``convnet`` of width ``--convnet-width`` (default 8; the
paper's ConvNet has 64, narrowed to keep CPU time down) and ``resnet20`` (the CIFAR ResNet-20),
FedSGD, threat model D (surrogate knowledge: the generator). Batch sizes ``--batch-sizes``
(default 1 and 4): B = 1 attacks each of the first ``--images`` faces alone, B = 4 the batches of 4
consecutive faces covering them. Generators: ``dcgan64-digiface`` (trained on synthetic DigiFace
faces: real faces the prior never saw) and ``began32-celeba`` (trained on CelebA; these faces may be
in its training set).

Budget: every attack gets ``--budget-seconds`` of wall-clock time per victim batch. Iterations are
chosen from a measured per-iteration time: the median step time of a calibration run (five steps
per stage, three per GIFD feature stage; once per model, batch size and attack, after a warm-up;
not counted in the budget). Inverting Gradients gets ``overcommit * budget / t_step`` steps, GIAS
and GIFD spend ``--latent-fraction`` of that on the latent search and the rest on their second
stage(s). A progress callback raising ``KeyboardInterrupt`` at the budget is the hard stop (the
attacks return their best so far), so every attack uses the whole budget even where the machine's
load changes between calibration and run (``--overcommit`` 1.3: the last ~23% of the planned steps
are the ones cut). A run that ends before ``--min-used`` of the budget (the load fell) is rerun
with the step counts scaled to its measured speed (at most ``--max-attempts`` runs; only the last
is scored). Metrics: mean PSNR and ST-LPIPS (Ghildyal & Liu 2022, shift-tolerant AlexNet weights
``--stlpips-weights``; not LPIPS) after Hungarian matching.

    GRADINV_WEIGHTS=../shared/weights python benchmarks/bench_generative_faces.py \\
        --budget-seconds 40 --images 2 --models convnet,resnet20 --batch-sizes 1,4
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from typing import Any

import numpy as np
import torch

from _common import emit, machine, shared_dir
from gradinv.attacks import create_attack
from gradinv.data.dataset import ImageDataset
from gradinv.fl import run_round
from gradinv.metrics import MetricsConfig
from gradinv.metrics.evaluate import evaluate
from gradinv.models import MODELS, build_model
from gradinv.threat import observe
from gradinv.types import AttackerView, Batch, GroundTruth, TrainingConfig


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def faces(path: str) -> ImageDataset:
    x = np.load(path)["x"]
    return ImageDataset(x, np.arange(len(x)) % 10, name="celeba_aligned_32")


class Budget:
    """A progress callback that raises ``KeyboardInterrupt`` once ``seconds`` have passed since
    :meth:`start`, and records the time of every call (for calibration)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.t0 = time.perf_counter()
        self.calls: list[tuple[int, float]] = []

    def start(self) -> Budget:
        self.t0 = time.perf_counter()
        self.calls = []
        return self

    def __call__(self, step: int, total: int, loss: float) -> None:
        now = time.perf_counter() - self.t0
        self.calls.append((step, now))
        if now > self.seconds:
            raise KeyboardInterrupt


def _stage_times(calls: list[tuple[int, float]], bounds: list[int]) -> list[float]:
    """Median seconds per step within each stage (steps ``(bounds[i], bounds[i + 1]]``), from the
    progress calls, skipping each stage's first step (setup, inter-stage evaluation)."""
    out = []
    for lo, hi in itertools.pairwise(bounds):
        t = [(s, c) for s, c in calls if lo < s <= hi]
        diffs = [(c1 - c0) / (s1 - s0) for (s0, c0), (s1, c1) in itertools.pairwise(t)]
        out.append(float(np.median(diffs)) if diffs else float("nan"))
    return out


def _stages(generator: str) -> int:
    """Feature stages GIFD searches on ``generator`` (every intermediate stage)."""
    from gradinv.models.generators import build_generator

    return len(build_generator(generator).stages()) - 1


def _calibration_params(
    attack: str, generator: str, restarts: int, seed: int
) -> tuple[dict[str, Any], list[int]]:
    if attack == "inverting-gradients":
        return {"iterations": 3, "restarts": 1, "seed": seed}, [0, 3]
    common = {"generator": generator, "restarts": restarts, "iterations": 3, "seed": seed}
    if attack == "gias":
        return {**common, "finetune_iterations": 3}, [0, 3, 6]
    s = _stages(generator)
    return {**common, "feature_iterations": 3}, [0, 3, 3 + 3 * s]


def calibrate(attack: str, generator: str, view: AttackerView, a: argparse.Namespace) -> list[float]:
    params, bounds = _calibration_params(attack, generator, a.restarts, a.seed)
    rec = Budget(float("inf")).start()
    create_attack(attack, **params).reconstruct(view, progress=rec, device="cpu")
    return _stage_times(rec.calls, bounds)


def budget_params(attack: str, generator: str, times: list[float], a: argparse.Namespace) -> dict[str, Any]:
    """Iterations that fill ``a.budget_seconds`` at the measured per-step ``times``."""
    usable = a.budget_seconds * a.overcommit
    if attack == "inverting-gradients":
        return {"iterations": max(1, int(usable / times[0])), "restarts": 1, "seed": a.seed}
    first = max(1, int(usable * a.latent_fraction / times[0]))
    rest = usable * (1 - a.latent_fraction)
    common = {"generator": generator, "restarts": a.restarts, "iterations": first, "seed": a.seed}
    if attack == "gias":
        return {**common, "finetune_iterations": max(1, int(rest / times[1]))}
    s = _stages(generator)
    return {**common, "feature_iterations": max(1, int(rest / (s * times[1])))}


def score(result: Any, batch: Batch, weights: str) -> dict[str, Any]:
    ev = evaluate(
        result.reconstruction, batch, MetricsConfig(lpips="off", stlpips="on", stlpips_weights=weights)
    )
    return {
        "psnr": float(ev.metrics["psnr"].mean),
        "stlpips": float(ev.metrics["stlpips"].mean),
        "seconds": result.seconds,
        "iterations": result.iterations,
        "interrupted": result.interrupted,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shared = shared_dir()
    p.add_argument("--data", default=str(shared / "data" / "celeba_aligned_32.npz") if shared else None)
    p.add_argument(
        "--stlpips-weights",
        default=str(shared / "weights" / "stlpips_alex_shift_tolerant.pth") if shared else None,
    )
    p.add_argument("--budget-seconds", type=float, default=60.0, help="wall-clock budget per attack run")
    p.add_argument("--images", type=int, default=2, help="faces attacked (B = 1: one by one)")
    p.add_argument("--first-image", type=int, default=0)
    p.add_argument("--models", default="convnet,resnet20")
    p.add_argument("--batch-sizes", default="1,4")
    p.add_argument("--generators", default="dcgan64-digiface,began32-celeba")
    p.add_argument("--attacks", default="gias,gifd")
    p.add_argument("--convnet-width", type=int, default=8)
    p.add_argument("--restarts", type=int, default=2, help="latent candidates K of GIAS and GIFD")
    p.add_argument("--latent-fraction", type=float, default=0.75)
    p.add_argument(
        "--overcommit",
        type=float,
        default=1.3,
        help="iterations for this many budgets at the measured step time (the hard stop ends the run)",
    )
    p.add_argument(
        "--min-used",
        type=float,
        default=0.8,
        help="a run that ends before this fraction of the budget is rerun with more steps",
    )
    p.add_argument("--max-attempts", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args()
    if a.data is None or a.stlpips_weights is None:
        p.error("give --data and --stlpips-weights (no ../shared folder found)")
    if a.threads:
        torch.set_num_threads(a.threads)
    os.environ.setdefault("GRADINV_WEIGHTS", str(shared / "weights") if shared else "")
    ds = faces(a.data)
    warm = ds.to_batch([0], image_size=32, normalization="none")
    model = build_model("lenet", num_classes=10, seed=0)
    tr0 = TrainingConfig()
    truth0 = GroundTruth(model, (warm,), tr0, run_round(model, [warm], tr0), num_classes=10)
    create_attack("inverting-gradients", iterations=3).reconstruct(observe(truth0, "D"), device="cpu")
    attacks = [("inverting-gradients", "")] + [
        (att, gen) for gen in a.generators.split(",") for att in a.attacks.split(",")
    ]
    tr = TrainingConfig()
    conditions = []
    for model_name in a.models.split(","):
        opts = {"width": a.convnet_width} if model_name == "convnet" else {}
        norm = MODELS.get(model_name).default_normalization
        for b in (int(v) for v in a.batch_sizes.split(",")):
            starts = list(range(a.first_image, a.first_image + a.images, b))
            calibration: dict[str, list[float]] = {}
            runs: dict[str, list[dict[str, Any]]] = {}
            for j, s0 in enumerate(starts):
                idx = list(range(s0, s0 + b))
                batch = ds.to_batch(idx, image_size=32, normalization=norm)
                model = build_model(model_name, num_classes=10, seed=a.seed + j, **opts)
                truth = GroundTruth(model, (batch,), tr, run_round(model, [batch], tr), num_classes=10)
                view = observe(truth, "D")
                for att, gen in attacks:
                    key = f"{att}[{gen}]" if gen else att
                    if key not in calibration:
                        calibration[key] = calibrate(att, gen, view, a)
                        _log(f"{model_name} B={b} {key}: seconds/step per stage {calibration[key]}")
                    params = budget_params(att, gen, calibration[key], a)
                    attempts = 0
                    while True:
                        attempts += 1
                        budget = Budget(a.budget_seconds).start()
                        t = time.perf_counter()
                        result = create_attack(att, **params).reconstruct(view, progress=budget, device="cpu")
                        wall = time.perf_counter() - t
                        used = result.interrupted or wall >= a.min_used * a.budget_seconds
                        if used or attempts >= a.max_attempts:
                            break
                        # finished early (the load fell since calibration): more steps, same budget
                        factor = a.overcommit * a.budget_seconds / wall
                        calibration[key] = [v / factor for v in calibration[key]]
                        params = budget_params(att, gen, calibration[key], a)
                        _log(f"  {key} used {wall:.0f}s of {a.budget_seconds:.0f}s: rerun with {params}")
                    row = {**score(result, batch, a.stlpips_weights), "wall": wall, "attempts": attempts}
                    row.update(indices=idx, params=params)
                    runs.setdefault(key, []).append(row)
                    _log(f"{model_name} B={b} faces {idx} {key}: {row}")
            summary = {
                k: {
                    "psnr_mean": float(np.mean([r["psnr"] for r in v])),
                    "stlpips_mean": float(np.mean([r["stlpips"] for r in v])),
                    "wall_mean": float(np.mean([r["wall"] for r in v])),
                }
                for k, v in runs.items()
            }
            ig = summary["inverting-gradients"]
            beats = {
                k: v["psnr_mean"] > ig["psnr_mean"] and v["stlpips_mean"] < ig["stlpips_mean"]
                for k, v in summary.items()
                if k != "inverting-gradients"
            }
            conditions.append(
                {
                    "model": model_name,
                    "model_options": opts,
                    "batch_size": b,
                    "victim_batches": len(starts),
                    "seconds_per_step": calibration,
                    "summary": summary,
                    "beats_inverting_gradients": beats,
                    "runs": runs,
                }
            )
    emit(
        {
            "benchmark": "GIAS/GIFD vs Inverting Gradients, held-out CelebA faces, same wall-clock",
            "budget_seconds": a.budget_seconds,
            "budget_method": "iterations from a measured per-step time (rerun if a run ends before "
            f"{a.min_used:g} of the budget); KeyboardInterrupt progress callback as the hard stop",
            "images": a.images,
            "restarts": a.restarts,
            "latent_fraction": a.latent_fraction,
            "threat": "D",
            "training": "FedSGD",
            "metrics": "PSNR and ST-LPIPS (alex, shift-tolerant) after Hungarian matching",
            "load_average": os.getloadavg(),
            "machine": machine(),
            "conditions": conditions,
        }
    )


if __name__ == "__main__":
    main()
