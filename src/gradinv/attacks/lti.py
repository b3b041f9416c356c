"""LTI — Learning to Invert.

Ruihan Wu, Xiangyu Chen, Chuan Guo, Kilian Q. Weinberger, "Learning to Invert: Simple Adaptive
Attacks for Gradient Inversion in Federated Learning", UAI 2023.

The attacker learns the inverse of the client's (defended) update map from surrogate data: for each
surrogate batch of the client's size N it computes the update the client would send — the same local
training (:func:`gradinv.fl.client.local_update` with the view's training details) and the same
defense (a registered :mod:`gradinv.defenses` defense run as the client's hooks) — then trains an
inversion network (an MLP: ``F -> hidden -> hidden -> N*C*H*W``, ReLU, sigmoid output) to regress the
images from the update by MSE. The attack applies the network to the observed update. No gradient
matching: it works where optimisation has nothing to match (signSGD, 99% pruning).

Which defense: ``defense`` names it (with ``defense_options``), ``"none"`` for none, or ``"auto"``
(default): the attacker view does not say which defense the client ran, so it is inferred from the
observed update's form — every tensor of constant magnitude → signSGD (scale ``none`` when that
magnitude is 1, else ``mean``); at least half the entries exactly zero → top-k keeping the observed
non-zero fraction (global scope); otherwise none (additive noise cannot be read off an update: name
``gaussian-noise`` explicitly). The result's notes say what was used and why.

Threat model: the inversion network is a model trained on data from the client's distribution, so
LTI needs **surrogate data** (threat model D or stronger) besides the update and basic knowledge;
it is refused under A–C. Training details (D grants them) make the simulated updates exact for
FedAvg; without them FedSGD is assumed (noted).

Implementation notes and deviations from the paper:

* Update size: when the flattened update has more than ``features`` entries it is compressed by a
  fixed, seeded count sketch (each coordinate added with a random sign into one of ``features``
  buckets), the same sketch for the training and the observed updates. The paper feeds the full
  update for LeNet and uses a hashed first layer (HashedNet) for ResNet-20; the sketch is the
  input-side counterpart of that hashing trick.
* Each sketched coordinate is standardised (mean and std over the training updates) before the MLP
  (the paper feeds raw values, which for sign updates are already ±1).
* B = N: one training example is the update of N surrogate images; the network predicts N images
  and the loss is the Hungarian-matched MSE (:func:`gradinv.metrics.functional.matching.match`),
  as in the paper's batch mode. The network is trained per attack call, on at most
  ``surrogate_samples`` images (``surrogate_samples // N`` updates), for ``epochs`` epochs (Adam,
  ``lr``, divided by 10 at 75% of the epochs as in the authors' code); ``holdout`` of the updates
  select the best epoch (the paper selects on its test set). The paper's defaults (hidden 3000,
  200 epochs over 50k CIFAR images, lr 1e-4) are far beyond a CPU budget; the defaults here are
  smaller.
* Ctrl-C during training keeps the best network so far (the current one before the first
  validation) and returns its prediction (``interrupted``).
* No labels are reconstructed.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from gradinv.attacks._update_form import read_update_form
from gradinv.attacks.base import (
    BASIC_NEEDED,
    UPDATES_NEEDED,
    Attack,
    AttackConfig,
    ProgressFn,
    register_attack,
)
from gradinv.errors import AttackRefused, ConfigError, did_you_mean
from gradinv.models.seeding import seeded
from gradinv.threat import Knowledge, Requirement
from gradinv.types import AttackerView, AttackResult, Batch, Reconstruction, TrainingConfig

__all__ = ["INVERSION_NEEDED", "LTI", "LTIConfig", "count_sketch", "infer_defense"]

logger = logging.getLogger(__name__)

INVERSION_NEEDED = Requirement(
    Knowledge.SURROGATE_DATA,
    "it trains an inversion model on surrogate data from the client's distribution (surrogate knowledge)",
)

#: a defense inferred from the observed update: (registered name or None, options, why)
InferredDefense = tuple[str | None, dict[str, Any], str]


@dataclass(frozen=True)
class LTIConfig(AttackConfig):
    """LTI's options. Training set: ``surrogate_samples`` (at most this many surrogate images),
    ``holdout`` (fraction of the training updates kept to select the best epoch). Network:
    ``hidden`` (width of its two hidden layers), ``features`` (the update is count-sketched to this
    many entries when it has more). Training: ``epochs``, ``batch_size`` (updates per step),
    ``lr`` (Adam), ``seed``. Defense the attacker simulates: ``defense`` (``"auto"``, ``"none"`` or a
    registered defense) with ``defense_options``."""

    surrogate_samples: int = 2000
    holdout: float = 0.1
    hidden: int = 1000
    features: int = 4096
    epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    defense: str = "auto"
    defense_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("surrogate_samples", "hidden", "features", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"Expected `{name}` >= 1, but got {getattr(self, name)}.")
        if not self.lr > 0:
            raise ConfigError(f"Expected `lr` > 0, but got {self.lr}.")
        if not 0 <= self.holdout < 1:
            raise ConfigError(
                f"Expected `holdout` in [0, 1), but got {self.holdout}. Use 0 to train on every update."
            )
        if self.defense in ("auto", "none"):
            if self.defense_options:
                raise ConfigError(
                    f"Expected no `defense_options` with defense = {self.defense!r}, but got "
                    f"{dict(self.defense_options)}. Name the defense they belong to."
                )
            return
        from gradinv.defenses import DEFENSES

        if self.defense not in DEFENSES:
            names = ["auto", "none", *DEFENSES.names()]
            raise ConfigError(
                f"Expected `defense` to be one of {', '.join(names)}, but got {self.defense!r}."
                f"{did_you_mean(self.defense, names)}"
            )
        DEFENSES.get(self.defense)(**dict(self.defense_options))  # options validated by its config


def infer_defense(params: Mapping[str, Tensor]) -> InferredDefense:
    """The update defense an update's form reveals (:func:`~gradinv.attacks._update_form.
    read_update_form`): ``("signsgd", {"scale": ...}, why)``, ``("topk", {"ratio": ...}, why)`` or
    ``(None, {}, why)``."""
    form = read_update_form(list(params.values()))
    if form.kind == "sign":
        return "signsgd", {"scale": form.sign_scale}, f"{form.detail} (signSGD)"
    if form.kind == "sparse":
        ratio = max(1, form.entries - form.zero_entries) / form.entries
        return "topk", {"ratio": ratio}, f"{form.detail} (top-k, ratio {ratio:.4g})"
    return None, {}, f"{form.detail} (no defense simulated)"


def count_sketch(dim: int, features: int, *, seed: int) -> Callable[[Tensor], Tensor]:
    """A fixed count sketch ``(..., dim) -> (..., features)``: coordinate ``i`` is added with a random
    sign ``s_i`` to bucket ``h_i`` (both drawn from ``seed``). The identity when ``dim <= features``."""
    if dim <= features:
        return lambda v: v
    gen = torch.Generator().manual_seed(seed)
    buckets = torch.randint(0, features, (dim,), generator=gen)
    signs = torch.randint(0, 2, (dim,), generator=gen).float() * 2 - 1

    def sketch(v: Tensor) -> Tensor:
        out = v.new_zeros(*v.shape[:-1], features)
        return out.index_add_(-1, buckets.to(v.device), v * signs.to(v.device))

    return sketch


def _flat(params: Mapping[str, Tensor], names: list[str]) -> Tensor:
    return torch.cat([params[n].detach().reshape(-1).float().cpu() for n in names])


class _Inverter(nn.Module):
    """The paper's MLP: ``Linear -> ReLU -> Linear -> ReLU -> Linear -> Sigmoid`` (images in [0, 1])."""

    def __init__(self, features: int, hidden: int, outputs: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, outputs),
            nn.Sigmoid(),
        )

    def forward(self, f: Tensor) -> Tensor:
        return self.net(f)


@dataclass
class _Training:
    """The inversion network's training state: the network, its best weights and losses."""

    net: _Inverter
    best_state: dict[str, Tensor] | None = None
    best_loss: float = math.inf
    history: list[float] = dataclasses.field(default_factory=list)
    epochs: int = 0


def _matched_mse(pred: Tensor, truth: Tensor) -> Tensor:
    """Mean over the examples of the Hungarian-matched MSE between ``pred`` and ``truth`` ``(G, N,
    C, H, W)`` (plain MSE for N = 1)."""
    if pred.shape[1] == 1:
        return (pred - truth).pow(2).mean()
    from gradinv.metrics.functional.matching import match

    losses = []
    for p, t in zip(pred, truth):
        m = match(p.detach(), t)
        losses.append((p[m.recon_index] - t[m.truth_index]).pow(2).mean())
    return torch.stack(losses).mean()


@register_attack
class LTI(Attack):
    """Train an MLP on surrogate (defended update, images) pairs; apply it to the observed update."""

    name = "lti"
    title = "Learning to Invert"
    family = "generative"
    paper = (
        "Wu, Chen, Guo, Weinberger. Learning to Invert: Simple Adaptive Attacks for Gradient "
        "Inversion in Federated Learning. UAI 2023"
    )
    config_cls = LTIConfig
    config: LTIConfig
    base_requirements: ClassVar[tuple[Requirement, ...]] = (UPDATES_NEEDED, BASIC_NEEDED, INVERSION_NEEDED)

    def check_view(self, view: AttackerView) -> list[str]:
        if view.surrogate is None or len(view.surrogate) == 0:
            return [
                "Learning to Invert trains its inversion model on surrogate images, but the view holds "
                "none. Give the attacker surrogate data (e.g. data.surrogate_images > 0)."
            ]
        n = view.num_samples or 1
        if len(view.surrogate) < 2 * n:
            return [
                f"Learning to Invert needs at least {2 * n} surrogate images (two updates of {n} "
                f"samples) to train on, but the view holds {len(view.surrogate)}."
            ]
        return []

    # -- the defense and the simulated client ------------------------------------------------------
    def _defense(self, view: AttackerView) -> tuple[Any, str]:
        """The defense object (or ``None``) the attacker simulates, and a note saying which."""
        from gradinv.defenses import create_defense

        cfg = self.config
        if cfg.defense == "none":
            return None, "defense simulated: none (configured)"
        if cfg.defense != "auto":
            opts = dict(cfg.defense_options)
            return create_defense(
                cfg.defense, **opts
            ), f"defense simulated: {cfg.defense} {opts} (configured)"
        name, opts, why = infer_defense(view.update.params)
        if name is None:
            return None, f"defense simulated: none, inferred: {why}"
        return create_defense(name, **opts), f"defense simulated: {name} {opts}, inferred: {why}"

    def _surrogate(self, view: AttackerView) -> Batch:
        assert view.surrogate is not None and view.input_shape is not None  # checked before
        c, h, w = view.input_shape
        if h != w:
            raise AttackRefused(
                f"Learning to Invert expects square images, but the input shape is {[c, h, w]}."
            )
        batch = view.surrogate.to_batch(image_size=h, channels=c)
        if view.normalization is not None:
            batch = dataclasses.replace(batch, normalization=view.normalization)
        return batch

    def _dataset(
        self, view: AttackerView, training: TrainingConfig, defense: Any, names: list[str]
    ) -> tuple[Tensor, Tensor]:
        """``(G, D)`` flattened simulated updates and their ``(G, N, C, H, W)`` images."""
        from gradinv.fl.client import local_update
        from gradinv.fl.hooks import DefenseChain

        cfg = self.config
        n = view.num_samples or 1
        batch = self._surrogate(view)
        gen = torch.Generator().manual_seed(cfg.seed)
        order = torch.randperm(batch.size, generator=gen)[: cfg.surrogate_samples]
        groups = len(order) // n
        updates, images = [], []
        for g in range(groups):
            idx = order[g * n : (g + 1) * n]
            part = Batch(batch.images[idx], batch.labels[idx], batch.normalization, batch.class_names)
            hooks = DefenseChain.of([defense]) if defense is not None else None
            upd = local_update(view.model, part, training, client_id=g + 1, hooks=hooks)
            updates.append(_flat(upd.update.params, names))
            images.append(part.images)
        return torch.stack(updates), torch.stack(images)

    # -- training ----------------------------------------------------------------------------------
    def _train(
        self,
        feats: Tensor,
        images: Tensor,
        device: torch.device,
        progress: ProgressFn | None,
    ) -> tuple[_Training, bool]:
        cfg = self.config
        g = feats.shape[0]
        n_val = min(g - 1, round(cfg.holdout * g)) if cfg.holdout > 0 else 0
        gen = torch.Generator().manual_seed(cfg.seed + 1)
        perm = torch.randperm(g, generator=gen)
        val, train = perm[:n_val], perm[n_val:]
        x_tr, y_tr = feats[train].to(device), images[train].to(device)
        x_va, y_va = feats[val].to(device), images[val].to(device)
        with seeded(cfg.seed):
            net = _Inverter(feats.shape[1], cfg.hidden, images[0].numel()).to(device)
        state = _Training(net)
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
        milestone = max(1, int(0.75 * cfg.epochs))
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[milestone], gamma=0.1)
        shape = images.shape[1:]
        interrupted = False
        try:
            for epoch in range(cfg.epochs):
                net.train()
                order = torch.randperm(len(train), generator=gen)
                total = 0.0
                for s in range(0, len(train), cfg.batch_size):
                    b = order[s : s + cfg.batch_size].to(device)
                    loss = _matched_mse(net(x_tr[b]).view(len(b), *shape), y_tr[b])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    total += float(loss.detach()) * len(b)
                sched.step()
                train_loss = total / len(train)
                state.history.append(train_loss)
                state.epochs = epoch + 1
                score = train_loss
                if n_val:
                    net.eval()
                    with torch.no_grad():
                        score = float(_matched_mse(net(x_va).view(n_val, *shape), y_va))
                if score < state.best_loss:
                    state.best_loss = score
                    state.best_state = copy.deepcopy(net.state_dict())
                if progress is not None:
                    progress(epoch + 1, cfg.epochs, score)
        except KeyboardInterrupt:
            interrupted = True
            logger.warning(
                "interrupted after %d epochs: using the best inversion network so far", state.epochs
            )
        if state.best_state is not None:
            net.load_state_dict(state.best_state)
        return state, interrupted

    def _reconstruct(
        self, view: AttackerView, *, progress: ProgressFn | None, device: torch.device
    ) -> AttackResult:
        cfg = self.config
        assert view.num_samples is not None and view.input_shape is not None  # basic knowledge
        start = time.perf_counter()
        notes: list[str] = []
        training = view.training
        if training is None:
            training = TrainingConfig()
            notes.append("client training unknown (no training details): FedSGD assumed")
        defense, d_note = self._defense(view)
        notes.append(d_note)
        logger.info("%s: %s", self.title, d_note)
        names = [n for n, p in view.model.named_parameters() if p.requires_grad]
        updates, images = self._dataset(view, training, defense, names)
        sketch = count_sketch(updates.shape[1], cfg.features, seed=cfg.seed)
        feats = sketch(updates)
        mean, std = feats.mean(0), feats.std(0)
        floor = 1e-3 * float(std.mean())  # constant coordinates are not blown up
        std = std.clamp_min(floor) if floor > 0 else torch.ones_like(std)
        feats = (feats - mean) / std
        compressed = feats.shape[1] < updates.shape[1]
        notes.append(
            f"inversion network trained on {len(updates)} simulated updates of {view.num_samples} surrogate "
            f"image(s); input: {feats.shape[1]} "
            + (f"count-sketch features of the {updates.shape[1]} update entries" if compressed else "entries")
        )
        state, interrupted = self._train(feats, images, device, progress)
        observed = (sketch(_flat(view.update.params, names)) - mean) / std
        state.net.eval()
        with torch.no_grad():
            pred = state.net(observed.unsqueeze(0).to(device)).view(view.num_samples, *view.input_shape)
        pred = pred.clamp(0, 1).cpu()
        if math.isfinite(state.best_loss):
            notes.append(
                f"inversion network: best {'validation' if cfg.holdout else 'training'} MSE "
                f"{state.best_loss:.4g} after {state.epochs} epochs"
            )
        rec = Reconstruction(
            images=pred,
            labels=None,
            label_method="none",
            candidates=pred.unsqueeze(0),
            candidate_losses=(state.best_loss,),
        )
        return AttackResult(
            attack=self.name,
            reconstruction=rec,
            parameters=cfg.to_dict(),
            iterations=state.epochs,
            seconds=time.perf_counter() - start,
            interrupted=interrupted,
            loss_history=tuple(state.history),
            best_candidate=0,
            notes=tuple(notes),
        )
