"""Parse a data source string into an :class:`ImageDataset`.

Forms (see :data:`SOURCE_FORMS`)::

    samples                 ten bundled photos (offline)
    digits                  scikit-learn's 8×8 handwritten digits (offline)
    npz:PATH                .npz with x, y[, classes]
    folder:DIR              class-per-subdirectory image folder (or a flat folder)
    cifar10:DIR[:SPLIT]     CIFAR-10 python batches under DIR; SPLIT is train (default) or test
    cifar100:DIR[:SPLIT]    CIFAR-100 python files under DIR (fine labels)

For CIFAR, ``DIR`` may be left out (``cifar10`` or ``cifar10:test``) to use ``$GRADINV_DATA``; a directory
literally named ``train`` or ``test`` must then be written ``./test``.

>>> load_source("digits").num_classes
10
"""

from __future__ import annotations

import os
from pathlib import Path

from gradinv.data.cifar import CifarName, load_cifar
from gradinv.data.dataset import ImageDataset
from gradinv.data.folder import load_folder
from gradinv.data.npz import load_npz
from gradinv.data.samples import load_digits_dataset, load_samples
from gradinv.errors import ConfigError, did_you_mean

__all__ = ["SOURCE_FORMS", "load_source", "shared_data_dir"]

SOURCE_FORMS: tuple[tuple[str, str], ...] = (
    ("samples", "ten real photos bundled with scikit-image / scikit-learn, one class each (offline)"),
    ("digits", "scikit-learn's 1797 handwritten digits, 8×8 gray, 10 classes (offline)"),
    ("npz:PATH", ".npz file with x (uint8 N×H×W×C or N×H×W), y (labels) and optional classes"),
    ("folder:DIR", "image folder with one subdirectory per class (a flat folder is one class)"),
    ("cifar10:DIR[:test]", "CIFAR-10 python batches in DIR/cifar-10-batches-py (train split by default)"),
    ("cifar100:DIR[:test]", "CIFAR-100 python files in DIR/cifar-100-python, fine labels"),
)
"""``(form, description)`` pairs, e.g. for ``gradinv list``."""

_SCHEMES = ("samples", "digits", "npz", "folder", "cifar10", "cifar100")


def shared_data_dir() -> Path | None:
    """``$GRADINV_DATA`` as a path when set (where users keep CIFAR archives, .npz files…), else None."""
    env = os.environ.get("GRADINV_DATA")
    return Path(env).expanduser() if env else None


def _invalid(spec: str, why: str) -> ConfigError:
    forms = ", ".join(form for form, _ in SOURCE_FORMS)
    return ConfigError(f"Expected a data source of the form {forms}, but got {spec!r}: {why}")


def _cifar(spec: str, scheme: str, rest: str, download: bool) -> ImageDataset:
    split = "train"
    for s in ("train", "test"):
        if rest == s or rest.endswith(f":{s}"):
            split, rest = s, rest[: -len(s)].removesuffix(":")
            break
    if rest:
        root = Path(rest).expanduser()
    else:
        env = shared_data_dir()
        if env is None:
            raise _invalid(spec, f"give the directory ({scheme}:DIR) or set $GRADINV_DATA.")
        root = env
    dataset: CifarName = "cifar10" if scheme == "cifar10" else "cifar100"
    return load_cifar(root, dataset=dataset, split="test" if split == "test" else "train", download=download)


def load_source(spec: str, *, download: bool = False) -> ImageDataset:
    """Load the dataset described by ``spec`` (see :data:`SOURCE_FORMS`).

    ``download`` lets CIFAR sources fetch their archive when missing; other sources ignore it.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise _invalid(str(spec), "it is empty.")
    text = spec.strip()
    scheme, _, rest = text.partition(":")
    scheme = scheme.lower()
    if scheme not in _SCHEMES:
        raise _invalid(spec, f"unknown source {scheme!r}.{did_you_mean(scheme, _SCHEMES)}")
    if scheme == "samples" or scheme == "digits":
        if rest:
            raise _invalid(spec, f"{scheme!r} takes no argument.")
        return load_samples() if scheme == "samples" else load_digits_dataset()
    if scheme in ("npz", "folder"):
        if not rest:
            raise _invalid(spec, f"give a path after '{scheme}:'.")
        return load_npz(rest) if scheme == "npz" else load_folder(rest)
    return _cifar(spec, scheme, rest, download)
