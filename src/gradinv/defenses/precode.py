"""PRECODE: a variational bottleneck inserted before the classifier.

Scheliga, Mäder, Seeland, "PRECODE - A Generic Model Extension to Prevent Deep Gradient Leakage",
WACV 2022.

The classifier's input features ``h`` (size D) go through a variational bottleneck (VB) before
the classifier: an encoder ``Linear(D, 2K)`` gives ``μ`` and ``σ = softplus(·)``, a latent code
``z = μ + σ ⊙ ε`` with ``ε ~ N(0, I)`` is sampled (reparameterisation), and a decoder
``Linear(K, D)`` maps it back to D features. Gradients of every layer before the VB then depend on
the client's unknown ``ε``, which breaks gradient matching. The VB is trained with the model; its
loss adds ``β · KL(N(μ, σ²) || N(0, I))`` (mean over the batch, in bits, as in the authors' code;
K = 256 and β = 1e-3 by default, their values).

How the pieces fit here:

* the defense is model-stage: :meth:`Precode.transform_model` returns a copy of the global model with
  the classifier ``nn.Linear`` replaced by ``Sequential(bottleneck=VB, classifier=<the Linear>)``.
  Every party uses that model — the attacker too (it is the global model);
* the KL term: the client's fixed loss is cross-entropy, so the PRECODE defense's client hooks
  replace the step's gradient by that of ``cross-entropy + β·KL``
  (:func:`~gradinv.defenses.base.auxiliary_loss` reads the KL of the last forward pass). With
  DP-SGD in the same chain, DP-SGD computes the gradient and adds each sample's KL itself. A client
  without the PRECODE hooks (e.g. plain ``local_update``) trains on cross-entropy only;
* sampling: the VB samples in train mode and, like the authors' code, also in eval mode
  (``sample_in_eval = true``); set it false to use ``z = μ`` in eval mode (deterministic test
  predictions, but an eval-mode client then shares a deterministic gradient).

The VB draws ``ε`` from its own generator (a :class:`~gradinv.models.seeding.SamplingModule`), never
from torch's global one: :func:`gradinv.models.reseed` restarts it. ``local_update`` reseeds the
client's working copy from the client's private seed (each client draws its own ``ε``); the new
layers are initialised from the ``generator`` passed to :meth:`Precode.transform_model` (the global
RNG without one). An attacker simulating the model with ``torch.func.vmap`` needs
``randomness="different"`` (or ``"same"``).

>>> from torch import nn
>>> m = add_bottleneck(nn.Sequential(nn.Flatten(), nn.Linear(12, 3)), latent_dim=4)
>>> m(torch.zeros(2, 3, 2, 2)).shape
torch.Size([2, 3])
>>> [n for n, _ in m.named_parameters()]  # doctest: +NORMALIZE_WHITESPACE
['1.bottleneck.encoder.weight', '1.bottleneck.encoder.bias', '1.bottleneck.decoder.weight',
 '1.bottleneck.decoder.bias', '1.classifier.weight', '1.classifier.bias']
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradinv._checks import check_int, check_range
from gradinv.defenses.base import Defense, DefenseConfig, RegularizedModule, auxiliary_loss, register_defense
from gradinv.errors import ModelError, UpdateError
from gradinv.fl.client import ClientHooks, StepContext, client_loss
from gradinv.models.init import new_linear
from gradinv.models.inspect import linear_layer
from gradinv.models.seeding import SamplingModule

__all__ = ["Precode", "PrecodeConfig", "VariationalBottleneck", "add_bottleneck"]


class VariationalBottleneck(RegularizedModule, SamplingModule):
    """``x (N, D) -> encoder -> (μ, σ) -> z = μ + σ ε -> decoder -> (N, D)``; keeps ``μ, σ`` of the
    last forward pass for its KL term. ``ε`` comes from the module's own generator (``seed``;
    :meth:`reseed`); the layers are initialised from ``generator`` (the global RNG when ``None``)."""

    def __init__(
        self,
        features: int,
        *,
        latent_dim: int = 256,
        beta: float = 1e-3,
        sample_in_eval: bool = True,
        seed: int = 0,
        generator: torch.Generator | None = None,
    ):
        super().__init__(seed=seed)
        self.latent_dim = latent_dim
        self.beta = beta
        self.sample_in_eval = sample_in_eval
        self.encoder = new_linear(features, 2 * latent_dim, generator=generator)
        self.decoder = new_linear(latent_dim, features, generator=generator)
        self._stats: tuple[Tensor, Tensor] | None = None

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        stats = self.encoder(x.flatten(1))
        mu, pre = stats[:, : self.latent_dim], stats[:, self.latent_dim :]
        std = F.softplus(pre)
        z = mu + std * self.randn(std) if self.training or self.sample_in_eval else mu
        self._stats = (mu, std)
        out: Tensor = self.decoder(z).view(shape)
        return out

    def __getstate__(self) -> dict[str, Any]:
        # the last pass's (μ, σ) belong to its autograd graph, which a copy cannot take along
        return {**super().__getstate__(), "_stats": None}

    def auxiliary_loss(self, *, per_sample: bool = False) -> Tensor:
        """``β · KL(N(μ, σ²) || N(0, I)) / ln 2`` of the last forward pass (mean, or per sample)."""
        if self._stats is None:
            raise ModelError("The variational bottleneck has no forward pass yet; call the model first.")
        mu, std = self._stats
        kl = 0.5 * (mu.pow(2) + std.pow(2) - 2 * torch.log(std.clamp_min(1e-12)) - 1).sum(1) / math.log(2)
        kl = self.beta * kl
        return kl if per_sample else kl.mean()


def add_bottleneck(
    model: nn.Module,
    *,
    latent_dim: int = 256,
    beta: float = 1e-3,
    layer: str | None = None,
    sample_in_eval: bool = True,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """A deep copy of ``model`` whose ``nn.Linear`` ``layer`` (default: the classifier, the last one)
    is preceded by a :class:`VariationalBottleneck` initialised from ``generator``."""
    m = copy.deepcopy(model)
    layer = linear_layer(m, layer)
    if layer == "":
        raise ModelError(
            "Expected a model containing its classifier nn.Linear, but the model is one nn.Linear."
        )
    linear = m.get_submodule(layer)
    assert isinstance(linear, nn.Linear)
    vb = VariationalBottleneck(
        linear.in_features,
        latent_dim=latent_dim,
        beta=beta,
        sample_in_eval=sample_in_eval,
        generator=generator,
    ).to(linear.weight.device, linear.weight.dtype)
    head = nn.Sequential(OrderedDict([("bottleneck", vb), ("classifier", linear)]))
    parent_name, _, child = layer.rpartition(".")
    parent = m.get_submodule(parent_name) if parent_name else m
    setattr(parent, child, head)
    return m


@dataclass(frozen=True)
class PrecodeConfig(DefenseConfig):
    """``latent_dim`` K, ``beta`` (KL weight), ``layer`` (the Linear preceded by the VB), sampling."""

    latent_dim: int = 256
    beta: float = 1e-3
    layer: str | None = None
    sample_in_eval: bool = True

    def __post_init__(self) -> None:
        check_int("latent_dim", self.latent_dim, fix="PRECODE uses 256.")
        check_range("beta", self.beta, low=0, fix="PRECODE uses 0.001.")


@register_defense
class Precode(Defense[PrecodeConfig]):
    """Variational bottleneck before the classifier, trained with the model (cross-entropy + β·KL)."""

    name = "precode"
    title = "PRECODE"
    stage = "model"
    paper = (
        "Scheliga, Mäder, Seeland, PRECODE - A Generic Model Extension to Prevent Deep Gradient "
        "Leakage, WACV 2022"
    )

    def transform_model(self, model: nn.Module, *, generator: torch.Generator | None = None) -> nn.Module:
        cfg = self.config
        return add_bottleneck(
            model,
            latent_dim=cfg.latent_dim,
            beta=cfg.beta,
            layer=cfg.layer,
            sample_in_eval=cfg.sample_in_eval,
            generator=generator,
        )

    def client_hooks(self) -> ClientHooks:
        return _PrecodeHooks()


class _PrecodeHooks(ClientHooks):
    """Gradient of cross-entropy + the model's KL term (cross-entropy alone if the model has no VB)."""

    def __init__(self) -> None:
        self.kl_sum = 0.0
        self.steps = 0

    def gradients(self, x: Tensor, targets: Tensor, ctx: StepContext) -> list[Tensor] | None:
        with torch.enable_grad():
            loss = client_loss(ctx.model(x), targets)
            aux = auxiliary_loss(ctx.model)
            if aux is None:
                return None
            total = loss + aux
            if not torch.isfinite(total):
                raise UpdateError(
                    f"Expected a finite training loss at local step {ctx.step + 1}, but got "
                    f"{float(total.detach())}. The client's training diverged; "
                    f"lower `lr` (got {ctx.training.lr})."
                )
            grads = torch.autograd.grad(total, ctx.params)
        self.kl_sum += float(aux.detach())
        self.steps += 1
        return list(grads)

    def info(self) -> dict[str, float]:
        return {"kl_loss": self.kl_sum / self.steps if self.steps else 0.0}
