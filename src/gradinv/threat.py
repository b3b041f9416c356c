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
                         weights). Under secure aggregation only the aggregate. What the model
                         itself reveals is read off it (:func:`read_model`): the label space (the
                         classifier's output width) and the input shape where the architecture
                         fixes it; the view's ``facts`` mark these as inferred from the model.
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

Reading the input shape off a model (:func:`read_model`) assumes square images. The channels are the
first ``Conv2d``'s input channels; the side length is every size whose feature map gives the first
``Linear`` layer its width (found by forward passes of zeros that stop at that layer). When several
sizes fit (strided convolutions and pooling round), the one divisible by the highest power of two is
taken and the fact is marked *assumed*; when any size fits (global/adaptive pooling) the model does
not determine the input shape. A model starting with a ``Linear`` layer fixes ``C*H*W``; it is
factored as ``3*S*S`` or ``1*S*S``.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import nn

from gradinv import threat_models
from gradinv.errors import AttackRefused, ModelError
from gradinv.models.inspect import batchnorm_statistics, find_classifier
from gradinv.threat_models import *  # noqa: F403  (the pure names, re-exported)
from gradinv.threat_models import BASIC_FIELDS, Fact, Knowledge, Source, ThreatModel, get_threat_model
from gradinv.types import AttackerView, Batch, CraftView, GroundTruth, SurrogateData, TrainingConfig

__all__ = [  # the pure names are re-exported
    "ModelReading",
    "observe",
    "observe_server",
    "read_model",
    *threat_models.__all__,
]

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
    if basic:
        num_samples: int | None = n_samples
        input_shape: tuple[int, int, int] | None = target.input_shape
        num_classes: int | None = truth.num_classes
        facts = tuple(Fact(f, Source.GRANTED, "basic knowledge") for f in BASIC_FIELDS)
    else:  # only what the model itself reveals (and the size of a granted label multiset)
        reading = read_model(model)
        num_samples, input_shape, num_classes = None, reading.input_shape, reading.num_classes
        not_granted = f"threat model {tm.id} does not grant basic knowledge"
        if label_counts is not None:
            num_samples = int(label_counts.sum())
            n_fact = Fact("num_samples", Source.GRANTED, "the size of the granted label multiset")
        else:
            n_fact = Fact("num_samples", Source.UNKNOWN, not_granted)
        facts = (n_fact, *reading.facts, Fact("normalization", Source.UNKNOWN, not_granted))
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
        num_samples=num_samples,
        input_shape=input_shape,
        num_classes=num_classes,
        class_names=target.class_names if basic else (),
        normalization=target.normalization if basic else None,
        training=training,
        surrogate=surrogate,
        bn_statistics=bn_stats,
        label_counts=label_counts,
        facts=facts,
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


# --------------------------------------------------------------------------------------------------
# What the model reveals
# --------------------------------------------------------------------------------------------------

#: the largest square side length :func:`read_model` tries
_MAX_SIDE = 4096


@dataclass(frozen=True)
class ModelReading:
    """What a model reveals about its data: ``num_classes`` (the classifier's output width) and
    ``input_shape`` ``(C, H, W)``, each ``None`` where the model does not determine it, and a
    :class:`Fact` per field saying how it was read (or why not)."""

    num_classes: int | None
    input_shape: tuple[int, int, int] | None
    facts: tuple[Fact, ...]

    def fact(self, name: str) -> Fact | None:
        return next((f for f in self.facts if f.field == name), None)


class _Stop(Exception):
    """Raised by the probe hook at the first ``Linear`` layer, carrying the width it receives and the
    width it expects."""

    def __init__(self, width: int, expected: int) -> None:
        super().__init__(width, expected)
        self.width = width
        self.expected = expected


def read_model(model: nn.Module) -> ModelReading:
    """Read the label space and the input shape off ``model`` (see the module docstring).

    >>> from gradinv.models import build_model
    >>> r = read_model(build_model("lenet", num_classes=10, image_size=32, seed=0))
    >>> r.num_classes, r.input_shape, r.fact("input_shape").source.value
    (10, (3, 32, 32), 'assumed')
    >>> read_model(build_model("mlp", num_classes=10, in_channels=1, image_size=28)).input_shape
    (1, 28, 28)
    """
    facts: list[Fact] = []
    num_classes: int | None = None
    try:
        weight, _ = find_classifier(model)
        classifier = model.get_submodule(weight.rsplit(".", 1)[0]) if "." in weight else model
        num_classes = int(classifier.out_features)  # type: ignore[arg-type]
        name = weight[: -len(".weight")] if weight != "weight" else "(the model)"
        facts.append(Fact("num_classes", Source.MODEL, f"the classifier {name} has {num_classes} outputs"))
    except ModelError:
        facts.append(Fact("num_classes", Source.UNKNOWN, "the model has no nn.Linear classifier"))
    shape, source, detail = _input_shape(model)
    facts.append(Fact("input_shape", source, detail))
    return ModelReading(num_classes, shape, tuple(facts))


def _first_layer(model: nn.Module) -> nn.Module | None:
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            return m
        if isinstance(m, (nn.Conv1d, nn.Conv3d, nn.ConvTranspose2d, nn.Embedding)):
            return None
    return None


def _input_shape(model: nn.Module) -> tuple[tuple[int, int, int] | None, Source, str]:
    """``(shape, source, detail)``; ``shape`` is ``None`` (source unknown) when the model does not
    determine it."""
    first = _first_layer(model)
    if isinstance(first, nn.Linear):
        width = int(first.in_features)
        for c in (3, 1):
            side = math.isqrt(width // c) if width % c == 0 else 0
            if side and c * side * side == width:
                return (
                    (c, side, side),
                    Source.MODEL,
                    f"the first layer is Linear({width}, ...): {c}x{side}x{side}, assuming square images "
                    "with 3 or 1 channels",
                )
        return None, Source.UNKNOWN, f"the first layer's width {width} is not 3*S*S or S*S"
    if not isinstance(first, nn.Conv2d):
        return None, Source.UNKNOWN, "the model does not start with Conv2d or Linear"
    channels = int(first.in_channels)
    try:
        sides = _fitting_sides(model, channels)
    except Exception as err:  # a model the zero probe cannot run (it is the user's model)
        logger.debug("input-shape probe failed: %s", err)
        return (
            None,
            Source.UNKNOWN,
            f"a forward pass of zeros through the model failed ({type(err).__name__})",
        )
    if sides is None:
        return (
            None,
            Source.UNKNOWN,
            (
                f"the model does not determine it: {channels} input channels (first Conv2d), but any image "
                "size fits the first Linear layer (global or adaptive pooling)"
            ),
        )
    lo, hi = sides
    if lo > hi:
        return None, Source.UNKNOWN, "no square image size fits the first Linear layer"
    if lo == hi:
        return (
            (channels, lo, lo),
            Source.MODEL,
            (
                f"{channels} channels from the first Conv2d; only {lo}x{lo} fits the first Linear layer "
                "(square images assumed)"
            ),
        )
    side = max(range(lo, hi + 1), key=lambda v: ((v & -v), v))  # most factors of two
    return (
        (channels, side, side),
        Source.ASSUMED,
        (
            f"{channels} channels from the first Conv2d; square sizes {lo}-{hi} fit the first Linear layer, "
            f"assumed {side} (the one divisible by the highest power of two)"
        ),
    )


def _fitting_sides(model: nn.Module, channels: int) -> tuple[int, int] | None:
    """The range ``(lo, hi)`` of square side lengths whose input gives the first ``Linear`` layer
    its width (``lo > hi``: none), or ``None`` when every size from ``lo`` on fits. The width the
    layer receives never falls as the image grows, so the ends are found by bisection. The probe runs
    on a copy in eval mode, so the model (its modes, buffers and any sampling module's generator)
    is left as it was."""
    model = copy.deepcopy(model)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    target = int(linears[0].in_features)  # replaced by the width of the Linear layer reached first
    try:
        param = next(model.parameters())
        device, dtype = param.device, param.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        raise _Stop(int(args[0].shape[-1]), int(module.in_features))  # type: ignore[arg-type]

    cache: dict[int, int] = {}

    def width(side: int) -> int:
        """Width the first Linear layer receives for a ``side``-pixel image (0: the image is too small)."""
        nonlocal target
        if side not in cache:
            try:
                model(torch.zeros(1, channels, side, side, device=device, dtype=dtype))
                cache[side] = 0  # no Linear layer was reached
            except _Stop as stop:
                cache[side], target = stop.width, stop.expected
            except (RuntimeError, ValueError):  # too small for a convolution or pooling
                cache[side] = 0
        return cache[side]

    handles = [m.register_forward_pre_hook(hook) for m in linears]
    model.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            side = 1
            # stop once the image has 1024x more pixels than the layer's width (no usual network
            # shrinks its input that much before the first Linear layer)
            while width(side) < target and side < _MAX_SIDE and side * side <= 1024 * target:
                side *= 2
            if width(side) < target:
                return 1, 0
            lo = _bisect(lambda v: width(v) >= target, side // 2 + 1 if side > 1 else 1, side)
            if width(lo) != target:
                return 1, 0
            if width(2 * lo + 1) == target:
                return None
            hi = _bisect(lambda v: width(v) > target, lo, 2 * lo + 1) - 1
            return lo, hi
    finally:
        for h in handles:
            h.remove()


def _bisect(pred: Callable[[int], bool], lo: int, hi: int) -> int:
    """The smallest ``v`` in ``[lo, hi]`` with ``pred(v)`` (``pred`` monotone, ``pred(hi)`` true)."""
    while lo < hi:
        mid = (lo + hi) // 2
        if pred(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo
