"""``gradinv audit``: the worst-case leakage of an FL engineer's own setup.

For each threat model A–H the strongest applicable attacks of the registry run on the user's model
(a registered name or an import path, :mod:`gradinv.models.user`), local training, defenses and data
sample, through the one attack-and-score pipeline, under a time budget; the result is
``audit.json`` + ``audit.html``: per threat model the best attack and its leakage, the refusals with
the pipeline's reasons, what ``gradinv vet`` catches of the malicious servers' models, and which
defenses the measured frontier says would help, at what accuracy cost.

* :mod:`gradinv.audit.spec` — :class:`AuditSpec` and the per-(threat model, attack) experiment configs;
* :mod:`gradinv.audit.run` — :func:`run_audit`;
* :mod:`gradinv.audit.results` — the frozen result types and ``audit.json``'s dict;
* :mod:`gradinv.audit.defenses` — the defenses' measured trade-offs;
* :mod:`gradinv.audit.report` — ``audit.json`` / ``audit.html``.
"""

from __future__ import annotations

from gradinv.audit.results import AttackRun, Audit, DefenseAdvice, ThreatReport, VetOutcome, audit_dict
from gradinv.audit.run import plan_audit, run_audit
from gradinv.audit.spec import CANDIDATES, AuditSpec, experiment_config

__all__ = [
    "CANDIDATES",
    "AttackRun",
    "Audit",
    "AuditSpec",
    "DefenseAdvice",
    "ThreatReport",
    "VetOutcome",
    "audit_dict",
    "experiment_config",
    "plan_audit",
    "run_audit",
]
