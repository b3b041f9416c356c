"""The one attack-and-score stage every workflow runs (an experiment, ``--dry-run``, the frontier, and
later studies, audits and Flower runs)::

    GroundTruth ─► observe(truth, threat) ─► AttackerView ─► check ─► Attack.reconstruct(view)
                ─► target (by ``Attack.target``) ─► evaluate(reconstruction, target) ─► ScoredAttack

:func:`check_attack` is the first half (what the attacker sees and whether the attack can run on it),
:func:`attack_and_score` the whole. Nothing else observes, attacks and scores: a workflow builds its
ground truth (one round, or a round inside multi-round training) and calls this stage.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from gradinv.attacks.base import Attack, ProgressFn
from gradinv.device import resolve_device
from gradinv.errors import AttackRefused
from gradinv.metrics.evaluate import Evaluation, check_required, evaluate
from gradinv.metrics.options import MetricsConfig
from gradinv.threat import ThreatModel, get_threat_model, observe
from gradinv.types import AttackerView, AttackResult, Batch, GroundTruth

__all__ = [
    "CheckedAttack",
    "References",
    "ScoredAttack",
    "attack_and_score",
    "check_attack",
    "scoring_target",
]


@dataclass(frozen=True)
class References:
    """Images from outside the clients' data that some metrics compare against: IIP's candidate
    images and RDLV's prior image (``None`` when not asked for)."""

    iip_candidates: Tensor | None = None
    rdlv_prior: Tensor | None = None


@dataclass(frozen=True)
class CheckedAttack:
    """The attacker's view under the threat model and every reason the attack cannot run on it."""

    attack: Attack
    threat: ThreatModel
    view: AttackerView
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_if_refused(self) -> None:
        if self.problems:
            raise AttackRefused(" ".join(self.problems))


@dataclass(frozen=True)
class ScoredAttack:
    """One attack on one ground truth, scored: what the attacker saw, what it produced, the images it
    was scored against (``target``, on the CPU) and the evaluation; ``seconds`` per phase
    (``observe``, ``attack`` wall time, ``evaluate``)."""

    attack: Attack
    threat: ThreatModel
    view: AttackerView
    result: AttackResult
    target: Batch
    evaluation: Evaluation
    seconds: Mapping[str, float]

    @property
    def interrupted(self) -> bool:
        return self.result.interrupted


def scoring_target(truth: GroundTruth, attack: Attack) -> Batch:
    """The images ``attack`` is scored against: the samples behind what the server observes
    (``target = "observed"``: the victim's batch, or every client's under secure aggregation) or the
    victim's batch alone (``target = "victim"``: attacks that isolate one client from an aggregate)."""
    return truth.batch if attack.target == "victim" else truth.observed_batch()


def check_attack(truth: GroundTruth, attack: Attack, threat: ThreatModel | str) -> CheckedAttack:
    """Observe ``truth`` under ``threat`` and check that ``attack`` can run on the view."""
    tm = get_threat_model(threat)
    view = observe(truth, tm)
    return CheckedAttack(attack, tm, view, tuple(attack.check(view)))


def attack_and_score(
    truth: GroundTruth,
    attack: Attack,
    threat: ThreatModel | str,
    metrics: MetricsConfig | None = None,
    *,
    references: References | None = None,
    progress: ProgressFn | None = None,
    device: str | torch.device | None = "cpu",
) -> ScoredAttack:
    """Observe, check (raising :class:`~gradinv.errors.AttackRefused` with every reason), reconstruct,
    pick the target by ``attack.target``, match and evaluate.

    An interrupted attack (Ctrl-C) is scored on its best result so far; ``ScoredAttack.interrupted``
    says so."""
    dev = resolve_device(device)
    t0 = time.perf_counter()
    checked = check_attack(truth, attack, threat)
    checked.raise_if_refused()
    check_required(metrics)  # a metric switched "on" without its weights fails before the attack
    t1 = time.perf_counter()
    result = attack.reconstruct(checked.view, progress=progress, device=dev)
    t2 = time.perf_counter()
    target = scoring_target(truth, attack)
    refs = references or References()
    ev = evaluate(
        result.reconstruction,
        target,
        metrics,
        device=dev,
        iip_candidates=refs.iip_candidates,
        rdlv_prior=refs.rdlv_prior,
    )
    t3 = time.perf_counter()
    return ScoredAttack(
        attack=attack,
        threat=checked.threat,
        view=checked.view,
        result=result,
        target=replace(target, images=target.images.detach().cpu(), labels=target.labels.cpu()),
        evaluation=ev,
        seconds={"observe": t1 - t0, "attack": t2 - t1, "evaluate": t3 - t2},
    )
