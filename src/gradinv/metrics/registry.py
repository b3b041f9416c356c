"""The metric registry: one :class:`MetricSpec` per metric, read by everyone who shows or computes one.

A spec holds the metric's compute function and its metadata: title, unit, direction
(``higher_is_better``, from the attacker's side: more leakage is higher), how per-image values are
summarised (``reduction``), what it needs (:class:`Need`) and when it is asked for.
:func:`gradinv.metrics.evaluate` computes every registered metric in registration order; the reports
(``gradinv.report``), the frontier study's outputs and ``gradinv list`` take titles, units, number
formats and directions from here.

The built-in metrics are registered in :mod:`gradinv.metrics.builtin`. Adding one is its pure
function in ``metrics/functional/`` plus one :func:`register_metric` call there (see
``docs/design.md``, "Adding a metric")::

    register_metric(
        MetricSpec(
            "mae", "MAE", "Mean absolute error per image in [0, 1] image space.",
            higher_is_better=False, compute=pairwise(mae),
        )
    )
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

from torch import Tensor

from gradinv.errors import ConfigError, unknown_name
from gradinv.metrics.options import MetricsConfig
from gradinv.types import Batch, Reconstruction

__all__ = [
    "METRICS",
    "MetricInputs",
    "MetricRegistry",
    "MetricSpec",
    "Need",
    "pairwise",
    "register_metric",
]


class Need(str, Enum):
    """What a metric needs beyond a matched pair of image batches.

    ``REFERENCE_IMAGES`` and ``PRIOR_IMAGE`` are inputs of :func:`~gradinv.metrics.evaluate`: a metric
    needing one is computed only when it is passed. ``LABELS`` and ``RGB_OR_GRAY`` are checked before
    the metric is computed (otherwise it is listed as unavailable, with the reason). The weights and
    ``CANDIDATES`` are looked for by the compute function itself, which raises
    :class:`~gradinv.errors.MetricUnavailable` with the reason when they are missing."""

    LPIPS_WEIGHTS = "lpips_weights"
    STLPIPS_WEIGHTS = "stlpips_weights"
    LABELS = "labels"
    CANDIDATES = "candidates"
    REFERENCE_IMAGES = "reference_images"
    PRIOR_IMAGE = "prior_image"
    RGB_OR_GRAY = "rgb_or_gray"

    @property
    def description(self) -> str:
        return _NEED_DESCRIPTIONS[self]


_NEED_DESCRIPTIONS = {
    Need.LPIPS_WEIGHTS: "torchvision's ImageNet AlexNet weights (official LPIPS)",
    Need.STLPIPS_WEIGHTS: "the ST-LPIPS weight file",
    Need.LABELS: "labels recovered by the attack",
    Need.CANDIDATES: "every attack initialisation's reconstruction (Reconstruction.candidates)",
    Need.REFERENCE_IMAGES: "other images of the data source ([metrics] iip = true)",
    Need.PRIOR_IMAGE: "a prior image ([metrics] rdlv = true)",
    Need.RGB_OR_GRAY: "1- or 3-channel images",
}
WEIGHT_NEEDS = frozenset({Need.LPIPS_WEIGHTS, Need.STLPIPS_WEIGHTS})


@dataclass(frozen=True)
class MetricInputs:
    """Everything a compute function may read.

    ``preds`` and ``target`` are the matched pairs (ground-truth order; reconstructions clamped to
    ``[0, 1]``; float32 on the CPU); ``truth`` is the whole ground truth (``truth_images`` its
    images on the CPU). ``computed`` holds the per-image values of the metrics computed so far and
    ``unavailable`` their reasons, so a metric may reuse earlier ones (BRR reuses PSNR and LPIPS)."""

    preds: Tensor
    target: Tensor
    truth_images: Tensor
    reconstruction: Reconstruction
    truth: Batch
    options: MetricsConfig
    device: str | None
    reference_images: Tensor | None
    prior: Tensor | None
    computed: Mapping[str, tuple[float, ...]]
    unavailable: Mapping[str, str]


Values = Tensor | Sequence[float]


def _always(options: MetricsConfig) -> bool:
    return True


@dataclass(frozen=True)
class MetricSpec:
    """One metric: how to compute it and how to show it.

    Args:
        name: the key in ``Evaluation.metrics``, report.json and ``gradinv list``.
        title: short display title (``"PSNR"``); with ``unit`` it makes :attr:`heading`.
        description: one sentence for ``gradinv list``, with the paper when there is one.
        higher_is_better: the direction, from the attacker's side (more leakage = higher).
        compute: ``MetricInputs -> (N,)`` per-image values in ground-truth order; raises
            :class:`~gradinv.errors.MetricUnavailable` (reason as its message) when it cannot run.
        unit: e.g. ``"dB"``; empty when unitless.
        reduction: how per-image values are summarised: ``"mean"``, ``"max"`` (WSRR) or ``"sum"``
            (a count: ``exact``).
        needs: see :class:`Need`.
        enabled: whether ``MetricsConfig`` asks for it (BRR variants, the IIP distance).
        switch: the ``MetricsConfig`` field with ``"auto"``/``"on"``/``"off"`` for it (``"lpips"``):
            ``off`` skips it, ``on`` turns a missing weight file into an error.
        caveat: appended to the title in human-readable reports (``"not LPIPS"``).
        fmt: the format spec of a value in reports (``".2f"`` for PSNR).
        headline: shown at the top of an HTML report.
    """

    name: str
    title: str
    description: str
    higher_is_better: bool
    compute: Callable[[MetricInputs], Values]
    unit: str = ""
    reduction: Literal["mean", "max", "sum"] = "mean"
    needs: frozenset[Need] = field(default_factory=frozenset)
    enabled: Callable[[MetricsConfig], bool] = _always
    switch: str | None = None
    caveat: str = ""
    fmt: str = ".4g"
    headline: bool = False

    @property
    def heading(self) -> str:
        """The title with its unit: ``"PSNR (dB)"`` (``MetricResult.title``, report.json's ``title``)."""
        return f"{self.title} ({self.unit})" if self.unit else self.title

    @property
    def display_title(self) -> str:
        """The heading with its caveat, for people: ``"ST-LPIPS (not LPIPS)"``."""
        return f"{self.heading} ({self.caveat})" if self.caveat else self.heading

    @property
    def needs_weights(self) -> bool:
        return bool(self.needs & WEIGHT_NEEDS)


class MetricRegistry(Mapping[str, MetricSpec]):
    """Name -> :class:`MetricSpec`, in registration order (the order metrics are computed and shown)."""

    def __init__(self) -> None:
        self._specs: dict[str, MetricSpec] = {}

    def register(self, spec: MetricSpec) -> MetricSpec:
        if spec.name in self._specs and self._specs[spec.name] is not spec:
            raise ValueError(
                f"Expected a new metric name, but {spec.name!r} is already registered. Choose another name."
            )
        if spec.reduction not in ("mean", "max", "sum"):
            raise ValueError(
                f"Expected the reduction of metric {spec.name!r} to be 'mean', 'max' or 'sum', but got "
                f"{spec.reduction!r}."
            )
        self._specs[spec.name] = spec
        return spec

    def get_spec(self, name: str) -> MetricSpec:
        """The spec of ``name``; :class:`~gradinv.errors.ConfigError` listing the valid names otherwise."""
        if name not in self._specs:
            raise ConfigError(unknown_name("metric", name, self._specs))
        return self._specs[name]

    def __getitem__(self, name: str) -> MetricSpec:
        return self._specs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)


#: Every metric gradinv computes (filled by :mod:`gradinv.metrics.builtin`).
METRICS = MetricRegistry()


def register_metric(spec: MetricSpec) -> MetricSpec:
    """Add ``spec`` to :data:`METRICS` (after those already there); returns it."""
    return METRICS.register(spec)


def pairwise(fn: Callable[[Tensor, Tensor], Tensor]) -> Callable[[MetricInputs], Values]:
    """A compute function for a pure per-pair metric ``fn(preds, target) -> (N,)``."""

    def compute(inputs: MetricInputs) -> Values:
        return fn(inputs.preds, inputs.target)

    compute.__name__ = f"pairwise_{getattr(fn, '__name__', 'metric')}"
    return compute
