"""An auditing strategy wrapper: what can the server of *this* Flower app reconstruct?

:class:`AuditStrategy` wraps any Flower Message-API strategy the way Flower's own DP wrappers do
(``DifferentialPrivacyServerSideFixedClipping(strategy, ...)``, see
https://flower.ai/docs/framework/how-to-use-differential-privacy.html): every call is delegated to
the wrapped strategy; on the way it

1. remembers, per node, the arrays the wrapped strategy sends in ``configure_train`` (the global
   model as that client receives it) and the train config (what the server knows of the clients'
   training: :func:`~gradinv.integrations.flower.convert.training_from_config`);
2. reads every training reply in ``aggregate_train`` exactly as the server receives it, before the
   wrapped strategy aggregates it, and turns it into a gradinv update
   (:func:`~gradinv.integrations.flower.convert.update_from_states`);
3. for the chosen rounds and clients builds the round's :class:`~gradinv.types.GroundTruth` and
   hands it to the one attack-and-score stage, :func:`gradinv.pipeline.attack_and_score`: the
   attack sees only ``observe(truth, threat)`` (the threat model A–H decides what), the scorer
   alone holds the client's true batch;
4. records the leakage (:class:`LeakageRecord`: PSNR, SSIM, ... per round and client).

What the attacker sees and what the scorer sees stay apart: the clients' data (``client_data``) is
given to the auditor for scoring only, and reaches the attack only through what the threat model
grants (basic knowledge: N, the image shape, the normalisation; client data distribution: the
label histogram and BatchNorm statistics) — as everywhere in gradinv (``gradinv.threat``).

Secure aggregation: with ``observation = "aggregate"`` the auditor declares that the server sees
only the aggregate: no individual update reaches a view, the attack runs once per round on the
sample-weighted mean and is scored against every client's samples. A round in which every reply
carries the same model (secure aggregation hands the strategy the aggregate in place of each reply)
is audited that way too, with the note :data:`SECURE_AGGREGATION_SEEN`. Flower 1.42's SecAgg+ is a
workflow of the legacy strategy API (``flwr.server.workflow.SecAggPlusWorkflow``), not of the
Message-API strategies wrapped here: wrap the legacy strategy with
:class:`~gradinv.integrations.flower.legacy.LegacyAuditStrategy` (see ``docs/flower.md``).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Collection, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Generic, Literal, TypeVar

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy
from torch import Tensor, nn

from gradinv.attacks.base import Attack, create_attack
from gradinv.errors import GradinvError
from gradinv.fl.aggregation import weighted_mean
from gradinv.integrations.flower.convert import training_from_config, update_from_states
from gradinv.integrations.flower.mods import VET_REFUSED_CODE
from gradinv.metrics.options import MetricsConfig
from gradinv.pipeline import ScoredAttack, attack_and_score
from gradinv.threat import Knowledge, ThreatModel, get_threat_model, read_model
from gradinv.types import Batch, ClientUpdate, GroundTruth, RoundResult, TrainingConfig

__all__ = [
    "SECURE_AGGREGATION_SEEN",
    "AuditStrategy",
    "ClientFailure",
    "ClientReply",
    "LeakageRecord",
    "Observation",
    "round_truth",
]

logger = logging.getLogger(__name__)

Observation = Literal["individual", "aggregate"]
ClientData = Mapping[int, Batch] | Callable[[int], Batch | None]
S = TypeVar("S")

#: placeholder training for a ground truth whose protocol the server does not know; never shown to
#: an attacker (a threat model granting training details is refused instead)
_UNKNOWN_TRAINING = TrainingConfig(protocol="fedavg", seed=None)


@dataclass(frozen=True)
class ClientReply:
    """One client's training reply as the server read it: the state it sent that node, the state
    the node returned, and the reply's metrics (``num-examples``, ``train_loss``)."""

    node_id: int
    client: int
    sent: Mapping[str, Tensor]
    received: Mapping[str, Tensor]
    num_examples: int | None = None
    train_loss: float = math.nan
    #: the module the server sent when it crafted one (a malicious server), else ``None``
    model: nn.Module | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class LeakageRecord:
    """The leakage of one audited update: round, client (``None``: the aggregate), what was
    observed, the attack's metric means (``metrics``: ``psnr``, ``ssim``, ...), wall time, and, when
    the attack did not run or was not scored, the reason (``skipped``)."""

    round: int
    client: int | None
    node_id: int | None
    attack: str
    threat: str
    observation: Observation
    aggregated_over: int
    metrics: Mapping[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    skipped: str = ""
    notes: tuple[str, ...] = ()
    scored: ScoredAttack | None = field(default=None, repr=False, compare=False)

    @property
    def psnr(self) -> float:
        return self.metrics.get("psnr", math.nan)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready row (without the images)."""
        return {
            "round": self.round,
            "client": self.client,
            "node_id": self.node_id,
            "attack": self.attack,
            "threat": self.threat,
            "observation": self.observation,
            "aggregated_over": self.aggregated_over,
            "metrics": dict(self.metrics),
            "seconds": self.seconds,
            "skipped": self.skipped,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class ClientFailure:
    """A training reply that carried an error instead of a model (e.g. a client whose
    :class:`~gradinv.integrations.flower.mods.VettingMod` refused the model: code
    :data:`~gradinv.integrations.flower.mods.VET_REFUSED_CODE`, the findings in ``reason``)."""

    round: int
    node_id: int
    code: int
    reason: str

    @property
    def refused_by_vetting(self) -> bool:
        return self.code == VET_REFUSED_CODE


def _model_with(template: nn.Module, state: Mapping[str, Tensor]) -> nn.Module:
    model = copy.deepcopy(template)
    model.load_state_dict(dict(state), strict=True)
    return model


def round_truth(
    template: nn.Module,
    replies: Sequence[ClientReply],
    batches: Sequence[Batch],
    *,
    training: TrainingConfig | None,
    num_classes: int,
    victim: int | None,
) -> GroundTruth:
    """The ground truth of one Flower round, for gradinv's stage.

    ``victim = k``: the server sees client ``k``'s individual update (``batches`` holds only that
    client's batch, for scoring); ``victim = None``: it sees only the sample-weighted mean of all
    ``replies`` (secure aggregation), and ``batches`` holds every client's batch in reply order.
    A reply whose ``model`` is set (the server crafted it) is read in that model: the ground truth's
    ``model`` is then the global ``template`` and the victim's received model is the crafted one."""
    updates = []
    for i, r in enumerate(replies):
        update = update_from_states(r.model or template, r.sent, r.received, training)
        batch_n = batches[0].size if victim is not None else batches[i].size
        n = r.num_examples if r.num_examples is not None else batch_n
        steps = training.local_steps(n) if training is not None else 1
        updates.append(ClientUpdate(r.client, update, n, steps, r.train_loss))
    aggregate = weighted_mean([u.update for u in updates], [u.num_samples for u in updates])
    total = sum(u.num_samples for u in updates)
    train = training if training is not None else _UNKNOWN_TRAINING
    if victim is not None:
        mine = updates[victim]
        rnd = RoundResult(
            updates=(mine,),
            aggregate=aggregate,
            total_samples=total,
            aggregation="mean (Flower strategy)",
            reveals_individual=True,
            server_received=tuple(u.update for u in updates),
        )
        crafted = replies[victim].model
        if crafted is not None:
            rnd = replace(rnd, client_models=(crafted,))
            model = template
        else:
            model = _model_with(template, replies[victim].sent)
        return GroundTruth(
            model=model, batches=(batches[0],), training=train, round=rnd, num_classes=num_classes
        )
    rnd = RoundResult(
        updates=tuple(updates),
        aggregate=aggregate,
        total_samples=total,
        aggregation="secure aggregation (declared; the server sees the aggregate only)",
        reveals_individual=False,
        server_received=(aggregate,),
    )
    model = _model_with(template, replies[0].sent)
    return GroundTruth(
        model=model, batches=tuple(batches), training=train, round=rnd, num_classes=num_classes
    )


def _as_state(record: ArrayRecord) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in record.to_torch_state_dict().items()}


