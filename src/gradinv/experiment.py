"""The end-to-end data path of one experiment::

    config ─► Scenario (data, victim batch, other clients, model)
           ─► run_round ─► GroundTruth ─► observe(truth, threat) ─► AttackerView
           ─► Attack.reconstruct(view) ─► evaluate(reconstruction, truth) ─► ExperimentResult

Only :func:`run_experiment` holds both the truth and the attack's output; the attack sees the view.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from gradinv.attacks.base import Attack, ProgressFn
from gradinv.config import ExperimentConfig
from gradinv.data import ImageDataset, check_labels, get_normalization, load_source, select_indices
from gradinv.defenses import Defense, DefenseChain
from gradinv.device import resolve_device
from gradinv.errors import AttackRefused, ConfigError
from gradinv.fl import AGGREGATORS, Aggregator, ClientHooks, run_round
from gradinv.fl.secure_aggregation import SybilClient
from gradinv.metrics.evaluate import Evaluation, evaluate
from gradinv.models import MODELS, build_model, count_parameters
from gradinv.threat import Knowledge, ThreatModel, observe, observe_server
from gradinv.types import AttackerView, AttackResult, Batch, GroundTruth

__all__ = [
    "ExperimentResult",
    "Scenario",
    "build_scenario",
    "describe_view",
    "run_experiment",
    "simulate",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scenario:
    """The materialised scenario: data, each client's batch, the global model, local training."""

    config: ExperimentConfig
    dataset: ImageDataset
    batches: tuple[Batch, ...]
    client_indices: tuple[tuple[int, ...], ...]
    model: nn.Module
    num_classes: int
    normalization: str
    defenses: tuple[Defense, ...] = ()


def _victim_count(cfg: ExperimentConfig) -> int:
    d = cfg.data
    if d.indices is not None:
        if d.num_images is not None and d.num_images != len(d.indices):
            raise ConfigError(
                f"Expected `num_images` to match the {len(d.indices)} explicit `indices`, "
                f"but got {d.num_images}. Give one of them."
            )
        return len(d.indices)
    if d.num_images is not None:
        return d.num_images
    return cfg.training.batch_size or 1


def build_scenario(cfg: ExperimentConfig, *, device: torch.device | str = "cpu") -> Scenario:
    """Load the data, pick every client's samples, build the model (nothing trained yet)."""
    dev = resolve_device(device)
    ds = load_source(cfg.data.source, download=cfg.data.download)
    spec = MODELS.get(cfg.model.name)
    num_classes = cfg.model.num_classes or ds.num_classes
    channels = cfg.data.channels or ds.channels
    norm_name = spec.default_normalization if cfg.data.normalization == "auto" else cfg.data.normalization
    normalization = get_normalization(norm_name, channels)

    n_victim = _victim_count(cfg)
    victim_idx = select_indices(
        ds.labels,
        num_images=None if cfg.data.indices is not None else n_victim,
        indices=cfg.data.indices,
        seed=cfg.data.seed,
        composition=cfg.data.composition,
        duplicates=cfg.data.duplicates,
    )
    clients: list[list[int]] = []
    used = list(victim_idx)
    per_other = cfg.server.images_per_client or len(victim_idx)
    for k in range(cfg.server.num_clients):
        if k == cfg.server.victim:
            clients.append(list(victim_idx))
            continue
        idx = select_indices(ds.labels, num_images=per_other, seed=cfg.data.seed + 1000 + k, exclude=used)
        used += idx
        clients.append(idx)

    batches = []
    for idx in clients:
        check_labels(ds.labels[np.asarray(idx)], num_classes)
        b = ds.to_batch(idx, image_size=cfg.data.image_size, channels=channels, normalization=normalization)
        batches.append(b.to(dev))
    c, h, w = batches[0].input_shape
    model = build_model(
        cfg.model.name,
        num_classes=num_classes,
        in_channels=c,
        image_size=(h, w),
        init=cfg.model.init,
        seed=cfg.model.seed,
        checkpoint=cfg.model.checkpoint,
        **dict(cfg.model.options),
    ).to(dev)
    defenses = tuple(spec.build() for spec in cfg.defenses)
    for d in defenses:  # model-stage defenses (e.g. PRECODE) change the model every party uses
        model = d.transform_model(model).to(dev)
    return Scenario(
        config=cfg,
        dataset=ds,
        batches=tuple(batches),
        client_indices=tuple(tuple(i) for i in clients),
        model=model,
        num_classes=num_classes,
        normalization=normalization.name,
        defenses=defenses,
    )


