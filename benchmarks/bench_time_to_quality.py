"""Time to quality of DLG (Zhu, Liu, Han, "Deep Leakage from Gradients", NeurIPS 2019) on the sigmoid
LeNet, FedSGD, B = 1: success rate (PSNR >= 30 dB) and median PSNR against wall seconds at doubling
L-BFGS step budgets, for gradinv's DLG (default restarts and restarts = 1, through
``gradinv.pipeline.attack_and_score``) and the paper's plain loop (``torch.optim.LBFGS([x, y], lr=1)``,
squared L2 gradient distance) from the same initial point as gradinv's first candidate.

Images: real CIFAR-10 training images from $GRADINV_SHARED/data (else the bundled photos).

    python benchmarks/bench_time_to_quality.py --images 4 --budgets 5,10,20 --out ttq.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

import torch

from _common import cifar_or_samples, machine
from gradinv.attacks import create_attack
from gradinv.attacks.gradients import GradientSimulator, soft_cross_entropy
from gradinv.attacks.optimization import init_candidates
from gradinv.fl import run_round
from gradinv.metrics import psnr
from gradinv.models import build_model
from gradinv.pipeline import attack_and_score
from gradinv.threat import observe
from gradinv.types import GroundTruth, TrainingConfig

SUCCESS_DB = 30.0


def reference(view: Any, steps: int, size: int) -> tuple[torch.Tensor, float, int]:
    sim = GradientSimulator(view.model)
    model, params = sim.model, list(sim.model.parameters())
    target = [view.update.params[n] for n in sim.names]
    cpu = torch.device("cpu")
    x = init_candidates("randn", (1, 1, 3, size, size), seed=0, device=cpu)[0].requires_grad_(True)
    y = init_candidates("randn", (1, 1, 10), seed=1, device=cpu)[0].requires_grad_(True)
    opt = torch.optim.LBFGS([x, y], lr=1)
    evals = 0

    def closure() -> torch.Tensor:
        nonlocal evals
        evals += 1
        opt.zero_grad()
        g = torch.autograd.grad(soft_cross_entropy(model(x), y), params, create_graph=True)
        cost = sum(((a - t) ** 2).sum() for a, t in zip(g, target))
        cost.backward()  # type: ignore[union-attr]
        return cost  # type: ignore[return-value]

    start = time.perf_counter()
    for _ in range(steps):
        opt.step(closure)
    return x.detach(), time.perf_counter() - start, evals


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--budgets", default="5,10,20")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    budgets = [int(b) for b in a.budgets.split(",")]
    ds, source = cifar_or_samples()
    rows: list[dict[str, Any]] = []
    for i in range(a.images):
        batch = ds.to_batch([i], image_size=a.size)
        model = build_model("lenet", num_classes=10, image_size=a.size, seed=0)
        tr = TrainingConfig()
        truth = GroundTruth(model, (batch,), tr, run_round(model, [batch], tr), num_classes=10)
        view = observe(truth, "B")
        for steps in budgets:
            for method, restarts in (("gradinv default", None), ("gradinv restarts=1", 1)):
                params: dict[str, Any] = {"iterations": steps}
                if restarts is not None:
                    params["restarts"] = restarts
                t0 = time.perf_counter()
                scored = attack_and_score(truth, create_attack("dlg", **params), "B")
                secs = time.perf_counter() - t0
                p = float(psnr(scored.result.reconstruction.images, batch.images))
                rows.append(
                    dict(
                        image=i,
                        method=method,
                        steps=steps,
                        seconds=secs,
                        psnr=p,
                        evaluations=scored.result.iterations,
                    )
                )
            x, secs, evals = reference(view, steps, a.size)
            p = float(psnr(batch.normalization.invert(x).clamp(0, 1), batch.images))
            rows.append(
                dict(
                    image=i,
                    method="torch.optim.LBFGS reference",
                    steps=steps,
                    seconds=secs,
                    psnr=p,
                    evaluations=evals,
                )
            )
            print(json.dumps(rows[-3:]), file=sys.stderr, flush=True)
    summary = []
    for method in ("gradinv default", "gradinv restarts=1", "torch.optim.LBFGS reference"):
        for steps in budgets:
            r = [x for x in rows if x["method"] == method and x["steps"] == steps]
            summary.append(
                dict(
                    method=method,
                    steps=steps,
                    median_seconds=statistics.median(x["seconds"] for x in r),
                    median_psnr=statistics.median(x["psnr"] for x in r),
                    success_rate=sum(x["psnr"] >= SUCCESS_DB for x in r) / len(r),
                    median_evaluations=statistics.median(x["evaluations"] for x in r),
                )
            )
    out = dict(
        source=source,
        images=a.images,
        size=a.size,
        budgets=budgets,
        machine=machine(),
        summary=summary,
        rows=rows,
    )
    text = json.dumps(out, indent=2)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    print(text)


if __name__ == "__main__":
    main()
