"""Model registry: one :class:`ModelSpec` per architecture, and :func:`build_model`.

Each model module registers its builder with the :func:`register_model` decorator when
:mod:`gradinv.models` is imported: the builder takes a :class:`~gradinv.models.base.ModelShape` and
keyword-only options; the spec reads the options off its signature and, unless given, the
description off the first line of its docstring. :func:`build_model` validates the request, builds
the model under an optional seed, initialises it, checks with a dummy forward pass that the image
size fits, and optionally loads a checkpoint.

>>> model = build_model("lenet", num_classes=10, seed=0)
>>> model(torch.zeros(1, 3, 32, 32)).shape
torch.Size([1, 10])
>>> default_normalization("resnet20")
'imagenet'
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from gradinv._checks import check_choice, check_int
from gradinv.errors import ConfigError, ModelError, did_you_mean
from gradinv.models.base import ModelShape
from gradinv.models.checkpoint import load_checkpoint
from gradinv.models.init import INIT_SCHEMES, check_scheme, initialize
from gradinv.models.seeding import seeded
from gradinv.models.user import is_import_path, load_factory
from gradinv.registry import Registry

__all__ = [
    "MODELS",
    "NORMALIZATIONS",
    "ModelSpec",
    "build_model",
    "default_normalization",
    "image_too_small",
    "register_model",
    "user_model_spec",
]

logger = logging.getLogger(__name__)

#: Names of the input normalisations a model may expect by default.
NORMALIZATIONS = ("none", "cifar10", "imagenet")


@dataclass(frozen=True)
class ModelSpec:
    """An architecture: how to build it, where it comes from, and its defaults.

    ``builder(ModelShape(num_classes, in_channels, (H, W)), **options)`` returns the module; its
    keyword-only parameters are the model's ``options`` (those a :func:`functools.partial` fixes
    excepted); ``min_image_size`` is the smallest side length it supports, found by training it on
    one image at each size (smaller sizes are refused by :func:`build_model` before anything is
    built, with ``min_image_reason`` saying why)."""

    name: str
    builder: Callable[..., nn.Module]
    description: str
    paper: str
    default_init: str = "default"
    default_normalization: str = "none"
    pretrained: str = ""
    min_image_size: int = 1
    min_image_reason: str = ""
    #: a model named by an import path (:mod:`gradinv.models.user`), not a registered one
    user: bool = False
    options: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        fix = f"Fix the spec of model {self.name!r}."
        if not (self.description and self.paper):
            raise ModelError(f"Expected model {self.name!r} to have a description and a paper. {fix}")
        check_choice("default_init", self.default_init, INIT_SCHEMES, fix=fix)
        check_choice("default_normalization", self.default_normalization, NORMALIZATIONS, fix=fix)
        object.__setattr__(self, "options", _options_of(self.builder))


def _options_of(builder: Callable[..., nn.Module]) -> tuple[str, ...]:
    """The keyword-only parameters of ``builder`` that a ``functools.partial`` leaves open."""
    fixed = builder.keywords if isinstance(builder, partial) else {}
    params = inspect.signature(builder).parameters.values()
    return tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name not in fixed)


class ModelRegistry(Registry[ModelSpec]):
    """The model registry; :meth:`get` also resolves an import path (``module:factory`` or
    ``path/to/file.py:factory``, :mod:`gradinv.models.user`) to a spec of the user's model, which is
    not registered (``gradinv list`` shows registered models only)."""

    def get(self, name: str) -> ModelSpec:
        if name not in self and is_import_path(name):
            return user_model_spec(name)
        try:
            return super().get(name)
        except ConfigError as err:
            raise ConfigError(
                f"{err} A model of your own works too: name it by its import path, 'package.module:factory' "
                "or 'path/to/file.py:factory'."
            ) from None


def user_model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of the user's model at import path ``name`` (:mod:`gradinv.models.user`)."""
    factory = load_factory(name)
    return ModelSpec(
        name,
        factory.builder(),
        factory.description,
        paper=f"user model ({factory.where})",
        user=True,
    )


MODELS: Registry[ModelSpec] = ModelRegistry("model")

Builder = TypeVar("Builder", bound=Callable[..., nn.Module])


def register_model(name: str, *, description: str = "", **fields: Any) -> Callable[[Builder], Builder]:
    """Decorator registering a builder as model ``name`` and returning it unchanged.

    ``fields`` are the other :class:`ModelSpec` fields (``paper`` at least); ``description``
    defaults to the first paragraph of the builder's docstring (without a final full stop).

    >>> MODELS.get("mlp").options  # MLP(shape, *, hidden=(256,), activation="relu")
    ('hidden', 'activation')
    """

    def deco(builder: Builder) -> Builder:
        summary = (inspect.getdoc(builder) or "").split("\n\n", 1)[0]
        text = description or " ".join(summary.split()).rstrip(".")
        MODELS.register(name)(ModelSpec(name, builder, text, **fields))
        return builder

    return deco


def default_normalization(name: str) -> str:
    """The input normalisation (``"none"``, ``"cifar10"`` or ``"imagenet"``) model ``name`` expects."""
    return MODELS.get(name).default_normalization


