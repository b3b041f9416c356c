"""Contract rows for the analytic FC attack and the server-side isolation attacks (secure aggregation,
distributed DP): the smallest scenario that runs the whole code path, crafting included."""

from __future__ import annotations

_BASE = {
    "data": {"source": "samples", "indices": [3], "image_size": 8},
    "model": {"name": "mlp", "hidden": [16], "seed": 0},
    "metrics": {"lpips": "off", "stlpips": "off"},
}
_SECURE = {"num_clients": 3, "aggregation": "secure", "victim": 1}

CASES = [
    # passive, needs basic knowledge to reshape the rows into images
    {"config": {**_BASE, "threat": {"model": "B"}, "attack": {"name": "fc-bias"}}, "refuse_under": "A"},
    # active: crafting a zero-update model (active manipulation) sent to all but the victim (client selection)
    {
        "config": {
            **_BASE,
            "server": _SECURE,
            "threat": {"model": "H"},
            "attack": {"name": "inconsistent-models"},
        },
        "refuse_under": "G",
    },
    # active: sybil devices (client selection) whose updates the server chooses (active manipulation)
    {
        "config": {
            **_BASE,
            "server": {**_SECURE, "aggregation_options": {"ddp_sigma": 1e-4, "ddp_clip": 10.0}},
            "threat": {"model": "H"},
            "attack": {"name": "sybil-ddp"},
        },
        "refuse_under": "G",
    },
]
