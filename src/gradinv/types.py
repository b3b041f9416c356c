"""Typed core: the scenario and the traffic of one federated round, as frozen dataclasses.

Data flows one way (see ``docs/design.md``)::

    Batch ─► client training (TrainingConfig) ─► ClientUpdate ─► server (RoundResult)
    GroundTruth ─► observe(truth, threat) ─► AttackerView ─► Attack ─► AttackResult(Reconstruction)

Images are always float tensors in ``[0, 1]`` image space, shape ``(N, C, H, W)``; the model sees
``normalization.apply(images)``. Metrics are computed in image space.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

import torch
from torch import Tensor, nn

from gradinv.errors import ConfigError, DataError, UpdateError
from gradinv.threat_models import Fact, ThreatModel

__all__ = [
    "AttackResult",
    "AttackerView",
    "BNStatistics",
    "Batch",
    "ClientUpdate",
    "CraftView",
    "GroundTruth",
    "ModelUpdate",
    "Normalization",
    "Reconstruction",
    "RoundResult",
    "SurrogateData",
    "TrainingConfig",
    "UpdateKind",
]


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Normalization:
    """Per-channel affine normalisation ``(x - mean) / std`` applied before the model.

    >>> n = Normalization((0.5,), (0.25,))
    >>> n.apply(torch.ones(1, 1, 1, 1)).item()
    2.0
    >>> n.invert(n.apply(torch.full((1, 1, 1, 1), 0.3))).item()  # doctest: +ELLIPSIS
    0.3...
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str = "custom"

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.std):
            raise ConfigError(
                f"Expected `mean` and `std` of equal length, but got {len(self.mean)} and {len(self.std)}."
            )
        if any(s <= 0 for s in self.std):
            raise ConfigError(f"Expected every normalisation `std` > 0, but got {self.std}.")

    @classmethod
    def identity(cls, channels: int) -> Normalization:
        return cls((0.0,) * channels, (1.0,) * channels, name="none")

    @property
    def is_identity(self) -> bool:
        return all(m == 0.0 for m in self.mean) and all(s == 1.0 for s in self.std)

    def _stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        channels = x.shape[-3]
        if len(self.mean) not in (1, channels):
            raise DataError(
                f"Expected images with {len(self.mean)} channels for normalisation {self.name!r}, "
                f"but got {channels}. Choose a normalisation matching the data's channels."
            )
        shape = (-1, 1, 1)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(shape)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(shape)
        return mean, std

    def apply(self, x: Tensor) -> Tensor:
        """Image space ``[0, 1]`` -> model input space."""
        if self.is_identity:
            return x
        mean, std = self._stats(x)
        return (x - mean) / std

    def invert(self, z: Tensor) -> Tensor:
        """Model input space -> image space."""
        if self.is_identity:
            return z
        mean, std = self._stats(z)
        return z * std + mean

    def bounds(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """The image box ``[0, 1]`` expressed in model input space (for box constraints)."""
        return self.apply(torch.zeros_like(like)), self.apply(torch.ones_like(like))


@dataclass(frozen=True)
class Batch:
    """A client's private samples: images in ``[0, 1]`` and integer labels.

    ``indices`` and ``source`` record provenance (which dataset rows these are)."""

    images: Tensor
    labels: Tensor
    normalization: Normalization
    class_names: tuple[str, ...] = ()
    indices: tuple[int, ...] = ()
    source: str = ""

    def __post_init__(self) -> None:
        x, y = self.images, self.labels
        if x.ndim != 4:
            raise DataError(f"Expected images of shape (N, C, H, W), but got shape {tuple(x.shape)}.")
        if not x.is_floating_point():
            raise DataError(f"Expected float images in [0, 1], but got dtype {x.dtype}.")
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise DataError(
                f"Expected one label per image ({x.shape[0]}), but got labels of shape {tuple(y.shape)}."
            )
        if y.dtype != torch.int64:
            raise DataError(f"Expected int64 labels, but got {y.dtype}.")
        if x.numel() and (x.min() < 0 or x.max() > 1):
            raise DataError(
                f"Expected images in [0, 1], but got values in [{x.min().item():.3g}, {x.max().item():.3g}]."
                " Divide uint8 images by 255."
            )

    @property
    def size(self) -> int:
        return int(self.images.shape[0])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def model_input(self) -> Tensor:
        return self.normalization.apply(self.images)

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            self.images.to(device),
            self.labels.to(device),
            self.normalization,
            self.class_names,
            self.indices,
            self.source,
        )

    def subset(self, idx: Tensor | list[int]) -> Batch:
        index = torch.as_tensor(idx, dtype=torch.long, device=self.images.device)
        prov = tuple(self.indices[i] for i in index.tolist()) if self.indices else ()
        return Batch(
            self.images[index],
            self.labels[index],
            self.normalization,
            self.class_names,
            prov,
            self.source,
        )


