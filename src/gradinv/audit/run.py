"""Running an audit: for each threat model, the strongest applicable attacks under a time budget.

Every attempt goes through the one pipeline: the user's scenario is built once
(:func:`gradinv.experiment.build_scenario`; clients train on copies of its model, so it is the same
for every attempt), each attempt's round is :func:`gradinv.experiment.simulate` under the attempt's
threat model and attack (an active attack crafts the models the server sends, and a threat model
without active manipulation refuses it there), :func:`gradinv.pipeline.check_attack` gives every
reason a passive attack cannot run, and :func:`gradinv.pipeline.attack_and_score` runs and scores
it. Refusals are the pipeline's own reasons, recorded as they come.

The budget: each threat model still to run gets an equal share of the time left; within it, the
applicable candidates run strongest first, each until its iteration count or the threat model's
deadline (the attack's progress callback raises a :class:`KeyboardInterrupt` subclass past the
deadline; attacks stop on it and return their best result so far, marked ``budget``). A candidate
left when the time is spent is recorded as ``not run`` with the reason. Ctrl-C stops the audit; what
ran so far is returned (``interrupted``, ``partial``) and, with ``out_dir``, written after every
attempt.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gradinv.attacks.base import Attack, ProgressFn
from gradinv.audit.results import AttackRun, Audit, MetricValue, ThreatReport, VetOutcome
from gradinv.audit.spec import AuditSpec, experiment_config
from gradinv.errors import AttackRefused, GradinvError

__all__ = ["BudgetStop", "plan_audit", "run_audit"]

logger = logging.getLogger(__name__)

#: ``progress_for(description)``: a context manager giving an attack's progress callback (or None)
ProgressFactory = Callable[[str], AbstractContextManager[ProgressFn | None]]
#: called with the audit after every attempt (``event``: ``"start"``, ``"run"``, ``"done"``)
Listener = Callable[[Audit, str], None]


class BudgetStop(KeyboardInterrupt):
    """Raised from an attack's progress callback when its time is up; attacks catch
    :class:`KeyboardInterrupt` and return their best result so far."""


@dataclass
class _Deadline:
    at: float
    fired: bool = False

    def wrap(self, inner: ProgressFn | None) -> ProgressFn:
        def progress(step: int, total: int, loss: float) -> None:
            if inner is not None:
                inner(step, total, loss)
            if time.monotonic() >= self.at and step < total:
                self.fired = True
                raise BudgetStop

        return progress


def _setup(spec: AuditSpec, sc: Any) -> dict[str, Any]:
    from gradinv.config import to_nested
    from gradinv.models import count_parameters

    cfg = spec.base
    b = sc.batches[cfg.server.victim]
    tr = cfg.training
    return {
        "model": cfg.model.name,
        "checkpoint": cfg.model.checkpoint,
        "model_class": type(sc.model).__name__,
        "model_parameters": count_parameters(sc.model),
        "num_classes": sc.num_classes,
        "data": cfg.data.source,
        "dataset": sc.dataset.name,
        "image_shape": list(b.input_shape),
        "num_images": b.size,
        "normalization": sc.normalization,
        "training": {
            "protocol": tr.protocol,
            "epochs": tr.epochs,
            "batch_size": tr.batch_size,
            "lr": tr.lr,
        },
        "clients": cfg.server.num_clients,
        "aggregation": cfg.server.aggregation,
        "defenses": [d.name for d in sc.defenses],
        "pretrain_rounds": cfg.pretrain.rounds,
        "config": to_nested(replace(cfg, threat=type(cfg.threat)(), attack=type(cfg.attack)())),
    }


def _vet(truth: Any) -> VetOutcome:
    """``gradinv vet`` on the model the victim received, as the victim could run it: against the
    previous global model, the other clients' models (when the server sent several), its own data
    and the update it would send."""
    from gradinv.vetting import vet

    victim = truth.victim
    others = ()
    if truth.client_models is not None:
        others = tuple(m for i, m in enumerate(truth.client_models) if i != victim)
    try:
        report = vet(
            truth.victim_model,
            previous=truth.model,
            others=others,
            data=truth.batch.model_input().detach().cpu(),
            update=truth.victim_update.update,
        )
    except GradinvError as err:
        return VetOutcome(False, (), (), (), {}, error=str(err))
    return VetOutcome(
        flagged=not report.clean,
        kinds=tuple(sorted(report.kinds())),
        findings=tuple(f"{f.kind}: {f.evidence}" for f in report.findings),
        checks=tuple(report.checks),
        skipped=dict(report.skipped),
    )


def _scored_run(base: AttackRun, scored: Any, status: str, vet: VetOutcome | None) -> AttackRun:
    ev, res = scored.evaluation, scored.result
    metrics = {
        name: MetricValue(
            name, m.title, float(m.mean), tuple(float(v) for v in m.per_image), m.higher_is_better
        )
        for name, m in ev.metrics.items()
    }
    rec = res.reconstruction
    return replace(
        base,
        status=status,  # type: ignore[arg-type]
        metrics=metrics,
        unavailable=dict(ev.unavailable),
        num_images=int(scored.target.size),
        labels_true=tuple(int(v) for v in scored.target.labels.tolist()),
        labels_recovered=tuple(int(v) for v in rec.labels.tolist()) if rec.labels is not None else None,
        label_method=rec.label_method or "",
        iterations=int(res.iterations),
        seconds=float(scored.seconds["observe"] + scored.seconds["attack"] + scored.seconds["evaluate"]),
        vet=vet,
        notes=tuple(res.notes),
    )


def _all_exact(run: AttackRun) -> bool:
    return run.scored and run.num_images > 0 and run.exact >= run.num_images


@dataclass(frozen=True)
class _Attempt:
    """One candidate under one threat model, checked: ``truth`` is the round to attack, or None
    with the pipeline's ``reasons`` for refusing it."""

    attack: Attack
    config: Any
    truth: Any
    reasons: tuple[str, ...] = ()


