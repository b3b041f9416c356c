"""Multi-round federated training: FedAvg over K clients with client sampling and client defenses.

FedAvg (McMahan, Moore, Ramage, Hampson, Agüera y Arcas, "Communication-Efficient Learning of Deep
Networks from Decentralized Data", AISTATS 2017): in round ``t`` the server samples clients
(:func:`gradinv.data.partition.sample_clients`), each runs :func:`gradinv.fl.local_update` on its
own data from the global model ``W_t`` with its defenses (a fresh :class:`DefenseChain` per client
and round), the server aggregates the updates with the configured aggregator (sample-weighted mean by
default) and applies the aggregate with :func:`gradinv.fl.apply_update`:
``W_{t+1} = W_t + server_lr * sum_k n_k delta_k / sum_k n_k`` (``W_t - server_lr * g`` for FedSGD).

Everything random is derived from seeds: the data split (``seed``), the clients of round ``t``
(``(seed, t)``) and the clients' private shuffling/noise (a per-round training seed), so a run is
reproducible and can resume from a checkpoint with identical results. Model-stage defenses
(e.g. PRECODE) transform the model once before round 0.

A victim (:class:`VictimClient`) is an extra client holding its own small batch that joins one
round; the ground truth of that round (the global model it received, every participant's batch and
update) is kept for an attack (:attr:`FederatedResult.victim_truths`, one per victim).

>>> import torch
>>> from gradinv.data import load_digits_dataset
>>> from gradinv.models import build_model
>>> from gradinv.types import TrainingConfig
>>> ds = load_digits_dataset()
>>> train, test = ds.to_batch(range(0, 400), image_size=8), ds.to_batch(range(1500, 1700), image_size=8)
>>> model = build_model("mlp", num_classes=10, in_channels=1, image_size=8, seed=0)
>>> res = train_federated(model, train, test, TrainingConfig("fedavg", batch_size=20, lr=0.1),
...                       FederatedConfig(num_clients=4, rounds=2, clients_per_round=2))
>>> len(res.history), res.history[-1].clients_this_round
(2, 2)
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gradinv.data.partition import Partition, partition, sample_clients
from gradinv.device import resolve_device
from gradinv.errors import ConfigError, DataError
from gradinv.fl.aggregation import AGGREGATORS
from gradinv.fl.hooks import ClientDefense, DefenseChain
from gradinv.fl.rounds import apply_update, run_round
from gradinv.fl.server import Server
from gradinv.models.inspect import find_classifier
from gradinv.models.seeding import reseed
from gradinv.settings import as_dict
from gradinv.types import Batch, ClientUpdate, GroundTruth, TrainingConfig

__all__ = [
    "EvalScore",
    "FederatedConfig",
    "FederatedResult",
    "RoundLog",
    "VictimClient",
    "evaluate_accuracy",
    "load_training_checkpoint",
    "train_federated",
]

logger = logging.getLogger(__name__)

HISTORY_FILE = "history.json"


@dataclass(frozen=True)
class FederatedConfig:
    """The federation: clients, split, rounds, per-round sampling, server step, evaluation.

    * ``num_clients`` K clients share the training data, split ``iid`` or ``dirichlet`` (label
      Dirichlet with ``alpha``; every client keeps at least ``min_client_samples``).
    * Each of ``rounds`` rounds samples ``clients_per_round`` clients, or ``fraction`` of them
      (``max(1, round(fraction * K))``), or every client when neither is set.
    * The server aggregates with ``aggregation`` (``aggregation_options`` are passed to it) and
      steps with ``server_lr``.
    * Test accuracy is measured every ``eval_every`` rounds and after the last one, in batches of
      ``eval_batch_size``; ``checkpoint_every`` > 0 also keeps the weights of every such round
      (the latest weights are always saved when a checkpoint folder is given).
    """

    num_clients: int = 10
    rounds: int = 10
    clients_per_round: int | None = None
    fraction: float | None = None
    split: Literal["iid", "dirichlet"] = "iid"
    alpha: float = 0.5
    min_client_samples: int = 1
    server_lr: float = 1.0
    aggregation: str = "mean"
    aggregation_options: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    eval_every: int = 1
    eval_batch_size: int = 512
    checkpoint_every: int = 0

    def __post_init__(self) -> None:
        def positive_int(name: str, minimum: int) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
                raise ConfigError(f"Expected `{name}` to be an int >= {minimum}, but got {v!r}.")

        positive_int("num_clients", 1)
        positive_int("rounds", 1)
        positive_int("min_client_samples", 1)
        positive_int("seed", 0)
        positive_int("eval_every", 1)
        positive_int("eval_batch_size", 1)
        positive_int("checkpoint_every", 0)
        if self.clients_per_round is not None and self.fraction is not None:
            raise ConfigError(
                f"Expected either `clients_per_round` or `fraction`, but got both ({self.clients_per_round}, "
                f"{self.fraction}). Keep one of them."
            )
        if self.clients_per_round is not None and not (
            isinstance(self.clients_per_round, int) and 1 <= self.clients_per_round <= self.num_clients
        ):
            raise ConfigError(
                f"Expected `clients_per_round` to be an int in [1, num_clients={self.num_clients}], "
                f"but got {self.clients_per_round!r}."
            )
        if self.fraction is not None and not 0 < self.fraction <= 1:
            raise ConfigError(f"Expected `fraction` in (0, 1], but got {self.fraction!r}.")
        if self.split not in ("iid", "dirichlet"):
            raise ConfigError(f"Expected `split` to be 'iid' or 'dirichlet', but got {self.split!r}.")
        if not (self.alpha > 0 and math.isfinite(self.alpha)):
            raise ConfigError(f"Expected `alpha` > 0 and finite, but got {self.alpha!r}.")
        if not (self.server_lr > 0 and math.isfinite(self.server_lr)):
            raise ConfigError(f"Expected `server_lr` > 0 and finite, but got {self.server_lr!r}.")
        AGGREGATORS.get(self.aggregation)  # unknown names list the valid ones

    def participants(self, round_index: int) -> np.ndarray:
        """The sorted client ids of round ``round_index``."""
        return sample_clients(
            self.num_clients,
            round_index,
            count=self.clients_per_round,
            fraction=self.fraction,
            seed=self.seed,
        )

    def round_seed(self, training_seed: int | None, round_index: int) -> int:
        """The clients' private training seed of round ``round_index`` (shuffling, defense noise)."""
        ss = np.random.SeedSequence([self.seed, training_seed or 0, round_index])
        return int(ss.generate_state(1)[0] & 0x7FFFFFFF)

    def to_dict(self) -> dict[str, Any]:
        return as_dict(self)


