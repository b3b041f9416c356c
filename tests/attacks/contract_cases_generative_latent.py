"""Contract rows for the generative latent-space attacks (GIAS, GIFD) on the tiny generator file:
refused under C (no surrogate data, hence no generator prior), run under D."""

from __future__ import annotations

from tests.attacks._tiny_generator import tiny_generator_file

_TINY = {
    "data": {"source": "samples", "indices": [3], "image_size": 8},
    "model": {"name": "lenet", "seed": 0},
    "threat": {"model": "D"},
    "metrics": {"lpips": "off", "stlpips": "off"},
}

CASES = [
    {
        "config": {
            **_TINY,
            "attack": {
                "name": "gias",
                "generator": tiny_generator_file(),
                "iterations": 2,
                "restarts": 2,
                "finetune_iterations": 2,
            },
        },
        "refuse_under": "C",
    },
    {
        "config": {
            **_TINY,
            "attack": {
                "name": "gifd",
                "generator": tiny_generator_file(),
                "iterations": 2,
                "restarts": 2,
                "feature_iterations": 1,
            },
        },
        "refuse_under": "C",
    },
]
