"""The end-to-end data path of one experiment::

    config ─► Scenario (data, victim batch, other clients, model)
           ─► run_round(server) ─► GroundTruth
           ─► attack_and_score: observe(truth, threat) ─► AttackerView ─► Attack.reconstruct(view)
                                ─► evaluate(reconstruction, target) ─► ExperimentResult

The attack sees only the view; :mod:`gradinv.pipeline` holds the one attack-and-score stage.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from gradinv.attacks.base import Attack, ProgressFn
from gradinv.config import ExperimentConfig
from gradinv.data import ImageDataset, check_labels, get_normalization, load_source, select_indices
from gradinv.defenses import Defense, DefenseChain
from gradinv.device import resolve_device
from gradinv.errors import ConfigError
from gradinv.fl import MaliciousServer, Server, simulate_round
from gradinv.metrics.evaluate import Evaluation
from gradinv.models import MODELS, build_model, count_parameters
from gradinv.pipeline import CheckedAttack, References, attack_and_score, check_attack
from gradinv.threat import Knowledge, ThreatModel
from gradinv.types import AttackerView, AttackResult, Batch, GroundTruth

__all__ = [
    "DryRun",
    "ExperimentResult",
    "Scenario",
    "build_scenario",
    "describe_view",
    "dry_run",
    "run_experiment",
    "server_for",
    "simulate",
]


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
    gen = torch.Generator().manual_seed(cfg.model.seed)  # their new layers come from the model's seed
    for d in defenses:  # model-stage defenses (e.g. PRECODE) change the model every party uses
        model = d.transform_model(model, generator=gen).to(dev)
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


def server_for(
    sc: Scenario,
    *,
    threat: ThreatModel | None = None,
    attack: Attack | None = None,
    surrogate: ImageDataset | None = None,
) -> Server:
    """The round's server: honest with the configured aggregation, or run by ``attack`` when it is
    active (it crafts the models it sends under ``threat``; refused before any work when the threat
    model does not allow it)."""
    cfg = sc.config.server
    if attack is not None and attack.active:
        return MaliciousServer(
            attack,
            threat or sc.config.threat.resolve(),
            num_classes=sc.num_classes,
            aggregator=cfg.aggregation,
            options=cfg.aggregation_options,
            surrogate=surrogate,
        )
    return Server(cfg.aggregation, cfg.aggregation_options)


def simulate(sc: Scenario, *, threat: ThreatModel | None = None, attack: Attack | None = None) -> GroundTruth:
    """Run the FL round through the server (:func:`server_for`): an active ``attack`` crafts the models
    the server sends (one per client) from what ``threat`` lets the server know, and may name sybil
    clients it controls. Client-side defenses run on every other client.
    The surrogate set is materialised only when the threat model grants it."""
    cfg = sc.config
    surrogate = _surrogate(sc) if threat is not None and threat.allows(Knowledge.SURROGATE_DATA) else None
    server = server_for(sc, threat=threat, attack=attack, surrogate=surrogate)
    hooks = [DefenseChain.of(sc.defenses) for _ in sc.batches] if sc.defenses else None
    return simulate_round(
        sc.model,
        sc.batches,
        cfg.training,
        num_classes=sc.num_classes,
        server=server,
        hooks=hooks,
        victim=cfg.server.victim,
        surrogate=surrogate,
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


def _references(sc: Scenario, batch: Batch, cfg: ExperimentConfig) -> References | None:
    """IIP candidates (other images of the source, up to ``iip_candidates``, prepared like the
    batch) and the RDLV prior image, when the metrics config asks for them."""
    from gradinv.metrics import prior_image

    m = cfg.metrics
    if not (m.iip or m.rdlv):
        return None
    used = [i for idx in sc.client_indices for i in idx]
    rest = sc.dataset.exclude(used)
    rng = np.random.default_rng(cfg.data.seed + 11)
    take = np.sort(rng.choice(len(rest), size=min(m.iip_candidates, len(rest)), replace=False))
    c, h, w = batch.input_shape
    others = rest.to_batch(take, image_size=h if h == w else None, channels=c).images.cpu()
    prior = prior_image(m.rdlv_prior, images=others, shape=(c, h, w)) if m.rdlv else None
    return References(iip_candidates=others if m.iip else None, rdlv_prior=prior)


@dataclass(frozen=True)
class DryRun:
    """A checked experiment that did not attack: the scenario and the attacker's view, checked."""

    scenario: Scenario
    checked: CheckedAttack


def dry_run(cfg: ExperimentConfig) -> DryRun:
    """Build the scenario on the CPU, run the round, observe it and check the attack; no attack runs."""
    threat = cfg.threat.resolve()
    attack = cfg.attack.build()
    sc = build_scenario(cfg, device="cpu")
    truth = simulate(sc, threat=threat, attack=attack)
    return DryRun(sc, check_attack(truth, attack, threat))


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
    """Build the scenario, run the round, then the attack-and-score stage
    (:func:`gradinv.pipeline.attack_and_score`).

    An active attack is checked against the threat model before anything expensive runs."""
    dev = resolve_device(device or cfg.run.device)
    threat = cfg.threat.resolve()
    attack = cfg.attack.build()
    t0 = time.perf_counter()
    sc = build_scenario(cfg, device=dev)
    t1 = time.perf_counter()
    truth = simulate(sc, threat=threat, attack=attack)
    t2 = time.perf_counter()
    scored = attack_and_score(
        truth,
        attack,
        threat,
        cfg.metrics,
        references=_references(sc, truth.batch, cfg),
        progress=progress,
        device=dev,
    )
    result = scored.result
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
        "attack_wall_seconds": scored.seconds["attack"],
        "evaluation_seconds": scored.seconds["evaluate"],
        "iterations": float(result.iterations),
        "seconds_per_iteration": result.seconds_per_iteration,
    }
    return ExperimentResult(
        config=cfg,
        threat=threat,
        attack=attack,
        truth=scored.target,
        view=describe_view(scored.view),
        result=result,
        evaluation=scored.evaluation,
        timing=timing,
        scenario=scenario,
    )
