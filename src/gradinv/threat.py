"""The attacker's view built from the ground truth under a threat model A–H.

:func:`observe` builds an :class:`~gradinv.types.AttackerView` from a
:class:`~gradinv.types.GroundTruth` by *removing* what the threat model does not grant;
:func:`observe_server` builds the :class:`~gradinv.types.CraftView` an active attacker crafts from.

The threat models themselves (:class:`Knowledge` flags, the A–H table, Du et al.'s levels and the
requirement checks that explain refusals) are pure values in :mod:`gradinv.threat_models`; they are
re-exported here, so ``from gradinv.threat import ThreatModel`` keeps working.

What each flag exposes (our decision; the SoK names the flags but not their exact content):

======================== ====================================================================
flag                     exposes in the view
======================== ====================================================================
model updates            the update as sent (gradient for FedSGD, weight and buffer delta for
                         FedAvg) and the global model the server sent (architecture and
                         weights). Under secure aggregation only the aggregate.
basic knowledge          number of samples N behind the update, input shape (C, H, W), label
                         space (number of classes, class names), input normalisation.
training details         the client's local training: protocol, lr, epochs E, batch size B,
                         momentum, weight decay, whether it shuffles (never the shuffle seed),
                         the forward mode (train / eval BatchNorm).
surrogate data           images from the client's data distribution that are not the client's
                         (e.g. other images of the same dataset).
client data distribution statistics of the client's batch: per-BatchNorm-layer input mean and
                         variance, and the label histogram (the labels as a multiset).
active manipulation      the attacker may craft the model it sends (``Attack.craft``).
client selection         the attacker may choose which clients take part and send different
                         clients different models.
labels (extension)       the labels as a multiset, without BN statistics. Not in the SoK's
                         table; it models papers that assume known labels (e.g. Geiping et
                         al. 2020). Add it to any threat model: ``"B+labels"``.
======================== ====================================================================
"""

from __future__ import annotations

import copy
import logging
from dataclasses import replace

import torch
from torch import nn

from gradinv import threat_models
from gradinv.errors import AttackRefused
from gradinv.models.inspect import batchnorm_statistics
from gradinv.threat_models import *  # noqa: F403  (the pure names, re-exported)
from gradinv.threat_models import Knowledge, ThreatModel, get_threat_model
from gradinv.types import AttackerView, Batch, CraftView, GroundTruth, SurrogateData, TrainingConfig

__all__ = ["observe", "observe_server", *threat_models.__all__]  # the pure names are re-exported

logger = logging.getLogger(__name__)


def observe(truth: GroundTruth, threat: ThreatModel | str) -> AttackerView:
    """Build the attacker's view from the ground truth, keeping only what ``threat`` grants.

    Ground-truth labels reach the view only as a label histogram, and only under client data
    distribution or the ``labels`` extension."""
    tm = get_threat_model(threat)
    if not tm.allows(Knowledge.MODEL_UPDATES):
        raise AttackRefused(
            f"Threat model {tm.id} does not grant model updates; no attack can observe anything."
        )
    rnd = truth.round
    if rnd.reveals_individual:
        update = truth.victim_update.update
        n_samples = truth.victim_update.num_samples
        aggregated_over = 1
    else:
        update = rnd.aggregate
        n_samples = rnd.total_samples
        aggregated_over = len(rnd.updates)
        logger.info("server sees only the aggregate of %d clients (%s)", aggregated_over, rnd.aggregation)
    target = truth.observed_batch()
    model = copy.deepcopy(truth.victim_model)
    for p in model.parameters():
        p.requires_grad_(True)

    basic = tm.allows(Knowledge.BASIC_KNOWLEDGE)
    dist = tm.allows(Knowledge.CLIENT_DATA_DISTRIBUTION)
    label_counts = None
    if dist or tm.allows(Knowledge.LABELS):
        label_counts = torch.bincount(target.labels.cpu(), minlength=truth.num_classes).to(torch.int64)
    bn_stats = None
    if dist:
        bn_stats = batchnorm_statistics(truth.victim_model, target.model_input())
    training = None
    if tm.allows(Knowledge.TRAINING_DETAILS):
        training = replace(truth.training, seed=None)
    surrogate = truth.surrogate if tm.allows(Knowledge.SURROGATE_DATA) else None

    return AttackerView(
        threat=tm,
        model=model,
        update=update,
        aggregated_over=aggregated_over,
        num_samples=n_samples if basic else None,
        input_shape=target.input_shape if basic else None,
        num_classes=truth.num_classes if basic else None,
        class_names=target.class_names if basic else (),
        normalization=target.normalization if basic else None,
        training=training,
        surrogate=surrogate,
        bn_statistics=bn_stats,
        label_counts=label_counts,
    )


def observe_server(
    model: nn.Module,
    threat: ThreatModel | str,
    *,
    batches: tuple[Batch, ...],
    training: TrainingConfig,
    num_classes: int,
    victim: int = 0,
    surrogate: SurrogateData | None = None,
) -> CraftView:
    """What an active attacker knows before the round, to craft the models it sends."""
    tm = get_threat_model(threat)
    basic = tm.allows(Knowledge.BASIC_KNOWLEDGE)
    b = batches[victim]
    return CraftView(
        threat=tm,
        model=copy.deepcopy(model),
        num_clients=len(batches),
        victim=victim,
        num_samples=b.size if basic else None,
        input_shape=b.input_shape if basic else None,
        num_classes=num_classes if basic else None,
        normalization=b.normalization if basic else None,
        training=replace(training, seed=None) if tm.allows(Knowledge.TRAINING_DETAILS) else None,
        surrogate=surrogate if tm.allows(Knowledge.SURROGATE_DATA) else None,
    )