@dataclass(frozen=True)
class VictimClient:
    """An extra client (id ``client_id``; default ``num_clients`` + its position among the victims)
    that joins round ``round`` with ``batch``; its update is aggregated like any other and the round's
    ground truth is kept."""

    batch: Batch
    round: int = 0
    client_id: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.round, bool) or not isinstance(self.round, int) or self.round < 0:
            raise ConfigError(f"Expected the victim's `round` to be an int >= 0, but got {self.round!r}.")


@dataclass(frozen=True)
class EvalScore:
    """Top-1 accuracy and mean cross-entropy on a test batch."""

    accuracy: float
    loss: float
    num_samples: int


@dataclass(frozen=True)
class RoundLog:
    """One finished round. ``test_accuracy``/``test_loss`` are NaN in rounds without evaluation.
    ``info`` holds the mean over participants of each number the clients' defenses report (e.g. a
    privacy budget)."""

    round: int
    rounds: int
    clients: tuple[int, ...]
    num_samples: int
    train_loss: float
    test_accuracy: float
    test_loss: float
    seconds: float
    info: Mapping[str, float] = field(default_factory=dict)

    @property
    def clients_this_round(self) -> int:
        return len(self.clients)

    @property
    def evaluated(self) -> bool:
        return not math.isnan(self.test_accuracy)

    def to_dict(self) -> dict[str, Any]:
        d = as_dict(self)
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RoundLog:
        def num(v: Any) -> float:
            return math.nan if v is None else float(v)

        return cls(
            round=int(d["round"]),
            rounds=int(d["rounds"]),
            clients=tuple(int(c) for c in d["clients"]),
            num_samples=int(d["num_samples"]),
            train_loss=num(d["train_loss"]),
            test_accuracy=num(d["test_accuracy"]),
            test_loss=num(d["test_loss"]),
            seconds=float(d["seconds"]),
            info={str(k): float(v) for k, v in dict(d.get("info") or {}).items()},
        )


