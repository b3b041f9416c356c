"""CIFAR-10 / CIFAR-100 in the original "python version" format (Krizhevsky, 2009, "Learning
Multiple Layers of Features from Tiny Images", tech. report, University of Toronto).

Expected layout under ``root``::

    root/cifar-10-batches-py/{data_batch_1 … data_batch_5, test_batch, batches.meta}
    root/cifar-100-python/{train, test, meta}

Each file is a pickled dict; ``b"data"`` is uint8 ``N×3072`` (row-major 32×32 R, then G, then B
planes). Files are unpickled with a restricted unpickler that only builds NumPy arrays, so a
tampered file cannot run code. CIFAR-100 uses the fine (100-class) labels.

With ``download=True`` the archive is fetched from :data:`ARCHIVES` (overridable, e.g. a
``file://`` URL), its MD5 checked before extraction, and extracted with tarfile's ``"data"`` filter.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import logging
import pickle
import shutil
import tarfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Literal

import numpy as np

from gradinv.data.dataset import ImageDataset
from gradinv.errors import ConfigError, DataError

__all__ = ["ARCHIVES", "CifarArchive", "load_cifar", "restricted_unpickle"]

logger = logging.getLogger(__name__)

CifarName = Literal["cifar10", "cifar100"]
Split = Literal["train", "test"]


@dataclass(frozen=True)
class CifarArchive:
    """Where a CIFAR archive lives and what it unpacks to."""

    url: str
    md5: str
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    label_key: str
    names_key: str


ARCHIVES: dict[str, CifarArchive] = {
    "cifar10": CifarArchive(
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        folder="cifar-10-batches-py",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_files=("test_batch",),
        meta_file="batches.meta",
        label_key="labels",
        names_key="label_names",
    ),
    "cifar100": CifarArchive(
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        folder="cifar-100-python",
        train_files=("train",),
        test_files=("test",),
        meta_file="meta",
        label_key="fine_labels",
        names_key="fine_label_names",
    ),
}
"""Archive descriptions by dataset name; replace an entry to use a mirror (tests use ``file://``)."""


# --------------------------------------------------------------------------------------------------
# Restricted unpickling
# --------------------------------------------------------------------------------------------------


def _numpy_attr(submodule: str, name: str) -> Any:
    """``numpy._core.<submodule>.<name>`` (NumPy 2) or ``numpy.core.<submodule>.<name>`` (NumPy 1),
    without touching NumPy 2's deprecated ``numpy.core`` shim."""
    try:
        module = importlib.import_module(f"numpy._core.{submodule}")
    except ImportError:  # pragma: no cover - NumPy 1.x
        module = importlib.import_module(f"numpy.core.{submodule}")
    return getattr(module, name)


def _allowed() -> dict[tuple[str, str], Any]:
    import codecs

    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,  # bytes written by Python 3 with protocol < 3
    }
    for pkg in ("numpy.core", "numpy._core"):
        allowed[(f"{pkg}.multiarray", "_reconstruct")] = _numpy_attr("multiarray", "_reconstruct")
        allowed[(f"{pkg}.multiarray", "scalar")] = _numpy_attr("multiarray", "scalar")
        allowed[(f"{pkg}.numeric", "_frombuffer")] = _numpy_attr("numeric", "_frombuffer")
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """Builds only NumPy arrays, dtypes and plain containers; refuses every other global."""

    _ALLOWED: dict[tuple[str, str], Any] | None = None

    def find_class(self, module: str, name: str) -> Any:
        if _RestrictedUnpickler._ALLOWED is None:
            _RestrictedUnpickler._ALLOWED = _allowed()
        obj = _RestrictedUnpickler._ALLOWED.get((module, name))
        if obj is None:
            raise DataError(
                f"Expected a CIFAR pickle holding only NumPy arrays and plain data, but it references "
                f"{module}.{name}, which is refused for safety. The file is not an original CIFAR file; "
                "re-download it."
            )
        return obj


def restricted_unpickle(data: bytes) -> Any:
    """Unpickle ``data`` (``encoding="bytes"``) allowing only NumPy array reconstruction.

    >>> restricted_unpickle(pickle.dumps({b"labels": [1, 2]}))
    {b'labels': [1, 2]}
    """
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except DataError:
        raise
    except Exception as err:  # corrupt pickles raise many error types
        raise DataError(f"Expected a valid CIFAR pickle, but unpickling failed: {err!r}.") from err


def _get(d: Mapping[Any, Any], key: str, path: Path) -> Any:
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    keys = sorted(str(k) for k in d)
    raise DataError(
        f"Expected key {key!r} in CIFAR file {path}, but found keys {keys}. Re-download the archive "
        "(is this CIFAR-100 under a CIFAR-10 name, or the other way round?)."
    )


def _load_file(path: Path, spec: CifarArchive | None = None) -> dict[Any, Any]:
    fix = (
        f"The file is damaged or not from the original archive; delete the folder and extract {spec.url} "
        f"(MD5 {spec.md5}) again."
        if spec is not None
        else "Re-download the archive and extract it again."
    )
    try:
        d = restricted_unpickle(path.read_bytes())
    except DataError as err:
        raise DataError(f"{str(err).rstrip('.')} (file {str(path)!r}). {fix}") from err
    if not isinstance(d, dict):
        raise DataError(f"Expected a pickled dict in CIFAR file {path}, but got {type(d).__name__}. {fix}")
    return d


