"""Image generators for the generative-prior attacks, behind one registry, loaded safely.

A generator maps a latent ``z`` ``(N, latent_dim)`` to images ``(N, C, H, W)`` in ``[-1, 1]``
(tanh output). Each is a chain of :meth:`Generator.stages` whose composition is its forward pass, so
an attack can optimise an intermediate feature map instead of ``z`` (GIFD, Fang et al. ICCV 2023).

Registered architectures (:data:`GENERATORS`):

* ``began32-celeba`` — the BEGAN generator of the PyTorch-GAN collection (Berthelot, Schumm, Metz,
  "BEGAN: Boundary Equilibrium Generative Adversarial Networks", arXiv 2017), trained on CelebA
  faces at 32×32; latent 62. Weights: ``began32_celeba_generator.pth``.
* ``dcgan64-digiface`` — the DCGAN generator (Radford, Metz, Chintala, ICLR 2016), nz = 100,
  ngf = 64, 64×64, trained on the synthetic DigiFace-1M faces. Weights: ``dcgan64_digiface_netG.pth``.
* ``dcgan32`` — a 32×32 DCGAN (nz = 100, ngf = 64) with no shipped weights: what
  ``gradinv train-generator`` trains on the user's surrogate data.

:func:`load_generator` takes a registered name (weights found by :func:`gradinv.weights.find_weight_file`:
the explicit path, then ``$GRADINV_WEIGHTS``, then the torch hub cache) or the path of a file written
by :func:`save_generator` (which records its architecture). Every file is read with
``torch.load(..., weights_only=True)``; a missing file or a mismatched state_dict is one
:class:`~gradinv.errors.ModelError` naming the file and the config key that sets it.

:func:`to_model_input` turns generator images into the attacked model's input space: ``[-1, 1]`` to
``[0, 1]``, resized to the model's input size (area interpolation, antialiased when shrinking),
channels averaged or repeated, then the client's normalisation.

>>> g = build_generator("dcgan32")
>>> g(torch.zeros(2, 100)).shape
torch.Size([2, 3, 32, 32])
>>> [tuple(s) for s in g.stage_shapes()]
[(256, 4, 4), (128, 8, 8), (64, 16, 16), (3, 32, 32)]
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradinv.errors import ConfigError, ModelError
from gradinv.models.checkpoint import load_checkpoint
from gradinv.models.seeding import seeded
from gradinv.registry import Registry
from gradinv.types import Normalization
from gradinv.weights import find_weight_file

__all__ = [
    "GENERATORS",
    "GENERATOR_FILE_FORMAT",
    "BEGANGenerator",
    "DCGANGenerator",
    "Generator",
    "GeneratorSpec",
    "build_generator",
    "load_generator",
    "register_generator",
    "save_generator",
    "to_model_input",
]

logger = logging.getLogger(__name__)

#: The ``format`` entry of a generator file written by :func:`save_generator`.
GENERATOR_FILE_FORMAT = "gradinv-generator-v1"


class Generator(nn.Module):
    """A latent-to-image generator: ``forward(z)`` is the composition of :meth:`stages`.

    ``latent_dim`` is the size of ``z``; ``image_shape`` the ``(C, H, W)`` of its images, which lie in
    ``[-1, 1]``. Generators are used in ``eval`` mode (BatchNorm with its running statistics)."""

    latent_dim: int
    image_shape: tuple[int, int, int]
    #: the constructor's keyword arguments (what :func:`save_generator` records)
    options: dict[str, Any]

    def stages(self) -> tuple[nn.Module, ...]:
        """The forward pass cut into consecutive modules: stage 0 takes ``z`` ``(N, latent_dim)``,
        the last returns the images. Intermediate outputs are the feature maps GIFD searches."""
        raise NotImplementedError

    def forward(self, z: Tensor) -> Tensor:
        return self.run_from(0, z)

    def run_from(self, stage: int, h: Tensor) -> Tensor:
        """The images from the output of stage ``stage - 1`` (``stage = 0``: from ``z``)."""
        for s in self.stages()[stage:]:
            h = s(h)
        return h

    def features(self, stage: int, z: Tensor) -> Tensor:
        """The output of stages ``0 .. stage - 1`` for ``z`` (``stage = 0``: ``z`` itself)."""
        h = z
        for s in self.stages()[:stage]:
            h = s(h)
        return h

    @torch.no_grad()
    def stage_shapes(self) -> list[torch.Size]:
        """The output shape (without the batch axis) of every stage, for one latent."""
        was = self.training
        self.eval()
        h = torch.zeros(1, self.latent_dim, device=next(self.parameters()).device)
        shapes = []
        for s in self.stages():
            h = s(h)
            shapes.append(h.shape[1:])
        self.train(was)
        return shapes


class BEGANGenerator(Generator):
    """BEGAN's generator as in PyTorch-GAN (``l1`` then ``conv_blocks``; BatchNorm eps 0.8 as there)."""

    def __init__(self, *, latent_dim: int = 62, channels: int = 3, image_size: int = 32) -> None:
        super().__init__()
        if image_size % 4:
            raise ConfigError(f"Expected a BEGAN image_size divisible by 4, but got {image_size}.")
        self.latent_dim, self.image_shape = latent_dim, (channels, image_size, image_size)
        self.options = {"latent_dim": latent_dim, "channels": channels, "image_size": image_size}
        self._init_size = image_size // 4
        self.l1 = nn.Sequential(nn.Linear(latent_dim, 128 * self._init_size**2))
        self.conv_blocks = nn.Sequential(
            nn.BatchNorm2d(128),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(128, 128, 3, stride=1, padding=1),
            nn.BatchNorm2d(128, 0.8),
            nn.LeakyReLU(0.2, inplace=False),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(128, 64, 3, stride=1, padding=1),
            nn.BatchNorm2d(64, 0.8),
            nn.LeakyReLU(0.2, inplace=False),
            nn.Conv2d(64, channels, 3, stride=1, padding=1),
            nn.Tanh(),
        )
        self._unflatten = nn.Unflatten(1, (128, self._init_size, self._init_size))

    def stages(self) -> tuple[nn.Module, ...]:
        b = self.conv_blocks
        return (nn.Sequential(self.l1, self._unflatten), b[0:3], b[3:7], b[7:])


