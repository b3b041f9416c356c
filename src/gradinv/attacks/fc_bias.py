"""FC bias trick: the exact input of a biased first Linear layer, read off its gradient.

Phong, Aono, Hayashi, Wang, Moriai, "Privacy-Preserving Deep Learning via Additively Homomorphic
Encryption", IEEE TIFS 2018 (the linear-layer leakage also described by Zhang et al., IJCAI 2022
survey, §2.2, and by the 2025 ANA-GIA study, §II-C).

For a first layer ``z = W x + b`` and one sample, ``dL/dW_i = (dL/dz_i) x^T`` and ``dL/db_i = dL/dz_i``,
so every row ``i`` with a non-zero bias gradient gives ``x = dL/dW_i / dL/db_i``. With B samples the
row holds ``(1/B) sum_n delta_ni x_n`` over ``(1/B) sum_n delta_ni``: a mixture of the inputs that
activate neuron ``i``, equal to one input only where a single sample activates it.

* B = 1: every active row gives the same ``x``; the rows are pooled (:func:`pooled_input`) by total
  least squares on the rank-one matrix ``[dL/dW | dL/db] = g [x^T, 1]`` (or ordinary least squares,
  ``x = sum_i g_i w_i / sum_i g_i^2``): exact without noise, averaging the noise out under DP.
* B > 1: the per-row ratios are clustered (leader clustering in order of decreasing ``|g_i|``, relative
  distance at most ``tolerance``), each cluster pooled by least squares, ranked by support (rows
  agreeing); the top B are returned as images and every cluster is a candidate mixture
  (:func:`fc_leak`).

FedAvg: the ratio of the weight and bias *deltas* is still exact at N = 1 without weight decay (each
local step sees the same input); otherwise it mixes steps. Labels (B = 1 only): the one class whose
classifier-bias gradient is negative (iDLG's sign rule; Zhao, Mopuri, Bilen, arXiv 2020), when the
update holds the classifier's bias.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from gradinv.attacks.base import UPDATES_NEEDED, Attack, AttackConfig, ProgressFn, register_attack
from gradinv.errors import ConfigError
from gradinv.models.inspect import find_classifier
from gradinv.threat import Knowledge, Requirement
from gradinv.types import AttackerView, AttackResult, ModelUpdate, Normalization, Reconstruction, UpdateKind

__all__ = [
    "FCBias",
    "FCBiasConfig",
    "FCLeak",
    "fc_layer_problem",
    "fc_leak",
    "first_layer",
    "pooled_input",
]

logger = logging.getLogger(__name__)

Estimator = Literal["tls", "ls"]


@dataclass(frozen=True)
class FCBiasConfig(AttackConfig):
    """``tolerance``: relative distance under which two rows' ratios are the same input (B > 1).
    ``min_bias_grad``: rows with ``|dL/db_i| <= min_bias_grad * max_i |dL/db_i|`` are ignored.
    ``estimator``: how B = 1 pools the rows (``tls`` total or ``ls`` ordinary least squares)."""

    tolerance: float = 1e-3
    min_bias_grad: float = 0.0
    estimator: Estimator = "tls"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (math.isfinite(self.tolerance) and self.tolerance > 0):
            raise ConfigError(f"Expected `tolerance` > 0, but got {self.tolerance}.")
        if not 0 <= self.min_bias_grad < 1:
            raise ConfigError(f"Expected `min_bias_grad` in [0, 1), but got {self.min_bias_grad}.")


def first_layer(model: nn.Module) -> tuple[str, nn.Module]:
    """The first module (in registration order, the forward order of ``nn.Sequential`` and of
    gradinv's models) that holds parameters of its own."""
    for name, module in model.named_modules():
        if next(module.parameters(recurse=False), None) is not None:
            return name, module
    return "", model


def fc_layer_problem(model: nn.Module, input_shape: tuple[int, int, int] | None = None) -> str | None:
    """Why the FC bias trick does not apply to ``model`` (None if it does)."""
    name, layer = first_layer(model)
    where = f" ({name!r})" if name else ""
    if not isinstance(layer, nn.Linear):
        return f"analytic FC attack needs a first Linear layer with bias; got {type(layer).__name__}{where}"
    if layer.bias is None:
        return f"analytic FC attack needs a first Linear layer with bias; got Linear without bias{where}"
    if input_shape is not None and layer.in_features != math.prod(input_shape):
        return (
            f"analytic FC attack needs the first Linear layer to see the flattened input "
            f"(C*H*W = {math.prod(input_shape)}), but Linear{where} has in_features={layer.in_features}"
        )
    return None


def _active(grad_b: Tensor, min_bias_grad: float) -> Tensor:
    mag = grad_b.abs()
    peak = float(mag.max()) if mag.numel() else 0.0
    return (
        torch.nonzero(mag > min_bias_grad * peak, as_tuple=False).flatten() if peak > 0 else mag.new_zeros(0)
    )


def pooled_input(
    grad_w: Tensor, grad_b: Tensor, *, estimator: Estimator = "tls", min_bias_grad: float = 0.0
) -> Tensor:
    """The one input behind a B = 1 gradient, pooled over the active rows.

    ``ls``: least squares ``sum_i g_i w_i / sum_i g_i^2`` (noise on ``w`` only). ``tls``: total least
    squares, the top right-singular vector ``v`` of ``[dL/dW | dL/db]`` (rank one, ``g [x^T, 1]``)
    read as ``x = v[:-1] / v[-1]``; it treats the noise on the weight and the bias gradients alike,
    as distributed DP adds it. Both are exact without noise.

    >>> x = torch.tensor([0.2, 0.7, 0.1]); g = torch.tensor([0.5, 0.0, -2.0])
    >>> pooled_input(g[:, None] * x, g, estimator="ls")
    tensor([0.2000, 0.7000, 0.1000])
    >>> torch.allclose(pooled_input(g[:, None] * x, g), x)
    True
    """
    rows = _active(grad_b, min_bias_grad).to(grad_b.device)
    g = grad_b[rows].double()
    w = grad_w[rows].double()
    if estimator == "ls":
        return ((g[:, None] * w).sum(0) / (g**2).sum()).to(grad_w.dtype)
    if estimator != "tls":
        raise ConfigError(f"Expected `estimator` 'tls' or 'ls', but got {estimator!r}.")
    _, _, vh = torch.linalg.svd(torch.cat([w, g[:, None]], dim=1), full_matrices=False)
    v = vh[0]
    return (v[:-1] / v[-1]).to(grad_w.dtype)


@dataclass(frozen=True)
class FCLeak:
    """Per-row ratios of the first layer and their clusters.

    ``rows`` (R,): rows with a non-zero bias gradient; ``ratios`` (R, D): ``dL/dW_i / dL/db_i``;
    ``estimates`` (K, D): one least-squares input per cluster, by decreasing ``support`` (rows per
    cluster); ``members``: the rows of each cluster. A cluster is one sample's exact input when its
    neurons are activated by that sample alone, and a mixture otherwise."""

    rows: Tensor
    ratios: Tensor
    estimates: Tensor
    support: Tensor
    members: tuple[Tensor, ...]


def fc_leak(grad_w: Tensor, grad_b: Tensor, *, tolerance: float = 1e-3, min_bias_grad: float = 0.0) -> FCLeak:
    """Ratios of every active row, clustered (leader clustering by decreasing ``|dL/db_i|``).

    >>> x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])                # two inputs
    >>> delta = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])  # neuron 0: input 0, 1: input 1, 2: both
    >>> leak = fc_leak(delta @ x / 2, delta.sum(1) / 2)
    >>> leak.estimates.tolist(), leak.support.tolist()
    ([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]], [1, 1, 1])
    """
    rows = _active(grad_b, min_bias_grad).to(grad_b.device)
    g = grad_b[rows].double()
    w = grad_w[rows].double()
    ratios = w / g[:, None]
    order = torch.argsort(g.abs(), descending=True)
    unassigned = torch.ones(len(rows), dtype=torch.bool)
    groups: list[Tensor] = []
    for i in order.tolist():
        if not unassigned[i]:
            continue
        lead = ratios[i]
        dist = (ratios - lead).norm(dim=1) / lead.norm().clamp_min(1e-30)
        members = torch.nonzero(unassigned & (dist <= tolerance), as_tuple=False).flatten()
        unassigned[members] = False
        groups.append(members)
    est = [(g[m, None] * w[m]).sum(0) / (g[m] ** 2).sum() for m in groups]
    weight = [float((g[m] ** 2).sum()) for m in groups]
    rank = sorted(range(len(groups)), key=lambda k: (-len(groups[k]), -weight[k]))
    dim = grad_w.shape[1]
    return FCLeak(
        rows=rows,
        ratios=ratios.to(grad_w.dtype),
        estimates=torch.stack([est[k] for k in rank]).to(grad_w.dtype)
        if groups
        else grad_w.new_zeros(0, dim),
        support=torch.tensor([len(groups[k]) for k in rank], dtype=torch.long),
        members=tuple(rows[groups[k]] for k in rank),
    )


def _bias_label(update: ModelUpdate, model: nn.Module) -> Tensor | None:
    """iDLG's sign rule at B = 1: the only class with a negative classifier-bias gradient (positive
    delta for FedAvg)."""
    _, bias = find_classifier(model)
    if bias is None or bias not in update.params:
        return None
    g = update.params[bias].detach().flatten()
    if update.kind is UpdateKind.DELTA:
        g = -g
    if int((g < 0).sum()) != 1:
        return None
    return torch.argmin(g).reshape(1).cpu()


@register_attack
class FCBias(Attack):
    """The FC bias trick: input = weight gradient row / bias gradient of a biased first Linear layer."""

    name = "fc-bias"
    title = "FC bias trick"
    family = "analytic"
    paper = (
        "Phong, Aono, Hayashi, Wang, Moriai. Privacy-Preserving Deep Learning via Additively "
        "Homomorphic Encryption. IEEE TIFS 2018"
    )
    config_cls = FCBiasConfig
    config: FCBiasConfig
    base_requirements = (
        UPDATES_NEEDED,
        Requirement(
            Knowledge.BASIC_KNOWLEDGE,
            "it reshapes the recovered rows to the client's image shape and batch size",
        ),
    )

    @staticmethod
    def _layer_names(view: AttackerView) -> tuple[str, str]:
        name, _ = first_layer(view.model)
        prefix = f"{name}." if name else ""
        return f"{prefix}weight", f"{prefix}bias"

    def check_view(self, view: AttackerView) -> list[str]:
        problem = fc_layer_problem(view.model, view.input_shape)
        if problem is not None:
            return [problem[0].upper() + problem[1:] + "."]
        w_name, b_name = self._layer_names(view)
        if w_name not in view.update.params or b_name not in view.update.params:
            return [f"The update holds no gradient for the first Linear layer ({w_name!r}, {b_name!r})."]
        if _active(view.update.params[b_name], self.config.min_bias_grad).numel() == 0:
            return [
                "No row of the first Linear layer has a non-zero bias gradient, so no input can be "
                "recovered (every neuron was inactive for every sample)."
            ]
        if view.training is not None and view.training.weight_decay:
            logger.warning("FC bias trick: weight decay mixes the weights into the update; not exact")
        return []

    def _reconstruct(
        self, view: AttackerView, *, progress: ProgressFn | None, device: torch.device
    ) -> AttackResult:
        start = time.perf_counter()
        cfg = self.config
        assert view.input_shape is not None and view.num_samples is not None  # requirements
        w_name, b_name = self._layer_names(view)
        grad_w = view.update.params[w_name].detach().to(device)
        grad_b = view.update.params[b_name].detach().to(device)
        n = view.num_samples
        labels = None
        notes: list[str] = []
        if n == 1:
            x = pooled_input(grad_w, grad_b, estimator=cfg.estimator, min_bias_grad=cfg.min_bias_grad)[None]
            active = int(_active(grad_b, cfg.min_bias_grad).numel())
            notes.append(f"B = 1: input pooled over {active} active rows ({cfg.estimator})")
            labels = _bias_label(view.update, view.model)
        else:
            leak = fc_leak(grad_w, grad_b, tolerance=cfg.tolerance, min_bias_grad=cfg.min_bias_grad)
            x = leak.estimates[:n]
            notes.append(
                f"B = {n}: {len(leak.rows)} active rows in {len(leak.support)} distinct ratios (clusters); "
                f"returned the {len(x)} best supported (support {leak.support[:n].tolist()}); rows shared by "
                "several samples give mixtures, not inputs"
            )
        if view.aggregated_over > 1:
            notes.append(
                f"the update is an aggregate of {view.aggregated_over} clients: rows mix their inputs"
            )
        norm = view.normalization or Normalization.identity(view.input_shape[0])
        images = norm.invert(x.reshape(-1, *view.input_shape)).clamp(0, 1).cpu()
        if progress is not None:
            progress(1, 1, 0.0)
        rec = Reconstruction(
            images=images, labels=labels, label_method="bias-sign" if labels is not None else "none"
        )
        return AttackResult(
            attack=self.name,
            reconstruction=rec,
            parameters=cfg.to_dict(),
            iterations=0,
            seconds=time.perf_counter() - start,
            notes=tuple(notes),
        )