class SurrogateData(typing.Protocol):
    """Surrogate data: images from the client's distribution that are not the client's own.

    This is all an attack may use of them: how many there are, and the images as a :class:`Batch`
    resized to the attacker's input size and channel count. :class:`gradinv.data.ImageDataset` is
    one (the simulation's surrogate set); anything else with these two methods will do.
    """

    def __len__(self) -> int: ...

    def to_batch(self, *, image_size: int | None = None, channels: int | None = None) -> Batch: ...


# --------------------------------------------------------------------------------------------------
# Client training
# --------------------------------------------------------------------------------------------------

Protocol = Literal["fedsgd", "fedavg"]


@dataclass(frozen=True)
class TrainingConfig:
    """The client's local training.

    * ``fedsgd``: one gradient of the mean loss over all the client's samples at the global weights
      (``epochs`` = 1, ``batch_size`` = ``None`` or the number of samples).
    * ``fedavg``: ``epochs`` passes over the client's N samples in mini-batches of ``batch_size``
      (the last one smaller if B does not divide N), SGD with ``lr``, ``momentum`` and
      ``weight_decay``; the client shares the weight delta. U = E * ceil(N / B) local steps.

    ``shuffle`` draws a new order each epoch from ``seed`` (the client's private randomness; the
    attacker never sees it); with ``shuffle = False`` samples are visited in batch order.

    ``model_mode`` is the mode of the client's forward pass: ``train`` (a real training step:
    BatchNorm normalises with the batch's statistics and its running statistics move) or ``eval``
    (BatchNorm uses the running statistics, as in the experiments of Geiping et al. 2020).
    """

    protocol: Protocol = "fedsgd"
    epochs: int = 1
    batch_size: int | None = None
    lr: float = 0.1
    momentum: float = 0.0
    weight_decay: float = 0.0
    shuffle: bool = True
    seed: int | None = 0
    model_mode: Literal["train", "eval"] = "train"

    def __post_init__(self) -> None:
        if self.model_mode not in ("train", "eval"):
            raise ConfigError(f"Expected `model_mode` to be 'train' or 'eval', but got {self.model_mode!r}.")
        if self.protocol not in ("fedsgd", "fedavg"):
            raise ConfigError(f"Expected `protocol` to be 'fedsgd' or 'fedavg', but got {self.protocol!r}.")
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ConfigError(f"Expected `epochs` to be an int >= 1, but got {self.epochs!r}.")
        if self.batch_size is not None and (not isinstance(self.batch_size, int) or self.batch_size < 1):
            raise ConfigError(f"Expected `batch_size` to be an int >= 1, but got {self.batch_size!r}.")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"Expected `lr` to be a positive finite number, but got {self.lr!r}.")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"Expected `momentum` in [0, 1), but got {self.momentum!r}.")
        if self.weight_decay < 0:
            raise ConfigError(f"Expected `weight_decay` >= 0, but got {self.weight_decay!r}.")
        if self.protocol == "fedsgd" and (self.epochs != 1 or self.momentum or self.weight_decay):
            raise ConfigError(
                "FedSGD shares one gradient at the global weights, so `epochs` must be 1 and `momentum` "
                f"and `weight_decay` 0, but got epochs={self.epochs}, momentum={self.momentum}, "
                f"weight_decay={self.weight_decay}. Use protocol = 'fedavg' for local training."
            )

    def resolved_batch_size(self, num_samples: int) -> int:
        """The mini-batch size B used for ``num_samples`` samples (B = N for FedSGD or unset)."""
        if self.protocol == "fedsgd":
            if self.batch_size not in (None, num_samples):
                raise ConfigError(
                    "FedSGD computes one gradient over all the client's samples, so `batch_size` must "
                    f"equal the number of samples ({num_samples}), but got {self.batch_size}. Select "
                    f"{self.batch_size} images, or use protocol = 'fedavg' for mini-batches."
                )
            return num_samples
        return min(self.batch_size or num_samples, num_samples)

    def local_steps(self, num_samples: int) -> int:
        """U = E * ceil(N / B)."""
        b = self.resolved_batch_size(num_samples)
        return self.epochs * math.ceil(num_samples / b)


