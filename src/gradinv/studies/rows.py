"""The typed record of one finished study trial, shared by the store, the executors and the reports.

A trial is one ordinary experiment (:func:`gradinv.experiment.run_experiment`) at one grid point of a
study and one repeat. Its :class:`TrialRow` carries what the reports need and nothing else:

- ``point`` — the grid point, axis name → the value's label (ordered as the study's axes);
- ``values`` — axis name → the value as JSON (a number, a string, a table of overrides);
- ``metrics`` — name → a number: every scored metric's mean over the batch (``psnr``, ``ssim``,
  ``label_accuracy``, ``brr`` …), plus ``exact`` counts and run scalars (``attack_seconds``,
  ``iterations``, ``test_accuracy`` when the model was trained first);
- ``status`` — ``"ok"``, or ``"refused"`` (the threat model does not grant what the attack needs;
  ``message`` says why): a refusal is a result of the study, stored like any other row;
- ``images`` — an ``.npz`` blob (:func:`encode_images`) with the ground truth and the matched
  reconstruction, so reports can draw every cell.

>>> blob = encode_images(np.zeros((2, 1, 4, 4), np.float32), np.ones((2, 1, 4, 4), np.float32), [3, 5])
>>> imgs = decode_images(blob)
>>> imgs.truth.shape, imgs.reconstruction.shape, imgs.labels.tolist()
((2, 1, 4, 4), (2, 1, 4, 4), [3, 5])
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import numpy as np

__all__ = [
    "RUN_SCALARS",
    "Status",
    "TableLayout",
    "TrialIdentity",
    "TrialImages",
    "TrialRow",
    "decode_images",
    "encode_images",
    "format_value",
    "scalar_title",
]

Status = Literal["ok", "refused"]

#: numbers a row keeps besides the scored metrics: display title and number format (the metrics' own
#: come from the metric registry)
RUN_SCALARS: Mapping[str, tuple[str, str]] = {
    "test_accuracy": ("Test accuracy (utility)", ".4f"),
    "final_accuracy": ("Final test accuracy (utility)", ".4f"),
    "attack_seconds": ("Attack time (s)", ".3g"),
    "iterations": ("Attack iterations", ".0f"),
    "num_images": ("Images", ".0f"),
}


def scalar_title(name: str) -> str | None:
    """The display title of a run scalar (:data:`RUN_SCALARS`), ``None`` for other names."""
    return RUN_SCALARS[name][0] if name in RUN_SCALARS else None


def format_value(name: str, value: float) -> str:
    """A cell's number: a run scalar in its format, a metric in the registry's
    (:func:`gradinv.report.format.format_metric`)."""
    from gradinv.report.format import format_metric, format_number

    return (
        format_number(float(value), RUN_SCALARS[name][1])
        if name in RUN_SCALARS
        else format_metric(name, value)
    )


@dataclass(frozen=True)
class TrialIdentity:
    """Which trial: its key, study, grid point (labels and values), repeat and full config (nested)."""

    key: str
    study: str
    point: Mapping[str, str]
    values: Mapping[str, Any]
    repeat: int
    config: Mapping[str, Any]

    def identity(self) -> dict[str, Any]:
        """The identity fields as keyword arguments (to build a row of this trial)."""
        return {f.name: getattr(self, f.name) for f in fields(TrialIdentity)}


@dataclass(frozen=True)
class TrialRow(TrialIdentity):
    """One finished trial (see the module docstring)."""

    metrics: Mapping[str, float]
    status: Status = "ok"
    message: str = ""
    seconds: float = 0.0
    version: str = ""
    images: bytes | None = field(default=None, repr=False)
    #: metrics of an ok trial that could not be computed, with the reason (e.g. missing LPIPS weights)
    unavailable: Mapping[str, str] = field(default_factory=dict)

    def label(self, axes: Sequence[str] | None = None) -> str:
        """The point as ``axis=value, …`` (all axes, or only ``axes``)."""
        names = list(self.point) if axes is None else list(axes)
        return ", ".join(f"{a}={self.point[a]}" for a in names)


@dataclass(frozen=True)
class TableLayout:
    """How a study's table is laid out, as the paper lays it out.

    ``rows`` and ``columns`` name axes (in order; several axes nest). ``metrics`` are the numbers in
    the cells; with several metrics and no column axes, each metric is a column; with column axes
    too, each (column point, metric) pair is a column. ``order`` gives each axis's value labels in
    the study's order (tables and plots follow it, never alphabetical order). ``plot`` optionally
    names the axis on the x axis of the study's plots (default: the first row axis), ``series`` the
    axis drawn as separate lines (default: the first column axis, if any)."""

    rows: tuple[str, ...]
    columns: tuple[str, ...]
    metrics: tuple[str, ...]
    order: Mapping[str, tuple[str, ...]]
    plot: str | None = None
    series: str | None = None


@dataclass(frozen=True)
class TrialImages:
    """The images of one trial, as float32 arrays in ``[0, 1]`` of shape ``(N, C, H, W)``."""

    truth: np.ndarray
    reconstruction: np.ndarray
    labels: np.ndarray


def encode_images(truth: np.ndarray, reconstruction: np.ndarray, labels: Sequence[int] | np.ndarray) -> bytes:
    """An ``.npz`` blob (compressed, float16 pixels) of a trial's truth and matched reconstruction."""
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        truth=np.clip(np.asarray(truth, np.float32), 0, 1).astype(np.float16),
        reconstruction=np.clip(np.asarray(reconstruction, np.float32), 0, 1).astype(np.float16),
        labels=np.asarray(labels, np.int64),
    )
    return buf.getvalue()


def decode_images(blob: bytes) -> TrialImages:
    """The inverse of :func:`encode_images`."""
    with np.load(io.BytesIO(blob)) as z:
        return TrialImages(
            truth=z["truth"].astype(np.float32),
            reconstruction=z["reconstruction"].astype(np.float32),
            labels=z["labels"],
        )
