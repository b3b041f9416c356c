"""One study trial: an ordinary experiment, run where the executor puts it, returned as a row.

:class:`TrialTask` is what travels to a worker (a process of the pool, a Ray task): plain data
only, the experiment config as nested tables. :func:`run_trial` parses it back, calls
:func:`gradinv.experiment.run_experiment` — the one experiment path; nothing here attacks or scores
— and turns the result into a :class:`~gradinv.studies.rows.TrialRow`. A refusal (the threat model
does not grant what the attack needs) is a result, stored as a row with status ``"refused"``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import gradinv
from gradinv.errors import AttackRefused
from gradinv.studies.rows import TrialIdentity, TrialRow, encode_images

__all__ = ["TrialTask", "requirement_problems", "row_metrics", "run_trial"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrialTask(TrialIdentity):
    """A trial as plain data (picklable, JSON-friendly), with the torch threads it may use."""

    threads: int | None = None


def requirement_problems(config: Any) -> list[str]:
    """Why the threat model of an experiment config (:class:`~gradinv.config.ExperimentConfig`) does
    not grant what its attack needs, without building anything (empty: the trial may run; a check of
    the attacker's view itself can still refuse it when it runs). For a study's ``--dry-run``."""
    from gradinv.threat import check_requirements

    attack = config.attack.build()
    return check_requirements(attack.title, attack.requirements(), config.threat.resolve())


def row_metrics(result: Any) -> dict[str, float]:
    """The numbers a study row keeps of an :class:`~gradinv.experiment.ExperimentResult`: each scored
    metric's summary (mean; max for WSRR; the count for ``exact``) and the run's scalars."""
    out = {name: float(m.mean) for name, m in result.evaluation.metrics.items()}
    out["num_images"] = float(len(result.truth.labels))
    out["attack_seconds"] = float(result.timing["attack_seconds"])
    out["iterations"] = float(result.timing["iterations"])
    for name in ("test_accuracy", "final_accuracy"):
        acc = result.scenario.get(name)
        if isinstance(acc, (int, float)) and math.isfinite(acc):
            out[name] = float(acc)
    return out


def run_trial(task: TrialTask) -> TrialRow:
    """Run one trial (see the module docstring). ``task.threads`` sets torch's intra-op threads for
    the trial (executors running several trials at once give each its share of the cores)."""
    import torch

    from gradinv.config import parse_config
    from gradinv.experiment import run_experiment
    from gradinv.report.grid import aligned_images

    if task.threads is not None:
        torch.set_num_threads(task.threads)
    cfg = parse_config(task.config)
    t0 = time.perf_counter()
    common = {**task.identity(), "version": gradinv.__version__}
    try:
        result = run_experiment(cfg)
    except AttackRefused as e:
        logger.info("trial %s refused: %s", task.key, e)
        return TrialRow(
            **common, metrics={}, status="refused", message=str(e), seconds=time.perf_counter() - t0
        )
    truth, recon = aligned_images(result)
    blob = encode_images(truth.numpy(), recon.numpy(), result.truth.labels.cpu().tolist())
    return TrialRow(
        **common,
        metrics=row_metrics(result),
        seconds=time.perf_counter() - t0,
        images=blob,
        unavailable=dict(result.evaluation.unavailable),
    )
