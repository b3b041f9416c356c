"""``gradinv study list | run | report``: the paper studies as one command each (see
:mod:`gradinv.studies.engine`)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from gradinv.cli.common import (
    ProgressLines,
    add_command,
    add_device_flag,
    add_run_flags,
    check_text_file,
    format_duration,
    int_type,
    parse_sets,
    prepare_out_dir,
)

if TYPE_CHECKING:  # pragma: no cover
    from gradinv.studies.engine import StudyEvent, StudyRun


HELP = "reproduce a paper's finding: sweep a grid of experiments, store, tabulate (resumable)"
DESCRIPTION = (
    "Studies sweep an ordinary experiment over axes (batch size, local updates, defenses …) with repeats, "
    "store every finished trial in OUT/study.sqlite at once, and write paper-style tables (CSV, Markdown, "
    "LaTeX), plots and one HTML page. Rerunning the same command computes only the missing trials."
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "study", HELP, DESCRIPTION)
    ssub = p.add_subparsers(dest="study_command", metavar="SUBCOMMAND")
    ls = ssub.add_parser("list", help="the built-in studies and the paper claim each reproduces")
    ls.set_defaults(func=run_list)

    r = ssub.add_parser(
        "run",
        help="run a built-in study (by name) or a study file",
        description="Run a study. NAME is a built-in study (gradinv study list) or a path to a study .toml "
        "file. --set changes the base experiment of every trial, e.g. --set data.source=npz:my_images.npz "
        "runs a built-in study on your own images.",
    )
    r.add_argument("study", metavar="NAME|FILE", help="built-in study name or study .toml file")
    r.add_argument("--out", "-o", type=Path, required=True, help="output folder (the store and the reports)")
    add_study_run_flags(r)
    r.set_defaults(func=run_study_cmd)

    rep = ssub.add_parser("report", help="rebuild a study's tables, plots and HTML from its folder")
    rep.add_argument("dir", type=Path, metavar="DIR", help="the --out folder of a study run")
    rep.set_defaults(func=run_report)

    def show_help(args: argparse.Namespace) -> int:
        p.print_help()
        return 1

    p.set_defaults(func=show_help)


def add_study_run_flags(r: argparse.ArgumentParser) -> None:
    """The flags of ``gradinv study run`` after NAME|FILE and --out (``gradinv frontier`` shares them)."""
    r.add_argument("--scale", help="a scale the study defines (built-ins: quick, paper)")
    r.add_argument(
        "--workers", type=int_type(1, flag="--workers"), default=1, help="trials run at once (default 1)"
    )
    r.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local processes (default) or Ray (pip install 'gradinv[ray]')",
    )
    r.add_argument(
        "--address", help="with --executor ray: the cluster's address (default: start a local Ray)"
    )
    add_device_flag(r, "device of every trial (default: [run] device of the study file)")
    add_run_flags(
        r, set_example="attack.iterations=200", dry_run="list the trials and which are done; run none"
    )


def run_list(args: argparse.Namespace) -> int:
    from gradinv.studies.library import builtin_studies

    for s in builtin_studies():
        print(f"{s.name:<22} {s.title}")
        if s.claim:
            print(f"{'':<22} claim: {s.claim}")
        if s.paper:
            print(f"{'':<22} paper: {s.paper}")
        print(f"{'':<22} scales: {', '.join(s.scales) or 'default'}")
    return 0


class StudyProgress:
    """Trials done / total with an ETA (from the trials computed in this run), one line per trial."""

    def __init__(self, name: str, *, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.lines = ProgressLines(f"study {name}", stream=stream, interval=0.0)
        self.enabled = enabled
        self._first: tuple[int, float] | None = None

    def __call__(self, ev: StudyEvent) -> None:
        if not self.enabled:
            return
        if ev.row is None:
            self._first = (ev.done, time.monotonic())
            self.lines.message(f"study: {ev.total} trial(s), {ev.reused} already in the store")
            return
        detail = f"{ev.row.label()} r{ev.row.repeat} {ev.row.status} {format_duration(ev.row.seconds)}"
        self.lines.update(ev.done, ev.total, detail)


def _summary(run: StudyRun, out: TextIO) -> None:
    print(
        f"{len(run.rows)}/{run.total} trial(s) in {run.out_dir / 'study.sqlite'}: "
        f"{run.computed} computed now, "
        f"{run.reused} reused" + (f", {run.stale} stale row(s) ignored" if run.stale else ""),
        file=out,
    )
    if run.outputs is not None:
        table = Path(run.outputs.table_md)
        print(table.read_text(encoding="utf-8"), file=out)
        print(f"report: {run.outputs.html}", file=out)


def run_study_cmd(args: argparse.Namespace) -> int:
    from gradinv.studies.engine import run_study
    from gradinv.studies.executors import make_executor
    from gradinv.studies.library import find_study
    from gradinv.studies.spec import load_study
    from gradinv.studies.store import STORE_NAME, Store
    from gradinv.studies.trial import requirement_problems

    overrides = parse_sets(args.sets)
    if args.device:
        overrides["run.device"] = args.device
    path = find_study(args.study)
    check_text_file(path, option="NAME|FILE")
    spec = load_study(path, scale=args.scale, overrides=overrides)
    out = prepare_out_dir(args.out, create=not args.dry_run)
    trials = spec.trials()
    if args.dry_run:
        path = out / STORE_NAME
        have: set[str] = set()
        if path.is_file():
            with Store(path) as st:
                have = st.keys()
        print(f"study {spec.info.name}: {len(trials)} trial(s), {sum(t.key in have for t in trials)} done")
        refused = 0
        for t in trials:
            point = ", ".join(f"{a}={v}" for a, v in t.point.items())
            print(f"  [{'done' if t.key in have else 'todo'}] {point} repeat {t.repeat}  ({t.key})")
            problems = requirement_problems(t.config)
            if problems:
                refused += 1
                print(f"      will be refused: {' '.join(problems)}")
        if refused:
            print(f"{refused} trial(s) will be refused by the threat model (a refusal is a stored result)")
        return 0
    executor = make_executor(args.executor, workers=args.workers, address=args.address)
    start = time.monotonic()
    run = run_study(
        spec, out, executor=executor, progress=StudyProgress(spec.info.name, enabled=not args.no_progress)
    )
    _summary(run, sys.stdout)
    print(f"took {format_duration(time.monotonic() - start)}")
    return 0 if run.complete else 1


def run_report(args: argparse.Namespace) -> int:
    from gradinv.studies.engine import report_study

    run = report_study(args.dir)
    _summary(run, sys.stdout)
    if run.missing:
        print(f"{len(run.missing)} trial(s) not finished yet: rerun `gradinv study run` to compute them")
    return 0
