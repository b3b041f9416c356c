"""Acceptance measurements of the malicious-server attacks and client-side vetting. Prints JSON.

* Robbing the Fed (Fowl et al., ICLR 2022), 1000 bins, FedSGD, real CIFAR-10 images (paper 003,
  Table IV: >= 60/64 exact at B = 64, 64/64 at B = 1): the first 64 images as one batch, each of the
  64 as its own batch of one, and ``--batches`` random batches of 64 (distribution of the count).
  Variants: the paper's (brightness, Gaussian cut-offs), surrogate-quantile cut-offs, two
  measurements (gradinv's extension), and the sparse variant under FedAvg.
* Vetting: the honest set (untrained models of every registered architecture and init scheme, the
  trained ResNet-20/56, models after honest FedAvg rounds) must have zero findings; every model
  crafted by Robbing the Fed, trap weights, fishing and (when present) inconsistent models must be
  flagged.

    OMP_NUM_THREADS=1 python benchmarks/acceptance_malicious.py
    python benchmarks/acceptance_malicious.py --data held_out.npz --batches 20 --body resnet18

``--data`` takes any ``.npz`` with uint8 images ``x`` (N, 32, 32, 3) and labels ``y`` (at least 64).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from _common import emit, machine, shared_dir
from gradinv.attacks import ATTACKS
from gradinv.attacks.robbing_the_fed import count_exact
from gradinv.config import parse_config
from gradinv.data import get_normalization, load_npz
from gradinv.experiment import build_scenario, run_experiment, simulate
from gradinv.fl import apply_update, run_round
from gradinv.models import INIT_SCHEMES, MODELS, build_model
from gradinv.types import TrainingConfig
from gradinv.vetting import vet


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def rtf_run(
    source: str, indices: list[int], body: str, attack: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    cfg = parse_config(
        {
            "data": {"source": source, "indices": indices, "image_size": 32, **extra.get("data", {})},
            "model": {"name": body, "seed": 0},
            "training": extra.get("training", {"protocol": "fedsgd"}),
            "threat": {"model": extra.get("threat", "F")},
            "attack": {"name": "robbing-the-fed", "bins": 1000, **attack},
            "metrics": {"lpips": "off", "stlpips": "off"},
        }
    )
    start = time.perf_counter()
    r = run_experiment(cfg, device="cpu")
    ec = count_exact(r.result.reconstruction.images, r.truth.images)
    reported = r.evaluation.metrics["exact"].mean  # the report's count: the same function
    assert reported == ec.count, (reported, ec.count)
    return {
        "exact": ec.count,
        "of": ec.total,
        "attack_estimate": next((n for n in r.result.notes if n.startswith("estimated exact")), None),
        "seconds": time.perf_counter() - start,
        "notes": list(r.result.notes),
    }


def robbing_the_fed(source: str, n_images: int, body: str, batches: int, seed: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    first = list(range(64))
    paper = {"measurements": ["brightness"]}  # the default is gradinv's two-measurement extension
    variants = {
        "paper (brightness, gaussian cut-offs)": (paper, {}),
        "surrogate cut-offs (threat G)": (
            {**paper, "cutoffs": "surrogate"},
            {"threat": "G", "data": {"surrogate_images": 136}},
        ),
        "two measurements (brightness + left half; extension)": (
            {"measurements": ["brightness", "left"]},
            {},
        ),
    }
    for name, (attack, extra) in variants.items():
        r = rtf_run(source, first, body, attack, **extra)
        out[f"B=64 first 64 images, {name}"] = r
        log(f"RtF {name}: {r['exact']}/64")
    singles = [rtf_run(source, [i], body, paper)["exact"] for i in range(64)]
    out["B=1, each of the first 64 images, paper"] = {"exact": sum(singles), "of": 64}
    log(f"RtF B=1: {sum(singles)}/64")
    rng = np.random.default_rng(seed)
    for name, (attack, extra) in list(variants.items())[::2]:
        counts = []
        for _ in range(batches):
            idx = sorted(rng.choice(n_images, size=64, replace=False).tolist())
            counts.append(rtf_run(source, idx, body, attack, **extra)["exact"])
        out[f"B=64 {batches} random batches, {name}"] = {
            "counts": counts,
            "min": min(counts),
            "mean": float(np.mean(counts)),
            "share_at_least_60": float(np.mean([c >= 60 for c in counts])),
        }
        log(f"RtF random batches {name}: {counts}")
    fedavg = {"protocol": "fedavg", "epochs": 1, "batch_size": 8, "lr": 0.1}
    out["B=64 FedAvg (E=1, local batch 8, lr 0.1), sparse bins"] = rtf_run(
        source, first, body, paper, training=fedavg
    )
    out["expected exact at B=64 with ideal bins, B (1 - 1/k)^(B-1)"] = 64 * (1 - 1 / 1000) ** 63
    return out


# --------------------------------------------------------------------------------------------------
# Vetting
# --------------------------------------------------------------------------------------------------


def honest_set(source_path: Path) -> list[tuple[str, Any, dict[str, Any]]]:
    """(label, received model, vet keyword arguments)."""
    items: list[tuple[str, Any, dict[str, Any]]] = []
    for name in MODELS.names():
        for init in sorted(INIT_SCHEMES):
            items.append(
                (
                    f"untrained {name} ({init})",
                    build_model(name, num_classes=10, init=init, seed=1),
                    {"architecture": name},
                )
            )
    shared = shared_dir()
    if shared is not None:
        for name in ("resnet20", "resnet56"):
            path = next((shared / "weights").glob(f"cifar10_{name}-*.th"))
            items.append(
                (
                    f"trained {name}",
                    build_model(name, num_classes=10, checkpoint=path),
                    {"architecture": name},
                )
            )
    ds = load_npz(source_path)
    for name, opts, norm, training in (
        ("lenet", {}, "none", TrainingConfig("fedavg", epochs=2, batch_size=4, lr=0.1)),
        ("mlp", {}, "none", TrainingConfig("fedavg", epochs=1, batch_size=4, lr=0.05, momentum=0.9)),
        ("convnet", {"width": 16}, "cifar10", TrainingConfig("fedavg", epochs=1, batch_size=4, lr=0.05)),
        ("resnet20", {}, "imagenet", TrainingConfig("fedsgd", lr=0.5)),
    ):
        model = build_model(name, num_classes=10, seed=0, **opts)
        normalization = get_normalization(norm, 3)
        previous = model
        batches = []
        for rnd in range(4):
            batches = [
                ds.to_batch(
                    list(range(rnd * 32 + 8 * k, rnd * 32 + 8 * k + 8)),
                    image_size=32,
                    normalization=normalization,
                )
                for k in range(4)
            ]
            previous, model = model, apply_update(model, run_round(model, batches, training).aggregate)
        own = run_round(model, batches[:1], training).updates[0].update
        items.append(
            (
                f"{name} after 4 honest FedAvg rounds (4 clients x 8 CIFAR images)",
                model,
                {
                    "previous": previous,
                    "others": [copy.deepcopy(model)] * 3,
                    "architecture": name,
                    "architecture_options": opts,
                    "update": own,
                },
            )
        )
    return items


def malicious_set(source: str) -> list[tuple[str, Any, dict[str, Any]]]:
    cases = [
        ("robbing-the-fed", "lenet", {}, "F", 1, {"bins": 1000}),
        ("robbing-the-fed", "resnet18", {}, "F", 1, {"bins": 1000}),
        ("robbing-the-fed", "resnet20", {}, "F", 1, {"bins": 500, "structure": "sparse"}),
        ("robbing-the-fed", "mlp", {}, "G", 1, {"bins": 500, "measurements": ["brightness", "left"]}),
        ("robbing-the-fed", "convnet", {"width": 16}, "G", 1, {"bins": 200, "cutoffs": "surrogate"}),
        ("trap-weights", "mlp", {}, "F", 1, {}),
        ("trap-weights", "mlp", {"hidden": [1000]}, "G", 1, {"calibrate": True}),
        ("fishing", "lenet", {}, "F", 1, {"target_class": 3}),
        ("fishing", "resnet20", {}, "F", 1, {"target_class": 3}),
        ("fishing", "mlp", {}, "G", 1, {"mode": "feature", "target_class": 3}),
        ("fishing", "convnet", {"width": 16}, "G", 1, {"mode": "feature", "target_class": 3}),
        ("fishing", "resnet20", {}, "G", 1, {"mode": "feature", "target_class": 3}),
    ]
    if "inconsistent-models" in ATTACKS:
        cases += [
            ("inconsistent-models", "lenet", {}, "H", 4, {}),
            ("inconsistent-models", "mlp", {}, "H", 4, {}),
            ("inconsistent-models", "resnet20", {}, "H", 4, {}),
        ]
    items: list[tuple[str, Any, dict[str, Any]]] = []
    for attack, model, opts, threat, clients, params in cases:
        cfg = parse_config(
            {
                "data": {
                    "source": source,
                    "indices": list(range(8)),
                    "image_size": 32,
                    "surrogate_images": 100,
                },
                "model": {"name": model, "seed": 0, **opts},
                "server": {"num_clients": clients},
                "threat": {"model": threat},
                "attack": {"name": attack, **params},
            }
        )
        sc = build_scenario(cfg)
        truth = simulate(sc, threat=cfg.threat.resolve(), attack=cfg.attack.build())
        assert truth.client_models is not None
        label = f"{attack} {params} on {model}"
        for k, m in enumerate(truth.client_models[:2]):  # the victim and one other client
            role = "" if clients == 1 else (" (victim: real model)" if k == 0 else f" (client {k}: silenced)")
            items.append((label + role + ", alone", m, {}))
            if clients > 1 and k == 0:
                others = [x for j, x in enumerate(truth.client_models) if j != k]
                items.append((label + role + ", with the others' models", m, {"others": others}))
    return items


def vetting(source: str, source_path: Path) -> dict[str, Any]:
    honest = []
    for label, model, kwargs in honest_set(source_path):
        r = vet(model, **kwargs)
        honest.append({"model": label, "findings": [f"{f.kind}: {f.evidence}" for f in r.findings]})
    log(f"honest: {sum(1 for h in honest if h['findings'])} of {len(honest)} with findings")
    malicious = []
    for label, model, kwargs in malicious_set(source):
        r = vet(model, **kwargs)
        malicious.append({"model": label, "flagged": not r.clean, "kinds": sorted(r.kinds())})
    expected_clean = [m for m in malicious if m["model"].endswith("(victim: real model), alone")]
    must_flag = [m for m in malicious if m not in expected_clean]
    log(f"malicious: {sum(m['flagged'] for m in must_flag)} of {len(must_flag)} flagged")
    return {
        "honest_models": len(honest),
        "honest_with_findings": sum(1 for h in honest if h["findings"]),
        "honest": honest,
        "malicious_models": len(must_flag),
        "malicious_flagged": sum(m["flagged"] for m in must_flag),
        "malicious": malicious,
        "not_flaggable_by_design": [
            "the victim's model of an inconsistent-model attack seen alone (it is the real model; flagged "
            "once the other clients' models are compared)",
            "sybil-ddp: every client receives the real model; the attack is in client selection",
        ],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--data", type=Path, help="npz with x (N,32,32,3) uint8 and y (default: ../shared PNG set)"
    )
    p.add_argument("--body", default="resnet18", help="model behind the imprint block (paper 003: ResNet-18)")
    p.add_argument("--batches", type=int, default=10, help="random batches of 64 for the count distribution")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-vetting", action="store_true")
    args = p.parse_args()
    path = args.data
    if path is None:
        shared = shared_dir()
        if shared is None:
            raise SystemExit("needs --data or ../shared/data/cifar10_train_png_200.npz (set GRADINV_SHARED)")
        path = shared / "data" / "cifar10_train_png_200.npz"
    source = f"npz:{path}"
    n_images = len(load_npz(path))
    torch.manual_seed(0)
    start = time.perf_counter()
    payload: dict[str, Any] = {
        "benchmark": "acceptance_malicious",
        "command": "python " + " ".join(sys.argv),
        "data": str(path),
        "machine": machine(),
        "robbing_the_fed": robbing_the_fed(source, n_images, args.body, args.batches, args.seed),
    }
    if not args.skip_vetting:
        payload["vetting"] = vetting(source, path)
    payload["seconds"] = time.perf_counter() - start
    emit(payload)


if __name__ == "__main__":
    main()