class UpdateKind(str, Enum):
    """What a client shares: a gradient (FedSGD) or a weight delta ``W_local - W_global`` (FedAvg)."""

    GRADIENT = "gradient"
    DELTA = "delta"


def _check_finite(tensors: Mapping[str, Tensor], what: str) -> None:
    for name, t in tensors.items():
        if t.is_floating_point() and bool(torch.isfinite(t.sum())):  # fast path: one reduction
            continue
        bad = int((~torch.isfinite(t)).sum())  # exact (a finite sum may also just overflow)
        if bad:
            raise UpdateError(
                f"Expected finite values in the {what} of {name!r}, but got {bad} NaN/Inf entries. "
                "The client's training diverged (lower `lr`) or the update was corrupted."
            )


@dataclass(frozen=True)
class ModelUpdate:
    """An update as it travels: per-parameter tensors (gradient or delta) plus buffer deltas.

    ``buffers`` holds the change of floating-point buffers (BatchNorm running statistics) when the
    protocol shares full model states (FedAvg); it is empty for FedSGD gradients."""

    kind: UpdateKind
    params: Mapping[str, Tensor]
    buffers: Mapping[str, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.kind, UpdateKind):
            object.__setattr__(self, "kind", UpdateKind(self.kind))
        if not self.params:
            raise UpdateError("Expected at least one parameter tensor in the update, but got none.")
        _check_finite(self.params, str(self.kind.value))
        _check_finite(self.buffers, "buffer delta")

    def check_matches(self, model: nn.Module) -> None:
        """Raise :class:`UpdateError` unless names and shapes match ``model``'s trainable parameters."""
        expected = {n: tuple(p.shape) for n, p in model.named_parameters() if p.requires_grad}
        got = {n: tuple(t.shape) for n, t in self.params.items()}
        missing = sorted(set(expected) - set(got))
        extra = sorted(set(got) - set(expected))
        if missing or extra:
            raise UpdateError(
                f"Expected update tensors for the model's parameters, but {len(missing)} are missing "
                f"({', '.join(missing[:4])}{'...' if len(missing) > 4 else ''}) and {len(extra)} are "
                f"unknown ({', '.join(extra[:4])}{'...' if len(extra) > 4 else ''}). Was the update made "
                "with the same model architecture?"
            )
        for n, shape in expected.items():
            if got[n] != shape:
                raise UpdateError(f"Expected update {n!r} of shape {shape}, but got {got[n]}.")

    def to(self, device: torch.device | str) -> ModelUpdate:
        return ModelUpdate(
            self.kind,
            {k: v.to(device) for k, v in self.params.items()},
            {k: v.to(device) for k, v in self.buffers.items()},
        )

    def norm(self) -> float:
        return float(torch.stack([(t.double() ** 2).sum() for t in self.params.values()]).sum().sqrt())


