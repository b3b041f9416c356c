"""``gradinv audit``: the worst-case leakage of your own FL setup, per threat model A–H.

Examples::

  gradinv audit --model examples/audit/my_model.py:make_model --source npz:cifar.npz --budget 5
  gradinv audit --model my_pkg.nets:make --checkpoint global.pt --source folder:my_images \\
      --protocol fedavg --epochs 2 --batch-size 8 --lr 0.01 --defense gaussian-noise:sigma=0.01
  gradinv audit --config my_setup.toml --threats B,F --budget 2 --out audit-out
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from gradinv.cli.attack import FLAGS, overrides_from_args
from gradinv.cli.common import (
    ProgressLines,
    add_command,
    add_device_flag,
    add_run_flags,
    check_text_file,
    doc_examples,
    format_duration,
    parse_float,
    parse_int,
    parse_toml_value,
    prepare_out_dir,
    progress_bar,
)
from gradinv.errors import ConfigError

#: the experiment flags an audit takes (the threat model and the attack are the audit's to choose)
SETUP_FLAGS = tuple(
    k for k in FLAGS if not k.startswith(("threat", "attack", "iterations", "restarts", "labels"))
)


HELP = "worst-case leakage of your own model, training and defenses, per threat model A-H"
DESCRIPTION = (
    "For each threat model A-H, run the strongest applicable attacks on your model (a registered name or "
    "an import path such as path/to/file.py:make_model), your local training, your defenses and a sample "
    "of your data, within a time budget; write audit.html and audit.json."
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "audit", HELP, DESCRIPTION, doc_examples(__doc__))
    p.add_argument(
        "--config", "-c", type=Path, help="TOML experiment file of your setup ([threat]/[attack] ignored)"
    )
    p.add_argument(
        "--out", "-o", type=Path, default=Path("gradinv-audit"), help="output folder (default gradinv-audit)"
    )
    add_device_flag(p, "device (default: [run] device, auto)")
    for flag in SETUP_FLAGS:
        key, _, help_ = FLAGS[flag]
        if flag == "model":
            help_ = "your model: a registered name, 'package.module:factory' or 'path/to/file.py:factory'"
        p.add_argument("--" + flag.replace("_", "-"), dest=flag, help=f"{help_} (sets {key})")
    p.add_argument(
        "--defense",
        dest="defense_flags",
        action="append",
        default=[],
        metavar="NAME[:KEY=VALUE,...]",
        help="a client-side defense (repeatable, applied in order), e.g. gaussian-noise:sigma=0.01; "
        "replaces the config's [[defenses]] (see `gradinv list defenses`)",
    )
    p.add_argument(
        "--budget", default="5", metavar="MINUTES", help="time budget of the attacks in minutes (default 5)"
    )
    p.add_argument("--threats", metavar="A,B,...", help="threat models to audit (default: A,B,C,D,E,F,G,H)")
    p.add_argument(
        "--attacks", metavar="NAME,...", help="candidate attacks, strongest first (default: the audit's list)"
    )
    p.add_argument(
        "--max-attacks", default="3", metavar="N", help="applicable attacks run per threat model (default 3)"
    )
    p.add_argument(
        "--frontier", type=Path, metavar="DIR", help="a frontier study folder for the defense advice"
    )
    p.add_argument("--no-vet", action="store_true", help="do not vet the malicious servers' crafted models")
    p.add_argument(
        "--generator",
        metavar="NAME|FILE",
        help="an image prior for your data (a registered generator, or a file of gradinv train-generator): "
        "adds the generative attacks GIAS and GGL under threat models D-H",
    )
    p.add_argument("--generator-weights", metavar="FILE", help="the weight file of a registered --generator")
    add_run_flags(p, set_example="training.lr=0.01", dry_run="check the setup and print the plan; no attack")
    p.set_defaults(func=run)


def parse_defense(raw: str) -> dict[str, Any]:
    """``NAME[:KEY=VALUE,...]`` → a ``[[defenses]]`` table (values parsed as TOML)."""
    name, _, rest = raw.partition(":")
    if not name.strip():
        raise ConfigError(
            f"Expected --defense NAME[:KEY=VALUE,...], but got {raw!r}. Use e.g. gaussian-noise:sigma=0.01."
        )
    table: dict[str, Any] = {"name": name.strip()}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(
                f"Expected --defense {name}:KEY=VALUE[,KEY=VALUE], but got {item!r} in {raw!r}. "
                "Use e.g. --defense topk:ratio=0.05."
            )
        table[key.strip()] = parse_toml_value(value.strip())
    return table


def _names(raw: str | None, flag: str) -> tuple[str, ...] | None:
    if raw is None:
        return None
    names = tuple(s.strip() for s in raw.split(",") if s.strip())
    if not names:
        raise ConfigError(f"Expected {flag} to list at least one name separated by commas, but got {raw!r}.")
    return names


def build_spec(args: argparse.Namespace) -> Any:
    from gradinv.audit import AuditSpec
    from gradinv.config import ExperimentConfig, apply_overrides, load_config

    if args.config:
        check_text_file(args.config)
    cfg = load_config(args.config) if args.config else ExperimentConfig()
    overrides = overrides_from_args(args)
    if args.defense_flags:
        overrides["defenses"] = [parse_defense(d) for d in args.defense_flags]
    if args.device:
        overrides["run.device"] = args.device
    cfg = apply_overrides(cfg, overrides)
    kwargs: dict[str, Any] = {
        "budget_minutes": parse_float(args.budget, "--budget"),
        "max_attacks": parse_int(args.max_attacks, "--max-attacks", minimum=1),
        "frontier": args.frontier,
        "vet": not args.no_vet,
    }
    threats = _names(args.threats, "--threats")
    if threats is not None:
        kwargs["threats"] = tuple(t.upper() for t in threats)
    attacks = _names(args.attacks, "--attacks")
    if attacks is not None:
        kwargs["candidates"] = attacks
    if args.generator_weights and not args.generator:
        raise ConfigError("Expected --generator with --generator-weights, but got no --generator.")
    if args.generator:
        from gradinv.audit.spec import CANDIDATES, with_generative

        kwargs["candidates"] = with_generative(kwargs.get("candidates", CANDIDATES))
        kwargs["generator"] = args.generator
        kwargs["generator_weights"] = args.generator_weights
    return AuditSpec(cfg, **kwargs)


class AuditProgress:
    """One line per finished attempt, and a progress bar per running attack."""

    def __init__(self, *, enabled: bool, stream: TextIO | None = None) -> None:
        self.enabled = enabled
        self.lines = ProgressLines("audit", stream=stream, interval=0.0)
        self._seen: set[tuple[str, str]] = set()

    def bar(self, desc: str) -> Any:
        return progress_bar(desc, enabled=self.enabled)

    def __call__(self, audit: Any, event: str) -> None:
        if not self.enabled:
            return
        if event == "start":
            self.lines.message(
                f"audit: {len(audit.threats)} threat model(s), budget {format_duration(audit.budget_seconds)}"
            )
            return
        for t in audit.threats:
            for r in t.runs:
                if (t.id, r.attack) in self._seen or r.status not in (
                    "ok",
                    "budget",
                    "interrupted",
                    "failed",
                ):
                    continue
                self._seen.add((t.id, r.attack))
                detail = (
                    r.status
                    if not r.scored
                    else f"PSNR {r.mean('psnr'):.1f} dB, {r.exact}/{r.num_images} exact"
                )
                if r.status == "budget":
                    detail += ", stopped by the budget"
                self.lines.message(f"{t.id} {r.attack}: {detail} ({format_duration(r.seconds)})")


def _print_plan(spec: Any, out: TextIO) -> int:
    from gradinv.audit import plan_audit

    print(
        f"audit of model {spec.base.model.name!r} on {spec.base.data.source!r}, "
        f"budget {spec.budget_minutes:g} min "
        f"(at most {spec.max_attacks} attack(s) per threat model, strongest first)",
        file=out,
    )
    for tid, attempts in plan_audit(spec).items():
        runnable = [name for name, reasons in attempts if not reasons]
        print(f"  {tid}: {', '.join(runnable) or 'no candidate passes the checks (all refused)'}", file=out)
    return 0


def _print_summary(audit: Any, out: TextIO) -> None:
    for t in audit.threats:
        best = t.best
        if best is None:
            print(f"  {t.id} ({t.name}): no attack ran" + ("" if t.done else " (not finished)"), file=out)
            continue
        parts = [f"PSNR {best.mean('psnr'):.1f} dB"]
        if "ssim" in best.metrics:
            parts.append(f"SSIM {best.mean('ssim'):.3f}")
        if "stlpips" in best.metrics:
            parts.append(f"ST-LPIPS {best.mean('stlpips'):.3f}")
        parts.append(f"{best.exact}/{best.num_images} exact")
        if "label_accuracy" in best.metrics:
            parts.append(f"labels {best.mean('label_accuracy'):.0%}")
        print(f"  {t.id} ({t.name}): {best.title}: {', '.join(parts)}", file=out)


def run(args: argparse.Namespace) -> int:
    from gradinv.audit import run_audit

    spec = build_spec(args)
    if args.dry_run:
        return _print_plan(spec, sys.stdout)
    out = prepare_out_dir(args.out)
    progress = AuditProgress(enabled=not args.no_progress)
    start = time.monotonic()
    audit = run_audit(spec, out_dir=out, progress_for=progress.bar, listener=progress)
    print(
        f"audit of {spec.base.model.name!r}: worst case per threat model"
        + (" (partial)" if audit.partial else "")
    )
    _print_summary(audit, sys.stdout)
    print(f"took {format_duration(time.monotonic() - start)}")
    print(f"report: {out / 'audit.html'}\n        {out / 'audit.json'}")
    if audit.interrupted:
        print("interrupted: the report holds what ran so far (marked partial)", file=sys.stderr)
        return 130
    return 0
