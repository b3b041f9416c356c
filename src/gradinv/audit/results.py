"""The audit's results as frozen dataclasses (``audit.json`` is :func:`audit_dict` of an :class:`Audit`).

Statuses of one attempt (:class:`AttackRun`):

* ``ok`` — the attack ran to its iteration count and was scored;
* ``budget`` — it ran, was stopped by the time budget and was scored on its best result so far;
* ``interrupted`` — Ctrl-C stopped it (scored on its best so far) and the audit with it;
* ``refused`` — the pipeline's threat-model or applicability check refused it (``reasons`` say why);
* ``not run`` — applicable but not started (``reasons``: the budget was spent, ``max_attacks``
  stronger attacks already ran, or a stronger one already recovered every image exactly);
* ``failed`` — it raised an error (the message is in ``reasons``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

__all__ = [
    "SCHEMA_VERSION",
    "AttackRun",
    "Audit",
    "DefenseAdvice",
    "MetricValue",
    "ThreatReport",
    "VetOutcome",
    "audit_dict",
]

SCHEMA_VERSION = 1

Status = Literal["ok", "budget", "interrupted", "refused", "not run", "failed"]
#: statuses that produced a scored reconstruction
SCORED = ("ok", "budget", "interrupted")


@dataclass(frozen=True)
class MetricValue:
    """One metric of a scored attack: the registry's title, the summary (mean; a count for
    ``exact``) and the per-image values."""

    name: str
    title: str
    mean: float
    per_image: tuple[float, ...]
    higher_is_better: bool


@dataclass(frozen=True)
class VetOutcome:
    """What ``gradinv vet`` says about the model the victim received from the malicious server."""

    flagged: bool
    kinds: tuple[str, ...]
    findings: tuple[str, ...]
    checks: tuple[str, ...]
    skipped: Mapping[str, str] = field(default_factory=dict)
    error: str = ""


@dataclass(frozen=True)
class AttackRun:
    """One attack under one threat model (see the module docstring for ``status``)."""

    threat: str
    attack: str
    title: str
    family: str
    active: bool
    status: Status
    reasons: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    config: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, MetricValue] = field(default_factory=dict)
    unavailable: Mapping[str, str] = field(default_factory=dict)
    num_images: int = 0
    labels_true: tuple[int, ...] = ()
    labels_recovered: tuple[int, ...] | None = None
    label_method: str = ""
    iterations: int = 0
    seconds: float = 0.0
    vet: VetOutcome | None = None
    image: str | None = None  # the PNG's file name in the audit folder (images/...)

    @property
    def scored(self) -> bool:
        return self.status in SCORED

    def mean(self, name: str) -> float:
        m = self.metrics.get(name)
        return m.mean if m is not None else math.nan

    @property
    def exact(self) -> int:
        v = self.mean("exact")
        return int(v) if math.isfinite(v) else 0


@dataclass(frozen=True)
class ThreatReport:
    """Every attempt under one threat model and the best scored one (highest PSNR, then most exact
    recoveries); ``budget_seconds`` is the share it was given, ``seconds`` what it used."""

    id: str
    name: str
    grants: tuple[str, ...]
    runs: tuple[AttackRun, ...] = ()
    budget_seconds: float = 0.0
    seconds: float = 0.0
    done: bool = False

    @property
    def best(self) -> AttackRun | None:
        scored = [r for r in self.runs if r.scored and "psnr" in r.metrics]
        if not scored:
            return None

        def key(r: AttackRun) -> tuple[float, int]:
            p = r.mean("psnr")
            return (p if not math.isnan(p) else -math.inf, r.exact)

        return max(scored, key=key)

    def with_run(self, run: AttackRun) -> ThreatReport:
        return replace(self, runs=(*self.runs, run))


@dataclass(frozen=True)
class DefenseAdvice:
    """A defense's measured trade-off, from the shipped numbers or a study folder — measured on
    ``measured_on``, not on the audited setup."""

    defense: str
    setting: str
    leakage: str
    utility: str
    verdict: str
    measured_on: str
    source: str
    command: str = ""


@dataclass(frozen=True)
class Audit:
    """The whole audit; ``partial`` until every threat model is done (Ctrl-C leaves it partial)."""

    setup: Mapping[str, Any]
    budget_seconds: float
    threats: tuple[ThreatReport, ...]
    defenses: tuple[DefenseAdvice, ...] = ()
    defense_notes: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    partial: bool = True
    interrupted: bool = False
    seconds: float = 0.0
    created: str = ""
    version: str = ""

    def threat(self, tid: str) -> ThreatReport:
        return next(t for t in self.threats if t.id == tid)


def _run_dict(run: AttackRun) -> dict[str, Any]:
    from gradinv.report.json_report import to_jsonable

    d: dict[str, Any] = to_jsonable(run)
    d["label_accuracy"] = d["metrics"].get("label_accuracy", {}).get("mean")
    return d


def audit_dict(audit: Audit) -> dict[str, Any]:
    """``audit.json``: the audit as JSON types, with each threat model's best attack named and the
    headline numbers (PSNR, SSIM, ST-LPIPS/LPIPS, label accuracy, exact recoveries) repeated there."""
    from gradinv.report.json_report import to_jsonable

    threats = []
    for t in audit.threats:
        best = t.best
        threats.append(
            {
                "id": t.id,
                "name": t.name,
                "grants": list(t.grants),
                "done": t.done,
                "budget_seconds": to_jsonable(t.budget_seconds),
                "seconds": to_jsonable(t.seconds),
                "best": None
                if best is None
                else {
                    "attack": best.attack,
                    "title": best.title,
                    "status": best.status,
                    **{
                        k: to_jsonable(best.mean(k)) if k in best.metrics else None
                        for k in ("psnr", "ssim", "lpips", "stlpips", "label_accuracy", "exact")
                    },
                    "num_images": best.num_images,
                    "image": best.image,
                },
                "runs": [_run_dict(r) for r in t.runs],
            }
        )
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "gradinv-audit",
        "gradinv_version": audit.version,
        "created": audit.created,
        "partial": audit.partial,
        "interrupted": audit.interrupted,
        "seconds": to_jsonable(audit.seconds),
        "budget_seconds": to_jsonable(audit.budget_seconds),
        "setup": to_jsonable(audit.setup),
        "threat_models": threats,
        "refused": [
            {"threat": r.threat, "attack": r.attack, "reasons": list(r.reasons)}
            for t in audit.threats
            for r in t.runs
            if r.status == "refused"
        ],
        "defenses": to_jsonable(audit.defenses),
        "defense_notes": list(audit.defense_notes),
        "notes": list(audit.notes),
    }
