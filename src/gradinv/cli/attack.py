"""``gradinv attack``: run one experiment from a TOML config, with flags overriding common fields."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from gradinv.cli.common import (
    add_command,
    add_device_flag,
    add_run_flags,
    check_text_file,
    parse_float,
    parse_int,
    parse_ints,
    parse_sets,
    prepare_out_dir,
    print_dry_run,
    print_summary,
    progress_bar,
)

if TYPE_CHECKING:  # pragma: no cover
    from gradinv.config import ExperimentConfig

#: kinds of flag values: text, a list of integers, a finite number, or an integer >= the given minimum
Kind = Literal["str", "ints", "float"] | int

#: CLI flag -> (config key, kind, help)
FLAGS: dict[str, tuple[str, Kind, str]] = {
    "source": (
        "data.source",
        "str",
        "data source: samples, digits, npz:PATH, folder:DIR, cifar10:DIR[:test]",
    ),
    "indices": ("data.indices", "ints", "comma-separated sample indices of the victim batch"),
    "num_images": ("data.num_images", 1, "number of victim images (drawn with --data-seed)"),
    "data_seed": ("data.seed", 0, "seed for drawing the victim batch"),
    "image_size": ("data.image_size", 1, "resize images to SIZE x SIZE"),
    "model": ("model.name", "str", "model name (see `gradinv list`)"),
    "num_classes": ("model.num_classes", 2, "number of classes of the model"),
    "checkpoint": ("model.checkpoint", "str", "load model weights from this checkpoint"),
    "protocol": ("training.protocol", "str", "fedsgd or fedavg"),
    "epochs": ("training.epochs", 1, "local epochs (fedavg)"),
    "batch_size": ("training.batch_size", 1, "local mini-batch size"),
    "lr": ("training.lr", "float", "client learning rate"),
    "clients": ("server.num_clients", 1, "number of clients in the round"),
    "threat": ("threat.model", "str", "threat model A-H, optionally with +flag/-flag (e.g. B+labels)"),
    "attack": ("attack.name", "str", "attack name (see `gradinv list`)"),
    "iterations": ("attack.iterations", 1, "attack iterations"),
    "restarts": ("attack.restarts", 1, "attack restarts (run batched)"),
    "labels": ("attack.labels", "str", "label strategy: auto, known, idlg, bias-sign, yin"),
}


HELP = "run one attack experiment from a TOML config"
DESCRIPTION = (
    "Simulate a federated round, observe it under a threat model, attack, evaluate, and write report.json, "
    "reconstruction.png and report.html."
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "attack", HELP, DESCRIPTION)
    p.add_argument("--config", "-c", type=Path, help="TOML experiment file (defaults apply without one)")
    p.add_argument("--out", "-o", type=Path, help="output directory (default: [run] out, gradinv-out)")
    add_device_flag(p, "device (default: [run] device, auto)")
    for flag, (key, _, help_) in FLAGS.items():
        p.add_argument("--" + flag.replace("_", "-"), dest=flag, help=f"{help_} (sets {key})")
    add_run_flags(
        p, set_example="attack.tv=1e-3", dry_run="check config, scenario and threat model; no attack"
    )
    p.set_defaults(func=run)


def _parse_flag(raw: str, kind: Kind, flag: str) -> Any:
    if kind == "str":
        return raw
    if kind == "ints":
        return parse_ints(raw, flag)
    if kind == "float":
        return parse_float(raw, flag)
    return parse_int(raw, flag, minimum=kind)


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for flag, (key, kind, _) in FLAGS.items():
        raw = getattr(args, flag, None)
        if raw is not None:
            out[key] = _parse_flag(raw, kind, "--" + flag.replace("_", "-"))
    out.update(parse_sets(args.sets))
    return out


def resolve_config(args: argparse.Namespace) -> ExperimentConfig:
    from gradinv.config import ExperimentConfig, apply_overrides, load_config

    if args.config:
        check_text_file(args.config)
    cfg = load_config(args.config) if args.config else ExperimentConfig()
    return apply_overrides(cfg, overrides_from_args(args))


def save_report(result: Any, out: Path) -> tuple[Any, bool]:
    """Write the report to ``out``; when that fails late (disk full, folder removed during the run),
    write it to a fresh temporary folder instead, so the finished attack is never lost.
    Returns the paths and whether they are where they were asked for."""
    import tempfile

    from gradinv.report import write_report

    try:
        return write_report(result, out), True
    except OSError as err:
        fallback = Path(tempfile.mkdtemp(prefix="gradinv-report-"))
        print(
            f"error: Expected to write the report to {str(out)!r}, but it failed: {err.strerror or err}. "
            f"Saved it to {str(fallback)!r} instead; copy it from there.",
            file=sys.stderr,
        )
        return write_report(result, fallback), False


def run(args: argparse.Namespace) -> int:
    from gradinv.experiment import dry_run

    cfg = resolve_config(args)
    device = args.device or cfg.run.device
    out = prepare_out_dir(args.out or cfg.run.out, create=not args.dry_run)
    if args.dry_run:  # an aligned table; exit code 0 when the attack would run, 2 when refused
        return print_dry_run(dry_run(cfg))
    from gradinv.experiment import run_experiment

    with progress_bar(cfg.attack.name, enabled=not args.no_progress) as bar:
        result = run_experiment(cfg, progress=bar, device=device)
    paths, where_asked = save_report(result, out)
    print_summary(result)
    print(f"report: {paths.html}\n        {paths.json}\n        {paths.png}")
    return 0 if where_asked else 1