def _surrogate(sc: Scenario) -> ImageDataset | None:
    n = sc.config.data.surrogate_images
    if n <= 0:
        return None
    used = [i for idx in sc.client_indices for i in idx]
    rest = sc.dataset.exclude(used)
    if len(rest) == 0:
        return None
    rng = np.random.default_rng(sc.config.data.seed + 7)
    pick = rng.choice(len(rest), size=min(n, len(rest)), replace=False)
    return rest.subset(np.sort(pick))


def _aggregator(cfg: ExperimentConfig) -> Aggregator:
    cls = AGGREGATORS.get(cfg.server.aggregation)
    try:
        return cls(**dict(cfg.server.aggregation_options))
    except TypeError as e:
        raise ConfigError(
            f"Invalid `aggregation_options` for aggregation {cfg.server.aggregation!r}: {e}."
        ) from None


def simulate(sc: Scenario, *, threat: ThreatModel | None = None, attack: Attack | None = None) -> GroundTruth:
    """Run the FL round. An active ``attack`` first crafts the models the server sends (one per
    client) from what ``threat`` lets the server know, and may name sybil clients it controls
    (:meth:`Attack.sybil_clients`: they send zero updates and add no DP noise). Client-side defenses
    run on every other client.
    The surrogate set is materialised only when the threat model grants it."""
    cfg = sc.config
    surrogate = _surrogate(sc) if threat is not None and threat.allows(Knowledge.SURROGATE_DATA) else None
    client_models: tuple[nn.Module, ...] | None = None
    sybils: frozenset[int] = frozenset()
    if attack is not None and attack.active:
        tm = threat or cfg.threat.resolve()
        problems = attack.check_threat(tm)
        if problems:
            raise AttackRefused(" ".join(problems))
        knowledge = observe_server(
            sc.model,
            tm,
            batches=sc.batches,
            training=cfg.training,
            num_classes=sc.num_classes,
            victim=cfg.server.victim,
            surrogate=surrogate,
        )
        client_models = tuple(attack.craft(knowledge))
        if len(client_models) != len(sc.batches):
            raise AttackRefused(
                f"{attack.title} crafted {len(client_models)} models for {len(sc.batches)} clients."
            )
        sybils = frozenset(attack.sybil_clients(knowledge))
        if not sybils <= set(range(len(sc.batches))) - {cfg.server.victim}:
            raise AttackRefused(
                f"{attack.title} chose sybil clients {sorted(sybils)}, but expected ids among the "
                f"{len(sc.batches)} clients other than the victim ({cfg.server.victim})."
            )
    hooks: list[ClientHooks] | None = None
    if sc.defenses or sybils:  # sybils follow the server, not the protocol's client-side defenses
        hooks = [
            SybilClient() if k in sybils else (DefenseChain.of(sc.defenses) if sc.defenses else ClientHooks())
            for k in range(len(sc.batches))
        ]
    rnd = run_round(
        client_models or sc.model, sc.batches, cfg.training, aggregator=_aggregator(cfg), hooks=hooks
    )
    return GroundTruth(
        model=sc.model,
        batches=sc.batches,
        training=cfg.training,
        round=rnd,
        num_classes=sc.num_classes,
        victim=cfg.server.victim,
        surrogate=surrogate,
        client_models=client_models,
    )


def describe_view(view: AttackerView) -> dict[str, Any]:
    """What the attacker could see (for reports): flags granted and the view's non-empty fields."""
    return {
        "threat_model": view.threat.id,
        "granted": sorted(k.value for k in view.threat.grants),
        "update_kind": view.update.kind.value,
        "aggregated_over": view.aggregated_over,
        "num_samples": view.num_samples,
        "input_shape": list(view.input_shape) if view.input_shape else None,
        "num_classes": view.num_classes,
        "normalization": view.normalization.name if view.normalization else None,
        "training_details": view.training is not None,
        "surrogate_images": len(view.surrogate) if view.surrogate is not None else 0,
        "bn_statistics": len(view.bn_statistics) if view.bn_statistics is not None else 0,
        "labels_known": view.label_counts is not None,
    }


