"""Robbing the Fed through a Flower reply: how many images stay exact when the server reads the
update as the difference of two float32 models (``W - lr g`` sent back, ``g`` read off it)?

    python benchmarks/bench_flower_precision.py [--gains 1 0.1 0.01 0.001] [--batch 32]

One client, 32 real digits (``sklearn.datasets.load_digits``), FedSGD lr 0.1, an MLP 64-64-10,
1000 bins; the reply is rebuilt with gradinv's own ``apply_update`` and read back with
``gradinv.integrations.flower.update_from_states`` (needs the [flower] extra), then attacked through
``gradinv.pipeline.attack_and_score``. Prints exact recoveries from the exact gradient and from the
float32 reply, per gain.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import torch
from sklearn.datasets import load_digits
from torch import nn

from gradinv.attacks import create_attack
from gradinv.attacks._imprint import count_exact
from gradinv.fl.rounds import apply_update, simulate_round
from gradinv.fl.server import MaliciousServer
from gradinv.integrations.flower import update_from_states
from gradinv.pipeline import attack_and_score
from gradinv.threat import get_threat_model
from gradinv.types import Batch, Normalization, TrainingConfig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gains", type=float, nargs="+", default=[1.0, 0.1, 0.01, 0.001])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.1)
    args = ap.parse_args()
    d = load_digits()
    x = torch.tensor(d.images[64 : 64 + args.batch] / 16.0, dtype=torch.float32)[:, None]
    batch = Batch(x, torch.tensor(d.target[64 : 64 + args.batch]), Normalization((0.0,), (1.0,), "identity"))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    training, threat = TrainingConfig("fedsgd", lr=args.lr), get_threat_model("F")
    print(f"{'gain':>7} {'exact (gradient)':>17} {'exact (float32 reply)':>22}")
    for gain in args.gains:
        attack = create_attack("robbing-the-fed", bins=1000, mean=0.3, std=0.06, gain=gain)
        server = MaliciousServer(attack, threat, num_classes=10)
        truth = simulate_round(model, [batch], training, num_classes=10, server=server)
        sent, grad = truth.victim_model, truth.round.updates[0].update
        reply = apply_update(sent, grad, server_lr=args.lr).state_dict()
        read = update_from_states(sent, sent.state_dict(), reply, training)
        counts = []
        for update in (grad, read):
            u = replace(truth.round.updates[0], update=update)
            rnd = replace(truth.round, updates=(u,), aggregate=update, server_received=(update,))
            scored = attack_and_score(replace(truth, round=rnd), attack, threat, None)
            counts.append(count_exact(scored.result.reconstruction.images, batch.images).count)
        print(f"{gain:>7g} {counts[0]:>14}/{args.batch} {counts[1]:>19}/{args.batch}")


if __name__ == "__main__":
    main()
