"""Contract rows for the optimisation attacks: the smallest budget that runs the whole code path."""

from __future__ import annotations

_TINY = {
    "data": {"source": "samples", "indices": [3], "image_size": 8},
    "model": {"name": "lenet", "seed": 0},
    "threat": {"model": "B"},
    "metrics": {"lpips": "off", "stlpips": "off"},
}

CASES = [
    # DLG and iDLG run under A (paper 004): the model reveals shape and label space, B = 1 is assumed
    {
        "config": {**_TINY, "attack": {"name": "dlg", "iterations": 1, "max_iter": 3, "restarts": 2}},
        "refuse_under": None,
    },
    {"config": {**_TINY, "attack": {"name": "idlg", "iterations": 1, "max_iter": 3}}, "refuse_under": None},
    # ... except where the model does not determine the input shape (global pooling)
    {
        "config": {
            **_TINY,
            "model": {"name": "resnet20", "seed": 0},
            "attack": {"name": "dlg", "iterations": 1, "max_iter": 3, "restarts": 1},
        },
        "refuse_under": "A",
    },
    {
        "config": {**_TINY, "attack": {"name": "inverting-gradients", "iterations": 3, "restarts": 2}},
        "refuse_under": "A",
    },
]
