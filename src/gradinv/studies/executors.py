"""Where a study's trials run: in this process, in a local process pool, or on a Ray cluster.

Every executor maps :func:`gradinv.studies.trial.run_trial` over :class:`TrialTask` s and yields the
finished :class:`~gradinv.studies.rows.TrialRow` s as they come back (in completion order); only the
driver writes the store. Running ``W`` trials at once, each trial gets ``cores // W`` torch threads
(at least one), so the same ``--workers`` gives the same per-trial arithmetic on every executor.

- :class:`InProcessExecutor` — the default; one trial at a time, torch's own thread count.
- :class:`PoolExecutor` — ``--workers N`` local processes (``spawn`` start method: no forked
  OpenMP state).
- :class:`RayExecutor` — ``--executor ray [--address ...]``: Ray (https://docs.ray.io), the optional
  extra ``gradinv[ray]``. Without ``address`` a local Ray is started with ``num_cpus = workers``;
  with one, the driver joins that cluster (its workers need gradinv installed).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import replace
from typing import Any, Literal, Protocol, get_args

from gradinv._checks import check_int
from gradinv.errors import ConfigError
from gradinv.studies.rows import TrialRow
from gradinv.studies.trial import TrialTask, run_trial

__all__ = [
    "EXECUTORS",
    "Executor",
    "InProcessExecutor",
    "PoolExecutor",
    "RayExecutor",
    "make_executor",
    "threads_per_trial",
]

ExecutorName = Literal["local", "ray"]
EXECUTORS: tuple[ExecutorName, ...] = get_args(ExecutorName)


def threads_per_trial(workers: int) -> int:
    """Torch threads for each of ``workers`` concurrent trials on this machine's cores."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


class Executor(Protocol):
    workers: int

    def run(self, tasks: Sequence[TrialTask]) -> Iterator[TrialRow]: ...

    def close(self) -> None: ...


class InProcessExecutor:
    """Trials one after the other in this process."""

    workers = 1

    def run(self, tasks: Sequence[TrialTask]) -> Iterator[TrialRow]:
        for t in tasks:
            yield run_trial(t)

    def close(self) -> None:
        pass


class PoolExecutor:
    """``workers`` local processes; at most ``workers`` trials in flight."""

    def __init__(self, workers: int) -> None:
        check_int("workers", workers, minimum=1)
        self.workers = workers
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))

    def run(self, tasks: Sequence[TrialTask]) -> Iterator[TrialRow]:
        threads = threads_per_trial(self.workers)
        pending = list(tasks)
        running: set[Future[TrialRow]] = set()
        try:
            while pending or running:
                while pending and len(running) < self.workers:
                    running.add(self._pool.submit(run_trial, replace(pending.pop(0), threads=threads)))
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for f in done:
                    yield f.result()
        finally:
            for f in running:
                f.cancel()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "Expected the Ray package for --executor ray, but it is not installed. "
            "Install the extra: pip install 'gradinv[ray]' (or use --executor local)."
        ) from None
    return ray


class RayExecutor:
    """Trials as Ray tasks (one CPU each); at most ``workers`` in flight."""

    def __init__(self, workers: int, *, address: str | None = None) -> None:
        check_int("workers", workers, minimum=1)
        self.workers = workers
        self._ray = _import_ray()
        self._started = False
        if not self._ray.is_initialized():
            kwargs: dict[str, Any] = {"address": address} if address else {"num_cpus": workers}
            self._ray.init(
                include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING, **kwargs
            )
            self._started = True
        self._remote = self._ray.remote(num_cpus=1, max_retries=0)(run_trial)

    def run(self, tasks: Sequence[TrialTask]) -> Iterator[TrialRow]:
        ray = self._ray
        threads = threads_per_trial(self.workers)
        pending = list(tasks)
        running: list[Any] = []
        try:
            while pending or running:
                while pending and len(running) < self.workers:
                    running.append(self._remote.remote(replace(pending.pop(0), threads=threads)))
                done, running = ray.wait(running, num_returns=1)
                for ref in done:
                    yield ray.get(ref)
        finally:
            for ref in running:
                ray.cancel(ref, force=True)

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()


def make_executor(name: str = "local", *, workers: int = 1, address: str | None = None) -> Executor:
    """The executor for ``--executor NAME --workers N [--address A]``."""
    if name not in EXECUTORS:
        raise ConfigError(f"Expected --executor to be one of {', '.join(EXECUTORS)}, but got {name!r}.")
    check_int("workers", workers, minimum=1, fix="Use --workers 1 to run trials one at a time.")
    if name == "ray":
        return RayExecutor(workers, address=address)
    if address:
        raise ConfigError(
            f"Expected --address only with --executor ray, but got --address {address!r} with local."
        )
    return InProcessExecutor() if workers == 1 else PoolExecutor(workers)