def _scalar(metrics: Mapping[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


#: the note of a round in which every reply carried the same model: the server saw only the aggregate
SECURE_AGGREGATION_SEEN = (
    "secure aggregation: every training reply carries the same model, the aggregate (as under "
    "Flower's SecAgg+ workflow), so the server sees only the aggregate; the attack ran on it and is "
    "scored against every client's samples"
)


def _same_state(replies: Sequence[ClientReply]) -> bool:
    """Whether two or more replies all carry the same state (secure aggregation hands the strategy
    the aggregate in place of every client's reply)."""
    if len(replies) < 2:
        return False
    first = replies[0].received
    return all(
        r.received.keys() == first.keys() and all(torch.equal(r.received[k], first[k]) for k in first)
        for r in replies[1:]
    )


class _Auditing(Generic[S]):
    """The audit itself, shared by the strategy wrappers of both Flower APIs (:class:`AuditStrategy`
    for Message-API strategies, :class:`~gradinv.integrations.flower.legacy.LegacyAuditStrategy` for
    the legacy strategies that Flower's SecAgg+ workflow drives): the settings, the models sent per
    round and node, reading a reply, and auditing a round through the one stage
    (:func:`gradinv.pipeline.attack_and_score`). The arguments are :class:`AuditStrategy`'s."""

    #: the observations a wrapper accepts (the legacy one also detects secure aggregation: "auto")
    _OBSERVATIONS: tuple[str, ...] = ("individual", "aggregate")

    def __init__(
        self,
        strategy: S,
        *,
        model: nn.Module,
        attack: Attack | str,
        threat: ThreatModel | str = "B",
        training: TrainingConfig | None = None,
        client_data: ClientData | None = None,
        rounds: Collection[int] | None = None,
        clients: Collection[int] | None = None,
        observation: Observation | Literal["auto"] = "individual",
        client_key: str = "partition-id",
        metrics: MetricsConfig | None = None,
        num_classes: int | None = None,
        arrayrecord_key: str = "arrays",
        weighted_by_key: str = "num-examples",
        device: str | torch.device = "cpu",
        keep_results: bool = True,
        attack_params: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if observation not in self._OBSERVATIONS:
            valid = " or ".join(repr(o) for o in self._OBSERVATIONS)
            raise GradinvError(f"Expected `observation` to be {valid}, but got {observation!r}.")
        if not isinstance(model, nn.Module):
            raise GradinvError(f"Expected `model` to be an nn.Module, but got {type(model).__name__}.")
        self.strategy = strategy
        self.model = copy.deepcopy(model).cpu()
        if isinstance(attack, str):
            attack = create_attack(attack, **dict(attack_params or {}))
        self.attack = attack
        self.threat = get_threat_model(threat)
        self.training = training
        self.client_data = client_data
        self.rounds = None if rounds is None else frozenset(rounds)
        self.clients = None if clients is None else frozenset(clients)
        self.observation = observation
        self.client_key = client_key
        self.metrics = metrics
        if num_classes is None:
            num_classes = read_model(self.model).num_classes
            if num_classes is None:
                raise GradinvError("Could not read the number of classes off the model; pass `num_classes`.")
        self.num_classes = num_classes
        self.arrayrecord_key = arrayrecord_key
        self.weighted_by_key = weighted_by_key
        self.device = device
        self.keep_results = keep_results
        self.records: list[LeakageRecord] = []
        self.failures: list[ClientFailure] = []
        self._sent: dict[int, dict[int, dict[str, Tensor]]] = {}
        self._training: dict[int, TrainingConfig | None] = {}

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}({self.strategy!r}, attack={self.attack.name!r}, threat={self.threat.id!r})"

    # ------------------------------------------------------------------ the audit

    def _audits_round(self, server_round: int) -> bool:
        return self.rounds is None or server_round in self.rounds

    def _reply(
        self,
        server_round: int,
        node: int,
        metrics: Iterable[MutableMapping[str, Any]],
        received: Mapping[str, Tensor] | None,
        num_examples: int | None = None,
    ) -> ClientReply | None:
        """A reply as the server reads it: the state sent to ``node`` this round, the ``received``
        one, and from the reply's ``metrics`` the client id (the tag removed before the wrapped
        strategy sees it), the sample count (unless given) and the train loss. ``None`` when the
        round's sent state or the reply's arrays are unknown."""
        client: int | None = None
        loss = math.nan
        for record in metrics:
            if self.client_key in record:
                value = _scalar(record, self.client_key)
                del record[self.client_key]
                client = int(value) if value is not None else None
            n = _scalar(record, self.weighted_by_key)
            num_examples = int(n) if n is not None else num_examples
            loss_v = _scalar(record, "train_loss")
            loss = loss_v if loss_v is not None else loss
        sent = self._sent.get(server_round, {}).get(node)
        if sent is None or received is None:
            return None
        return ClientReply(
            node_id=node,
            client=client if client is not None else node,
            sent=sent,
            received=received,
            num_examples=num_examples,
            train_loss=loss,
            model=self._crafted_model(server_round, node),
        )

    def _crafted_model(self, server_round: int, node: int) -> nn.Module | None:
        """The module the server crafted for ``node`` in ``server_round`` (an honest server: none)."""
        return None

    def _batch(self, client: int) -> Batch | None:
        if self.client_data is None:
            return None
        if callable(self.client_data):
            return self.client_data(client)
        return self.client_data.get(client)

    def _record(self, server_round: int, reply: ClientReply | None, n_clients: int, **kw: Any) -> None:
        """One :class:`LeakageRecord`: of ``reply`` (an individual update) or, ``reply = None``, of
        the aggregate of ``n_clients`` replies."""
        rec = LeakageRecord(
            round=server_round,
            client=reply.client if reply is not None else None,
            node_id=reply.node_id if reply is not None else None,
            attack=self.attack.name,
            threat=self.threat.id,
            observation="individual" if reply is not None else "aggregate",
            aggregated_over=1 if reply is not None else n_clients,
            **kw,
        )
        if rec.skipped:
            logger.warning(
                "gradinv audit, round %d, client %s: not audited: %s", server_round, rec.client, rec.skipped
            )
        else:
            logger.info(
                "gradinv audit, round %d, client %s (%s): %s",
                server_round,
                rec.client,
                rec.observation,
                ", ".join(f"{k} {v:.4g}" for k, v in rec.metrics.items()),
            )
        self.records.append(rec)

    def _audit_round(self, server_round: int, replies: list[ClientReply]) -> None:
        if not replies:
            logger.warning("gradinv audit, round %d: no usable training replies", server_round)
            return
        training = self._training.get(server_round)
        if training is None and self.threat.allows(Knowledge.TRAINING_DETAILS):
            why = (
                f"threat model {self.threat.id} grants training details, but the server's train config "
                "states none (send 'protocol', 'lr', 'local-epochs', 'batch-size' or pass `training=`)"
            )
            self._record(server_round, None, len(replies), skipped=why)
            return
        aggregate_only = self.observation == "aggregate" or _same_state(replies)
        if aggregate_only:
            notes = () if self.observation == "aggregate" else (SECURE_AGGREGATION_SEEN,)
            if notes:
                logger.info("gradinv audit, round %d: %s", server_round, SECURE_AGGREGATION_SEEN)
            batches = [self._batch(r.client) for r in replies]
            missing = [r.client for r, b in zip(replies, batches) if b is None]
            if missing:
                why = f"no true data of clients {missing} to score the aggregate against"
                self._record(server_round, None, len(replies), skipped=why, notes=notes)
                return
            truth = round_truth(
                self.model,
                replies,
                [b for b in batches if b is not None],
                training=training,
                num_classes=self.num_classes,
                victim=None,
            )
            self._score(server_round, None, truth, len(replies), notes=notes)
            return
        for k, reply in enumerate(replies):
            if self.clients is not None and reply.client not in self.clients:
                continue
            batch = self._batch(reply.client)
            if batch is None:
                why = f"no true data of client {reply.client} to score"
                self._record(server_round, reply, 1, skipped=why)
                continue
            if reply.num_examples is not None and reply.num_examples != batch.size:
                logger.warning(
                    "gradinv audit: client %d reports %d examples, but its scoring batch has %d",
                    reply.client,
                    reply.num_examples,
                    batch.size,
                )
            # only the victim's batch goes in: the others' samples are not needed to score it
            order = [reply, *(r for i, r in enumerate(replies) if i != k)]
            truth = round_truth(
                self.model, order, [batch], training=training, num_classes=self.num_classes, victim=0
            )
            self._score(server_round, reply, truth, 1)

    def _score(
        self,
        server_round: int,
        reply: ClientReply | None,
        truth: GroundTruth,
        n: int,
        *,
        notes: tuple[str, ...] = (),
    ) -> None:
        start = time.perf_counter()
        try:
            scored = attack_and_score(truth, self.attack, self.threat, self.metrics, device=self.device)
        except GradinvError as exc:  # refused (with every reason) or bad input
            seconds = time.perf_counter() - start
            self._record(server_round, reply, n, skipped=str(exc), seconds=seconds, notes=notes)
            return
        means = {name: float(m.mean) for name, m in scored.evaluation.metrics.items()}
        self._record(
            server_round,
            reply,
            n,
            metrics=means,
            seconds=time.perf_counter() - start,
            notes=(*notes, *scored.result.notes),
            scored=scored if self.keep_results else None,
        )


class AuditStrategy(_Auditing[Strategy], Strategy):
    """Wraps a Flower strategy and audits the leakage of the clients' training replies.

    Args:
        strategy: any Flower Message-API strategy (``flwr.serverapp.strategy.FedAvg``, a DP wrapper,
            ...); every call is delegated to it.
        model: the app's model architecture (an ``nn.Module``); the weights are loaded from the
            arrays the strategy sends, so any weights will do.
        attack: a gradinv attack, or a registered name (``"fc-bias"``, ``"idlg"``, ...) built with
            ``attack_params``.
        threat: the threat model A–H (or ``"B+labels"`` ...) under which the attacker's view is built.
        training: what the server knows of the clients' training; ``None`` reads it from the train
            config the strategy sends (:data:`~gradinv.integrations.flower.convert.CONFIG_KEYS`).
            Without either the protocol is unknown and replies are read as FedAvg deltas.
        client_data: each client's true training batch, *for scoring only*, keyed by client id (a
            mapping or a function returning ``None`` for an unknown client).
        rounds / clients: which server rounds (from 1) and client ids to audit (``None``: all).
        observation: ``"individual"`` (plain aggregation: the server reads each reply) or
            ``"aggregate"`` (secure aggregation declared: only the weighted mean is observed). A
            round whose replies all carry the same model is audited as ``"aggregate"`` either way.
        client_key: the reply-metric key holding the client id (set by
            :func:`~gradinv.integrations.flower.mods.partition_id_mod`); removed before the wrapped
            strategy sees the reply. Without it the client id is the Flower node id.
        metrics: which metrics to compute (:class:`~gradinv.metrics.MetricsConfig`).
        num_classes: the label space (default: read off the model's classifier).
        arrayrecord_key / weighted_by_key: the keys of the model and the sample count in messages
            (Flower's defaults ``"arrays"`` and ``"num-examples"``).
        device: where the attack runs.
        keep_results: keep each :class:`~gradinv.pipeline.ScoredAttack` (images) in the records.

    The results are :attr:`records` (one :class:`LeakageRecord` per audited update).
    """

    # ------------------------------------------------------------------ Flower Strategy interface

    def summary(self) -> None:
        """Log the audit settings, then the wrapped strategy's summary."""
        logger.info(
            "gradinv audit: attack %s under threat model %s, %s observation, rounds %s, clients %s",
            self.attack.name,
            self.threat.id,
            self.observation,
            "all" if self.rounds is None else sorted(self.rounds),
            "all" if self.clients is None else sorted(self.clients),
        )
        self.strategy.summary()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Delegate, and remember the arrays sent to each node and the train config."""
        messages = list(self.strategy.configure_train(server_round, arrays, config, grid))
        if not self._audits_round(server_round):
            return messages
        states: dict[int, dict[str, Tensor]] = {}
        sent: dict[int, dict[str, Tensor]] = {}
        for msg in messages:
            record = self._array_record(msg)
            if record is None:
                continue
            state = states.setdefault(id(record), _as_state(record))
            sent[int(msg.metadata.dst_node_id)] = state
        self._sent[server_round] = sent
        training = self.training
        if training is None:
            cfg = next((m.content.config_records.get("config") for m in messages), None)
            training = training_from_config(dict(cfg if cfg is not None else config))
        self._training[server_round] = training
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Audit the replies as received, then delegate the aggregation."""
        replies = list(replies)
        read = [self._read_reply(server_round, msg) for msg in replies]
        if self._audits_round(server_round):
            good = [r for r in read if r is not None]
            try:
                self._audit_round(server_round, good)
            except Exception:  # the audit must never break the federated run
                logger.exception("gradinv audit of round %d failed", server_round)
        self._sent.pop(server_round, None)
        return self.strategy.aggregate_train(server_round, replies)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return self.strategy.aggregate_evaluate(server_round, replies)

    def _array_record(self, msg: Message) -> ArrayRecord | None:
        records = msg.content.array_records
        if self.arrayrecord_key in records:
            return records[self.arrayrecord_key]
        if len(records) == 1:
            return next(iter(records.values()))
        return None

    def _read_reply(self, server_round: int, msg: Message) -> ClientReply | None:
        """The reply as the server reads it (and the client-id tag removed from its metrics)."""
        node = int(msg.metadata.src_node_id)
        if msg.has_error():
            self.failures.append(
                ClientFailure(server_round, node, int(msg.error.code), msg.error.reason or "")
            )
            return None
        arrays = self._array_record(msg)
        received = _as_state(arrays) if arrays is not None else None
        return self._reply(server_round, node, msg.content.metric_records.values(), received)