def _check(sc: Any, spec: AuditSpec, threat: Any, name: str, passive: dict[str, Any]) -> _Attempt:
    """The pipeline's checks of ``name`` under ``threat``: the malicious server refuses an active
    attack the threat model does not allow; :func:`~gradinv.pipeline.check_attack` gives every reason
    an attack cannot run on the view. Passive attacks share one simulated round (``passive``)."""
    from gradinv.experiment import simulate
    from gradinv.pipeline import check_attack

    cfg = experiment_config(spec, threat.id, name)
    attack: Attack = cfg.attack.build()
    try:
        if attack.active:
            truth = simulate(replace(sc, config=cfg), threat=threat, attack=attack)
        else:
            if "truth" not in passive:
                passive["truth"] = simulate(replace(sc, config=cfg), threat=threat, attack=attack)
            truth = passive["truth"]
        checked = check_attack(truth, attack, threat)
    except AttackRefused as err:
        return _Attempt(attack, cfg, None, (str(err),))
    if not checked.ok:
        return _Attempt(attack, cfg, None, tuple(checked.problems))
    return _Attempt(attack, cfg, truth)


def plan_audit(spec: AuditSpec) -> dict[str, list[tuple[str, tuple[str, ...]]]]:
    """What :func:`run_audit` would try, without attacking: per threat model, each candidate and the
    reasons it would be refused (empty: it passes the checks). The scenario is built on the CPU
    without pretraining (the shapes, and so the checks, of the trained model)."""
    from gradinv.experiment import build_scenario
    from gradinv.threat import get_threat_model

    sc = build_scenario(spec.base, device="cpu", pretrain=False)
    out: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for tid in spec.threats:
        threat = get_threat_model(tid)
        passive: dict[str, Any] = {}
        out[threat.id] = [
            (a.attack.name, a.reasons)
            for a in (_check(sc, spec, threat, n, passive) for n in spec.candidates)
        ]
    return out


