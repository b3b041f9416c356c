"""Speed of every optimisation attack, candidate batching, and time-to-quality, each against a
plain-PyTorch reference loop measured in the same run (benchmarks/_reference_loops.py). Prints JSON.

* ``per_attack``: seconds per objective evaluation of each attack at K = 1 on ResNet-18
  and ConvNet, B = 1 and B = 8 (unique labels, known to the attacker), interleaved with the reference
  loop of its family (signed-Adam cosine matching for first-order attacks, ``torch.optim.LBFGS`` for
  the L-BFGS ones, an unrolled-SGD loop for FedAvg leakage); medians over ``--reps``. GradInversion
  runs with one group member so its numbers are per candidate.
* ``batching``: candidate-iterations per second of Inverting Gradients at K = 1, 4, 8: K candidates
  in one attack (``vmap``, ``loop``, ``auto``) against K sequential single-candidate runs and K
  sequential reference loops.
* ``time_to_quality``: PSNR against wall seconds on a real CIFAR-10 image (B = 1): gradinv's
  Inverting Gradients and the reference loop, from the same initialisation, for doubling budgets.

    python benchmarks/bench_attacks.py --quick             # tiny budgets, a few minutes
    python benchmarks/bench_attacks.py --reps 5            # the full version (long on a CPU)
    python benchmarks/bench_attacks.py --sections batching --models resnet18
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from typing import Any

import torch

from _common import cifar_or_samples, emit, machine
from _reference_loops import reference_adam, reference_fedavg, reference_lbfgs
from gradinv.attacks import ATTACKS, create_attack
from gradinv.attacks.optimization import init_candidates
from gradinv.data import select_indices
from gradinv.fl import run_round
from gradinv.metrics import psnr
from gradinv.models import MODELS, build_model
from gradinv.threat import observe
from gradinv.types import GroundTruth, TrainingConfig

FIRST_ORDER = ("inverting-gradients", "gradinversion", "sapag", "mgan-representatives")
LBFGS = ("dlg", "idlg", "cpl")
ALL = (*LBFGS, *FIRST_ORDER, "fedavg-leakage")
FEDAVG = {"epochs": 1, "batch_size": 1, "lr": 0.1}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _median(v: list[float]) -> float:
    return statistics.median(v) if v else float("nan")


class Scene:
    """One model, one victim batch, its round and the attacker's views."""

    def __init__(self, ds: Any, model_name: str, b: int, width: int | None, *, fedavg: bool = False) -> None:
        idx = select_indices(ds.labels, num_images=b, seed=0, composition="unique")
        self.batch = ds.to_batch(
            idx, image_size=32, normalization=MODELS.get(model_name).default_normalization
        )
        opts = {"width": width} if model_name == "convnet" and width else {}
        self.model = build_model(model_name, num_classes=10, seed=0, **opts)
        self.training = TrainingConfig("fedavg", **FEDAVG) if fedavg else TrainingConfig()  # type: ignore[arg-type]
        rnd = run_round(self.model, [self.batch], self.training)
        self.truth = GroundTruth(self.model, (self.batch,), self.training, rnd, num_classes=10)
        self.update = rnd.updates[0].update.params
        self.x0 = init_candidates("randn", (1, *self.batch.images.shape), seed=0, device=torch.device("cpu"))[
            0
        ]
        self.lo, self.hi = self.batch.normalization.bounds(self.x0[0])

    def view(self, threat: str) -> Any:
        return observe(self.truth, threat)

    @property
    def target(self) -> list[torch.Tensor]:
        return [self.update[n] for n, _ in self.model.named_parameters()]


def _attack_rate(scene: Scene, name: str, its: int) -> float:
    fields = {f.name for f in dataclasses.fields(ATTACKS.get(name).config_cls)}
    params: dict[str, Any] = {"labels": "known"} if "labels" in fields else {}
    if name in LBFGS:
        params.update(iterations=1, max_iter=its)
    else:
        params["iterations"] = its
    if name == "gradinversion":
        params["group_size"] = 1
    if name == "fedavg-leakage":
        params["mode"] = "strong"
    threat = "E" if name == "gradinversion" else ("C+labels" if name == "fedavg-leakage" else "B+labels")
    r = create_attack(name, **params).reconstruct(scene.view(threat), device="cpu")
    # first-order loops evaluate the last iterate once more (to know whether it is the best);
    # L-BFGS results already count objective evaluations
    evaluations = r.iterations if name in LBFGS else r.iterations + 1
    return r.seconds / max(1, evaluations)


def _reference_rate(scene: Scene, name: str, its: int) -> tuple[str, float]:
    b = scene.batch
    if name in LBFGS:
        _, s, n = reference_lbfgs(scene.model, scene.target, b.labels, scene.x0, steps=1, max_iter=its)
        return "torch.optim.LBFGS l2", s / max(1, n)
    if name == "fedavg-leakage":
        delta = scene.target
        _, s, n = reference_fedavg(
            scene.model,
            delta,
            b.labels,
            scene.x0,
            iterations=its,
            lr_client=FEDAVG["lr"],
            epochs=FEDAVG["epochs"],
            batch_size=FEDAVG["batch_size"],
            lo=scene.lo,
            hi=scene.hi,
        )
        return "unrolled SGD + cosine, signed Adam", s / n
    _, s, n = reference_adam(
        scene.model, scene.target, b.labels, scene.x0, iterations=its, lo=scene.lo, hi=scene.hi
    )
    return "signed Adam cosine + TV", s / n