def image_too_small(name: str, size: tuple[int, int], min_size: int, why: str) -> ModelError:
    """The standard error for an image size a model cannot process."""
    return ModelError(
        f"Expected an image size that fits model {name!r} (at least {min_size}x{min_size}), "
        f"but got {size[0]}x{size[1]}: {why}. Use image_size = 32 (or any size >= {min_size})."
    )


def _image_hw(image_size: int | tuple[int, int]) -> tuple[int, int]:
    raw = image_size if isinstance(image_size, (tuple, list)) else (image_size, image_size)
    if len(raw) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in raw):
        raise ConfigError(
            f"Expected `image_size` to be a positive int or a (height, width) pair, but got {image_size!r}. "
            "Use e.g. image_size = 32."
        )
    return int(raw[0]), int(raw[1])


def _check_options(spec: ModelSpec, options: dict[str, Any]) -> None:
    unknown = sorted(set(options) - set(spec.options))
    if not unknown:
        return
    bad = unknown[0]
    if spec.options:
        valid = f"Valid options of {spec.name!r}: {', '.join(spec.options)}."
    else:
        valid = f"Model {spec.name!r} takes no options; remove it."
    raise ConfigError(
        f"Unknown option {bad!r} for model {spec.name!r}.{did_you_mean(bad, spec.options)} {valid}"
    )


def _check_fits(
    model: nn.Module, spec: ModelSpec, in_channels: int, size: tuple[int, int], classes: int
) -> None:
    """Run zeros ``(2, C, H, W)`` through ``model`` in eval mode; explain a failure."""
    was_training = model.training
    x = torch.zeros(2, in_channels, *size)
    try:
        model.eval()
        with torch.no_grad():
            out = model(x)
    except Exception as err:  # convolutions raise RuntimeError, BatchNorm ValueError; a user's model anything
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if spec.user:
            raise ModelError(
                f"Expected model {spec.name!r} to accept the data's images of shape {tuple(x.shape[1:])} "
                f"(C, H, W), but a forward pass of zeros {tuple(x.shape)} failed: {type(err).__name__}: "
                f"{reason}. Give data of the shape the model was written for (set [data] image_size and "
                "channels, e.g. --set data.image_size=32 --set data.channels=3), or build the model for this "
                "shape (the factory gets in_channels and image_size when its signature names them)."
            ) from err
        if not isinstance(err, (RuntimeError, ValueError)):
            raise
        raise image_too_small(
            spec.name,
            size,
            spec.min_image_size,
            f"a forward pass of zeros {tuple(x.shape)} failed ({reason})",
        ) from err
    finally:
        model.train(was_training)
    if spec.user and (not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, classes)):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else f"a {type(out).__name__}"
        raise ModelError(
            f"Expected model {spec.name!r} to output logits of shape (2, {classes}) for input "
            f"{tuple(x.shape)}, but got {got}. Make its forward return one tensor of "
            f"num_classes = {classes} logits per image "
            "(the factory gets num_classes when its signature names it; set [model] num_classes if the "
            "data's class count is not the model's)."
        )
    if tuple(out.shape) != (2, classes):
        raise ModelError(
            f"Expected model {spec.name!r} to output logits of shape (2, {classes}) for input "
            f"{tuple(x.shape)}, but got {tuple(out.shape)}. This is a bug in the model's builder."
        )


def build_model(
    name: str,
    *,
    num_classes: int,
    in_channels: int = 3,
    image_size: int | tuple[int, int] = 32,
    init: str | None = None,
    seed: int | None = None,
    checkpoint: str | Path | None = None,
    **options: Any,
) -> nn.Module:
    """Build registered model ``name`` for images ``(in_channels, H, W)`` and ``num_classes`` classes.

    ``init`` (default: the spec's ``default_init``) re-initialises the weights; ``seed`` makes the
    weights reproducible without touching the global random state; ``checkpoint`` loads weights
    (strictly) after initialisation. ``options`` are the model's own options (e.g. ``width``).
    The model is returned in training mode and outputs logits.
    """
    spec = MODELS.get(name)
    _check_options(spec, options)
    check_int("num_classes", num_classes, minimum=2, fix="A classifier needs at least 2 classes.")
    check_int("in_channels", in_channels, fix="Use 1 for grayscale or 3 for RGB images.")
    size = _image_hw(image_size)
    if min(size) < spec.min_image_size:
        raise image_too_small(
            spec.name, size, spec.min_image_size, spec.min_image_reason or "smaller than the model supports"
        )
    scheme = check_scheme(spec.default_init if init is None else init)
    if seed is not None:
        check_int("seed", seed, minimum=0, fix="Use a non-negative int, or None for the global random state.")
    with seeded(seed):  # layer constructors draw from the global RNG and take no generator
        model = spec.builder(ModelShape(num_classes, in_channels, size), **options)
        if not (spec.user and init is None):  # a user's model keeps its factory's initialisation
            initialize(model, scheme)
    _check_fits(model, spec, in_channels, size, num_classes)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, strict=True)
    logger.debug(
        "built %s (%d classes, %dx%dx%d, init=%s, seed=%s)",
        spec.name,
        num_classes,
        in_channels,
        *size,
        scheme,
        seed,
    )
    return model