@dataclass(frozen=True)
class FederatedResult:
    """The trained global model, the per-round history, the split, and each victim's round (in the
    order the victims were given)."""

    model: nn.Module
    history: tuple[RoundLog, ...]
    partition: Partition
    victim_truths: tuple[GroundTruth, ...] = ()
    seconds: float = 0.0
    #: copies of the global model after the rounds asked for in ``keep_models`` (key: finished rounds;
    #: 0 is the model every party starts from)
    models: Mapping[int, nn.Module] = field(default_factory=dict)

    @property
    def victim_truth(self) -> GroundTruth | None:
        """The first victim's ground truth (None without victims)."""
        return self.victim_truths[0] if self.victim_truths else None

    @property
    def final_accuracy(self) -> float:
        """Test accuracy after the last round (NaN without a test set)."""
        evaluated = [h for h in self.history if h.evaluated]
        return evaluated[-1].test_accuracy if evaluated else math.nan

    @property
    def accuracy_curve(self) -> tuple[tuple[int, float], ...]:
        """``(round, accuracy)`` of every evaluated round (round numbers count finished rounds)."""
        return tuple((h.round + 1, h.test_accuracy) for h in self.history if h.evaluated)


def evaluate_accuracy(model: nn.Module, batch: Batch, *, batch_size: int = 512) -> EvalScore:
    """Accuracy and mean cross-entropy of ``model`` (eval mode, no gradients) on ``batch``."""
    if batch.size == 0:
        raise DataError("Expected a non-empty test batch, but got 0 samples.")
    was_training = model.training
    model.eval()
    correct, loss = 0, 0.0
    dev = next(model.parameters()).device
    x_all, y_all = batch.model_input(), batch.labels
    try:
        with torch.no_grad():
            for s in range(0, batch.size, batch_size):
                x = x_all[s : s + batch_size].to(dev)
                y = y_all[s : s + batch_size].to(dev)
                logits = model(x)
                loss += float(F.cross_entropy(logits, y, reduction="sum"))
                correct += int((logits.argmax(1) == y).sum())
    finally:
        model.train(was_training)
    return EvalScore(correct / batch.size, loss / batch.size, batch.size)


def _mean_info(updates: Sequence[ClientUpdate]) -> dict[str, float]:
    keys = sorted({k for u in updates for k in u.info})
    out = {}
    for k in keys:
        vals = [float(u.info[k]) for u in updates if k in u.info]
        out[k] = sum(vals) / len(vals)
    return out


def _fingerprint(training: TrainingConfig, config: FederatedConfig, sizes: Sequence[int]) -> dict[str, Any]:
    return {"training": as_dict(training), "fl": config.to_dict(), "client_sizes": list(sizes)}


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _save_state(model: nn.Module, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)


