"""Contract rows for the malicious-server attacks that craft the model they send (Robbing the Fed, trap
weights, fishing): the smallest scenario that runs crafting, the round, the view and the attack."""

from __future__ import annotations

_TINY = {
    "data": {"source": "samples", "indices": [3], "image_size": 8, "surrogate_images": 6},
    "metrics": {"lpips": "off", "stlpips": "off"},
}

CASES = [
    {
        "config": {
            **_TINY,
            "model": {"name": "lenet", "seed": 0},
            "threat": {"model": "F"},
            "attack": {"name": "robbing-the-fed", "bins": 16},
        },
        "refuse_under": "E",
    },
    {
        "config": {
            **_TINY,
            "model": {"name": "mlp", "hidden": [32], "seed": 0},
            "threat": {"model": "F"},
            "attack": {"name": "trap-weights"},
        },
        "refuse_under": "E",
    },
    {
        "config": {
            **_TINY,
            "model": {"name": "lenet", "seed": 0},
            "threat": {"model": "F"},
            "attack": {"name": "fishing", "target_class": 3, "iterations": 3},
        },
        "refuse_under": "E",
    },
]
