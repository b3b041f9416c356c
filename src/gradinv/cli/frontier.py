"""``gradinv frontier``: the privacy–utility frontier of defenses (resumable; see
:mod:`gradinv.studies.frontier`)."""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from gradinv.cli.common import (
    PROGRESS_INTERVAL,
    ProgressLines,
    add_device_flag,
    add_run_flags,
    check_text_file,
    format_duration,
    is_terminal,
    parse_sets,
    prepare_out_dir,
)

if TYPE_CHECKING:  # pragma: no cover
    from gradinv.studies.frontier import FrontierEvent


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
    add_device_flag(p, "device (default: [run] device)")
    p.add_argument(
        "--report-only", action="store_true", help="compute nothing; write the outputs from finished points"
    )
    add_run_flags(p, set_example="fl.rounds=5", dry_run="check the config and list the points")
    p.set_defaults(func=run)


def _overrides(sets: list[str]) -> dict[str, Any]:
    return parse_sets(sets)


class FrontierProgress:
    """Frontier progress: a bar over the points (with ETA) on a terminal; otherwise timestamped lines
    when a point starts and finishes (with the time it took and an ETA for the rest) and, at most every
    ``interval`` seconds, the training round or attack step within the point."""

    def __init__(
        self,
        total: int,
        *,
        enabled: bool = True,
        stream: TextIO | None = None,
        interval: float = PROGRESS_INTERVAL,
    ) -> None:
        self.total = total
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.interval = interval
        self.bar: Any = None
        self.lines: ProgressLines | None = None
        self.done = 0
        self.skipped = 0
        self.computed_seconds: list[float] = []
        self._point_start = 0.0
        self._last: float | None = None
        if not enabled:
            return
        if is_terminal(self.stream):
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="frontier", unit="point", file=self.stream)
        else:
            self.lines = ProgressLines("frontier", stream=self.stream, interval=interval)

    def message(self, text: str) -> None:
        if self.lines is not None:
            self.lines.message(text)
        elif self.bar is not None:
            self.bar.write(text, file=self.stream)

    def eta(self) -> str:
        if not self.computed_seconds:
            return ""
        mean = sum(self.computed_seconds) / len(self.computed_seconds)
        return f", eta {format_duration(mean * (self.total - self.done))} for the rest"

    def __call__(self, ev: FrontierEvent) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self._bar_event(ev)
            return
        assert self.lines is not None
        where = f"point {ev.index + 1}/{ev.total}"
        if ev.kind == "skip":
            self.done += 1
            self.skipped += 1
        elif ev.kind == "start":
            self._point_start = time.monotonic()
            self.lines.message(f"frontier {where} started: {ev.point.describe()}")
        elif ev.kind == "point":
            self.done += 1
            took = time.monotonic() - self._point_start
            self.computed_seconds.append(took)
            self.lines.message(f"frontier {where} finished in {format_duration(took)}{self.eta()}")
        elif ev.kind == "round" and ev.round_log is not None:
            self._throttled(f"{where} training round {ev.round_log.round + 1}/{ev.round_log.rounds}")
        elif ev.kind == "attack":
            self._throttled(f"{where} attack {ev.attack} {ev.step}/{ev.steps}")

    def _throttled(self, text: str) -> None:
        assert self.lines is not None
        now = time.monotonic()
        if self._last is None or now - self._last >= self.interval:
            self._last = now
            self.lines.message(f"frontier {text}")

    def _bar_event(self, ev: FrontierEvent) -> None:
        bar = self.bar
        if ev.kind in ("skip", "point"):
            bar.update(1)
        elif ev.kind == "start":
            bar.set_description(ev.point.describe())
        elif ev.kind == "round" and ev.round_log is not None:
            bar.set_postfix_str(f"round {ev.round_log.round + 1}/{ev.round_log.rounds}")
        elif ev.kind == "attack":
            bar.set_postfix_str(f"{ev.attack} {ev.step}/{ev.steps}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _fmt(v: Any, pct: bool = False) -> str:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return "n/a"
    if math.isnan(x):
        return "n/a"
    return f"{x:.1%}" if pct else f"{x:.2f}"


def run(args: argparse.Namespace) -> int:
    from gradinv.studies.frontier import load_finished_points, load_frontier_config, run_frontier
    from gradinv.studies.frontier_report import leakage_value

    check_text_file(args.config)
    cfg = load_frontier_config(args.config, overrides=_overrides(args.sets))
    out = prepare_out_dir(args.out or cfg.run.out, create=not args.dry_run)
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
    progress = FrontierProgress(len(points), enabled=not args.no_progress)
    if not args.report_only:
        finished, _ = load_finished_points(out, cfg)
        progress.message(
            f"frontier: {len(points)} point(s), {len(finished)} already finished in {out / 'points'}; "
            "loading data (the config's header states the expected time)"
        )
    start = time.monotonic()
    try:
        result = run_frontier(cfg, out, progress=progress, device=args.device, compute=not args.report_only)
    finally:
        progress.close()
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
    print(f"took {format_duration(time.monotonic() - start)}")
    return 0 if not result.missing or args.report_only else 1
