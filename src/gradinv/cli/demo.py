"""``gradinv demo``: offline, on CPU, real bundled photos, real FL rounds, three attacks, one report.

1. DLG (Zhu et al. 2019) on DLG's sigmoid LeNet: a client shares the FedSGD gradient of one photo;
   an informed eavesdropper (threat model B) reconstructs the photo and its label.
2. Inverting Gradients (Geiping et al. 2020) on an untrained ConvNet of width 16: a client runs
   FedAvg (one local SGD step, model in eval mode as in the paper) and shares its weight delta; a
   parameter-aware eavesdropper (threat model C) turns it into a pseudo-gradient and reconstructs it.
3. Robbing the Fed (Fowl et al. 2022): a malicious server (threat model F) sends a model with an
   imprint block of 256 brightness bins; the FedSGD update of 8 photos gives them back exactly.
4. A refusal: Inverting Gradients under the eavesdropper A, which lacks the basic knowledge it needs.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradinv.cli.common import print_summary, progress_bar
from gradinv.config import parse_config
from gradinv.errors import AttackRefused


@dataclass(frozen=True)
class DemoCase:
    name: str
    title: str
    config: dict[str, Any]
    quick: dict[str, Any]


DEMO_CASES = (
    DemoCase(
        "dlg-lenet",
        "DLG on sigmoid LeNet, FedSGD gradient of one photo, threat model B",
        {
            "data": {"source": "samples", "indices": [0], "image_size": 32},
            "model": {"name": "lenet", "seed": 0},
            "training": {"protocol": "fedsgd"},
            "threat": {"model": "B"},
            "attack": {"name": "dlg", "iterations": 60, "restarts": 4},
        },
        {"iterations": 2, "restarts": 2},
    ),
    DemoCase(
        "ig-convnet-fedavg",
        "Inverting Gradients on ConvNet-16, FedAvg weight delta of one photo, threat model C",
        {
            "data": {"source": "samples", "indices": [1], "image_size": 32},
            "model": {"name": "convnet", "width": 16, "seed": 0},
            "training": {
                "protocol": "fedavg",
                "epochs": 1,
                "batch_size": 1,
                "lr": 0.01,
                "model_mode": "eval",
            },
            "threat": {"model": "C"},
            "attack": {"name": "inverting-gradients", "iterations": 1000, "restarts": 1},
        },
        {"iterations": 5},
    ),
    DemoCase(
        "robbing-the-fed",
        "Robbing the Fed: a malicious server's imprint block, FedSGD update of 8 photos, threat model F",
        {
            "data": {"source": "samples", "indices": list(range(8)), "image_size": 32},
            "model": {"name": "lenet", "seed": 0},
            "training": {"protocol": "fedsgd"},
            "threat": {"model": "F"},
            "attack": {"name": "robbing-the-fed", "bins": 256},
        },
        {},
    ),
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="offline demo: three real attacks on bundled photos, with reports",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", "-o", type=Path, default=Path("gradinv-out/demo"), help="output directory")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--quick", action="store_true", help="a few iterations only (smoke test)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gradinv.experiment import run_experiment
    from gradinv.report import write_index_html, write_report

    start = time.perf_counter()
    entries = []
    for case in DEMO_CASES:
        data = {k: dict(v) for k, v in case.config.items()}
        if args.quick:
            data["attack"].update(case.quick)
        cfg = parse_config(data)
        print(f"\n== {case.title}")
        with progress_bar(case.name, enabled=not args.no_progress) as bar:
            result = run_experiment(cfg, progress=bar, device=args.device)
        paths = write_report(result, args.out / case.name)
        print_summary(result)
        entries.append((case.title, result, f"{case.name}/report.html"))
        print(f"  report: {paths.html}")

    print("\n== Threat-model gating: Inverting Gradients under threat model A (Eavesdropper)")
    data = {k: dict(v) for k, v in DEMO_CASES[1].config.items()}
    data["threat"] = {"model": "A"}
    try:
        run_experiment(parse_config(data), device=args.device)
        print("  unexpectedly allowed")
        return 1
    except AttackRefused as e:
        print(f"  refused: {e}")
    index = write_index_html(entries, args.out / "index.html")
    print(f"\nAll reports: {index}  ({time.perf_counter() - start:.0f} s)")
    return 0
