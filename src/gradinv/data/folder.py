"""Load images from a folder: one subdirectory per class (``root/<class>/<image>``), like
torchvision's ``ImageFolder``, or a flat folder of images (one class named after the folder).

Subdirectory names, sorted, are the class names (labels 0..K-1); files are read in sorted order with
PIL. Images are RGB unless every image is gray (then one channel). When sizes differ, every image is
center-cropped to a square and resized (antialiased Lanczos) to the smallest side found.
"""

from __future__ import annotations

import itertools
import logging
from os import PathLike
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from gradinv.data.dataset import ImageDataset
from gradinv.data.transforms import resize_uint8
from gradinv.errors import DataError

__all__ = ["IMAGE_SUFFIXES", "load_folder"]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
)
_GRAY_MODES = frozenset({"1", "L", "LA"})
_LAYOUT = "root/<class_name>/<image>.png (one subdirectory per class) or a flat folder of images"


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


def _read(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(
            f"Expected a readable image, but PIL could not read {path}: {err}. Remove the file from the "
            "folder or re-save it as PNG/JPEG."
        ) from err


def _discover(root: Path) -> tuple[list[tuple[Path, int]], tuple[str, ...]]:
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = _image_files(root)
    if subdirs:
        if loose:
            logger.warning(
                "Ignoring %d image(s) directly in %s: classes come from its subdirectories.", len(loose), root
            )
        files: list[tuple[Path, int]] = []
        for label, d in enumerate(subdirs):
            found = _image_files(d)
            if not found:
                logger.warning("Class folder %s holds no images; class %r stays empty.", d, d.name)
            files.extend((f, label) for f in found)
        return files, tuple(d.name for d in subdirs)
    if loose:
        logger.warning(
            "No class subdirectories in %s: loading %d images as one class %r.", root, len(loose), root.name
        )
    return [(f, 0) for f in loose], (root.name,)


def load_folder(path: str | PathLike[str]) -> ImageDataset:
    """Read a class-per-subdirectory (or flat) image folder into an :class:`ImageDataset`."""
    root = Path(path).expanduser()
    if not root.is_dir():
        what = "is not a directory: " + ("it is a file" if root.exists() else "it does not exist")
        raise DataError(
            f"Expected an image folder laid out as {_LAYOUT}, but {str(root)!r} {what}. Check the path "
            f"(relative paths start at {Path.cwd()})"
            + ("; for an .npz file use npz:PATH." if root.is_file() else ".")
        )
    files, class_names = _discover(root)
    if not files:
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        others = sorted(
            str(f.relative_to(root))
            for f in itertools.islice(root.rglob("*"), 1000)
            if f.is_file() and not f.name.startswith(".")
        )
        found = (
            f"found no image files, only {len(others)} other file(s) ({', '.join(others[:3])}"
            f"{', ...' if len(others) > 3 else ''})"
            if others
            else (
                f"its class folder(s) {', '.join(repr(c) for c in class_names[:5])} hold no files"
                if any(p.is_dir() for p in root.iterdir())
                else "it is empty"
            )
        )
        raise DataError(
            f"Expected images ({suffixes}) in {str(root)!r} laid out as {_LAYOUT}, but {found}. "
            "Put the images there, one subdirectory per class."
        )
    pil = [_read(f) for f, _ in files]
    mode = "L" if all(im.mode in _GRAY_MODES for im in pil) else "RGB"
    arrays = [np.asarray(im.convert(mode), dtype=np.uint8) for im in pil]
    sizes = {a.shape[:2] for a in arrays}
    if len(sizes) > 1:
        side = min(min(s) for s in sizes)
        logger.warning(
            "Images in %s have %d different sizes; center-cropping and resizing all to %d×%d.",
            root,
            len(sizes),
            side,
            side,
        )
        arrays = [resize_uint8(a, side) for a in arrays]
    images = np.stack(arrays)
    if images.ndim == 3:
        images = images[..., None]
    labels = np.array([label for _, label in files], dtype=np.int64)
    return ImageDataset(images, labels, class_names, root.name)