def per_attack(ds: Any, a: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for model_name in a.models:
        for b in a.batch_sizes:
            scenes = {False: Scene(ds, model_name, b, a.convnet_width), True: None}
            for name in a.attacks:
                fed = name == "fedavg-leakage"
                if fed and scenes[True] is None:
                    scenes[True] = Scene(ds, model_name, b, a.convnet_width, fedavg=True)
                scene = scenes[fed]
                assert scene is not None
                ours, ref = [], []
                ref_name = ""
                for _ in range(a.reps):  # interleaved: shared machines drift between runs
                    ours.append(_attack_rate(scene, name, a.iterations))
                    ref_name, r = _reference_rate(scene, name, a.iterations)
                    ref.append(r)
                row = {
                    "attack": name,
                    "model": model_name,
                    "batch_size": b,
                    "gradinv_seconds_per_iteration": _median(ours),
                    "reference_seconds_per_iteration": _median(ref),
                    "reference": ref_name,
                    "speed_ratio_reference_over_gradinv": _median(ref) / _median(ours),
                    "gradinv_all": ours,
                    "reference_all": ref,
                }
                _log(
                    f"{model_name} B={b} {name}: {row['gradinv_seconds_per_iteration']:.3f} s/it "
                    f"vs {_median(ref):.3f}"
                )
                rows.append(row)
    return rows


def batching(ds: Any, a: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for model_name in a.models:
        scene = Scene(ds, model_name, 1, a.convnet_width)
        view = scene.view("B+labels")

        def run(k: int, mode: str, seed: int, view: Any = view) -> float:
            attack = create_attack(
                "inverting-gradients",
                iterations=a.batch_iterations,
                restarts=k,
                labels="known",
                seed=seed,
                batching=mode,
            )
            return attack.reconstruct(view, device="cpu").seconds

        for k in a.k:
            row: dict[str, Any] = {"model": model_name, "K": k, "iterations": a.batch_iterations}
            seq = sum(run(1, "auto", s) for s in range(k))
            row["sequential_candidate_its_per_s"] = k * a.batch_iterations / seq
            ref = 0.0
            for _ in range(k):
                ref += reference_adam(
                    scene.model,
                    scene.target,
                    scene.batch.labels,
                    scene.x0,
                    iterations=a.batch_iterations,
                    lo=scene.lo,
                    hi=scene.hi,
                )[1]
            row["reference_sequential_candidate_its_per_s"] = k * a.batch_iterations / ref
            if k > 1:
                for mode in ("vmap", "loop", "auto"):
                    rate = k * a.batch_iterations / run(k, mode, 0)
                    row[f"batched_{mode}_candidate_its_per_s"] = rate
                    row[f"speedup_{mode}_vs_sequential"] = rate / row["sequential_candidate_its_per_s"]
            _log(f"batching {model_name} K={k}: {row}")
            rows.append(row)
    return rows


def time_to_quality(ds: Any, a: argparse.Namespace) -> dict[str, Any]:
    scene = Scene(ds, a.ttq_model, 1, a.convnet_width)
    view = scene.view("B+labels")
    curve: dict[str, list[dict[str, float]]] = {"gradinv": [], "reference": []}
    for budget in a.ttq_budgets:
        r = create_attack("inverting-gradients", iterations=budget, labels="known", seed=0).reconstruct(
            view, device="cpu"
        )
        curve["gradinv"].append(
            {
                "iterations": budget,
                "seconds": r.seconds,
                "psnr": float(psnr(r.reconstruction.images, scene.batch.images)),
            }
        )
        x, s, _ = reference_adam(
            scene.model,
            scene.target,
            scene.batch.labels,
            scene.x0,
            iterations=budget,
            lo=scene.lo,
            hi=scene.hi,
        )
        img = scene.batch.normalization.invert(x).clamp(0, 1)
        curve["reference"].append(
            {"iterations": budget, "seconds": s, "psnr": float(psnr(img, scene.batch.images))}
        )
        _log(f"time-to-quality {budget}: {curve['gradinv'][-1]} vs {curve['reference'][-1]}")
    return {
        "model": a.ttq_model,
        "index": list(scene.batch.indices),
        "attack": "inverting-gradients",
        "curve": curve,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny budgets (a smoke run, not a measurement)")
    p.add_argument("--sections", nargs="+", default=["per_attack", "batching", "time_to_quality"])
    p.add_argument("--models", nargs="+", default=["resnet18", "convnet"])
    p.add_argument("--convnet-width", type=int, default=64)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--attacks", nargs="+", default=list(ALL))
    p.add_argument("--iterations", type=int, default=20, help="iterations per timed run")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--k", type=int, nargs="+", default=[1, 4, 8])
    p.add_argument("--batch-iterations", type=int, default=5)
    p.add_argument("--ttq-model", default="resnet18")
    p.add_argument("--ttq-budgets", type=int, nargs="+", default=[25, 50, 100, 200, 400, 800])
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.quick:
        a.iterations, a.reps, a.batch_iterations = 2, 1, 2
        a.convnet_width, a.batch_sizes, a.k = 8, [1, 2], [1, 2]
        a.ttq_model, a.ttq_budgets = "convnet", [2, 4]
    ds, source = cifar_or_samples()
    out: dict[str, Any] = {"benchmark": "attacks", "machine": machine(), "data": source, "quick": a.quick}
    out["settings"] = {k: v for k, v in vars(a).items() if k != "sections"}
    start = time.perf_counter()
    if "per_attack" in a.sections:
        out["per_attack"] = per_attack(ds, a)
    if "batching" in a.sections:
        out["batching"] = batching(ds, a)
    if "time_to_quality" in a.sections:
        out["time_to_quality"] = time_to_quality(ds, a)
    out["wall_seconds"] = time.perf_counter() - start
    emit(out)


if __name__ == "__main__":
    main()
