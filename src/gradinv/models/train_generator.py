"""Train a DCGAN generator on surrogate data: the image prior of the generative attacks.

DCGAN: Radford, Metz, Chintala, "Unsupervised Representation Learning with Deep Convolutional
Generative Adversarial Networks", ICLR 2016. As in the paper (§3 and §4): a generator of strided
transposed convolutions with BatchNorm and ReLU and a tanh output, a discriminator of strided
convolutions with BatchNorm (none on its input layer) and LeakyReLU of slope 0.2, no pooling and no
fully connected hidden layers; images scaled to the tanh range ``[-1, 1]``; Adam with learning rate
2e-4 and β1 = 0.5; mini-batches of 128; weights drawn from N(0, 0.02). Real and generated images go
through the discriminator in separate mini-batches (separate BatchNorm statistics), as in the
authors' code.

The generator is :class:`~gradinv.models.generators.DCGANGenerator` (registered as ``dcgan32``);
:class:`DCGANDiscriminator` mirrors it. :func:`train_dcgan` returns a :class:`TrainedGenerator`
whose :meth:`~TrainedGenerator.save` writes a file that
:func:`~gradinv.models.generators.load_generator` reads back (``generator = "G.pt"`` in an attack
config).

Where this implementation deviates from the paper:

* 32×32 images by default: three up-sampling blocks (4→8→16→32) instead of the paper's four for
  64×64 (``image_size = 64`` gives the paper's layout); the discriminator mirrors the generator.
* BatchNorm scales are drawn from N(1, 0.02), biases set to 0 (the PyTorch DCGAN example's reading
  of "all weights from N(0, 0.02)": a scale near 0 would silence the layer).
* β2 = 0.999 (Adam's default; the paper does not state it); the loss is binary cross-entropy on
  logits (the numerically stable form of sigmoid + BCE) and the generator minimises the
  non-saturating ``-log D(G(z))`` (Goodfellow et al., NeurIPS 2014, §3), as the authors' code does.
* Images are centre-cropped to a square and resized with antialiased bicubic interpolation
  (:func:`gradinv.data.prepare_images`); no other preprocessing or augmentation.

Randomness comes from one ``torch.Generator`` seeded with ``seed`` (initial weights, shuffling,
latents) and :func:`gradinv.models.seeding.seeded` for layer construction: torch's global RNG is left
alone and the same seed gives the same weights.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradinv.data.dataset import ImageDataset
from gradinv.data.transforms import prepare_images
from gradinv.errors import ConfigError, DataError
from gradinv.models.generators import DCGANGenerator, build_generator, save_generator
from gradinv.models.seeding import seeded

__all__ = [
    "IMAGE_SIZES",
    "DCGANDiscriminator",
    "DCGANTraining",
    "EpochLosses",
    "StepLosses",
    "TrainedGenerator",
    "adversarial_step",
    "dcgan_init",
    "train_dcgan",
    "training_images",
]

logger = logging.getLogger(__name__)

#: the image sizes the DCGAN generator and discriminator support
IMAGE_SIZES = (32, 64)

#: input values converted per chunk by :func:`training_images` (bounds the float copy of large photos)
_CHUNK_VALUES = 2**25

Progress = Callable[[int, int, float], None]


def _positive_int(name: str, value: object, fix: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"Expected `{name}` to be an integer >= 1, but got {value!r}. {fix}")


@dataclass(frozen=True)
class DCGANTraining:
    """The settings of :func:`train_dcgan` (defaults: the paper's, at 32×32, 5 epochs).

    ``ndf`` is the discriminator's base width (``None``: ``ngf``); ``max_images`` trains on a seeded
    random subset of that many images (``None``: all)."""

    image_size: int = 32
    epochs: int = 5
    batch_size: int = 128
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    nz: int = 100
    ngf: int = 64
    ndf: int | None = None
    seed: int = 0
    max_images: int | None = None

    def __post_init__(self) -> None:
        if self.image_size not in IMAGE_SIZES:
            raise ConfigError(
                f"Expected `image_size` to be one of {', '.join(map(str, IMAGE_SIZES))}, but got "
                f"{self.image_size!r}. The DCGAN layout doubles the size per block from 4x4; use 32 "
                "(CPU-feasible) or 64 — images of other sizes are resized to it."
            )
        _positive_int("epochs", self.epochs, "Train for at least one epoch, e.g. epochs = 5.")
        _positive_int("batch_size", self.batch_size, "The paper uses 128.")
        _positive_int("nz", self.nz, "The paper uses a latent of 100.")
        _positive_int("ngf", self.ngf, "The paper's base width is 64 (smaller is faster on a CPU).")
        if self.ndf is not None:
            _positive_int("ndf", self.ndf, "Leave it unset to use ngf.")
        if self.max_images is not None:
            _positive_int("max_images", self.max_images, "Leave it unset to train on every image.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"Expected `seed` to be an integer >= 0, but got {self.seed!r}.")
        for name in ("lr", "beta1", "beta2"):
            v = getattr(self, name)
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            if not ok or not (v > 0.0 if name == "lr" else 0.0 <= v < 1.0):
                want = "a finite number > 0" if name == "lr" else "a number in [0, 1)"
                default = {"lr": "2e-4", "beta1": "0.5", "beta2": "0.999"}[name]
                raise ConfigError(
                    f"Expected `{name}` to be {want}, but got {v!r}. The paper's value is {default}."
                )

    @property
    def discriminator_width(self) -> int:
        return self.ndf if self.ndf is not None else self.ngf

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class DCGANDiscriminator(nn.Module):
    """The DCGAN discriminator for ``image_size`` 32 or 64: 4×4 stride-2 convolutions halving the
    size down to 4×4 (widths ``ndf, 2·ndf, …``), BatchNorm after all but the first, LeakyReLU 0.2,
    then a 4×4 convolution to one logit per image (no sigmoid: train with BCE on logits)."""

    def __init__(self, *, channels: int = 3, ndf: int = 64, image_size: int = 32) -> None:
        super().__init__()
        if image_size not in IMAGE_SIZES:
            raise ConfigError(
                f"Expected a DCGAN discriminator image_size of 32 or 64, but got {image_size!r}."
            )
        blocks = int(math.log2(image_size)) - 2  # 32: 32->16->8->4, 64: one more
        layers: list[nn.Module] = []
        cin = channels
        for i in range(blocks):
            cout = ndf * 2**i
            layers.append(nn.Conv2d(cin, cout, 4, 2, 1, bias=False))
            if i:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            cin = cout
        layers.append(nn.Conv2d(cin, 1, 4, 1, 0, bias=False))
        self.main = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.main(x).flatten()


def dcgan_init(module: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """The DCGAN initialisation, drawn from ``generator``: (transposed) convolution and linear weights
    from N(0, 0.02), BatchNorm scales from N(1, 0.02), every bias 0. Returns ``module``."""
    for m in module.modules():
        if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02, generator=generator)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02, generator=generator)
            nn.init.zeros_(m.bias)
    return module


def training_images(
    dataset: ImageDataset, *, image_size: int, max_images: int | None = None, seed: int = 0
) -> Tensor:
    """The images of ``dataset`` as float ``(N, C, image_size, image_size)`` in ``[-1, 1]``: a seeded
    random subset of ``max_images`` (all when ``None``), centre-cropped and resized."""
    if not isinstance(dataset, ImageDataset):
        raise DataError(
            f"Expected an ImageDataset (gradinv.data.load_source), but got {type(dataset).__name__}."
        )
    n = len(dataset)
    if n == 0:
        raise DataError(
            f"Expected at least one image to train a generator on, but {dataset.name!r} is empty."
        )
    if max_images is not None and max_images < n:
        rng = np.random.default_rng(seed)
        dataset = dataset.subset(np.sort(rng.choice(n, size=max_images, replace=False)))
    h, w, c = dataset.image_shape
    chunk = max(1, _CHUNK_VALUES // (h * w * c))
    chunks = [
        prepare_images(dataset.images[i : i + chunk], image_size=image_size).mul_(2.0).sub_(1.0)
        for i in range(0, len(dataset), chunk)
    ]
    return torch.cat(chunks)


@dataclass(frozen=True)
class StepLosses:
    """One adversarial step: both losses and the discriminator's mean probabilities ``D(x)`` (real)
    and ``D(G(z))`` (generated, before the generator's update)."""

    discriminator: float
    generator: float
    real_score: float
    fake_score: float


def adversarial_step(
    generator: nn.Module,
    discriminator: nn.Module,
    g_optimizer: torch.optim.Optimizer,
    d_optimizer: torch.optim.Optimizer,
    real: Tensor,
    z: Tensor,
) -> StepLosses:
    """One DCGAN step: the discriminator on ``real`` (label 1) and ``G(z)`` (label 0), then the
    generator towards ``D(G(z)) = 1`` (non-saturating loss). Both networks should be in train mode."""
    fake = generator(z)
    d_optimizer.zero_grad(set_to_none=True)
    d_real = discriminator(real)
    d_fake = discriminator(fake.detach())
    loss_d = F.binary_cross_entropy_with_logits(
        d_real, torch.ones_like(d_real)
    ) + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
    loss_d.backward()
    d_optimizer.step()

    g_optimizer.zero_grad(set_to_none=True)
    d_gen = discriminator(fake)
    loss_g = F.binary_cross_entropy_with_logits(d_gen, torch.ones_like(d_gen))
    loss_g.backward()
    g_optimizer.step()
    return StepLosses(
        float(loss_d.detach()),
        float(loss_g.detach()),
        float(torch.sigmoid(d_real.detach()).mean()),
        float(torch.sigmoid(d_fake.detach()).mean()),
    )


@dataclass(frozen=True)
class EpochLosses:
    """Means over one epoch's steps (``steps`` fewer than a full epoch when it was interrupted)."""

    discriminator: float
    generator: float
    real_score: float
    fake_score: float
    steps: int

    @classmethod
    def mean_of(cls, steps: list[StepLosses]) -> EpochLosses:
        def mean(key: str) -> float:
            return float(np.mean([getattr(s, key) for s in steps]))

        return cls(
            mean("discriminator"), mean("generator"), mean("real_score"), mean("fake_score"), len(steps)
        )

    def to_dict(self) -> dict[str, float | int]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True, eq=False)
class TrainedGenerator:
    """What :func:`train_dcgan` returns: the generator (eval mode, frozen parameters), the settings,
    the losses of every epoch, the training time, the number of images and steps, and whether a
    Ctrl-C stopped it early (then it holds what was trained so far)."""

    generator: DCGANGenerator
    config: DCGANTraining
    losses: tuple[EpochLosses, ...]
    seconds: float
    images: int
    steps: int
    interrupted: bool = False
    epochs_completed: int = field(default=0)

    def summary(self) -> dict[str, Any]:
        """Plain data about the run (what :meth:`save` records next to the weights)."""
        return {
            "config": self.config.to_dict(),
            "losses": [e.to_dict() for e in self.losses],
            "seconds": self.seconds,
            "images": self.images,
            "steps": self.steps,
            "epochs_completed": self.epochs_completed,
            "interrupted": self.interrupted,
        }

    def save(self, path: str | Path, *, trained_on: str) -> Path:
        """Write the generator with :func:`~gradinv.models.generators.save_generator` (readable by
        ``load_generator(path)``), recording ``trained_on`` and :meth:`summary` as ``training``."""
        return save_generator(
            self.generator, path, trained_on=trained_on, epochs=self.epochs_completed, training=self.summary()
        )


def train_dcgan(
    dataset: ImageDataset,
    *,
    image_size: int = 32,
    epochs: int = 5,
    batch_size: int = 128,
    lr: float = 2e-4,
    nz: int = 100,
    ngf: int = 64,
    ndf: int | None = None,
    seed: int = 0,
    max_images: int | None = None,
    progress: Progress | None = None,
    device: torch.device | str = "cpu",
) -> TrainedGenerator:
    """Train a DCGAN generator on ``dataset`` (see the module docstring for the method).

    ``progress(step, total, generator_loss)`` is called after every step. A Ctrl-C
    (``KeyboardInterrupt``) stops the training and returns what was trained so far with
    ``interrupted=True``. The generator keeps the dataset's channels (1 or 3)."""
    cfg = DCGANTraining(
        image_size=image_size,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        nz=nz,
        ngf=ngf,
        ndf=ndf,
        seed=seed,
        max_images=max_images,
    )
    dev = torch.device(device)
    images = training_images(dataset, image_size=cfg.image_size, max_images=cfg.max_images, seed=cfg.seed)
    n, channels = int(images.shape[0]), int(images.shape[1])
    images = images.to(dev)
    s = cfg.image_size
    rng = torch.Generator().manual_seed(cfg.seed)
    gen = build_generator("dcgan32", seed=cfg.seed, nz=cfg.nz, ngf=cfg.ngf, channels=channels, image_size=s)
    if not isinstance(gen, DCGANGenerator):  # pragma: no cover  (the registry's dcgan32)
        raise ConfigError(f"Expected 'dcgan32' to build a DCGANGenerator, but got {type(gen).__name__}.")
    with seeded(cfg.seed):  # layer constructors draw from the global RNG; dcgan_init redraws all
        disc = DCGANDiscriminator(channels=channels, ndf=cfg.discriminator_width, image_size=s)
    dcgan_init(gen, rng)
    dcgan_init(disc, rng)
    gen, disc = gen.to(dev).train(), disc.to(dev).train()
    betas = (cfg.beta1, cfg.beta2)
    g_opt = torch.optim.Adam(gen.parameters(), lr=cfg.lr, betas=betas)
    d_opt = torch.optim.Adam(disc.parameters(), lr=cfg.lr, betas=betas)

    bs = min(cfg.batch_size, n)
    per_epoch = math.ceil(n / bs)
    total = cfg.epochs * per_epoch
    logger.info(
        "training DCGAN %dx%d (nz %d, ngf %d, ndf %d) on %d images, %d epochs of %d steps, on %s",
        s,
        s,
        cfg.nz,
        cfg.ngf,
        cfg.discriminator_width,
        n,
        cfg.epochs,
        per_epoch,
        dev,
    )
    losses: list[EpochLosses] = []
    steps: list[StepLosses] = []
    done, completed, interrupted = 0, 0, False
    start = time.perf_counter()
    try:
        for epoch in range(cfg.epochs):
            order = torch.randperm(n, generator=rng).to(dev)
            steps = []
            for b in range(per_epoch):
                real = images[order[b * bs : (b + 1) * bs]]
                z = torch.randn(real.shape[0], cfg.nz, generator=rng).to(dev)
                steps.append(adversarial_step(gen, disc, g_opt, d_opt, real, z))
                done += 1
                if progress is not None:
                    progress(done, total, steps[-1].generator)
            losses.append(EpochLosses.mean_of(steps))
            steps, completed = [], epoch + 1
            e = losses[-1]
            logger.info(
                "epoch %d/%d: loss D %.4f G %.4f, D(x) %.3f, D(G(z)) %.3f",
                completed,
                cfg.epochs,
                e.discriminator,
                e.generator,
                e.real_score,
                e.fake_score,
            )
    except KeyboardInterrupt:
        interrupted = True
        if steps:
            losses.append(EpochLosses.mean_of(steps))
        logger.warning("interrupted after %d of %d steps: keeping the generator trained so far", done, total)
    seconds = time.perf_counter() - start
    gen.eval()
    for p in gen.parameters():
        p.requires_grad_(False)
    return TrainedGenerator(
        generator=gen,
        config=cfg,
        losses=tuple(losses),
        seconds=seconds,
        images=n,
        steps=done,
        interrupted=interrupted,
        epochs_completed=completed,
    )
