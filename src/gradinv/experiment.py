"""The end-to-end data path of one experiment::

    config ─► Scenario (data, victim batch, other clients, model
                        [─► R rounds of FedAvg on other clients' rows: train_federated])
           ─► run_round(server) ─► GroundTruth
           ─► attack_and_score: observe(truth, threat) ─► AttackerView ─► Attack.reconstruct(view)
                                ─► evaluate(reconstruction, target) ─► ExperimentResult

The attack sees only the view; :mod:`gradinv.pipeline` holds the one attack-and-score stage.

With ``[pretrain] rounds`` = R > 0 the global model is first trained for R FedAvg rounds
(:func:`gradinv.fl.training.train_federated`, through the experiment's honest server; a malicious
server acts only in the attacked round, round R) on training clients whose rows are disjoint from
the attacked round's clients and from the held-out test rows (``[pretrain] test_images``).
:func:`dry_run` selects those rows (so a source too small fails there) but trains nothing: what it
checks (shapes, the threat model, the attacker's view) does not depend on the weights.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
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
from gradinv.errors import ConfigError
from gradinv.fl import MaliciousServer, Server, simulate_round
from gradinv.fl.client import ClientHooks
from gradinv.fl.training import FederatedConfig, RoundLog, evaluate_accuracy, train_federated
from gradinv.metrics.evaluate import Evaluation
from gradinv.models import MODELS, build_model, count_parameters
from gradinv.pipeline import CheckedAttack, References, attack_and_score, check_attack
from gradinv.threat import Knowledge, ThreatModel
from gradinv.types import AttackerView, AttackResult, Batch, GroundTruth

__all__ = [
    "DryRun",
    "ExperimentResult",
    "Pretraining",
    "Scenario",
    "build_scenario",
    "describe_view",
    "dry_run",
    "run_experiment",
    "server_for",
    "simulate",
]


@dataclass(frozen=True)
class Pretraining:
    """What ``[pretrain]`` did before the attacked round.

    ``rounds`` FedAvg rounds were configured; ``trained`` is False when none ran (``rounds`` = 0, or
    a dry run, which selects the rows but does not train). ``train_indices`` / ``test_indices`` are
    the rows of the source the training clients held / the test set. ``test_accuracy`` is that of
    the attacked model (the trained one, or the initial one when ``rounds`` = 0) on the test rows
    (None without them or when nothing was measured); ``final_accuracy`` that of the model after the
    whole training (``[pretrain] total_rounds``; the attacked model's when the training stops at the
    attacked round); ``history`` has one :class:`RoundLog` per round trained."""

    rounds: int
    trained: bool
    train_indices: tuple[int, ...] = ()
    test_indices: tuple[int, ...] = ()
    test_accuracy: float | None = None
    history: tuple[RoundLog, ...] = ()
    seconds: float = 0.0
    final_accuracy: float | None = None

    @property
    def accuracy_history(self) -> list[float | None]:
        """Test accuracy after each round (None in rounds without evaluation; empty without a test set)."""
        if not self.test_indices:
            return []
        return [h.test_accuracy if h.evaluated else None for h in self.history]


@dataclass(frozen=True)
class Scenario:
    """The materialised scenario: data, each client's batch, the global model (after ``[pretrain]``),
    local training."""

    config: ExperimentConfig
    dataset: ImageDataset
    batches: tuple[Batch, ...]
    client_indices: tuple[tuple[int, ...], ...]
    model: nn.Module
    num_classes: int
    normalization: str
    defenses: tuple[Defense, ...] = ()
    pretraining: Pretraining | None = None


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


def _pretrain_rows(cfg: ExperimentConfig, num_rows: int, used: Sequence[int]) -> tuple[list[int], list[int]]:
    """The ``[pretrain]`` rows (training clients', test), disjoint from ``used`` and each other.

    One seeded permutation of the free rows: the test rows first, then the training rows, so the
    same seeds give the same test set and training data whatever ``rounds`` is."""
    p = cfg.pretrain
    n_test, n_train = p.test_images, p.train_images
    need = n_test + n_train
    if need == 0:
        return [], []
    pool = np.setdiff1d(np.arange(num_rows), np.asarray(sorted(set(used)), dtype=np.int64))
    if need > len(pool):
        parts = []
        if n_train:
            parts.append(
                f"clients x images_per_client = {p.clients} x {p.images_per_client} = {n_train} for training"
            )
        if n_test:
            parts.append(f"test_images = {n_test} for testing")
        raise ConfigError(
            f"Expected [data] source {cfg.data.source!r} to have {need} rows for [pretrain] "
            f"({' + '.join(parts)}), but only {len(pool)} of its {num_rows} rows are left after the "
            f"attacked round's {len(set(used))} client rows. Lower [pretrain] "
            + ("clients, images_per_client or test_images" if n_train else "test_images")
            + ", or use a larger source."
        )
    perm = np.random.default_rng(p.seed).permutation(pool)
    return sorted(int(i) for i in perm[n_test:need]), sorted(int(i) for i in perm[:n_test])


class _ClientSide:
    """A defense as the training clients apply it: its client hooks, no model transform (the
    scenario's model went through every model-stage defense already)."""

    def __init__(self, defense: Defense) -> None:
        self.defense = defense
        self.name = defense.name
        self.stage = defense.stage

    def transform_model(self, model: nn.Module, *, generator: torch.Generator | None = None) -> nn.Module:
        return model

    def client_hooks(self) -> ClientHooks:
        return self.defense.client_hooks()


def _pretrain(
    sc: Scenario, train: Batch | None, test: Batch | None, *, run: bool, device: torch.device, started: float
) -> Scenario:
    """``sc`` with its model trained for ``[pretrain] rounds`` FedAvg rounds (when ``run``)."""
    cfg = sc.config
    p = cfg.pretrain
    train_idx = tuple(train.indices) if train is not None else ()
    test_idx = tuple(test.indices) if test is not None else ()

    def accuracy(model: nn.Module) -> float | None:  # on a copy: sampling layers' streams stay as they are
        return evaluate_accuracy(copy.deepcopy(model), test.to(device)).accuracy if test is not None else None

    if not run or p.training_rounds == 0 or train is None:
        acc = accuracy(sc.model) if run else None
        seconds = time.perf_counter() - started
        record = Pretraining(p.rounds, False, train_idx, test_idx, acc, seconds=seconds, final_accuracy=acc)
        return replace(sc, pretraining=record)
    # FedSGD: one gradient over each training client's samples (their counts differ under a dirichlet split)
    training = cfg.training if cfg.training.protocol == "fedavg" else replace(cfg.training, batch_size=None)
    federation = FederatedConfig(
        num_clients=p.clients,
        rounds=p.training_rounds,
        clients_per_round=p.clients_per_round,
        split=p.split,
        alpha=float(p.alpha),
        seed=p.seed,
        eval_every=p.eval_every,
        aggregation=cfg.server.aggregation,
        aggregation_options=cfg.server.aggregation_options,
    )
    # fresh defense objects: nothing a defense keeps from training reaches the attacked round
    defenses = tuple(_ClientSide(spec.build()) for spec in cfg.defenses) if p.defended else ()
    fed = train_federated(
        sc.model,
        train,
        test,
        training,
        federation,
        defenses=defenses,
        server=server_for(sc),  # honest: a malicious server acts only in the attacked round
        device=device,
        keep_models=(p.rounds,) if p.training_rounds > p.rounds else (),
    )
    final = fed.final_accuracy if test is not None else None
    model, acc = fed.model, final
    if p.training_rounds > p.rounds:  # the attacked round comes before the end of the training
        model = fed.models[p.rounds].to(device)
        evaluated = fed.history[p.rounds - 1] if p.rounds else None
        acc = evaluated.test_accuracy if evaluated is not None and evaluated.evaluated else accuracy(model)
    seconds = time.perf_counter() - started
    record = Pretraining(p.rounds, True, train_idx, test_idx, acc, fed.history, seconds, final)
    return replace(sc, model=model, pretraining=record)


def build_scenario(
    cfg: ExperimentConfig, *, device: torch.device | str = "cpu", pretrain: bool = True
) -> Scenario:
    """Load the data, pick every client's samples, build the model, and train it for
    ``[pretrain] rounds`` FedAvg rounds (none by default). ``pretrain=False`` selects the
    pretraining rows but trains nothing (a dry run)."""
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
    sc = Scenario(
        config=cfg,
        dataset=ds,
        batches=tuple(batches),
        client_indices=tuple(tuple(i) for i in clients),
        model=model,
        num_classes=num_classes,
        normalization=normalization.name,
        defenses=defenses,
    )
    started = time.perf_counter()
    train_idx, test_idx = _pretrain_rows(cfg, len(ds), used)
    if not (train_idx or test_idx):
        return replace(sc, pretraining=Pretraining(cfg.pretrain.rounds, False))

    def rows(idx: list[int]) -> Batch | None:
        if not idx:
            return None
        check_labels(ds.labels[np.asarray(idx)], num_classes)
        return ds.to_batch(
            idx, image_size=cfg.data.image_size, channels=channels, normalization=normalization
        )

    return _pretrain(sc, rows(train_idx), rows(test_idx), run=pretrain, device=dev, started=started)


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
        round_index=cfg.pretrain.rounds,  # the attacked round follows the pretraining rounds
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
    """Build the scenario on the CPU, run the round, observe it and check the attack; no attack runs.

    ``[pretrain]`` rows are selected (a source too small fails here) but no training runs: the round
    is simulated on the model as initialised (``scenario.pretraining.trained`` is False), which has
    the shapes, and so the checks, of the trained one."""
    threat = cfg.threat.resolve()
    attack = cfg.attack.build()
    sc = build_scenario(cfg, device="cpu", pretrain=False)
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
    pre = sc.pretraining or Pretraining(cfg.pretrain.rounds, False)
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
        "pretrain_rounds": cfg.pretrain.rounds,
        "test_accuracy": pre.test_accuracy,
        "final_accuracy": pre.final_accuracy,
        "train_history": pre.accuracy_history,
        "device": str(dev),
    }
    timing = {
        "scenario_seconds": t1 - t0 - pre.seconds,
        "pretrain_seconds": pre.seconds,
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
