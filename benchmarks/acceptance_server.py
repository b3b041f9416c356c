"""Acceptance numbers: FC bias trick at B = 1 and inconsistent models through secure aggregation
with 10 clients, on real CIFAR-10 images (lossless PNG subset in ../shared). Prints JSON lines."""

import json
import sys

from _common import shared_dir
from gradinv.config import parse_config
from gradinv.experiment import build_scenario, simulate
from gradinv.metrics.functional.psnr import psnr
from gradinv.threat import observe

_SHARED = shared_dir()
if _SHARED is None:
    raise SystemExit(
        "needs the CIFAR-10 PNG subset: set GRADINV_SHARED or place ../shared next to the repository"
    )
SRC = f"npz:{_SHARED / 'data' / 'cifar10_train_png_200.npz'}"


def cfg(idx, attack, server=None, threat="B", hidden=(256,), norm="auto", extra=None):
    return parse_config(
        {
            "data": {"source": SRC, "indices": [idx], "image_size": 32, "normalization": norm},
            "model": {"name": "mlp", "hidden": list(hidden), "seed": idx},
            "server": server or {},
            "threat": {"model": threat},
            "attack": {"name": attack, **(extra or {})},
            "metrics": {"lpips": "off", "stlpips": "off"},
        }
    )


def fc_bias(n):
    rows = []
    for idx in range(n):
        for norm in ("none", "cifar10"):
            c = cfg(idx, "fc-bias", norm=norm)
            a = c.attack.build()
            truth = simulate(build_scenario(c), threat=c.threat.resolve(), attack=a)
            r = a.reconstruct(observe(truth, "B"), device="cpu").reconstruction
            x = truth.batch.images
            rows.append(
                {
                    "psnr": float(psnr(r.images, x)),
                    "max_err_255": float((r.images - x).abs().max() * 255),
                    "label_ok": r.labels is not None and r.labels.tolist() == truth.batch.labels.tolist(),
                }
            )
    fin = [r["psnr"] for r in rows]
    return {
        "test": "fc-bias B=1 MLP(3072-256-10) CIFAR-10",
        "images": n,
        "runs": len(rows),
        "min_psnr": min(fin),
        "max_pixel_error_x255": max(r["max_err_255"] for r in rows),
        "exact": sum(r["psnr"] >= 60 or r["max_err_255"] < 1 for r in rows),
        "labels_ok": sum(r["label_ok"] for r in rows),
    }


def inconsistent(n, clients=10):
    rows = []
    for idx in range(n):
        c = cfg(
            idx,
            "inconsistent-models",
            server={"num_clients": clients, "aggregation": "secure", "victim": idx % clients},
            threat="H",
            extra={"inner": "fc-bias"},
        )
        a = c.attack.build()
        truth = simulate(build_scenario(c), threat=c.threat.resolve(), attack=a)
        view = observe(truth, "H")
        iso = a.isolated_view(view).update
        vic = truth.victim_update.update
        rel = max(
            float((iso.params[k] - vic.params[k]).abs().max() / vic.params[k].abs().max()) for k in iso.params
        )
        others_zero = all(
            float(u.update.params[k].abs().max()) == 0
            for j, u in enumerate(truth.round.updates)
            if j != truth.victim
            for k in iso.params
        )
        r = a.reconstruct(view, device="cpu").reconstruction
        x = truth.batch.images
        rows.append(
            {
                "index": idx,
                "update_max_rel_err": rel,
                "others_exactly_zero": others_zero,
                "psnr": float(psnr(r.images, x)),
                "max_err_255": float((r.images - x).abs().max() * 255),
            }
        )
    return {
        "test": f"inconsistent-models, {clients} clients, secure aggregation, inner fc-bias, B=1",
        "rows": rows,
    }


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    print(json.dumps(fc_bias(n)), flush=True)
    res = inconsistent(min(n, 10))
    print(
        json.dumps(
            {
                "test": res["test"],
                "runs": len(res["rows"]),
                "max_update_rel_err": max(r["update_max_rel_err"] for r in res["rows"]),
                "others_exactly_zero": all(r["others_exactly_zero"] for r in res["rows"]),
                "min_psnr": min(r["psnr"] for r in res["rows"]),
                "max_pixel_error_x255": max(r["max_err_255"] for r in res["rows"]),
            }
        ),
        flush=True,
    )
