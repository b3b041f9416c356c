"""What a vetting run reports: findings with evidence, and the report that collects them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Finding", "Severity", "VetReport"]

#: ``high``: a pattern honest training does not produce (e.g. exactly zero classifier rows);
#: ``medium``: strongly suspicious but possible in unusual honest set-ups (e.g. a localised change).
Severity = Literal["high", "medium"]


@dataclass(frozen=True)
class Finding:
    """One suspicious observation: its ``kind`` (a stable identifier), ``evidence`` (one or two
    sentences a user can act on), the parameter names involved and the numbers behind it."""

    severity: Severity
    kind: str
    evidence: str
    parameters: tuple[str, ...] = ()
    numbers: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "kind": self.kind,
            "evidence": self.evidence,
            "parameters": list(self.parameters),
            "numbers": {k: (v if math.isfinite(v) else str(v)) for k, v in self.numbers.items()},
        }


@dataclass(frozen=True)
class VetReport:
    """All findings of one vetting run, the checks that ran and those skipped (with the reason)."""

    findings: tuple[Finding, ...]
    checks: tuple[str, ...]
    skipped: Mapping[str, str] = field(default_factory=dict)
    summary: Mapping[str, Any] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        """No findings."""
        return not self.findings

    @property
    def exit_code(self) -> int:
        """0 when clean, 1 with findings (the ``gradinv vet`` convention; 2 is bad input)."""
        return 0 if self.clean else 1

    def kinds(self) -> set[str]:
        return {f.kind for f in self.findings}

    def to_dict(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "findings": [f.to_dict() for f in self.findings],
            "checks": list(self.checks),
            "skipped": dict(self.skipped),
            "summary": dict(self.summary),
        }

    def format(self) -> str:
        """A human-readable report."""
        lines = []
        head = ", ".join(f"{k}: {v}" for k, v in self.summary.items())
        lines.append(f"model: {head}" if head else "model")
        lines.append(f"checks: {', '.join(self.checks)}")
        for name, why in self.skipped.items():
            lines.append(f"skipped {name}: {why}")
        if self.clean:
            lines.append("no findings")
        for f in self.findings:
            lines.append(f"[{f.severity}] {f.kind}: {f.evidence}")
        return "\n".join(lines)