def run_audit(
    spec: AuditSpec,
    *,
    out_dir: str | Path | None = None,
    progress_for: ProgressFactory | None = None,
    listener: Listener | None = None,
) -> Audit:
    """Run the audit ``spec`` (see the module docstring); with ``out_dir``, ``audit.json``,
    ``audit.html`` and the images are written after every attempt (marked partial until the end)."""
    from gradinv import __version__
    from gradinv.audit.defenses import defense_advice
    from gradinv.audit.report import write_audit
    from gradinv.config import to_nested
    from gradinv.device import resolve_device
    from gradinv.experiment import build_scenario
    from gradinv.pipeline import attack_and_score
    from gradinv.threat import get_threat_model

    started = time.monotonic()
    deadline_all = started + spec.budget_seconds
    device = resolve_device(spec.device if spec.device != "auto" else spec.base.run.device)
    advice, advice_notes = defense_advice(spec.frontier)  # a bad --frontier fails before any work
    sc = build_scenario(spec.base, device=device)  # bad model, checkpoint or data: one error, here
    threats = [get_threat_model(t) for t in spec.threats]
    images: dict[str, bytes] = {}
    notes = [
        "Each attack is an ordinary experiment on your setup; its config is recorded, so "
        "`gradinv attack --config FILE` with it reproduces the run (without the audit's time limit).",
        f"Attack iterations are capped for the audit (see each run's config); a longer run can leak more. "
        f"Budget: {spec.budget_minutes:g} min, split over the threat models still to run.",
    ]
    if spec.base.metrics.iip or spec.base.metrics.rdlv:
        notes.append(
            "IIP and RDLV are not computed by the audit (they need reference images it does not draw)."
        )
    audit = Audit(
        setup=_setup(spec, sc),
        budget_seconds=spec.budget_seconds,
        threats=tuple(ThreatReport(t.id, t.name, tuple(sorted(k.value for k in t.grants))) for t in threats),
        defenses=advice,
        defense_notes=advice_notes,
        notes=tuple(notes),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        version=__version__,
    )

    def publish(event: str) -> None:
        nonlocal audit
        audit = replace(audit, seconds=time.monotonic() - started)
        if out_dir is not None:
            write_audit(audit, out_dir, images=images)
        if listener is not None:
            listener(audit, event)

    def update(tid: str, **changes: Any) -> None:
        nonlocal audit
        audit = replace(
            audit, threats=tuple(replace(t, **changes) if t.id == tid else t for t in audit.threats)
        )

    def add(tid: str, run: AttackRun) -> None:
        nonlocal audit
        audit = replace(audit, threats=tuple(t.with_run(run) if t.id == tid else t for t in audit.threats))

    publish("start")
    try:
        for k, threat in enumerate(threats):
            t0 = time.monotonic()
            share = max(0.0, deadline_all - t0) / (len(threats) - k)
            deadline = t0 + share
            update(threat.id, budget_seconds=share)
            passive: dict[str, Any] = {}
            ran = 0
            stop_reason = ""
            for name in spec.candidates:
                attempt = _check(sc, spec, threat, name, passive)
                attack, cfg, truth = attempt.attack, attempt.config, attempt.truth
                base = AttackRun(
                    threat=threat.id,
                    attack=attack.name,
                    title=attack.title,
                    family=attack.family,
                    active=attack.active,
                    status="refused",
                    config=to_nested(cfg),
                )
                if truth is None:
                    add(threat.id, replace(base, reasons=attempt.reasons))
                    continue
                if not stop_reason:
                    if ran >= spec.max_attacks:
                        stop_reason = (
                            f"{spec.max_attacks} stronger applicable attacks already ran (--max-attacks)"
                        )
                    elif time.monotonic() >= deadline:
                        stop_reason = (
                            f"budget: threat model {threat.id}'s share ({share:.0f} s) was spent "
                            "before it could start"
                        )
                if stop_reason:
                    add(threat.id, replace(base, status="not run", reasons=(stop_reason,)))
                    continue
                limit = _Deadline(deadline)
                ran += 1
                ctx = progress_for(f"{threat.id} {attack.name}") if progress_for else nullcontext(None)
                try:
                    with ctx as bar:
                        scored = attack_and_score(
                            truth, attack, threat, cfg.metrics, progress=limit.wrap(bar), device=device
                        )
                except BudgetStop:  # an attack that does not stop on Ctrl-C by itself
                    add(
                        threat.id,
                        replace(base, status="not run", reasons=("budget: stopped before a result",)),
                    )
                    publish("run")
                    continue
                except AttackRefused as err:  # a check only the attack itself can make (e.g. iDLG's B = 1)
                    add(threat.id, replace(base, reasons=(str(err),)))
                    publish("run")
                    continue
                except (GradinvError, RuntimeError) as err:
                    logger.warning("%s under %s failed: %s", attack.name, threat.id, err)
                    add(threat.id, replace(base, status="failed", reasons=(f"{type(err).__name__}: {err}",)))
                    publish("run")
                    continue
                interrupted_by_user = scored.interrupted and not limit.fired
                status = "interrupted" if interrupted_by_user else "budget" if limit.fired else "ok"
                vet = _vet(truth) if attack.active and spec.vet else None
                run = _scored_run(base, scored, status, vet)
                key = f"{threat.id}-{attack.name}"
                try:
                    images[key] = _grid_png(scored)
                    run = replace(run, image=f"images/{key}.png")
                except Exception as err:  # an image that cannot be drawn never costs the numbers
                    logger.warning("could not draw %s: %s", key, err)
                add(threat.id, run)
                update(threat.id, seconds=time.monotonic() - t0)
                publish("run")
                if interrupted_by_user:
                    raise KeyboardInterrupt
                if _all_exact(run):
                    stop_reason = f"{attack.title} already recovered every image exactly"
            update(threat.id, seconds=time.monotonic() - t0, done=True)
            publish("threat")
    except KeyboardInterrupt:
        audit = replace(audit, interrupted=True, partial=True)
        publish("interrupted")
        return audit
    audit = replace(audit, partial=False)
    publish("done")
    return audit


def _grid_png(scored: Any) -> bytes:
    """Ground truth above the matched reconstruction, as a PNG (the report's grid)."""
    import io
    from typing import cast

    from gradinv.report.grid import aligned_images, image_grid, reconstruction_captions

    view = cast(Any, _Scored(scored.target, scored.evaluation))
    truth, bottom = aligned_images(view)
    top_c, bottom_c = reconstruction_captions(view)
    img = image_grid(
        [truth, bottom], row_titles=["ground truth", "reconstruction"], captions=[top_c, bottom_c]
    )
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@dataclass(frozen=True)
class _Scored:
    """What the report's grid helpers read of a result: the scored images and the evaluation."""

    truth: Any
    evaluation: Any
