"""Reconstruction quality vs distributed-DP noise sigma (in the sum), M = 10 clients, B = 1, CIFAR-10,
MLP(3072-256-10), clip C = 1, secure aggregation. Columns: sybil-ddp (M-1 sybils), inconsistent-models
(isolation without sybils: 9 honest silenced clients each add sigma^2/M), honest (no attack: FC bias
trick on the plain secure aggregate, best match to the victim). PSNR of the victim's image, mean over
images."""

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


def quality(attack, sigma, idx, m=10, clip=1.0):
    threat = "B" if attack == "fc-bias" else "H"
    c = parse_config(
        {
            "data": {"source": SRC, "indices": [idx], "image_size": 32},
            "model": {"name": "mlp", "hidden": [256], "seed": 0},
            "server": {
                "num_clients": m,
                "aggregation": "secure",
                "victim": 0,
                "aggregation_options": {"ddp_sigma": sigma, "ddp_clip": clip, "seed": idx},
            },
            "threat": {"model": threat},
            "attack": {"name": attack},
            "metrics": {"lpips": "off", "stlpips": "off"},
        }
    )
    a = c.attack.build()
    truth = simulate(build_scenario(c), threat=c.threat.resolve(), attack=a)
    rec = a.reconstruct(observe(truth, threat), device="cpu").reconstruction.images
    x = truth.batch.images
    return max(float(psnr(r[None], x)) for r in rec)


n = int(sys.argv[2]) if len(sys.argv) > 2 else 5
for sigma in [float(s) for s in sys.argv[1].split(",")]:
    row = {"sigma": sigma}
    for attack in ("sybil-ddp", "inconsistent-models", "fc-bias"):
        vals = [quality(attack, sigma, idx) for idx in range(n)]
        row["honest" if attack == "fc-bias" else attack] = round(sum(vals) / n, 2)
    print(json.dumps(row), flush=True)
