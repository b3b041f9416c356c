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
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradinv.cli.common import add_device_flag, format_duration, prepare_out_dir, print_summary, progress_bar
from gradinv.errors import AttackRefused

#: what the demo promises on 2 CPU cores (the README says the same). Measured with
#: ``time gradinv demo --device cpu`` on 2 cores: 2:05 while ~6 other busy processes shared them (DLG
#: 0:47, Inverting Gradients 1:13, Robbing the Fed 0:00; 77 s CPU) and 2:14 with one other process;
#: ``--quick``: 9 s.
EXPECTED = {"full": "2–3 minutes", "quick": "about 10 seconds"}


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
    add_device_flag(p, "device (default: auto)")
    p.set_defaults(device="auto")
    p.add_argument("--quick", action="store_true", help="a few iterations only (smoke test)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run)


def _busy_note() -> str:
    """A warning when other processes already occupy the cores (the promise is for idle cores)."""
    try:
        load, cores = os.getloadavg()[0], os.cpu_count() or 1
    except (AttributeError, OSError):  # pragma: no cover - no load average on this platform
        return ""
    if load < cores:
        return ""
    return f" This machine is busy (load {load:.1f} on {cores} cores): expect it to take longer."


def run(args: argparse.Namespace) -> int:
    from gradinv.config import parse_config
    from gradinv.experiment import run_experiment
    from gradinv.report import write_index_html, write_report

    start = time.perf_counter()
    out = prepare_out_dir(args.out)
    for case in DEMO_CASES:  # every folder is checked before any work starts
        prepare_out_dir(out / case.name)
    expected = EXPECTED["quick" if args.quick else "full"]
    print(
        f"gradinv demo{' --quick' if args.quick else ''}: {len(DEMO_CASES)} attacks and one refusal, "
        f"expected to take {expected} on 2 CPU cores.{_busy_note()} Reports go to {out}/.",
        flush=True,
    )
    entries = []
    for case in DEMO_CASES:
        data = {k: dict(v) for k, v in case.config.items()}
        if args.quick:
            data["attack"].update(case.quick)
        cfg = parse_config(data)
        print(f"\n== {case.title}", flush=True)
        t0 = time.perf_counter()
        with progress_bar(case.name, enabled=not args.no_progress) as bar:
            result = run_experiment(cfg, progress=bar, device=args.device)
        paths = write_report(result, out / case.name)
        print_summary(result)
        entries.append((case.title, result, f"{case.name}/report.html"))
        print(f"  report: {paths.html}")
        print(f"  took {format_duration(time.perf_counter() - t0)}", flush=True)

    print("\n== Threat-model gating: Inverting Gradients under threat model A (Eavesdropper)")
    data = {k: dict(v) for k, v in DEMO_CASES[1].config.items()}
    data["threat"] = {"model": "A"}
    try:
        run_experiment(parse_config(data), device=args.device)
        print("  unexpectedly allowed")
        return 1
    except AttackRefused as e:
        print(f"  refused: {e}")
    index = write_index_html(entries, out / "index.html")
    took = time.perf_counter() - start
    print(f"\nAll reports: {index}")
    print(f"Demo took {format_duration(took)} (m:ss; expected: {expected} on 2 CPU cores).")
    return 0
