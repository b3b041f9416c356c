"""Contract row for GGL: the tiny seeded generator, two CMA-ES generations of four latents; refused
under C (no surrogate knowledge), run under D."""

from __future__ import annotations

from tests.attacks._tiny_generator import tiny_generator_file

CASES = [
    {
        "config": {
            "data": {"source": "samples", "indices": [3], "image_size": 16},
            "model": {"name": "lenet", "seed": 0},
            "threat": {"model": "D"},
            "metrics": {"lpips": "off", "stlpips": "off"},
            "attack": {"name": "ggl", "generator": tiny_generator_file(), "iterations": 2, "population": 4},
        },
        "refuse_under": "C",
    },
]