def _decode_images(data: Any, path: Path) -> np.ndarray:
    arr = np.asarray(data)
    if arr.dtype != np.uint8 or arr.ndim != 2 or arr.shape[1] != 3 * 32 * 32:
        raise DataError(
            f"Expected b'data' in {path} as uint8 of shape (N, 3072), but got {arr.dtype} {arr.shape}. "
            "Re-download the original archive (the python version)."
        )
    return np.ascontiguousarray(arr.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


# --------------------------------------------------------------------------------------------------
# Download
# --------------------------------------------------------------------------------------------------


def _md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _safe_extract(archive: Path, root: Path) -> None:
    try:
        with tarfile.open(archive, "r:*") as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(root, filter="data")
                return
            base = root.resolve()  # pragma: no cover - Python without extraction filters
            for member in tar.getmembers():  # pragma: no cover
                target = (root / member.name).resolve()
                if not (member.isfile() or member.isdir()) or not target.is_relative_to(base):
                    raise tarfile.TarError(f"unsafe member {member.name!r}")
            tar.extractall(root)  # pragma: no cover
    except tarfile.TarError as err:
        raise DataError(
            f"Expected a plain CIFAR .tar.gz archive, but extracting {archive} failed: {err}. "
            "Re-download the archive."
        ) from err


def _download(spec: CifarArchive, root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    archive = root / spec.url.rstrip("/").rsplit("/", 1)[-1]
    if not (archive.is_file() and _md5(archive) == spec.md5):
        logger.info("Downloading %s to %s", spec.url, archive)
        part = archive.with_name(archive.name + ".part")
        try:
            with urllib.request.urlopen(spec.url, timeout=60) as response, part.open("wb") as out:
                shutil.copyfileobj(response, out)
        except (urllib.error.URLError, OSError) as err:
            part.unlink(missing_ok=True)
            raise DataError(
                f"Expected to download {spec.url}, but it failed: {err}. Download the archive manually and "
                f"extract it into {root}."
            ) from err
        part.replace(archive)
        digest = _md5(archive)
        if digest != spec.md5:
            archive.unlink(missing_ok=True)
            raise DataError(
                f"Expected MD5 {spec.md5} for {spec.url}, but the download has {digest}; deleted it. "
                "Retry, or download the archive manually and check its checksum."
            )
    logger.info("Extracting %s into %s", archive, root)
    _safe_extract(archive, root)


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


def _folder(root: Path, spec: CifarArchive) -> Path:
    return root if root.name == spec.folder else root / spec.folder


def _missing(folder: Path, spec: CifarArchive, split: str) -> list[str]:
    names = (*(spec.train_files if split == "train" else spec.test_files), spec.meta_file)
    return [n for n in names if not (folder / n).is_file()]


def load_cifar(
    root: str | PathLike[str],
    *,
    dataset: CifarName = "cifar10",
    split: Split = "train",
    download: bool = False,
) -> ImageDataset:
    """Load CIFAR-10 or CIFAR-100 (fine labels) ``split`` from ``root`` as 32×32×3 uint8 images.

    ``root`` holds (or is) ``cifar-10-batches-py`` / ``cifar-100-python``. With ``download=True`` a
    missing archive is downloaded, MD5-checked and extracted into ``root``.
    """
    if dataset not in ARCHIVES:
        raise ConfigError(f"Expected `dataset` to be one of {sorted(ARCHIVES)}, but got {dataset!r}.")
    if split not in ("train", "test"):
        raise ConfigError(f"Expected `split` to be 'train' or 'test', but got {split!r}.")
    spec = ARCHIVES[dataset]
    base = Path(root).expanduser()
    folder = _folder(base, spec)
    missing = _missing(folder, spec, split)
    if missing and download:
        _download(spec, base if folder != base else base.parent)
        missing = _missing(folder, spec, split)
    if missing:
        raise DataError(
            f"Expected {dataset} ({split}) in {str(folder)!r} with files {missing}, but they are missing. "
            f"Download {spec.url} (MD5 {spec.md5}) and extract it into {str(base)!r}, or, when online, "
            "let gradinv do it: download=True ([data] download = true; CLI: --set data.download=true). "
            'Offline, the bundled sources need no download: source = "samples" or "digits".'
        )
    files = spec.train_files if split == "train" else spec.test_files
    images, labels = [], []
    for name in files:
        d = _load_file(folder / name, spec)
        images.append(_decode_images(_get(d, "data", folder / name), folder / name))
        labels.append(np.asarray(_get(d, spec.label_key, folder / name), dtype=np.int64))
    meta = _load_file(folder / spec.meta_file, spec)
    names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in _get(meta, spec.names_key, folder))
    return ImageDataset(np.concatenate(images), np.concatenate(labels), names, f"{dataset}-{split}")
