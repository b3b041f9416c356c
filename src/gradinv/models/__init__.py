"""Models for gradient inversion experiments, in plain PyTorch, behind one registry.

``build_model(name, num_classes=..., ...)`` builds any registered architecture: ``lenet`` (DLG),
``convnet`` (Geiping et al. 2020), ``cnn`` (the configurable small CNN of Du et al. 2025, Table 4),
``resnet18`` (CIFAR stem), ``resnet20``/``resnet32``/``resnet56`` (CIFAR ResNets, loadable from the
trained checkpoints in ``../shared/weights``), ``mlp`` and ``rgap-cnn6`` (R-GAP's six-layer CNN
without pooling). Every model ends with an ``nn.Linear`` classifier and outputs logits. Randomness
never comes from a reseeded global RNG: :mod:`gradinv.models.seeding` (``seeded`` for construction,
``reseed`` for layers that sample, such as ``cnn``'s dropout).

A model is a builder ``(ModelShape, *, options...)`` decorated with :func:`register_model` in its
own module (:mod:`gradinv.models.base` holds what builders share).

>>> sorted(MODELS)
['cnn', 'convnet', 'lenet', 'mlp', 'resnet18', 'resnet20', 'resnet32', 'resnet56', 'rgap-cnn6']
"""

from __future__ import annotations

from gradinv.models.base import ACTIVATIONS, ModelShape
from gradinv.models.checkpoint import load_checkpoint, save_checkpoint
from gradinv.models.init import INIT_SCHEMES, initialize
from gradinv.models.inspect import batchnorm_statistics, count_parameters, find_classifier, has_batchnorm
from gradinv.models.registry import (
    MODELS,
    ModelSpec,
    build_model,
    default_normalization,
    register_model,
)
from gradinv.models.seeding import SamplingModule, SeededDropout, reseed, seeded

# Importing the model modules registers them in MODELS (new modules are picked up automatically).
from gradinv.models.cnn import CNN  # isort: skip
from gradinv.models.convnet import ConvNet  # isort: skip
from gradinv.models.lenet import LeNet  # isort: skip
from gradinv.models.mlp import MLP  # isort: skip
from gradinv.models.resnet import ResNet18  # isort: skip
from gradinv.models.resnet_cifar import ResNetCIFAR  # isort: skip
import sys as _sys  # isort: skip
from gradinv._discovery import import_submodules as _import_submodules  # isort: skip

_import_submodules(_sys.modules[__name__])

__all__ = [
    "ACTIVATIONS",
    "CNN",
    "INIT_SCHEMES",
    "MLP",
    "MODELS",
    "ConvNet",
    "LeNet",
    "ModelShape",
    "ModelSpec",
    "ResNet18",
    "ResNetCIFAR",
    "SamplingModule",
    "SeededDropout",
    "batchnorm_statistics",
    "build_model",
    "count_parameters",
    "default_normalization",
    "find_classifier",
    "has_batchnorm",
    "initialize",
    "load_checkpoint",
    "register_model",
    "reseed",
    "save_checkpoint",
    "seeded",
]