def load_training_checkpoint(directory: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The latest weights (loaded with ``weights_only=True``) and the JSON history of a run that
    :func:`train_federated` checkpointed into ``directory``."""
    d = Path(directory)
    hist = d / HISTORY_FILE
    if not hist.is_file():
        raise DataError(
            f"Expected a training checkpoint folder with {HISTORY_FILE}, but {str(d)!r} has none. "
            "Pass the `checkpoint_dir` of an earlier train_federated run."
        )
    doc = json.loads(hist.read_text(encoding="utf-8"))
    weights = d / str(doc["latest"])
    state = torch.load(weights, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise DataError(f"Expected a state dict in {weights}, but got {type(state).__name__}.")
    return state, doc


def _write_checkpoint(
    directory: Path,
    model: nn.Module,
    history: Sequence[RoundLog],
    fingerprint: Mapping[str, Any],
    keep: bool,
) -> None:
    finished = len(history)
    name = f"round_{finished:04d}.pt" if keep else "latest.pt"
    _save_state(model, directory / name)
    doc = {
        "completed_rounds": finished,
        "latest": name,
        "final_accuracy": next((h.test_accuracy for h in reversed(history) if h.evaluated), None),
        "fingerprint": dict(fingerprint),
        "history": [h.to_dict() for h in history],
    }
    _atomic_write_text(directory / HISTORY_FILE, json.dumps(doc, indent=2, allow_nan=False))


def _resume(
    directory: Path, model: nn.Module, fingerprint: Mapping[str, Any]
) -> tuple[nn.Module, list[RoundLog]]:
    if not (directory / HISTORY_FILE).is_file():
        return model, []
    state, doc = load_training_checkpoint(directory)
    if doc.get("fingerprint") != json.loads(json.dumps(dict(fingerprint))):
        raise ConfigError(
            f"Expected the checkpoint in {str(directory)!r} to come from the same training set-up, but its "
            "local training, federation or data split differ. Use another checkpoint folder or resume=False."
        )
    model.load_state_dict(state)
    history = [RoundLog.from_dict(h) for h in doc["history"]]
    logger.info("resuming from %s after %d rounds", directory, len(history))
    return model, history


def _client_batches(train: Batch, parts: Partition, device: torch.device) -> list[Batch]:
    return [train.subset(torch.from_numpy(p)).to(device) for p in parts.clients]


def train_federated(
    model: nn.Module,
    train: Batch,
    test: Batch | None,
    training: TrainingConfig,
    config: FederatedConfig,
    *,
    defenses: Sequence[ClientDefense] = (),
    victims: Sequence[VictimClient] = (),
    server: Server | None = None,
    progress: Callable[[RoundLog], None] | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    device: str | torch.device | None = "cpu",
    keep_models: Collection[int] = (),
) -> FederatedResult:
    """Train ``model`` with FedAvg for ``config.rounds`` rounds on ``train`` split across clients.

    ``defenses`` run on every client (model-stage ones transform ``model`` once first; the
    caller's model is never modified). Every round runs through :func:`gradinv.fl.run_round` with
    ``server`` (default: an honest :class:`~gradinv.fl.server.Server` with ``config.aggregation``);
    a :class:`~gradinv.fl.server.MaliciousServer` acts in the rounds it was given, targeting the
    first victim joining that round. ``progress`` is called with each finished
    :class:`RoundLog`. With ``checkpoint_dir`` the weights and a JSON history are written after every
    evaluated round; ``resume=True`` continues a run found there (same set-up required).
    ``keep_models``: after which numbers of finished rounds to keep a copy of the global model
    (:attr:`FederatedResult.models`; 0: the starting model), e.g. to attack round R of a training that
    runs on to measure the final accuracy."""

    dev = resolve_device(device)
    bad = sorted(k for k in keep_models if not 0 <= k <= config.rounds)
    if bad:
        raise ConfigError(f"Expected `keep_models` in [0, {config.rounds}] (finished rounds), but got {bad}.")
    for v in victims:
        if v.round >= config.rounds:
            raise ConfigError(
                f"Expected the victim's round in [0, {config.rounds}), but got {v.round}. "
                "Rounds count from 0."
            )
    victim_ids = [
        config.num_clients + i if v.client_id is None else v.client_id for i, v in enumerate(victims)
    ]
    if len(set(victim_ids)) != len(victim_ids) or any(0 <= k < config.num_clients for k in victim_ids):
        raise ConfigError(
            f"Expected distinct victim client ids outside the regular clients [0, {config.num_clients}), "
            f"but got {victim_ids}. Leave `client_id` unset."
        )
    parts = partition(
        train.labels.cpu().numpy(),
        config.num_clients,
        scheme=config.split,
        alpha=config.alpha,
        seed=config.seed,
        min_size=config.min_client_samples,
    )
    clients = _client_batches(train, parts, dev)
    test_dev = test.to(dev) if test is not None else None
    server = server if server is not None else Server(config.aggregation, config.aggregation_options)
    global_model = copy.deepcopy(model)  # the caller's model is never modified
    gen = torch.Generator().manual_seed(config.seed)  # new layers (e.g. PRECODE's) drawn from the seed
    for d in defenses:  # model-stage defenses (e.g. PRECODE) change the model every party uses
        global_model = d.transform_model(global_model, generator=gen)
    global_model = global_model.to(dev)
    fingerprint = _fingerprint(training, config, parts.sizes)
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
    history: list[RoundLog] = []
    if ckpt is not None:
        ckpt.mkdir(parents=True, exist_ok=True)
        if resume:
            global_model, history = _resume(ckpt, global_model, fingerprint)
    if history and any(v.round < len(history) for v in victims):
        raise ConfigError(
            f"Expected to train through every victim's round, but the checkpoint resumes after round "
            f"{len(history) - 1}. Resume without victims, or start over (resume=False)."
        )
    if history and any(k < len(history) for k in keep_models):
        raise ConfigError(
            f"Expected to train through every round of `keep_models` {sorted(keep_models)}, but the "
            f"checkpoint resumes after round {len(history) - 1}. Start over (resume=False)."
        )
    num_classes = int(dict(global_model.named_parameters())[find_classifier(global_model)[0]].shape[0])
    truths: dict[int, GroundTruth] = {}
    kept: dict[int, nn.Module] = {0: copy.deepcopy(global_model)} if 0 in keep_models else {}
    start = time.perf_counter()
    for t in range(len(history), config.rounds):
        t0 = time.perf_counter()
        ids = [int(k) for k in config.participants(t)]
        round_training = replace(training, seed=config.round_seed(training.seed, t))
        reseed(global_model, round_training.seed or 0)  # models that sample (PRECODE), e.g. in evaluation
        batches = [clients[k] for k in ids]
        joining = [i for i, v in enumerate(victims) if v.round == t]
        positions: dict[int, int] = {}
        for i in joining:
            positions[i] = len(batches)
            ids.append(victim_ids[i])
            batches.append(victims[i].batch.to(dev))
        rnd = run_round(
            global_model,
            batches,
            round_training,
            server=server,
            hooks=[DefenseChain.of(defenses) for _ in batches],
            victim=positions[joining[0]] if joining else 0,
            round_index=t,
            client_ids=ids,
        )
        updates, aggregate = rnd.updates, rnd.aggregate
        for i in joining:
            truths[i] = GroundTruth(
                model=global_model,  # never modified: apply_update then returns a new model
                batches=tuple(batches),
                training=round_training,
                round=rnd,
                num_classes=num_classes,
                victim=positions[i],
            )
        # a victim's ground truth keeps this round's model; otherwise nothing else holds it
        global_model = apply_update(global_model, aggregate, server_lr=config.server_lr, inplace=not joining)
        if t + 1 in keep_models:
            kept[t + 1] = copy.deepcopy(global_model)
        n = sum(u.num_samples for u in updates)
        train_loss = sum(u.train_loss * u.num_samples for u in updates) / n
        acc, loss = math.nan, math.nan
        boundary = (t + 1) % config.eval_every == 0 or t + 1 == config.rounds
        evaluate_now = test_dev is not None and boundary
        if test_dev is not None and boundary:
            score = evaluate_accuracy(global_model, test_dev, batch_size=config.eval_batch_size)
            acc, loss = score.accuracy, score.loss
        log = RoundLog(
            round=t,
            rounds=config.rounds,
            clients=tuple(ids),
            num_samples=n,
            train_loss=train_loss,
            test_accuracy=acc,
            test_loss=loss,
            seconds=time.perf_counter() - t0,
            info=_mean_info(updates),
        )
        history.append(log)
        logger.info(
            "round %d/%d: %d clients, train loss %.4f, test accuracy %s",
            t + 1,
            config.rounds,
            len(ids),
            train_loss,
            f"{acc:.4f}" if evaluate_now else "-",
        )
        if ckpt is not None and boundary:
            keep = config.checkpoint_every > 0 and (t + 1) % config.checkpoint_every == 0
            _write_checkpoint(ckpt, global_model, history, fingerprint, keep)
        if progress is not None:
            progress(log)
    return FederatedResult(
        model=global_model,
        history=tuple(history),
        partition=parts,
        victim_truths=tuple(truths[i] for i in range(len(victims))),
        seconds=time.perf_counter() - start,
        models=kept,
    )
