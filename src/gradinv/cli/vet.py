"""``gradinv vet``: inspect a model received from the server before training on it.

Exit code 0: no findings; 1: findings (printed with evidence); 2: bad input (unreadable file, unknown
model name). Every file is read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gradinv.cli.common import add_command, int_type, parse_toml_value
from gradinv.errors import ConfigError, UpdateError

HELP = "check a received model for signs of a malicious server (exit 0 clean, 1 findings)"
DESCRIPTION = (
    "Inspect the model a server sent (and optionally the previous global model, the models other clients "
    "received, and your own update) for inserted layers, trap weights, fishing, inconsistent models and "
    "isolating updates. Exit code 0: clean; 1: findings; 2: bad input."
)
EPILOG = """examples:
  gradinv vet --model resnet20 --checkpoint received.pt
  gradinv vet --model resnet20 --checkpoint received.pt --previous global_prev.pt --others c1.pt c2.pt
  gradinv vet --checkpoint received.pt --update my_update.pt --json
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "vet", HELP, DESCRIPTION, EPILOG)
    p.add_argument(
        "--model", help="registered architecture the model should have (see `gradinv list models`)"
    )
    p.add_argument("--checkpoint", type=Path, help="the received model's weights (default: a fresh --model)")
    p.add_argument("--previous", type=Path, help="the previous global model's weights")
    p.add_argument("--others", type=Path, nargs="+", default=[], help="models other clients received")
    p.add_argument("--update", type=Path, help="your update after training on the model (gradient or delta)")
    p.add_argument(
        "--num-classes",
        type=int_type(2, flag="--num-classes"),
        help="classes of --model (default: read off the checkpoint, or 10)",
    )
    p.add_argument(
        "--in-channels",
        type=int_type(1, flag="--in-channels"),
        default=3,
        help="input channels of --model (default 3)",
    )
    p.add_argument(
        "--image-size",
        type=int_type(1, flag="--image-size"),
        default=32,
        help="input size of --model (default 32)",
    )
    p.add_argument(
        "--option", action="append", default=[], metavar="KEY=VALUE", help="a model option, e.g. width=16"
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def _finite(state: dict[str, Any], path: Path, flag: str) -> dict[str, Any]:
    """Refuse a file whose tensors hold NaN or inf: no check can say anything sound about it."""
    from gradinv.vetting.api import require_finite

    tensors = {k: v for k, v in state.items() if hasattr(v, "is_floating_point")}
    require_finite(tensors, f"file {str(path)!r} given to {flag}", UpdateError)
    return state


def _load(path: Path, flag: str) -> dict[str, Any]:
    from gradinv.vetting import load_state

    return _finite(load_state(path), path, flag)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {"in_channels": args.in_channels, "image_size": args.image_size}
    if args.num_classes is not None:
        opts["num_classes"] = args.num_classes
    for item in args.option:
        if "=" not in item:
            raise ConfigError(f"Expected --option KEY=VALUE, but got {item!r}. Use e.g. --option width=16.")
        key, raw = item.split("=", 1)
        opts[key.strip()] = parse_toml_value(raw.strip())
    return opts


def run(args: argparse.Namespace) -> int:
    from gradinv.models import build_model
    from gradinv.vetting import vet

    if args.model is None and args.checkpoint is None:
        raise ConfigError(
            "Expected --model NAME, --checkpoint FILE or both, but got neither. Give the received model's "
            "checkpoint and, to check its architecture, the registered model it should be."
        )
    opts = _options(args)
    if args.checkpoint is not None:
        received: Any = _load(args.checkpoint, "--checkpoint")
    else:
        received = build_model(args.model, seed=0, **{"num_classes": 10, **opts})
    report = vet(
        received,
        previous=_load(args.previous, "--previous") if args.previous else None,
        others=[_load(o, "--others") for o in args.others],
        architecture=args.model,
        update=_load(args.update, "--update") if args.update else None,
        architecture_options=opts if args.model else None,
    )
    if args.json:
        json.dump(report.to_dict(), sys.stdout, indent=2)
        print()
    else:
        print(report.format())
    return report.exit_code