@dataclass(frozen=True)
class ClientUpdate:
    """One client's message to the server, with the ground-truth metadata of how it was made."""

    client_id: int
    update: ModelUpdate
    num_samples: int
    local_steps: int
    train_loss: float
    info: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class RoundResult:
    """One FL round: what each client sent, what the server received, and the aggregate.

    ``server_received`` is what the server can read. With plain mean aggregation it is the clients'
    updates themselves (``reveals_individual`` is True); secure aggregation (a later server) hides
    them and exposes only the aggregate. ``client_models`` holds the model each client received when
    the server sent different clients different models (``None``: everyone got the global model)."""

    updates: tuple[ClientUpdate, ...]
    aggregate: ModelUpdate
    total_samples: int
    aggregation: str
    reveals_individual: bool
    server_received: tuple[ModelUpdate, ...] = ()
    client_models: tuple[nn.Module, ...] | None = None


@dataclass(frozen=True)
class BNStatistics:
    """Per-channel mean and (biased) variance of a BatchNorm layer's input on the client's batch."""

    layer: str
    mean: Tensor
    var: Tensor


# --------------------------------------------------------------------------------------------------
# Threat-gated view, attack output
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroundTruth:
    """Everything the simulation knows. Only :func:`gradinv.threat.observe` and evaluation read it."""

    model: nn.Module
    batches: tuple[Batch, ...]
    training: TrainingConfig
    round: RoundResult
    num_classes: int
    victim: int = 0
    surrogate: SurrogateData | None = None
    client_models: tuple[nn.Module, ...] | None = None

    def __post_init__(self) -> None:
        if self.client_models is None and self.round.client_models is not None:
            object.__setattr__(self, "client_models", self.round.client_models)
        if not 0 <= self.victim < len(self.batches):
            raise DataError(
                f"Expected the victim to be a client id in [0, {len(self.batches)}), but got {self.victim}."
            )
        if self.client_models is not None and len(self.client_models) != len(self.batches):
            raise DataError(
                f"Expected one received model per client ({len(self.batches)}), "
                f"but got {len(self.client_models)}."
            )

    @property
    def victim_model(self) -> nn.Module:
        """The model the victim received (differs from ``model`` when the server sent crafted or
        per-client models)."""
        return self.client_models[self.victim] if self.client_models is not None else self.model

    @property
    def batch(self) -> Batch:
        """The victim client's private batch."""
        return self.batches[self.victim]

    @property
    def victim_update(self) -> ClientUpdate:
        return self.round.updates[self.victim]

    def observed_batch(self) -> Batch:
        """The samples behind what the server can see: the victim's batch when individual updates are
        visible, otherwise every client's samples (the aggregate mixes them all)."""
        if self.round.reveals_individual or len(self.batches) == 1:
            return self.batch
        b0 = self.batches[0]
        return Batch(
            torch.cat([b.images for b in self.batches]),
            torch.cat([b.labels for b in self.batches]),
            b0.normalization,
            b0.class_names,
            tuple(i for b in self.batches for i in b.indices),
            b0.source,
        )


