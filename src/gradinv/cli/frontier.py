"""``gradinv frontier``: the privacy–utility frontier of defenses (resumable; see
:mod:`gradinv.studies.frontier`)."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from gradinv.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "frontier",
        help="privacy–utility frontier: train with each defense and strength, attack a victim, compare",
        description="For every defense and strength in the config (plus no defense): train with FedAvg and "
        "record the test accuracy, attack a victim client's defended update and record the leakage. "
        "Writes frontier.csv, frontier.json, frontier.png and frontier.html. Finished points are kept in "
        "OUT/points: rerunning after Ctrl-C or a crash computes only the missing ones.",
    )
    p.add_argument("--config", "-c", type=Path, required=True, help="TOML frontier file")
    p.add_argument("--out", "-o", type=Path, help="output directory (default: [run] out)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="device (default: [run] device)")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="set any config key; VALUE is parsed as TOML (e.g. --set fl.rounds=5)",
    )
    p.add_argument(
        "--report-only", action="store_true", help="compute nothing; write the outputs from finished points"
    )
    p.add_argument("--dry-run", action="store_true", help="check the config and list the points")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def _overrides(sets: list[str]) -> dict[str, Any]:
    from gradinv.cli.attack import _parse_value

    out: dict[str, Any] = {}
    for item in sets:
        if "=" not in item:
            raise ConfigError(f"Expected --set SECTION.KEY=VALUE, but got {item!r}.")
        key, raw = item.split("=", 1)
        out[key.strip()] = _parse_value(raw.strip())
    return out


def _fmt(v: Any, pct: bool = False) -> str:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return "n/a"
    if math.isnan(x):
        return "n/a"
    return f"{x:.1%}" if pct else f"{x:.2f}"


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from gradinv.studies.frontier import (
        FrontierEvent,
        load_finished_points,
        load_frontier_config,
        run_frontier,
    )
    from gradinv.studies.frontier_report import leakage_value

    cfg = load_frontier_config(args.config, overrides=_overrides(args.sets))
    out = Path(args.out or cfg.run.out)
    points = cfg.points()
    if args.dry_run:
        finished, stale = load_finished_points(out, cfg)
        print(
            f"{len(points)} point(s), {len(finished)} finished in {out / 'points'}"
            + (f", {stale} stale" if stale else "")
        )
        for p in points:
            print(f"  [{'done' if p.key in finished else 'todo'}] {p.describe()}  ({p.key})")
        return 0
    bar = tqdm(
        total=len(points),
        desc="frontier",
        unit="point",
        file=sys.stderr,
        disable=True if args.no_progress else None,
    )

    def progress(ev: FrontierEvent) -> None:
        if ev.kind in ("skip", "point"):
            bar.update(1)
        elif ev.kind == "start":
            bar.set_description(ev.point.describe())
        elif ev.kind == "round" and ev.round_log is not None:
            bar.set_postfix_str(f"round {ev.round_log.round + 1}/{ev.round_log.rounds}")
        elif ev.kind == "attack":
            bar.set_postfix_str(f"{ev.attack} {ev.step}/{ev.steps}")

    try:
        result = run_frontier(cfg, out, progress=progress, device=args.device, compute=not args.report_only)
    finally:
        bar.close()
    metric = cfg.frontier.leakage
    first = cfg.attacks[0].label
    print(f"{'defense':<28} {'strength':>10} {'accuracy':>9} {metric + ' (' + first + ')':>18}")
    for r in result.records:
        p = r["point"]
        value = "—" if p["param"] is None else str(p["value"])
        print(
            f"{p['label']:<28} {value:>10} {_fmt(r['accuracy'], pct=True):>9} "
            f"{_fmt(leakage_value(r, first, metric)):>18}"
        )
    print(
        f"{len(result.computed)} point(s) computed, {len(result.skipped)} already finished"
        + (f", {len(result.missing)} missing" if result.missing else "")
    )
    for name, path in result.outputs.items():
        print(f"{name}: {path}")
    return 0 if not result.missing or args.report_only else 1
