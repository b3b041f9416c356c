"""Contract rows for GRNN (generator-parameter attack, no pretrained prior: basic knowledge, refused
under A) and Learning to Invert (trained inversion network: surrogate data, refused under C)."""

from __future__ import annotations

_TINY = {
    "data": {"source": "samples", "indices": [3], "image_size": 8},
    "model": {"name": "lenet", "seed": 0},
    "metrics": {"lpips": "off", "stlpips": "off"},
}

CASES = [
    {
        "config": {
            **_TINY,
            "threat": {"model": "B"},
            "attack": {"name": "grnn", "iterations": 3, "restarts": 2, "width": 4, "noise_dim": 8},
        },
        "refuse_under": "A",
    },
    {
        "config": {
            **_TINY,
            "threat": {"model": "D"},
            "attack": {"name": "lti", "epochs": 2, "hidden": 8, "features": 64, "batch_size": 4},
        },
        "refuse_under": "C",
    },
]