class DCGANGenerator(Generator):
    """The DCGAN generator (``main``: a ConvTranspose stack with BatchNorm and ReLU, then tanh) at
    ``image_size`` 32 or 64, ``nz`` latents and ``ngf`` base width, as in the PyTorch DCGAN example."""

    def __init__(self, *, nz: int = 100, ngf: int = 64, channels: int = 3, image_size: int = 64) -> None:
        super().__init__()
        if image_size not in (32, 64):
            raise ConfigError(f"Expected a DCGAN image_size of 32 or 64, but got {image_size}.")
        self.latent_dim, self.image_shape = nz, (channels, image_size, image_size)
        self.options = {"nz": nz, "ngf": ngf, "channels": channels, "image_size": image_size}
        widths = [ngf * 8, ngf * 4, ngf * 2, ngf] if image_size == 64 else [ngf * 4, ngf * 2, ngf]
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(nz, widths[0], 4, 1, 0, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(True),
        ]
        for cin, cout in itertools.pairwise(widths):
            layers += [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout)]
            layers.append(nn.ReLU(True))
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        self._unflatten = nn.Unflatten(1, (nz, 1, 1))

    def stages(self) -> tuple[nn.Module, ...]:
        m = self.main
        blocks = len(m) // 3
        first = nn.Sequential(self._unflatten, m[0:3])
        return (first, *(m[3 * i : 3 * i + 3] for i in range(1, blocks)), m[3 * blocks :])