@dataclass(frozen=True)
class AttackerView:
    """What the attacker knows. Fields the threat model does not grant are ``None``.

    Built by :func:`gradinv.threat.observe` from a :class:`GroundTruth`, or directly by users who
    captured a real update (validated on construction).

    * model updates: ``model`` (architecture and weights as sent) and ``update``;
      ``aggregated_over`` > 1 when only an aggregate of several clients is visible.
    * basic knowledge: ``num_samples``, ``input_shape``, ``num_classes``, ``class_names``,
      ``normalization``.
    * training details: ``training`` (lr, E, B, momentum, weight decay, shuffling, never the seed).
    * surrogate data: ``surrogate`` (images from the same distribution, not the victim's).
    * client data distribution: ``bn_statistics`` and ``label_counts``.
    * ``label_counts`` is also set by the ``labels`` extension (known labels, as a multiset).
    * ``facts``: where each basic-knowledge field came from (:class:`~gradinv.threat_models.Fact`:
      granted, inferred from the model, or assumed by the attack), so reports can say so. Under a
      threat model without basic knowledge the view still holds what the model reveals (the label
      space, and the input shape where the architecture fixes it).
    """

    threat: ThreatModel
    model: nn.Module
    update: ModelUpdate
    aggregated_over: int = 1
    num_samples: int | None = None
    input_shape: tuple[int, int, int] | None = None
    num_classes: int | None = None
    class_names: tuple[str, ...] = ()
    normalization: Normalization | None = None
    training: TrainingConfig | None = None
    surrogate: SurrogateData | None = None
    bn_statistics: tuple[BNStatistics, ...] | None = None
    label_counts: Tensor | None = None
    facts: tuple[Fact, ...] = ()

    def __post_init__(self) -> None:
        self.update.check_matches(self.model)
        if self.label_counts is not None:
            lc = self.label_counts
            if lc.ndim != 1 or lc.dtype != torch.int64 or (lc < 0).any():
                raise DataError(
                    f"Expected `label_counts` as a 1-D int64 histogram, but got {lc.dtype} of shape "
                    f"{tuple(lc.shape)}."
                )
            if self.num_samples is not None and int(lc.sum()) != self.num_samples:
                raise DataError(
                    f"Expected label counts summing to num_samples={self.num_samples}, "
                    f"but they sum to {int(lc.sum())}."
                )

    def fact(self, name: str) -> Fact | None:
        """Where the view's field ``name`` came from (``None``: not recorded)."""
        return next((f for f in self.facts if f.field == name), None)

    @property
    def known_labels(self) -> Tensor | None:
        """The label multiset as a sorted label vector, when granted."""
        if self.label_counts is None:
            return None
        return torch.repeat_interleave(torch.arange(len(self.label_counts)), self.label_counts)


@dataclass(frozen=True)
class CraftView:
    """What an active (malicious-server) attacker knows when it crafts the models it sends, before
    any update exists. Built by :func:`gradinv.threat.observe_server`; fields the threat model does
    not grant are ``None``. ``num_clients`` and ``victim`` are the server's own round set-up."""

    threat: ThreatModel
    model: nn.Module
    num_clients: int
    victim: int
    num_samples: int | None = None
    input_shape: tuple[int, int, int] | None = None
    num_classes: int | None = None
    normalization: Normalization | None = None
    training: TrainingConfig | None = None
    surrogate: SurrogateData | None = None


@dataclass(frozen=True)
class Reconstruction:
    """An attack's output: images in ``[0, 1]`` and, when the attack infers them, labels.

    ``candidates`` holds every restart's images ``(K, N, C, H, W)`` with their final objective in
    ``candidate_losses``, so worst-case and per-initialisation metrics can be computed."""

    images: Tensor
    labels: Tensor | None = None
    label_method: str = "none"
    candidates: Tensor | None = None
    candidate_losses: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise DataError(f"Expected reconstruction of shape (N, C, H, W), got {tuple(self.images.shape)}.")


@dataclass(frozen=True)
class AttackResult:
    """A reconstruction and how it was obtained."""

    attack: str
    reconstruction: Reconstruction
    parameters: Mapping[str, Any]
    iterations: int
    seconds: float
    interrupted: bool = False
    loss_history: tuple[float, ...] = ()
    best_candidate: int = 0
    notes: tuple[str, ...] = ()

    @property
    def seconds_per_iteration(self) -> float:
        return self.seconds / self.iterations if self.iterations else float("nan")
