"""The machine-readable report of one experiment: a plain, versioned JSON document.

:func:`report_dict` turns an :class:`~gradinv.experiment.ExperimentResult` into nested dicts, lists,
strings, numbers, booleans and ``null`` only (schema version :data:`SCHEMA_VERSION`, documented key by
key in ``docs/report_schema.md``). JSON has no infinity or NaN, so non-finite floats are written as
the strings ``"inf"``, ``"-inf"`` and ``"nan"`` (PSNR of identical images is ``inf``) and the file is
written with ``allow_nan=False``: every report is strict JSON that any parser reads.

>>> to_jsonable({"psnr": float("inf"), "shape": (3, 32, 32), "loss": torch.tensor([0.5, float("nan")])})
{'psnr': 'inf', 'shape': [3, 32, 32], 'loss': [0.5, 'nan']}
>>> decode_float("inf"), decode_float(1.5)
(inf, 1.5)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Mapping
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

import gradinv
from gradinv.config import to_nested
from gradinv.errors import DataError
from gradinv.report.format import iteration_counts
from gradinv.threat import Knowledge

if TYPE_CHECKING:  # pragma: no cover
    from gradinv.experiment import ExperimentResult

__all__ = [
    "SCHEMA_VERSION",
    "TIMING_STAGES",
    "decode_float",
    "dumps",
    "encode_float",
    "report_dict",
    "to_jsonable",
    "total_seconds",
    "write_json",
]

logger = logging.getLogger(__name__)

#: Bumped whenever a key is removed, renamed or changes meaning (see ``docs/report_schema.md``).
SCHEMA_VERSION = 1

#: The wall-clock stages of ``ExperimentResult.timing`` summed into ``timing.total_seconds``.
TIMING_STAGES: tuple[str, ...] = (
    "scenario_seconds",
    "round_seconds",
    "attack_wall_seconds",
    "evaluation_seconds",
)

_NON_FINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def encode_float(value: float) -> float | str:
    """A float as JSON allows it: finite values unchanged, ``inf``/``-inf``/``nan`` as strings.

    >>> encode_float(2.0), encode_float(-math.inf), encode_float(math.nan)
    (2.0, '-inf', 'nan')
    """
    v = float(value)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def decode_float(value: float | int | str) -> float:
    """The inverse of :func:`encode_float`, for readers of a report (``"inf"`` -> ``math.inf``)."""
    if isinstance(value, str):
        if value not in _NON_FINITE:
            raise DataError(
                f"Expected a number or one of 'inf', '-inf', 'nan', but got {value!r}. "
                "Only non-finite floats are encoded as strings in a gradinv report."
            )
        return _NON_FINITE[value]
    return float(value)


def to_jsonable(obj: Any) -> Any:
    """Convert ``obj`` recursively to JSON types: tensors and arrays to lists, tuples to lists, enums
    to their values, dataclasses and mappings to dicts (string keys), paths to strings, non-finite
    floats to strings. Anything else becomes its ``repr`` (logged as a warning)."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, Enum):
        return to_jsonable(obj.value)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return encode_float(obj)
    if isinstance(obj, torch.Tensor):
        return to_jsonable(obj.detach().cpu().tolist())
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return encode_float(float(obj))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(to_jsonable(k)): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj, key=str) if isinstance(obj, (set, frozenset)) else obj
        return [to_jsonable(v) for v in items]
    if isinstance(obj, PurePath):
        return str(obj)
    logger.warning("report: %s is not JSON-serialisable; writing its repr", type(obj).__name__)
    return repr(obj)


def total_seconds(timing: Mapping[str, float]) -> float:
    """Wall-clock seconds of the whole experiment: the sum of the :data:`TIMING_STAGES` present."""
    return float(sum(float(timing[k]) for k in TIMING_STAGES if k in timing))


def _grants(flags: frozenset[Knowledge]) -> list[str]:
    order = list(Knowledge)
    return [k.value for k in sorted(flags, key=order.index)]


def _metrics(result: ExperimentResult) -> dict[str, Any]:
    return {
        name: {
            "title": m.title,
            "per_image": list(m.per_image),
            "mean": m.mean,
            "higher_is_better": m.higher_is_better,
        }
        for name, m in result.evaluation.metrics.items()
    }


def report_dict(result: ExperimentResult, *, created: datetime | None = None) -> dict[str, Any]:
    """The report of ``result`` as JSON-ready nested dicts (schema version :data:`SCHEMA_VERSION`).

    ``created`` (default: now) is written as a UTC ISO-8601 timestamp."""
    when = (created or datetime.now(timezone.utc)).astimezone(timezone.utc)
    cfg = result.config
    nested = to_nested(cfg)
    attack, res, ev = result.attack, result.result, result.evaluation
    rec = res.reconstruction
    requirements = attack.requirements()
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "gradinv_version": gradinv.__version__,
        "created": when.isoformat(timespec="seconds"),
        "config": nested,
        "scenario": {
            "data": nested["data"],
            "model": nested["model"],
            "training": nested["training"],
            "server": nested["server"],
            "facts": dict(result.scenario),
        },
        "threat_model": {
            "id": result.threat.id,
            "name": result.threat.name,
            "grants": _grants(result.threat.grants),
            "applicability": result.threat.applicability,
            "view": dict(result.view),
        },
        "attack": {
            "name": attack.name,
            "title": attack.title,
            "family": attack.family,
            "paper": attack.paper,
            "parameters": dict(res.parameters),
            "requires": [r.knowledge.value for r in requirements],
            "requirement_reasons": {r.knowledge.value: r.reason for r in requirements},
            "notes": list(res.notes),
            "interrupted": res.interrupted,
            "iterations": res.iterations,
            "iteration_counts": iteration_counts(res, family=attack.family).to_dict(),
            "best_candidate": res.best_candidate,
            "candidate_losses": list(rec.candidate_losses),
            "loss_history": list(res.loss_history),
        },
        "labels": {
            "true": result.truth.labels,
            "recovered": rec.labels,
            "matched_recovered": ev.matched_labels,
            "method": rec.label_method,
            "class_names": list(result.truth.class_names),
        },
        "matching": {
            "criterion": ev.matching.criterion,
            "truth_index": ev.matching.truth_index,
            "recon_index": ev.matching.recon_index,
            "num_truth": result.truth.size,
            "num_reconstructed": int(rec.images.shape[0]),
            "unmatched_truth": ev.unmatched_truth,
        },
        "metrics": _metrics(result),
        "unavailable_metrics": dict(ev.unavailable),
        "timing": {**dict(result.timing), "total_seconds": total_seconds(result.timing)},
    }
    out: dict[str, Any] = to_jsonable(doc)
    return out


def dumps(doc: Mapping[str, Any]) -> str:
    """Strict JSON text of a report dict (``allow_nan=False``: non-finite floats must be encoded)."""
    return json.dumps(to_jsonable(doc), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_json(result: ExperimentResult, path: str | Path, *, created: datetime | None = None) -> Path:
    """Write :func:`report_dict` of ``result`` to ``path`` (UTF-8); returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(dumps(report_dict(result, created=created)), encoding="utf-8")
    logger.info("wrote JSON report %s", p)
    return p
