"""GGL against Inverting Gradients on held-out real CelebA faces, at the same wall-clock budget
(issue 14, acceptance lines 1-2). Prints one JSON object.

Faces: ``celeba_aligned_32.npz`` of ../shared (aligned CelebA, center-cropped to 178x178 and resized
to 32x32), labels ``i % 10``; an untrained ConvNet (``--width``, Geiping et al.'s architecture),
FedSGD, B = ``--batch-size``; threat model D (surrogate knowledge: the generator). Per image and
condition (no defense, top-k 10% kept, Gaussian noise sigma = 1e-2, gradinv's defenses ``topk`` and
``gaussian-noise``), every attack gets ``--budget`` seconds: a progress callback raises
KeyboardInterrupt when the time is up and the attack returns its best so far. Inverting Gradients'
iteration count is calibrated so that its learning-rate schedule ends inside the budget. GGL runs
with ``adaptive = "auto"`` (no defense, top-k: the support is read off the update) and
``adaptive = "noise"`` with the declared sigma under noise. Scores: PSNR and ST-LPIPS (the
shift-tolerant LPIPS of Ghildyal & Liu, not LPIPS) after matching, for each generator:
``dcgan64-digiface`` (synthetic faces: it never saw a real face) and ``began32-celeba``.

    GRADINV_WEIGHTS=../shared/weights python benchmarks/bench_ggl.py --images 4 --budget 60
    GRADINV_WEIGHTS=../shared/weights python benchmarks/bench_ggl.py --quick
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np
import torch

from _common import emit, machine, shared_dir
from gradinv.attacks import create_attack
from gradinv.data import get_normalization, prepare_images
from gradinv.defenses import DefenseChain, create_defense
from gradinv.fl import run_round
from gradinv.metrics import MetricsConfig, psnr, stlpips
from gradinv.metrics.evaluate import evaluate
from gradinv.models import MODELS, build_model
from gradinv.models.generators import load_generator, to_model_input
from gradinv.threat import observe
from gradinv.types import Batch, GroundTruth, Normalization, TrainingConfig

DEFENSES: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "none": [],
    "topk10": [("topk", {"ratio": 0.1})],
    "noise1e-2": [("gaussian-noise", {"sigma": 1e-2})],
}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Budget:
    """A progress callback that raises KeyboardInterrupt after ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.start = seconds, time.perf_counter()

    def __call__(self, step: int, total: int, loss: float) -> None:
        if time.perf_counter() - self.start > self.seconds:
            raise KeyboardInterrupt


def _faces(a: argparse.Namespace) -> tuple[torch.Tensor, np.ndarray]:
    d = shared_dir()
    if d is None:
        raise SystemExit("needs ../shared/data/celeba_aligned_32.npz (set GRADINV_SHARED)")
    with np.load(d / "data" / "celeba_aligned_32.npz") as f:
        x = f["x"]
    return prepare_images(x, image_size=32), np.arange(len(x)) % 10


def _score(result: Any, batch: Batch, metrics: MetricsConfig, seconds: float) -> dict[str, Any]:
    ev = evaluate(result.reconstruction, batch, metrics)
    return {
        "psnr": float(ev.metrics["psnr"].mean),
        "stlpips": float(ev.metrics["stlpips"].mean),
        "seconds": round(seconds, 1),
        "iterations": result.iterations,
        "interrupted": result.interrupted,
        "notes": [n for n in result.notes if n.startswith(("adaptive", "CMA-ES"))],
    }


