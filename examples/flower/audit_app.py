"""A Flower app audited by gradinv: what can its server reconstruct? (``pip install 'gradinv[flower]'``)

A real Flower run (``flwr.simulation.run_simulation``, Message API ServerApp/ClientApp, 4 clients,
3 rounds, CIFAR-size 32x32 RGB images) whose server is wrapped by gradinv:

    python examples/flower/audit_app.py                      # honest server, audited (fc-bias, threat B)
    python examples/flower/audit_app.py --defense topk       # clients send top-k sparsified updates
    python examples/flower/audit_app.py --malicious          # Robbing the Fed as the server (threat F)
    python examples/flower/audit_app.py --malicious --vet    # ... and clients vetting every model

Images: CIFAR-10 test images from ``$GRADINV_SHARED/data`` when that folder has them, otherwise
photos bundled with scikit-image cropped to 32x32. Expected time: about 1 minute on 2 CPU cores.
See docs/flower.md.
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
from pathlib import Path

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord
from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp
from flwr.serverapp.strategy import FedAvg
from flwr.simulation import run_simulation
from torch import nn

from gradinv.defenses import create_defense
from gradinv.integrations.flower import (
    AuditStrategy,
    DefenseMod,
    MaliciousStrategy,
    VettingMod,
    partition_id_mod,
    train_handler,
)
from gradinv.models import build_model
from gradinv.types import Batch, Normalization, TrainingConfig

CLIENTS, ROUNDS = 4, 3
NORM = Normalization((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "half")


def data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` real 32x32 RGB images in [0, 1] and their labels."""
    shared = Path(os.environ.get("GRADINV_SHARED", "../shared")) / "data" / "cifar10_test_jpeg_3k.npz"
    if shared.exists():
        with np.load(shared) as f:
            x = torch.tensor(f["x"][:n], dtype=torch.float32).permute(0, 3, 1, 2) / 255.0
            return x.contiguous(), torch.tensor(f["y"][:n], dtype=torch.int64)
    from skimage import data as photos

    pictures = [photos.astronaut(), photos.chelsea(), photos.coffee(), photos.rocket()]
    gen = np.random.default_rng(0)
    crops = []
    for k in range(n):  # a random 128x128 patch of a photo, sampled every 4th pixel
        p = pictures[k % len(pictures)]
        i, j = gen.integers(0, p.shape[0] - 128), gen.integers(0, p.shape[1] - 128)
        crops.append(torch.tensor(p[i : i + 128 : 4, j : j + 128 : 4] / 255.0, dtype=torch.float32))
    return torch.stack(crops).permute(0, 3, 1, 2).contiguous(), torch.arange(n) % 10


def make_model() -> nn.Module:
    return build_model("mlp", num_classes=10, image_size=32, in_channels=3, seed=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--defense", choices=["none", "gaussian-noise", "topk", "clipping"], default="none")
    ap.add_argument("--malicious", action="store_true", help="Robbing the Fed runs the server (threat F)")
    ap.add_argument("--vet", action="store_true", help="clients vet every received model (VettingMod)")
    ap.add_argument("--batch", type=int, default=None, help="images per client (default 1, 32 if malicious)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    per_client = args.batch or (32 if args.malicious else 1)
    x, labels = data(CLIENTS * per_client)
    batches = {k: Batch(x[k::CLIENTS], labels[k::CLIENTS], NORM) for k in range(CLIENTS)}
    training = TrainingConfig("fedsgd", lr=0.1)
    config = {"protocol": "fedsgd", "lr": 0.1}
    base = FedAvg(fraction_evaluate=0.0, min_train_nodes=CLIENTS, min_available_nodes=CLIENTS)

    if args.malicious:
        strategy: AuditStrategy = MaliciousStrategy(
            base,
            model=make_model(),
            attack="robbing-the-fed",
            attack_params={"bins": 1000, "gain": 0.01},  # small gain: exact through float32 replies
            threat="F",
            client_data=batches,
            training=training,
        )
        shipped = strategy.client_model()  # the server's operator ships the app the clients run
        model_fn = lambda: copy.deepcopy(shipped)  # noqa: E731
    else:
        strategy = AuditStrategy(
            base, model=make_model(), attack="fc-bias", threat="B", client_data=batches, training=training
        )
        model_fn = make_model
    data_fn = lambda context: batches[int(context.node_config["partition-id"])]  # noqa: E731

    mods = [partition_id_mod]
    if args.vet:
        mods.append(VettingMod(model_fn, data_fn=data_fn))
    if args.defense != "none":
        params = {"gaussian-noise": {"sigma": 0.01}, "topk": {"ratio": 0.1}, "clipping": {"mode": "norm"}}
        mods.append(DefenseMod(model_fn, [create_defense(args.defense, **params[args.defense])]))
    client = ClientApp(mods=mods)
    client.train()(train_handler(model_fn, data_fn, training=training))

    server = ServerApp()

    @server.main()
    def _main(grid, context) -> None:  # type: ignore[no-untyped-def]
        strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord(model_fn().state_dict()),
            num_rounds=ROUNDS,
            train_config=ConfigRecord(config),
        )

    run_simulation(
        server_app=server,
        client_app=client,
        num_supernodes=CLIENTS,
        backend_config={"client_resources": {"num_cpus": 1}, "init_args": {"include_dashboard": False}},
    )

    print(f"{'round':>5} {'client':>6} {'attack':<16} {'PSNR dB':>8} {'exact':>6}")
    for r in strategy.records:
        exact = r.metrics.get("exact", float("nan"))
        print(f"{r.round:>5} {r.client!s:>6} {r.attack:<16} {r.psnr:>8.1f} {exact:>6.2f} {r.skipped[:60]}")
    for f in strategy.failures:
        print(f"round {f.round}: node {f.node_id} refused: {f.reason[:100]}")


if __name__ == "__main__":
    main()
