"""Run a study: expand its grid, compute only the missing trials, store each as it finishes, report.

::

    spec ─► trials (grid × repeats, each keyed) ─► Store: which keys are done?
         ─► executor.run(missing) ─► each finished TrialRow ─► Store.add (one transaction)
         ─► tables, plots, HTML (gradinv.studies.study_report)

A rerun of the same command computes only the trials the store does not hold; rows of an earlier
config (other keys) are reported as stale and never mixed in. :func:`report_study` rebuilds the
outputs from ``DIR`` alone (the store keeps the spec it ran).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradinv.errors import ConfigError
from gradinv.studies.executors import Executor, InProcessExecutor
from gradinv.studies.rows import TrialRow
from gradinv.studies.spec import StudyResult, StudySpec, Trial, from_record
from gradinv.studies.store import STORE_NAME, Store
from gradinv.studies.trial import TrialTask

__all__ = ["StudyEvent", "StudyRun", "report_study", "run_study", "tasks_for"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StudyEvent:
    """Progress: ``done`` of ``total`` trials finished (``reused`` of them from the store)."""

    done: int
    total: int
    reused: int
    row: TrialRow | None
    elapsed: float


@dataclass(frozen=True)
class StudyRun(StudyResult):
    """A study's state in its folder (:class:`StudyResult`) and what was computed this time."""

    computed: int
    reused: int
    stale: int
    outputs: Any = None
    missing: tuple[str, ...] = field(default=())


def tasks_for(spec: StudySpec, trials: Sequence[Trial]) -> list[TrialTask]:
    return [
        TrialTask(
            key=t.key,
            study=spec.info.name,
            point=dict(t.point),
            values=dict(t.values),
            repeat=t.repeat,
            config=t.nested(),
        )
        for t in trials
    ]


def _ordered(rows: Sequence[TrialRow], trials: Sequence[Trial]) -> tuple[TrialRow, ...]:
    by_key = {r.key: r for r in rows}
    return tuple(by_key[t.key] for t in trials if t.key in by_key)


def _write_outputs(spec: StudySpec, out_dir: Path, rows: Sequence[TrialRow], stale: int) -> Any:
    from gradinv.studies.study_report import write_study_outputs

    info = spec.info
    extra = {
        "paper": info.paper,
        "scale": spec.scale or "default",
        "source": spec.source,
        "overrides": ", ".join(f"{k}={v}" for k, v in spec.overrides.items()) or "none",
    }
    return write_study_outputs(
        out_dir,
        title=info.title or info.name,
        description=info.description,
        claim=info.claim,
        layout=spec.layout,
        rows=rows,
        stale=stale,
        extra=extra,
        frontier=info.frontier,
    )


def run_study(
    spec: StudySpec,
    out_dir: str | Path,
    *,
    executor: Executor | None = None,
    progress: Callable[[StudyEvent], None] | None = None,
    outputs: bool = True,
) -> StudyRun:
    """Compute the trials of ``spec`` missing from ``out_dir``'s store, then write the outputs.

    Each finished trial is stored at once (a crash or Ctrl-C loses no finished trial); rows are
    yielded by ``executor`` (default: in this process) and written only here, by the driver."""
    out = Path(out_dir)
    trials = spec.trials()
    keys = [t.key for t in trials]
    ex = executor or InProcessExecutor()
    t0 = time.perf_counter()
    with Store(out / STORE_NAME) as store:
        store.claim(spec.info.name)
        store.set_meta("spec", spec.to_record())
        have = store.keys()
        stale = len(have - set(keys))
        if stale:
            logger.warning(
                "%d stored trial(s) belong to an earlier config or gradinv version: ignored", stale
            )
        missing = [t for t in trials if t.key not in have]
        reused = len(trials) - len(missing)
        done = reused
        if progress:
            progress(StudyEvent(done, len(trials), reused, None, 0.0))
        computed = 0
        try:
            for row in ex.run(tasks_for(spec, missing)):
                if store.add(row):
                    computed += 1
                done += 1
                if progress:
                    progress(StudyEvent(done, len(trials), reused, row, time.perf_counter() - t0))
        finally:
            ex.close()
        rows = _ordered(store.rows(keys), trials)
    written = _write_outputs(spec, out, rows, stale) if outputs and rows else None
    return StudyRun(spec, out, rows, len(trials), computed, reused, stale, written)


def report_study(out_dir: str | Path) -> StudyRun:
    """Rebuild a study's tables, plots and HTML from ``out_dir`` alone (its store and stored spec);
    nothing is computed."""
    out = Path(out_dir)
    path = out / STORE_NAME
    if not path.is_file():
        raise ConfigError(
            f"Expected a study store {str(path)!r} (written by `gradinv study run ... --out {out}`), "
            "but there is none."
        )
    with Store(path) as store:
        record = store.meta("spec")
        if record is None:
            raise ConfigError(
                f"Expected {str(path)!r} to record the study it ran, but it has no spec. Rerun the study."
            )
        spec = from_record(record)
        trials = spec.trials()
        keys = [t.key for t in trials]
        rows = _ordered(store.rows(keys), trials)
        stale = len(store.stale_keys(keys))
    missing = tuple(t.key for t in trials if t.key not in {r.key for r in rows})
    written = _write_outputs(spec, out, rows, stale) if rows else None
    return StudyRun(spec, out, rows, len(trials), 0, len(rows), stale, written, missing)
