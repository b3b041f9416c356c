"""Multi-round FedAvg training on real CIFAR-10 (../shared), the federation of the CIFAR-10 frontier
(20 clients, 5 per round, E = 1, B = 32), for a few small models: test accuracy per evaluated round
and wall time. Prints JSON.

    python benchmarks/acceptance_frontier.py train --rounds 30

The frontier itself is a study: ``gradinv frontier configs/frontier_cifar10.toml --out DIR`` (resumable,
``--workers N`` / ``--executor ray``). Timings on a shared machine are indicative only.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from typing import Any

import torch

from _common import emit, machine, shared_dir
from gradinv.data import load_npz
from gradinv.fl.training import FederatedConfig, train_federated
from gradinv.models import build_model
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="part", required=True)
    t = sub.add_parser("train", help="multi-round FedAvg accuracy and wall time")
    t.add_argument("--models", nargs="+", default=["mlp64", "mlp256"], choices=sorted(MODELS))
    t.add_argument("--rounds", type=int, default=30)
    t.add_argument("--train-images", type=int, default=0, help="0: all 10k")
    args = p.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    out: dict[str, Any] = {"benchmark": "acceptance_frontier", "part": args.part, "machine": machine()}
    out.update(train_part(args))
    emit({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()})


if __name__ == "__main__":
    main()
