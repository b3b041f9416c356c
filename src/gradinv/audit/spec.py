"""What an audit runs: the user's setup (one :class:`~gradinv.config.ExperimentConfig` without a
threat model or attack), the threat models, the candidate attacks per threat model and the budget.

Every attack the audit runs is an ordinary experiment: :func:`experiment_config` is the user's setup
with ``[threat] model`` and ``[attack]`` set, so ``gradinv attack --config`` on the config an audit
records reproduces the run.

Candidates, strongest first (:data:`CANDIDATES`): the malicious-server attacks (exact recovery from
a crafted model; refused by the pipeline where the threat model grants no active manipulation),
then the analytic passive attacks (exact where the architecture allows them), then the optimisation
attacks. Iteration counts are capped for the audit (:data:`AUDIT_PARAMS`); ``attack_params`` in the
spec override them per attack.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gradinv._checks import check_int
from gradinv.config import AttackSpec, ExperimentConfig, ThreatConfig
from gradinv.errors import ConfigError

__all__ = [
    "ACTIVE_CANDIDATES",
    "AUDIT_PARAMS",
    "CANDIDATES",
    "GENERATIVE_CANDIDATES",
    "PASSIVE_CANDIDATES",
    "THREAT_IDS",
    "AuditSpec",
    "experiment_config",
    "with_generative",
]

#: the SoK's threat models, in order
THREAT_IDS = ("A", "B", "C", "D", "E", "F", "G", "H")

#: malicious-server attacks, strongest first (they need active manipulation: threat models F–H)
ACTIVE_CANDIDATES = ("robbing-the-fed", "trap-weights", "inconsistent-models", "sybil-ddp", "fishing")
#: passive attacks, strongest first: analytic (exact where they apply), then optimisation
PASSIVE_CANDIDATES = (
    "fc-bias",
    "rgap",
    "spear",
    "idlg",
    "fedavg-leakage",
    "gradinversion",
    "inverting-gradients",
    "dlg",
)
CANDIDATES = ACTIVE_CANDIDATES + PASSIVE_CANDIDATES
#: generative-prior attacks (surrogate knowledge: threat models D–H), candidates only when the audit
#: is given a generator for the user's data (``--generator``); they run after the analytic attacks
GENERATIVE_CANDIDATES = ("gias", "ggl")

#: the audit's parameters per attack (iterations capped so that several attacks fit a small budget)
AUDIT_PARAMS: Mapping[str, Mapping[str, Any]] = {
    "idlg": {"iterations": 60},
    "dlg": {"iterations": 60, "restarts": 1},
    "inverting-gradients": {"iterations": 600},
    "fedavg-leakage": {"iterations": 300},
    "gradinversion": {"iterations": 400},
    "fishing": {"iterations": 300},
    "gias": {"iterations": 300, "restarts": 2, "finetune_iterations": 100},
    "ggl": {"iterations": 60, "population": 24},
}


def with_generative(candidates: tuple[str, ...]) -> tuple[str, ...]:
    """``candidates`` with the generative attacks after the last analytic one (``fc-bias``, ``rgap``,
    ``spear``), unless already listed."""
    extra = tuple(a for a in GENERATIVE_CANDIDATES if a not in candidates)
    analytic = [i for i, a in enumerate(candidates) if a in ("fc-bias", "rgap", "spear")]
    cut = analytic[-1] + 1 if analytic else 0
    return (*candidates[:cut], *extra, *candidates[cut:])


@dataclass(frozen=True)
class AuditSpec:
    """One audit.

    ``base``: the user's setup (data sample, model, checkpoint, local training, clients, defenses,
    metrics; its ``[threat]`` and ``[attack]`` are ignored). ``budget_minutes``: wall-clock budget of
    the attacks, split evenly over the threat models still to run (time a threat model leaves unused
    goes to the next). ``max_attacks``: applicable attacks run per threat model (the strongest first).
    ``attack_params``: per attack name, parameters that replace the audit's defaults.
    ``frontier``: a study folder (``gradinv study run … --out DIR``) whose frontier to read; default:
    the numbers shipped with gradinv. ``vet``: vet the crafted model of every active attack.
    ``generator``: the image prior of the generative attacks (a registered generator or a file of
    ``gradinv train-generator``; ``generator_weights`` its weight file): given, GIAS and GGL join the
    candidates (:func:`with_generative`) for the threat models granting surrogate data."""

    base: ExperimentConfig
    budget_minutes: float = 5.0
    threats: tuple[str, ...] = THREAT_IDS
    candidates: tuple[str, ...] = CANDIDATES
    max_attacks: int = 3
    attack_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    frontier: Path | None = None
    vet: bool = True
    device: str = "auto"
    generator: str | None = None
    generator_weights: str | None = None

    def __post_init__(self) -> None:
        b = self.budget_minutes
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not b > 0 or b != b or b == float("inf"):
            raise ConfigError(
                f"Expected `budget` to be a positive number of minutes, but got {b!r}. Use e.g. --budget 5."
            )
        check_int("max_attacks", self.max_attacks, minimum=1, fix="Run at least one attack per threat model.")
        if not self.threats:
            raise ConfigError("Expected at least one threat model to audit, but got none. Use e.g. A,B,F.")
        from gradinv.attacks import ATTACKS
        from gradinv.threat import get_threat_model

        for t in self.threats:
            get_threat_model(t)
        for name in (*self.candidates, *self.attack_params):
            ATTACKS.get(name)

    @property
    def budget_seconds(self) -> float:
        return float(self.budget_minutes) * 60.0

    def params(self, attack: str) -> dict[str, Any]:
        """The parameters the audit runs ``attack`` with (the generator for the generative attacks)."""
        prior: dict[str, Any] = {}
        if self.generator is not None and attack in GENERATIVE_CANDIDATES:
            prior = {"generator": self.generator}
            if self.generator_weights is not None:
                prior["generator_weights"] = self.generator_weights
        return {**AUDIT_PARAMS.get(attack, {}), **prior, **dict(self.attack_params.get(attack, {}))}


def experiment_config(spec: AuditSpec, threat: str, attack: str) -> ExperimentConfig:
    """The experiment of ``attack`` under ``threat`` on the user's setup (validated like a config file)."""
    from gradinv.attacks import ATTACKS
    from gradinv.settings import from_mapping

    cls = ATTACKS.get(attack)
    params = spec.params(attack)
    from_mapping(cls.config_cls, params, section="attack", context=f"for attack {cls.name!r}")  # early check
    return replace(spec.base, threat=ThreatConfig(model=threat), attack=AttackSpec(cls.name, params))
