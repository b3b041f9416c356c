"""Choose which dataset rows form the victim's batch, and check labels against a model.

Compositions (how the batch's labels are spread matters for label-recovery and optimisation
attacks, e.g. Geiping et al., 2020, NeurIPS; Yin et al., 2021, CVPR):

* ``"random"`` — uniform without replacement;
* ``"unique"`` — every label distinct;
* ``"duplicates"`` — ``ceil(N / k)`` distinct classes with ``k`` images each (the last class takes
  the remainder).

>>> import numpy as np
>>> labels = np.repeat(np.arange(5), 4)
>>> sel = select_indices(labels, num_images=5, composition="unique", seed=1)
>>> sorted(labels[sel].tolist())
[0, 1, 2, 3, 4]
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from gradinv.errors import ConfigError, DataError, unknown_name

__all__ = ["COMPOSITIONS", "check_labels", "select_indices"]

logger = logging.getLogger(__name__)

COMPOSITIONS: tuple[str, ...] = ("random", "unique", "duplicates")


def _explicit(indices: Sequence[int], n: int, excluded: set[int]) -> list[int]:
    try:
        idx = [int(i) for i in indices]
    except (TypeError, ValueError) as err:
        raise DataError(f"Expected integer `indices`, but got {indices!r}.") from err
    bad = [i for i in idx if not 0 <= i < n]
    if bad:
        raise DataError(f"Expected `indices` in [0, {n}), but got {bad[:5]}. The dataset has {n} images.")
    if len(set(idx)) != len(idx):
        dup = sorted({i for i in idx if idx.count(i) > 1})
        raise DataError(f"Expected unique `indices`, but got repeats of {dup[:5]}. List each image once.")
    clash = sorted(set(idx) & excluded)
    if clash:
        raise DataError(f"Expected `indices` outside `exclude`, but got excluded rows {clash[:5]}.")
    if not idx:
        raise DataError("Expected at least one index in `indices`, but got none.")
    return idx


def _unique(labels: np.ndarray, pool: np.ndarray, n: int, rng: np.random.Generator) -> list[int]:
    classes = np.unique(labels[pool])
    if len(classes) < n:
        raise DataError(
            f"Expected at least num_images={n} classes for composition 'unique', but the data has "
            f"{len(classes)}. Use fewer images or composition 'random'."
        )
    chosen = rng.choice(classes, size=n, replace=False)
    return [int(rng.choice(pool[labels[pool] == c])) for c in chosen]


def _duplicates(labels: np.ndarray, pool: np.ndarray, n: int, k: int, rng: np.random.Generator) -> list[int]:
    m = math.ceil(n / k)
    sizes = [k] * (m - 1) + [n - k * (m - 1)]
    classes, counts = np.unique(labels[pool], return_counts=True)
    order = rng.permutation(len(classes))
    classes, counts = classes[order], counts[order]
    full = [c for c, cnt in zip(classes, counts) if cnt >= k]
    if len(full) >= m:
        picked = full[:m]
    else:
        rest = [c for c, cnt in zip(classes, counts) if sizes[-1] <= cnt < k]
        if len(full) < m - 1 or not rest:
            raise DataError(
                f"Expected {m} classes with {k} images each (the last with {sizes[-1]}) for composition "
                f"'duplicates' with num_images={n}, but only {len(full)} classes have >= {k} images. "
                "Use fewer images, a smaller `duplicates`, or composition 'random'."
            )
        picked = full[: m - 1] + rest[:1]
    out: list[int] = []
    for c, size in zip(picked, sizes):
        out.extend(int(i) for i in rng.choice(pool[labels[pool] == c], size=size, replace=False))
    return out


def select_indices(
    labels: ArrayLike,
    *,
    num_images: int | None = None,
    indices: Sequence[int] | None = None,
    seed: int = 0,
    composition: str = "random",
    duplicates: int = 2,
    exclude: Sequence[int] = (),
) -> list[int]:
    """Row indices of the victim's batch: the explicit ``indices`` (validated) or ``num_images`` rows
    drawn with a seeded generator following ``composition``, never from ``exclude``.

    Deterministic for a given ``seed``. "duplicates" output is grouped by class.
    """
    y = np.asarray(labels)
    if y.ndim != 1:
        raise DataError(f"Expected a 1-D label array, but got shape {y.shape}.")
    y = y.astype(np.int64, copy=False)
    excluded = {int(i) for i in exclude}
    if indices is not None:
        idx = _explicit(indices, len(y), excluded)
        if num_images is not None and num_images != len(idx):
            raise ConfigError(
                f"Expected `num_images` to match the {len(idx)} explicit `indices`, but got {num_images}. "
                "Give one of them."
            )
        if composition != "random":
            logger.info("Ignoring composition %r: explicit indices were given.", composition)
        return idx
    if num_images is None:
        raise ConfigError("Expected `num_images` or `indices`, but got neither. Set the batch size.")
    if isinstance(num_images, bool) or not isinstance(num_images, (int, np.integer)) or num_images < 1:
        raise ConfigError(f"Expected `num_images` to be an int >= 1, but got {num_images!r}.")
    if composition not in COMPOSITIONS:
        raise ConfigError(unknown_name("composition", composition, COMPOSITIONS))
    n = int(num_images)
    pool = np.setdiff1d(np.arange(len(y)), np.fromiter(excluded, dtype=np.int64, count=len(excluded)))
    if n > len(pool):
        raise DataError(
            f"Expected num_images <= {len(pool)} available images, but got {n}. "
            "Use a smaller batch or a larger dataset."
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(
            f"Expected the sampling `seed` ([data] seed) to be an integer >= 0, but got {seed!r}. "
            "Use a non-negative seed, e.g. 0."
        )
    rng = np.random.default_rng(seed)
    if composition == "unique":
        return _unique(y, pool, n, rng)
    if composition == "duplicates":
        if isinstance(duplicates, bool) or not isinstance(duplicates, (int, np.integer)) or duplicates < 1:
            raise ConfigError(f"Expected `duplicates` to be an int >= 1, but got {duplicates!r}.")
        return _duplicates(y, pool, n, int(duplicates), rng)
    return [int(i) for i in rng.choice(pool, size=n, replace=False)]


def check_labels(labels: ArrayLike, num_classes: int) -> None:
    """Raise :class:`DataError` when a label lies outside ``[0, num_classes)``.

    >>> check_labels([0, 9], 10)
    """
    if num_classes < 1:
        raise ConfigError(
            f"Expected the number of classes to be >= 1, but got num_classes = {num_classes}. Set "
            "[model] num_classes to the number of classes, or leave it unset to take it from the data."
        )
    y = np.asarray(labels)
    if y.size == 0:
        return
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= num_classes:
        bad = sorted({int(v) for v in y.reshape(-1).tolist() if v < 0 or v >= num_classes})
        shown = ", ".join(str(v) for v in bad[:8]) + (", ..." if len(bad) > 8 else "")
        if lo < 0:
            fix = "Map the classes to 0..K-1 (labels cannot be negative)."
        else:
            fix = (
                f"Set [model] num_classes >= {hi + 1} (the largest label + 1), or leave it unset to take "
                "the number of classes from the data source."
            )
        raise DataError(
            f"Expected every label to be a class index in 0..{num_classes - 1} (num_classes = "
            f"{num_classes}), but got label(s) {shown}. {fix}"
        )