def _references(batch: Batch, generators: list[str], weights: str | None) -> dict[str, Any]:
    """Scores of guesses that use no gradient: a gray image and a random sample of each generator
    (seeded), to read the attacks' numbers against."""
    ident = Normalization.identity(3)
    guesses = {"gray": torch.full_like(batch.images, 0.5)}
    for name in generators:
        g = load_generator(name)
        z = torch.randn(len(batch.images), g.latent_dim, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            guesses[f"random_{name}"] = to_model_input(g(z), tuple(batch.images.shape[1:]), ident).clamp(0, 1)
    return {
        k: {
            "psnr": float(psnr(v, batch.images).mean()),
            "stlpips": float(stlpips(v, batch.images, weights=weights).mean()),
        }
        for k, v in guesses.items()
    }


def _run(attack: Any, view: Any, budget: float) -> tuple[Any, float]:
    t = time.perf_counter()
    r = attack.reconstruct(view, progress=Budget(budget), device="cpu")
    return r, time.perf_counter() - t


def _ig_iterations(view: Any, a: argparse.Namespace) -> int:
    """Iterations of Inverting Gradients that fit the budget (its schedule then completes)."""
    stamps: dict[int, float] = {}

    def clock(step: int, total: int, loss: float) -> None:
        stamps[step] = time.perf_counter()

    probe = create_attack("inverting-gradients", iterations=25, restarts=a.ig_restarts)
    probe.reconstruct(view, progress=clock, device="cpu")  # progress every step when iterations < 200
    per_it = (stamps[25] - stamps[5]) / 20
    return max(10, int(0.9 * a.budget / per_it))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=4, help="victim batches (held-out faces)")
    p.add_argument("--first", type=int, default=0, help="index of the first face")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--budget", type=float, default=60.0, help="seconds per attack and batch")
    p.add_argument("--width", type=int, default=16, help="ConvNet width (Geiping et al. use 64)")
    p.add_argument("--population", type=int, default=50)
    p.add_argument("--generations", type=int, default=500)
    p.add_argument("--ig-restarts", type=int, default=1)
    p.add_argument("--generators", nargs="+", default=["dcgan64-digiface", "began32-celeba"])
    p.add_argument("--defenses", nargs="+", default=list(DEFENSES), choices=list(DEFENSES))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--distance", default="cosine", help="GGL gradient distance (the authors: l2)")
    p.add_argument("--stlpips-weights", default=None, help="ST-LPIPS weight file (default: searched)")
    p.add_argument(
        "--non-adaptive", action="store_true", help="also run GGL with adaptive = 'off' under each defense"
    )
    p.add_argument("--quick", action="store_true", help="tiny budgets: checks that everything runs")
    a = p.parse_args()
    if a.quick:
        a.images, a.budget, a.population, a.generations = 1, 3.0, 8, 5
    torch.set_num_threads(a.threads)
    images, labels = _faces(a)
    weights = a.stlpips_weights
    if weights is None and shared_dir() is not None:
        weights = str(shared_dir() / "weights" / "stlpips_alex_shift_tolerant.pth")  # type: ignore[operator]
    metrics = MetricsConfig(lpips="off", stlpips="on", stlpips_weights=weights)
    norm = get_normalization(MODELS.get("convnet").default_normalization, channels=3)
    tr = TrainingConfig()
    rows: list[dict[str, Any]] = []
    references: list[dict[str, Any]] = []
    for b in range(a.images):
        idx = list(range(a.first + b * a.batch_size, a.first + (b + 1) * a.batch_size))
        batch = Batch(images[idx], torch.as_tensor(labels[idx], dtype=torch.int64), norm, indices=tuple(idx))
        model = build_model("convnet", num_classes=10, seed=b, width=a.width)
        references.append(_references(batch, a.generators, weights))
        for cond in a.defenses:
            hooks = DefenseChain.of([create_defense(n, **o) for n, o in DEFENSES[cond]])
            round_ = run_round(model, [batch], tr, hooks=hooks)
            view = observe(GroundTruth(model, (batch,), tr, round_, num_classes=10), "D")
            row: dict[str, Any] = {"batch": b, "indices": idx, "defense": cond}
            iters = _ig_iterations(view, a)
            ig = create_attack("inverting-gradients", iterations=iters, restarts=a.ig_restarts, seed=b)
            r, s = _run(ig, view, a.budget)
            row["inverting_gradients"] = _score(r, batch, metrics, s)
            _log(f"{b} {cond} IG {row['inverting_gradients']}")
            for gen in a.generators:
                extra: dict[str, Any] = (
                    {"adaptive": "noise", "noise_sigma": 1e-2} if cond.startswith("noise") else {}
                )
                modes = [("", extra)]
                if a.non_adaptive and cond != "none":
                    modes.append(("_non_adaptive", {"adaptive": "off"}))
                for suffix, opts in modes:
                    ggl = create_attack(
                        "ggl",
                        generator=gen,
                        population=a.population,
                        iterations=a.generations,
                        distance=a.distance,
                        seed=b,
                        **opts,
                    )
                    r, s = _run(ggl, view, a.budget)
                    row[f"ggl_{gen}{suffix}"] = _score(r, batch, metrics, s)
                    _log(f"{b} {cond} GGL {gen}{suffix} {row[f'ggl_{gen}{suffix}']}")
            rows.append(row)
    summary: dict[str, Any] = {}
    for cond in a.defenses:
        sel = [r for r in rows if r["defense"] == cond]
        keys = [k for k in sel[0] if isinstance(sel[0][k], dict)]
        summary[cond] = {
            k: {
                "psnr_mean": float(np.mean([r[k]["psnr"] for r in sel])),
                "stlpips_mean": float(np.mean([r[k]["stlpips"] for r in sel])),
            }
            for k in keys
        }
        ig = summary[cond]["inverting_gradients"]
        for g in a.generators:
            m = summary[cond][f"ggl_{g}"]
            m["beats_ig"] = m["psnr_mean"] > ig["psnr_mean"] and m["stlpips_mean"] < ig["stlpips_mean"]
    emit(
        {
            "benchmark": "ggl_vs_inverting_gradients",
            "data": "celeba_aligned_32 (center crop 178x178, resize 32x32), labels i % 10",
            "model": f"convnet width {a.width}, untrained (seed = batch index)",
            "training": "FedSGD",
            "threat": "D",
            "batch_size": a.batch_size,
            "budget_seconds": a.budget,
            "population": a.population,
            "generations": a.generations,
            "ig_restarts": a.ig_restarts,
            "metric_note": "ST-LPIPS (shift-tolerant LPIPS, Ghildyal & Liu 2022), not LPIPS",
            "machine": machine(),
            "summary": summary,
            "references_mean": {
                k: {m: float(np.mean([r[k][m] for r in references])) for m in ("psnr", "stlpips")}
                for k in references[0]
            },
            "rows": rows,
        }
    )


if __name__ == "__main__":
    main()
