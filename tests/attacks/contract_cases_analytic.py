"""Contract rows for the passive analytic attacks (R-GAP, SPEAR, Cocktail Party): tiny scenarios on
the bundled photos that run each attack's whole code path in well under a second."""

from __future__ import annotations

_BASE = {
    "threat": {"model": "B"},
    "metrics": {"lpips": "off", "stlpips": "off"},
}

CASES = [
    {
        "config": {
            **_BASE,
            "data": {"source": "samples", "indices": [3], "image_size": 8},
            "model": {"name": "rgap-cnn6", "seed": 0},
            "attack": {"name": "rgap"},
        },
        "refuse_under": "A",
    },
    {
        "config": {
            **_BASE,
            "data": {"source": "samples", "indices": [1, 3, 5], "image_size": 8},
            "model": {"name": "mlp", "hidden": [64], "seed": 0},
            "attack": {"name": "spear", "max_samples": 20000},
        },
        "refuse_under": "A",
    },
    {
        "config": {
            **_BASE,
            "data": {"source": "samples", "indices": [1, 3, 5, 7], "image_size": 8},
            "model": {"name": "mlp", "hidden": [64], "seed": 0},
            "attack": {"name": "cocktail-party", "iterations": 20},
        },
        "refuse_under": "A",
    },
]