@dataclass(frozen=True)
class GeneratorSpec:
    """A registered generator: how to build it (``factory(**options)``), its shipped weight file
    (``weights``, empty: none) and what it was trained on (``trained_on``)."""

    name: str
    factory: Callable[..., Generator]
    description: str
    paper: str
    trained_on: str = ""
    weights: str = ""
    options: dict[str, Any] = field(default_factory=dict)


GENERATORS: Registry[GeneratorSpec] = Registry("generator")


def register_generator(spec: GeneratorSpec) -> GeneratorSpec:
    """Add ``spec`` to :data:`GENERATORS`."""
    return GENERATORS.register(spec.name)(spec)


_ARCHITECTURES: dict[str, type[Generator]] = {"began": BEGANGenerator, "dcgan": DCGANGenerator}

register_generator(
    GeneratorSpec(
        "began32-celeba",
        BEGANGenerator,
        "BEGAN generator, CelebA faces, 32x32, latent 62",
        "Berthelot, Schumm, Metz. BEGAN. arXiv 2017 (PyTorch-GAN implementation)",
        trained_on="CelebA (real faces)",
        weights="began32_celeba_generator.pth",
        options={"latent_dim": 62, "image_size": 32},
    )
)
register_generator(
    GeneratorSpec(
        "dcgan64-digiface",
        DCGANGenerator,
        "DCGAN generator, DigiFace-1M synthetic faces, 64x64, latent 100",
        "Radford, Metz, Chintala. DCGAN. ICLR 2016",
        trained_on="DigiFace-1M (synthetic rendered faces)",
        weights="dcgan64_digiface_netG.pth",
        options={"nz": 100, "ngf": 64, "image_size": 64},
    )
)
register_generator(
    GeneratorSpec(
        "dcgan32",
        DCGANGenerator,
        "DCGAN generator, 32x32, latent 100, untrained (gradinv train-generator trains it)",
        "Radford, Metz, Chintala. DCGAN. ICLR 2016",
        options={"nz": 100, "ngf": 64, "image_size": 32},
    )
)


def build_generator(name: str, *, seed: int | None = None, **options: Any) -> Generator:
    """An untrained generator of the registered architecture ``name`` (options override the spec's)."""
    spec = GENERATORS.get(name)
    opts = {**spec.options, **options}
    with seeded(seed):
        try:
            gen = spec.factory(**opts)
        except TypeError as err:
            raise ConfigError(f"Generator {spec.name!r} does not take these options: {err}.") from err
    return gen.eval()


def save_generator(generator: Generator, path: str | Path, *, trained_on: str = "", **extra: Any) -> Path:
    """Write ``generator`` to ``path`` as a self-describing file (architecture, options, state_dict)
    that :func:`load_generator` reads back with ``weights_only=True``."""
    arch = next((k for k, v in _ARCHITECTURES.items() if isinstance(generator, v)), None)
    if arch is None:
        raise ModelError(
            f"Expected a generator of gradinv's architectures ({', '.join(_ARCHITECTURES)}), "
            f"but got {type(generator).__name__}."
        )
    options = dict(generator.options)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": GENERATOR_FILE_FORMAT,
        "architecture": arch,
        "options": options,
        "trained_on": trained_on,
        "state_dict": generator.state_dict(),
        **extra,
    }
    torch.save(payload, p)
    logger.info("saved %s generator (%s) to %s", arch, options, p)
    return p


def _is_file_reference(name: str) -> bool:
    return name.endswith((".pt", ".pth")) or "/" in name or "\\" in name


