"""Load a labelled image set from a NumPy ``.npz`` file.

Layout: ``x`` uint8 images ``N×H×W×C`` (or ``N×H×W`` gray), ``y`` integer labels ``N``, optionally
``classes`` (one name per class, a string array). Other keys are ignored. Files are read with
``allow_pickle=False``.
"""

from __future__ import annotations

import logging
import zipfile
from os import PathLike
from pathlib import Path

import numpy as np

from gradinv._checks import existing_file
from gradinv.data.dataset import ImageDataset
from gradinv.errors import DataError

__all__ = ["load_npz"]

logger = logging.getLogger(__name__)

_LAYOUT = "keys `x` (uint8 N×H×W×C or N×H×W), `y` (integer labels, N) and optionally `classes` (names)"
_SAVE = "Save it with np.savez(path, x=images, y=labels)."
_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"
_NPY_MAGIC = b"\x93NUMPY"


def _check_format(p: Path) -> None:
    """Refuse files that are not an .npz archive before NumPy guesses (it would call random bytes
    "pickled data")."""
    with p.open("rb") as f:
        head = f.read(8)
    if head.startswith((_ZIP_MAGIC, _EMPTY_ZIP_MAGIC)):
        return
    if not head:
        got = "the file is empty (0 bytes)"
    elif head.startswith(_NPY_MAGIC):
        got = "it is a single-array .npy file (np.save), not an .npz archive"
    else:
        got = (
            f"it is not a zip archive (it starts with bytes {head!r}); it may be another format or corrupted"
        )
    raise DataError(
        f"Expected an .npz archive (written by np.savez) with {_LAYOUT} at {str(p)!r}, but {got}. {_SAVE}"
    )


def _images(x: np.ndarray, path: Path) -> np.ndarray:
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise DataError(
            f"Expected `x` in {path} of shape (N, H, W, C) with C in {{1, 3}} or (N, H, W), but got "
            f"shape {x.shape}. Store images channels last, RGB or gray (drop alpha channels)."
        )
    if x.dtype == np.uint8:
        return x
    if np.issubdtype(x.dtype, np.floating):
        raise DataError(
            f"Expected uint8 images in `x` of {path}, but got {x.dtype}. Convert float images to uint8 "
            "0..255, e.g. `(x * 255).round().clip(0, 255).astype(np.uint8)` for images in [0, 1]."
        )
    if np.issubdtype(x.dtype, np.integer) and (x.size == 0 or (x.min() >= 0 and x.max() <= 255)):
        logger.info("Casting %s images of %s to uint8 (values lie in 0..255).", x.dtype, path)
        return x.astype(np.uint8)
    got = (
        f"{x.dtype} with values in [{x.min()}, {x.max()}]"
        if x.size and np.issubdtype(x.dtype, np.number)
        else x.dtype
    )
    raise DataError(
        f"Expected uint8 images in `x` of {path}, but got {got}. Convert them to uint8 0..255 "
        "(rescale values outside that range first)."
    )


def load_npz(path: str | PathLike[str]) -> ImageDataset:
    """Read ``x``, ``y`` and optional ``classes`` from ``path`` into an :class:`ImageDataset`.

    Without ``classes``, classes are named ``"0"``..``"K-1"`` with ``K = max label + 1``.
    """
    folder = "is a directory (for an image folder use folder:DIR)"
    p = existing_file(path, expected=f"an .npz file with {_LAYOUT}", error=DataError, directory=folder)
    try:
        _check_format(p)
        with np.load(p, allow_pickle=False) as f:
            keys = list(f.files)
            missing = [k for k in ("x", "y") if k not in keys]
            if missing:
                raise DataError(
                    f"Expected {_LAYOUT} in {p}, but key(s) {missing} are missing; found keys {keys}. "
                    "Rename the arrays when saving: np.savez(path, x=images, y=labels)."
                )
            x, y = f["x"], f["y"]
            classes = f["classes"] if "classes" in keys else None
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "pickle" in reason.lower() or "object arrays" in reason.lower():
            hint = "Store every array, class names included, as plain numbers or strings (not objects)."
        else:
            hint = "The file may be truncated or corrupted; save it again with np.savez(path, x=..., y=...)."
        raise DataError(
            f"Expected a readable .npz file with {_LAYOUT}, but reading {p} failed: {reason}. {hint}"
        ) from err
    images = _images(x, p)
    if images.shape[0] == 0 or 0 in images.shape[1:3]:
        raise DataError(f"Expected at least one image in `x` of {p}, but `x` has shape {x.shape}. {_SAVE}")
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(
            f"Expected `y` in {p} as a 1-D integer label array, but got {y.dtype} of shape {y.shape}. "
            "Save one integer class index per image, e.g. y=labels.astype(np.int64)."
        )
    if y.shape[0] != images.shape[0]:
        raise DataError(
            f"Expected as many labels as images in {p}, but got {images.shape[0]} images and "
            f"{y.shape[0]} labels. Save one label per image."
        )
    if int(y.min()) < 0:
        raise DataError(
            f"Expected labels `y` in {p} to be class indices 0..K-1, but got {int(y.min())}. "
            "Map the classes to 0..K-1 before saving."
        )
    if classes is not None:
        names = tuple(str(c) for c in np.asarray(classes).reshape(-1))
        if int(y.max()) >= len(names):
            raise DataError(
                f"Expected one name in `classes` of {p} per class (labels go up to {int(y.max())}), but got "
                f"{len(names)} name(s). Save all K class names, or leave `classes` out to name them 0..K-1."
            )
    else:
        k = int(y.max()) + 1 if y.size else 0
        names = tuple(str(i) for i in range(k))
    return ImageDataset(images, y.astype(np.int64), names, p.stem)