def _reference_images(
    sc: Scenario, target: Batch, cfg: ExperimentConfig
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """IIP candidates (other images of the source, up to ``iip_candidates``, prepared like the
    batch) and the RDLV prior image, when the metrics config asks for them."""
    from gradinv.metrics import prior_image

    m = cfg.metrics
    if not (m.iip or m.rdlv):
        return None, None
    used = [i for idx in sc.client_indices for i in idx]
    rest = sc.dataset.exclude(used)
    rng = np.random.default_rng(cfg.data.seed + 11)
    take = np.sort(rng.choice(len(rest), size=min(m.iip_candidates, len(rest)), replace=False))
    c, h, w = target.input_shape
    others = rest.to_batch(take, image_size=h if h == w else None, channels=c).images.cpu()
    candidates = others if m.iip else None
    prior = None
    if m.rdlv:
        prior = prior_image(m.rdlv_prior, images=others, shape=(c, h, w))
    return candidates, prior


@dataclass(frozen=True)
class ExperimentResult:
    """Everything a report needs about one experiment."""

    config: ExperimentConfig
    threat: ThreatModel
    attack: Attack
    truth: Batch
    view: Mapping[str, Any]
    result: AttackResult
    evaluation: Evaluation
    timing: Mapping[str, float]
    scenario: Mapping[str, Any]


def run_experiment(
    cfg: ExperimentConfig,
    *,
    progress: ProgressFn | None = None,
    device: str | torch.device | None = None,
) -> ExperimentResult:
    """Build the scenario, run the round, observe under the threat model, attack, and evaluate.

    The attack is checked against the threat model before anything expensive runs."""
    dev = resolve_device(device or cfg.run.device)
    threat = cfg.threat.resolve()
    attack = cfg.attack.build()
    t0 = time.perf_counter()
    sc = build_scenario(cfg, device=dev)
    t1 = time.perf_counter()
    truth = simulate(sc, threat=threat, attack=attack)
    t2 = time.perf_counter()
    view = observe(truth, threat)
    problems = attack.check(view)
    if problems:
        raise AttackRefused(" ".join(problems))
    t3 = time.perf_counter()
    result = attack.reconstruct(view, progress=progress, device=dev)
    t4 = time.perf_counter()
    target = truth.batch if attack.target == "victim" else truth.observed_batch()
    iip_candidates, rdlv_prior = _reference_images(sc, target, cfg)
    ev = evaluate(
        result.reconstruction,
        target,
        matching=cfg.metrics.matching,
        lpips_mode=cfg.metrics.lpips,
        stlpips_mode=cfg.metrics.stlpips,
        lpips_weights=cfg.metrics.lpips_weights,
        stlpips_weights=cfg.metrics.stlpips_weights,
        device=dev,
        leakage=tuple(cfg.metrics.leakage),
        psnr_threshold=cfg.metrics.psnr_threshold,
        lpips_threshold=cfg.metrics.lpips_threshold,
        iip_candidates=iip_candidates,
        iip_distance=cfg.metrics.iip_distance,
        rdlv_prior=rdlv_prior,
    )
    t5 = time.perf_counter()
    victim = truth.victim_update
    scenario = {
        "dataset": sc.dataset.name,
        "dataset_size": len(sc.dataset),
        "victim_indices": list(sc.client_indices[cfg.server.victim]),
        "victim_labels": truth.batch.labels.cpu().tolist(),
        "class_names": list(truth.batch.class_names),
        "image_shape": list(truth.batch.input_shape),
        "normalization": sc.normalization,
        "model": cfg.model.name,
        "model_parameters": count_parameters(sc.model),
        "num_classes": sc.num_classes,
        "protocol": cfg.training.protocol,
        "local_steps": victim.local_steps,
        "client_train_loss": victim.train_loss,
        "update_norm": victim.update.norm(),
        "num_clients": cfg.server.num_clients,
        "aggregation": truth.round.aggregation,
        "defenses": [d.name for d in sc.defenses],
        "client_info": dict(victim.info),
        "crafted_models": truth.client_models is not None,
        "device": str(dev),
    }
    timing = {
        "scenario_seconds": t1 - t0,
        "round_seconds": t2 - t1,
        "attack_seconds": result.seconds,
        "attack_wall_seconds": t4 - t3,
        "evaluation_seconds": t5 - t4,
        "iterations": float(result.iterations),
        "seconds_per_iteration": result.seconds_per_iteration,
    }
    return ExperimentResult(
        config=cfg,
        threat=threat,
        attack=attack,
        truth=replace(target, images=target.images.cpu(), labels=target.labels.cpu()),
        view=describe_view(view),
        result=result,
        evaluation=ev,
        timing=timing,
        scenario=scenario,
    )
