"""Acceptance measurements of the defenses / frontier issue on real CIFAR-10 (../shared). Prints JSON.

Two parts:

* ``train``: multi-round FedAvg without defenses (the frontier's federation: 20 clients, 5 per
  round, E = 1, B = 32) for a few small models: test accuracy per evaluated round and wall time.
* ``frontier``: runs ``configs/frontier_cifar10.toml`` (resumable: points already in ``--out``
  are reused, so an interrupted run continues) and reports, per point, accuracy and leakage, the
  ranking of the defenses by their best useful trade-off, and whether noise trades off monotonically.

    python benchmarks/acceptance_frontier.py train --rounds 30
    python benchmarks/acceptance_frontier.py frontier --out gradinv-out/frontier_cifar10
    python benchmarks/acceptance_frontier.py frontier --out gradinv-out/frontier_reduced --set fl.rounds=10

Timings on a shared machine are indicative only.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from typing import Any

import torch

from _common import ROOT, emit, machine, shared_dir
from gradinv.data import load_npz
from gradinv.fl.training import FederatedConfig, train_federated
from gradinv.models import build_model
from gradinv.studies.frontier import FrontierEvent, load_frontier_config, run_frontier
from gradinv.studies.frontier_report import leakage_value, summarize
from gradinv.types import TrainingConfig

MODELS: dict[str, dict[str, Any]] = {
    "mlp64": {"name": "mlp", "hidden": (64,), "init": "default", "norm": "none", "lr": 0.1},
    "mlp256": {"name": "mlp", "hidden": (256,), "init": "default", "norm": "none", "lr": 0.1},
    "lenet": {"name": "lenet", "init": "uniform", "norm": "none", "lr": 0.1},
    "convnet8": {"name": "convnet", "width": 8, "init": None, "norm": "cifar10", "lr": 0.05},
}


def train_part(args: argparse.Namespace) -> dict[str, Any]:
    d = shared_dir()
    if d is None:
        sys.exit("needs ../shared/data (CIFAR-10 JPEG sets) or $GRADINV_SHARED")
    tr = load_npz(d / "data" / "cifar10_train_jpeg_10k.npz")
    te = load_npz(d / "data" / "cifar10_test_jpeg_3k.npz")
    out: dict[str, Any] = {}
    for key in args.models:
        spec = dict(MODELS[key])
        name, norm, lr, init = spec.pop("name"), spec.pop("norm"), spec.pop("lr"), spec.pop("init")
        rows = range(args.train_images) if args.train_images else None
        train, test = tr.to_batch(rows, normalization=norm), te.to_batch(normalization=norm)
        model = build_model(name, num_classes=10, seed=0, init=init, **spec)
        cfg = FederatedConfig(num_clients=20, rounds=args.rounds, clients_per_round=5, eval_every=5)
        start = time.perf_counter()
        res = train_federated(model, train, test, TrainingConfig("fedavg", batch_size=32, lr=lr), cfg)
        wall = time.perf_counter() - start
        out[key] = {
            "train_images": train.size,
            "rounds": args.rounds,
            "accuracy_curve": [[r, round(a, 4)] for r, a in res.accuracy_curve],
            "final_accuracy": res.final_accuracy,
            "wall_seconds": wall,
            "seconds_per_round": wall / args.rounds,
        }
        print(f"{key}: accuracy {res.final_accuracy:.3f} in {wall:.1f} s", file=sys.stderr, flush=True)
    return out


def frontier_part(args: argparse.Namespace) -> dict[str, Any]:
    from gradinv.cli.frontier import _overrides

    cfg = load_frontier_config(args.config, overrides=_overrides(args.sets))

    def progress(ev: FrontierEvent) -> None:
        if ev.kind == "point" and ev.record is not None:
            r = ev.record
            leak = leakage_value(r, cfg.attacks[0].label, cfg.frontier.leakage)
            print(
                f"[{ev.index + 1}/{ev.total}] {ev.point.describe()}: accuracy {r['accuracy']:.3f}, "
                f"{cfg.frontier.leakage} {leak:.2f} ({r['seconds']['training']:.0f}+"
                f"{r['seconds']['attacks']:.0f} s)",
                file=sys.stderr,
                flush=True,
            )

    start = time.perf_counter()
    res = run_frontier(cfg, args.out, progress=progress)
    summary = summarize(cfg, res.records)
    points = []
    for r in res.records:
        p = r["point"]
        points.append(
            {
                "defense": p["label"],
                "param": p["param"],
                "value": p["value"],
                "accuracy": r["accuracy"],
                **{
                    a.label: {
                        m: leakage_value(r, a.label, m) for m in ("psnr", "ssim", "stlpips", "label_accuracy")
                    }
                    for a in cfg.attacks
                },
                "training_seconds": r["seconds"]["training"],
                "attack_seconds": r["seconds"]["attacks"],
            }
        )
    noise = {
        a: next((d for d in s["defenses"] if d["defense"] == "gaussian-noise"), None)
        for a, s in summary["attacks"].items()
    }
    return {
        "config": str(args.config),
        "overrides": args.sets,
        "out": str(args.out),
        "computed_now": len(res.computed),
        "reused": len(res.skipped),
        "missing": len(res.missing),
        "wall_seconds": time.perf_counter() - start,
        "points": points,
        "ranking": {a: s["ranking"] for a, s in summary["attacks"].items()},
        "best_tradeoff": {
            a: {d["label"]: d["best"] for d in s["defenses"]} for a, s in summary["attacks"].items()
        },
        "noise_monotone": {
            a: None
            if n is None
            else {
                "accuracy": n["accuracy_monotone"],
                "leakage": n["leakage_monotone"],
                "spearman_accuracy": n["spearman_accuracy"],
                "spearman_leakage": n["spearman_leakage"],
            }
            for a, n in noise.items()
        },
        "baseline_accuracy": summary["baseline_accuracy"],
        "outputs": {k: str(v) for k, v in res.outputs.items()},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="part", required=True)
    t = sub.add_parser("train", help="multi-round FedAvg accuracy and wall time")
    t.add_argument("--models", nargs="+", default=["mlp64", "mlp256"], choices=sorted(MODELS))
    t.add_argument("--rounds", type=int, default=30)
    t.add_argument("--train-images", type=int, default=0, help="0: all 10k")
    f = sub.add_parser("frontier", help="run (or resume) the CIFAR-10 frontier")
    f.add_argument("--config", default=str(ROOT / "configs" / "frontier_cifar10.toml"))
    f.add_argument("--out", default=str(ROOT / "gradinv-out" / "frontier_cifar10"))
    f.add_argument("--set", dest="sets", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = p.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    out: dict[str, Any] = {"benchmark": "acceptance_frontier", "part": args.part, "machine": machine()}
    out.update(train_part(args) if args.part == "train" else frontier_part(args))
    emit({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()})


if __name__ == "__main__":
    main()
