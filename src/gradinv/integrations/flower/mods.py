"""Flower client mods: gradinv's update-stage defenses, model vetting, and the audit's client tag.

A client ``Mod`` wraps the ClientApp's handler (``Callable[[Message, Context, ClientAppCallable],
Message]``; https://flower.ai/docs/framework/how-to-use-built-in-mods.html), so these work on any
ClientApp, whatever its training loop:

* :class:`DefenseMod` — noise, clipping, QSGD, top-k, signSGD, pruning, Soteria (the update-stage
  defenses, :mod:`gradinv.defenses`) applied to the update the client is about to send, like
  Flower's own ``LocalDpMod``; defenses of the data and training stages (MixUp, InstaHide, DP-SGD)
  act inside training and need gradinv's client
  (:func:`~gradinv.integrations.flower.client.train_handler`);
* :class:`VettingMod` — runs :func:`gradinv.vetting.vet` on every model the server sends and
  refuses to train on one with findings (an error reply stating them);
* :func:`partition_id_mod` — tags replies with the simulation's partition id, for the auditor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace

import torch
from flwr.app import ArrayRecord, Context, Error, Message, MessageType
from flwr.clientapp.typing import ClientAppCallable
from torch import nn

from gradinv.errors import ConfigError, UpdateError
from gradinv.fl.client import UpdateContext
from gradinv.fl.hooks import ClientDefense, DefenseChain
from gradinv.fl.rounds import apply_update
from gradinv.integrations.flower.convert import training_from_config, update_from_states
from gradinv.types import Batch, Normalization, TrainingConfig, UpdateKind
from gradinv.vetting import vet
from gradinv.vetting.findings import Severity, VetReport

__all__ = [
    "PARTITION_KEY",
    "VET_PREVIOUS_KEY",
    "VET_REFUSED_CODE",
    "DefenseMod",
    "VettingMod",
    "array_record",
    "client_id",
    "partition_id_mod",
]

logger = logging.getLogger(__name__)

#: the reply-metric key :class:`~gradinv.integrations.flower.audit.AuditStrategy` reads by default
PARTITION_KEY = "partition-id"
#: the error code of a reply refusing a model :class:`VettingMod` flagged
VET_REFUSED_CODE = 4031
#: where :class:`VettingMod` keeps the last model it accepted (in the node's ``Context.state``)
VET_PREVIOUS_KEY = "gradinv-vet-previous"

ModelFn = Callable[[], nn.Module]
DataFn = Callable[[Context], Batch]


def array_record(msg: Message, key: str = "arrays") -> ArrayRecord:
    """The model a message carries: its ``ArrayRecord`` under ``key`` (or its only one)."""
    records = msg.content.array_records
    if key in records:
        return records[key]
    if len(records) == 1:
        return next(iter(records.values()))
    raise UpdateError(
        f"Expected the message to carry the model as one ArrayRecord (key {key!r}), but it carries "
        f"{len(records)} ({', '.join(records) or 'none'}). Pass the key the app uses (arrayrecord_key=)."
    )


def client_id(context: Context) -> int:
    """The client's id: the simulation's ``partition-id`` when the node config has one, else the
    node id (Flower's node ids are random; the partition ids are what the data split uses)."""
    pid = context.node_config.get(PARTITION_KEY)
    if isinstance(pid, int) and not isinstance(pid, bool):
        return pid
    return int(context.node_id)


def partition_id_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Tag each training reply's metrics with the node's ``partition-id`` (from its node config).

    For simulations only: the auditor uses it to find the client's true data *for scoring*.
    :class:`~gradinv.integrations.flower.audit.AuditStrategy` removes the tag before the wrapped
    strategy sees the reply, so the aggregation is unchanged. Nodes without a ``partition-id`` in
    their node config are left untagged (the auditor then keys them by node id)."""
    reply = call_next(msg, context)
    if msg.metadata.message_type != MessageType.TRAIN or reply.has_error():
        return reply
    pid = context.node_config.get(PARTITION_KEY)
    if isinstance(pid, int) and not isinstance(pid, bool):
        for record in reply.content.metric_records.values():
            record[PARTITION_KEY] = pid
    return reply


def build_model(model_fn: ModelFn) -> nn.Module:
    """``model_fn()``, checked to be an ``nn.Module``."""
    model = model_fn()
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"Expected `model_fn` to return an nn.Module, but it returned {type(model).__name__}."
        )
    return model


def _server_round(msg: Message, configrecord_key: str) -> int:
    config = msg.content.config_records.get(configrecord_key)
    value = config.get("server-round") if config is not None else None
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else 0


#: the ``UpdateContext.batch`` of a mod that was given no data (its defenses do not read it)
_NO_DATA = Batch(torch.empty(0, 1, 1, 1), torch.empty(0, dtype=torch.int64), Normalization((0.0,), (1.0,)))


class DefenseMod:
    """Apply gradinv's update-stage ``defenses`` to what the ClientApp sends back.

    The update is read as the server reads it (:func:`~gradinv.integrations.flower.convert.
    update_from_states`: the gradient ``-(W_sent_back - W) / lr`` under FedSGD, the delta otherwise,
    with the training from the server's train config over ``training``), defended, and written back
    as the model the client replies with. The defenses' randomness comes from the client's private
    ``seed``, its id and the server round. ``data_fn`` gives the defenses that read the client's
    batch (Soteria) the batch the ClientApp trained on; without it they are refused here. With
    ``report_stats`` the defenses' numbers (e.g. ``topk.kept``) join the reply's metrics — Flower's
    strategies require every reply of a round to carry the same metric keys, so switch it off when
    only some clients run the mod.

    >>> from gradinv.defenses import create_defense
    >>> DefenseMod(lambda: nn.Linear(2, 2), [create_defense("mixup")])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    gradinv.errors.ConfigError: Expected update-stage defenses in a Flower mod, but mixup acts ...
    """

    def __init__(
        self,
        model_fn: ModelFn,
        defenses: Sequence[ClientDefense],
        *,
        training: TrainingConfig | None = None,
        data_fn: DataFn | None = None,
        seed: int = 0,
        report_stats: bool = True,
        arrayrecord_key: str = "arrays",
        configrecord_key: str = "config",
    ) -> None:
        defenses = list(defenses)
        if not defenses:
            raise ConfigError("Expected at least one defense for DefenseMod, but got none.")
        for d in defenses:
            if d.stage != "update":
                raise ConfigError(
                    f"Expected update-stage defenses in a Flower mod, but {d.name} acts at "
                    f"the {d.stage!r} stage (inside training). Train with gradinv's client instead: "
                    "ClientApp().train()(train_handler(model_fn, data_fn, defenses=[...]))."
                )
            if getattr(d, "uses_batch", False) and data_fn is None:
                raise ConfigError(
                    f"Expected `data_fn` for defense {d.name}, which reads the client's batch, but got none. "
                    "Pass data_fn=lambda context: <the Batch the ClientApp trains on>."
                )
        self.model_fn = model_fn
        self.defenses = defenses
        self.training = training
        self.data_fn = data_fn
        self.seed = seed
        self.report_stats = report_stats
        self.arrayrecord_key = arrayrecord_key
        self.configrecord_key = configrecord_key

    def __repr__(self) -> str:
        return f"DefenseMod({', '.join(d.name for d in self.defenses)})"

    def __call__(self, msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        if msg.metadata.message_type != MessageType.TRAIN:
            return call_next(msg, context)
        sent = {
            k: v.detach().clone()
            for k, v in array_record(msg, self.arrayrecord_key).to_torch_state_dict().items()
        }
        reply = call_next(msg, context)
        if reply.has_error():
            return reply
        records = reply.content.array_records
        key = (
            self.arrayrecord_key
            if self.arrayrecord_key in records
            else next(iter(records), self.arrayrecord_key)
        )
        received = array_record(reply, self.arrayrecord_key).to_torch_state_dict()
        config = msg.content.config_records.get(self.configrecord_key)
        training = training_from_config(dict(config) if config is not None else {}, self.training)
        model = build_model(self.model_fn)
        model.load_state_dict(sent, strict=True)
        update = update_from_states(model, sent, received, training)
        train = (
            replace(training, seed=self.seed)
            if training is not None
            else TrainingConfig("fedavg", seed=self.seed)
        )
        batch = self.data_fn(context) if self.data_fn is not None else _NO_DATA
        cid = client_id(context)
        gen = torch.Generator().manual_seed(
            (self.seed * 1_000_003 + cid) * 1009 + _server_round(msg, self.configrecord_key)
        )
        steps = train.local_steps(batch.size) if batch.size else 1
        ctx = UpdateContext(model, batch, train, cid, steps, gen)
        chain = DefenseChain.of(self.defenses)
        chain.start(ctx)
        defended = chain.on_update(update, ctx)
        lr = train.lr if defended.kind is UpdateKind.GRADIENT else 1.0
        out = apply_update(model, defended, server_lr=lr, inplace=True).state_dict()
        for name, value in received.items():  # integer buffers (BatchNorm's step count) as trained
            if not value.is_floating_point():
                out[name] = value
        reply.content[key] = ArrayRecord(out)
        info = chain.info() if self.report_stats else {}
        for record in reply.content.metric_records.values():
            for stat, number in info.items():
                record[stat] = float(number)
        return reply


class VettingMod:
    """Vet every model the server sends before training on it; refuse one with findings.

    Runs :func:`gradinv.vetting.vet` on the received arrays: inside the client's own architecture
    (``model_fn``; a model that does not fit it is itself a finding), against the last model this
    client accepted (kept in the node's ``Context.state``), with the behaviour checks on the
    client's own inputs (``data_fn``) when given. A model with a finding of a severity in
    ``refuse_on`` is refused: the client does not train and replies with an error (code
    :data:`VET_REFUSED_CODE`) whose reason lists the findings — Flower's strategies count it as a
    failure and aggregate the other replies. An accepted model is trained on, and the reply's
    metrics carry ``gradinv-vet-findings`` (the number of findings below the refusal severity).
    :attr:`last_report` holds the newest report (in the process the client runs in)."""

    def __init__(
        self,
        model_fn: ModelFn,
        *,
        data_fn: DataFn | None = None,
        refuse_on: Collection[Severity] = ("high", "medium"),
        compare_previous: bool = True,
        arrayrecord_key: str = "arrays",
    ) -> None:
        bad = sorted(set(refuse_on) - {"high", "medium"})
        if bad:
            raise ConfigError(f"Expected `refuse_on` severities among 'high' and 'medium', but got {bad}.")
        self.model_fn = model_fn
        self.data_fn = data_fn
        self.refuse_on = frozenset(refuse_on)
        self.compare_previous = compare_previous
        self.arrayrecord_key = arrayrecord_key
        self.last_report: VetReport | None = None

    def vet(self, received: dict[str, torch.Tensor], context: Context) -> VetReport:
        """The vetting report of the ``received`` state dict for this client."""
        reference = build_model(self.model_fn)
        previous = None
        if self.compare_previous and VET_PREVIOUS_KEY in context.state.array_records:
            previous = context.state.array_records[VET_PREVIOUS_KEY].to_torch_state_dict()
        data = self.data_fn(context).model_input() if self.data_fn is not None else None
        try:
            reference.load_state_dict(received, strict=True)
        except RuntimeError:  # another architecture: vet the arrays against the client's own
            return vet(received, architecture=build_model(self.model_fn), previous=previous)
        return vet(reference, previous=previous, data=data)

    def __call__(self, msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        if msg.metadata.message_type != MessageType.TRAIN:
            return call_next(msg, context)
        received = array_record(msg, self.arrayrecord_key).to_torch_state_dict()
        report = self.vet(received, context)
        self.last_report = report
        refusing = [f for f in report.findings if f.severity in self.refuse_on]
        if refusing:
            reason = "gradinv vet refused the model: " + "; ".join(
                f"[{f.severity}] {f.kind}: {f.evidence}" for f in refusing
            )
            logger.warning("client %d: %s", client_id(context), reason)
            return Message(Error(VET_REFUSED_CODE, reason), reply_to=msg)
        if self.compare_previous:
            context.state[VET_PREVIOUS_KEY] = ArrayRecord(received)
        reply = call_next(msg, context)
        if not reply.has_error():
            for record in reply.content.metric_records.values():
                record["gradinv-vet-findings"] = len(report.findings)
        return reply