def _load_file(path: Path, key: str) -> Generator:
    if not path.is_file():
        raise ModelError(
            f"Expected a generator file at '{path}' (config key `{key}`), but there is no such file. "
            "Give a registered generator name "
            f"({', '.join(GENERATORS.names())}) or the path of a file written by gradinv train-generator."
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # the checkpoint reader explains unreadable files
        payload = None
    if not (isinstance(payload, dict) and payload.get("format") == GENERATOR_FILE_FORMAT):
        raise ModelError(
            "Expected a generator file written by gradinv train-generator "
            f"(format {GENERATOR_FILE_FORMAT!r}) at '{path}' (config key `{key}`), but it is not one. "
            "For a registered architecture's plain state_dict, give the generator's name and this file "
            "as its weights (`generator_weights`)."
        )
    arch = str(payload.get("architecture"))
    if arch not in _ARCHITECTURES:
        raise ModelError(
            f"Expected the generator file '{path}' to name one of {', '.join(_ARCHITECTURES)}, "
            f"but it names {arch!r}."
        )
    gen = _ARCHITECTURES[arch](**dict(payload.get("options", {})))
    try:
        gen.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError) as err:
        raise ModelError(f"The generator file '{path}' does not match its own architecture: {err}") from err
    return gen


def load_generator(
    name: str,
    *,
    weights: str | Path | None = None,
    device: torch.device | str = "cpu",
    key: str = "generator",
    weights_key: str = "generator_weights",
) -> Generator:
    """A trained generator in ``eval`` mode with frozen parameters, on ``device``.

    ``name``: a registered generator (its weight file found by
    :func:`~gradinv.weights.find_weight_file` — ``weights`` when given, else ``$GRADINV_WEIGHTS`` or
    the torch hub cache) or the path of a file written by :func:`save_generator`. ``key`` and
    ``weights_key`` are the config keys named in errors."""
    if name not in GENERATORS and _is_file_reference(name):
        gen = _load_file(Path(name).expanduser(), key)
    else:
        spec = GENERATORS.get(name)
        if not spec.weights and weights is None:
            raise ModelError(
                f"Generator {spec.name!r} ships no weights (config key `{key}`): train it on your surrogate "
                "data with `gradinv train-generator --data SOURCE --out G.pt` and give "
                f'`{key} = "G.pt"`, or give its state_dict as `{weights_key}`.'
            )
        path = find_weight_file(
            spec.weights or Path(str(weights)).name,
            explicit=weights,
            what=f"the weights of generator {spec.name!r}",
            explicit_name=weights_key,
            fix=(
                f"Set `{weights_key}` to the file, or put {spec.weights or 'it'} in a folder named by "
                "$GRADINV_WEIGHTS."
            ),
            error=ModelError,
        )
        gen = build_generator(spec.name)
        try:
            load_checkpoint(gen, path)
        except ModelError as err:
            raise ModelError(
                f"The weights given for generator {spec.name!r} (config key `{weights_key}`) do not fit "
                f"it: {err}"
            ) from err
    gen = gen.to(device).eval()
    for p in gen.parameters():
        p.requires_grad_(False)
    return gen


def to_model_input(images: Tensor, input_shape: tuple[int, int, int], normalization: Normalization) -> Tensor:
    """Generator images ``(..., C', H', W')`` in ``[-1, 1]`` as model inputs ``(..., C, H, W)``:
    to ``[0, 1]``, resized (area interpolation when shrinking, bilinear when enlarging), channels
    averaged (to 1) or repeated (from 1), then ``normalization``. Differentiable."""
    c, h, w = input_shape
    lead = images.shape[:-3]
    x = (images.reshape(-1, *images.shape[-3:]) + 1.0) / 2.0
    if x.shape[-2:] != (h, w):
        mode = "area" if x.shape[-2] >= h and x.shape[-1] >= w else "bilinear"
        x = F.interpolate(x, size=(h, w), mode=mode, align_corners=False if mode == "bilinear" else None)
    if x.shape[-3] != c:
        if c == 1:
            x = x.mean(dim=-3, keepdim=True)
        elif x.shape[-3] == 1:
            x = x.expand(-1, c, -1, -1)
        else:
            raise ModelError(
                f"Expected a generator with {c} or 1 channels for a {c}-channel model, "
                f"but it makes {x.shape[-3]}."
            )
    return normalization.apply(x).reshape(*lead, c, h, w)
