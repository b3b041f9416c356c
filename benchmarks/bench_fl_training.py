"""Multi-round FedAvg throughput of :func:`gradinv.fl.training.train_federated` against a plain
PyTorch FedAvg loop, in the same run, on real images. Prints JSON.

Both train the same model from the same weights on K clients of N images each (gradinv's seeded
IID split, the plain loop's contiguous one), every client in every round, E local epochs of
mini-batches B, SGD with lr, each client's samples shuffled every epoch. The plain loop is what a
study script would write by hand: deep-copy the global model per client, ``torch.optim.SGD`` over
mini-batches, weight deltas, a sample-weighted mean, apply. ``ratio`` = gradinv seconds / plain
seconds (medians over interleaved repetitions); the budget is ratio <= 1.1.

    python benchmarks/bench_fl_training.py                     # ConvNet and MLP, 4 x 98 images, 2 rounds
    python benchmarks/bench_fl_training.py --models convnet --rounds 1 --reps 3

Images: the first K*N images of ../shared/data/cifar10_train_jpeg_10k.npz when ../shared is present
(``$GRADINV_SHARED``), else the photos bundled with scikit-image (tiled to K*N).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from _common import emit, machine, shared_dir
from gradinv.data import load_npz, load_samples
from gradinv.fl.training import FederatedConfig, train_federated
from gradinv.models import build_model
from gradinv.types import Batch, TrainingConfig


def _images(total: int) -> tuple[Batch, str]:
    d = shared_dir()
    if d is not None:
        ds, name = load_npz(d / "data" / "cifar10_train_jpeg_10k.npz"), "cifar10_train_jpeg_10k"
    else:
        ds, name = load_samples(), "samples"
    rows = [i % len(ds) for i in range(total)]
    return ds.to_batch(rows, image_size=32, channels=3), name


def plain_fedavg(
    model: nn.Module, clients: list[Batch], *, rounds: int, epochs: int, batch_size: int, lr: float, seed: int
) -> nn.Module:
    """FedAvg as a plain PyTorch loop (McMahan et al., AISTATS 2017)."""
    gen = torch.Generator().manual_seed(seed)
    global_model = copy.deepcopy(model).train()
    for _ in range(rounds):
        deltas, sizes = [], []
        start = {k: v.detach().clone() for k, v in global_model.state_dict().items()}
        for batch in clients:
            local = copy.deepcopy(global_model)
            opt = torch.optim.SGD(local.parameters(), lr=lr)
            x_all, y_all = batch.model_input(), batch.labels
            for _ in range(epochs):
                order = torch.randperm(batch.size, generator=gen)
                for s in range(0, batch.size, batch_size):
                    idx = order[s : s + batch_size]
                    opt.zero_grad()
                    F.cross_entropy(local(x_all[idx]), y_all[idx]).backward()
                    opt.step()
            deltas.append({k: v.detach() - start[k] for k, v in local.state_dict().items()})
            sizes.append(batch.size)
        total = sum(sizes)
        new = {
            k: start[k] + sum(n / total * d[k] for n, d in zip(sizes, deltas))
            if start[k].is_floating_point()
            else start[k]
            for k in start
        }
        global_model.load_state_dict(new)
    return global_model


def _time(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["convnet", "mlp"])
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--images", type=int, default=98, help="images per client")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--reps", type=int, default=3)
    a = p.parse_args()

    train, source = _images(a.clients * a.images)
    parts = [train.subset(list(range(k * a.images, (k + 1) * a.images))) for k in range(a.clients)]
    training = TrainingConfig("fedavg", epochs=a.epochs, batch_size=a.batch_size, lr=a.lr)
    fl = FederatedConfig(num_clients=a.clients, rounds=a.rounds, eval_every=a.rounds)
    rows = []
    for name in a.models:
        model = build_model(name, num_classes=10, in_channels=3, image_size=32, seed=0)
        ours, plain = [], []

        def run_ours(m: nn.Module = model) -> None:
            train_federated(m, train, None, training, fl)

        def run_plain(m: nn.Module = model) -> None:
            plain_fedavg(m, parts, rounds=a.rounds, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, seed=0)

        for _ in range(a.reps):  # interleaved, so load drifts hit both alike
            ours.append(_time(run_ours))
            plain.append(_time(run_plain))
        images = a.rounds * a.clients * a.images * a.epochs
        t_ours, t_plain = statistics.median(ours), statistics.median(plain)
        rows.append(
            {
                "model": name,
                "gradinv_seconds": ours,
                "plain_seconds": plain,
                "gradinv_images_per_s": images / t_ours,
                "plain_images_per_s": images / t_plain,
                "seconds_per_round_gradinv": t_ours / a.rounds,
                "ratio": t_ours / t_plain,
            }
        )
    emit(
        {
            "benchmark": "fl_training",
            "source": source,
            "clients": a.clients,
            "images_per_client": a.images,
            "rounds": a.rounds,
            "epochs": a.epochs,
            "batch_size": a.batch_size,
            "rows": rows,
            "machine": machine(),
        }
    )


if __name__ == "__main__":
    main()
