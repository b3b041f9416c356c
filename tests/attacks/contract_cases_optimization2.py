"""Contract rows for the optimisation attacks of the second wave (GradInversion, CPL, SAPAG, mGAN-AI
representatives, FedAvg leakage): the smallest budget that runs the whole code path."""

from __future__ import annotations

_METRICS = {"lpips": "off", "stlpips": "off"}
_TINY = {
    "data": {"source": "samples", "indices": [3], "image_size": 8},
    "model": {"name": "lenet", "seed": 0},
    "threat": {"model": "B"},
    "metrics": _METRICS,
}
_BN = {  # a model with BatchNorm and two images, for the BN-statistics prior
    "data": {"source": "samples", "indices": [3, 5], "image_size": 9},
    "model": {"name": "convnet", "width": 2, "seed": 0},
    "threat": {"model": "E"},
    "metrics": _METRICS,
}
_FEDAVG = {
    "data": {"source": "samples", "indices": [3, 5], "image_size": 8},
    "model": {"name": "lenet", "seed": 0},
    "training": {"protocol": "fedavg", "epochs": 2, "batch_size": 1, "lr": 0.05},
    "threat": {"model": "C"},
    "metrics": _METRICS,
}

CASES = [
    {
        "config": {**_BN, "attack": {"name": "gradinversion", "iterations": 3, "group_size": 2}},
        "refuse_under": "D",
    },
    {
        "config": {**_TINY, "attack": {"name": "cpl", "iterations": 1, "max_iter": 3, "restarts": 2}},
        "refuse_under": "A",
    },
    {
        "config": {**_TINY, "attack": {"name": "sapag", "iterations": 3, "restarts": 2, "init": "uniform"}},
        "refuse_under": "A",
    },
    {
        "config": {**_TINY, "attack": {"name": "mgan-representatives", "iterations": 3}},
        "refuse_under": "A",
    },
    {
        "config": {**_FEDAVG, "attack": {"name": "fedavg-leakage", "iterations": 3, "restarts": 2}},
        "refuse_under": "B",
    },
    {
        "config": {
            **_FEDAVG,
            "threat": {"model": "B"},
            "attack": {"name": "fedavg-leakage", "iterations": 3, "mode": "weak", "assumed_epochs": 2},
        },
        "refuse_under": "A",
    },
]
