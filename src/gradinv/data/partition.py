"""Splitting a dataset across federated clients, and sampling the clients of each round.

* IID: a seeded random permutation cut into ``K`` nearly equal parts.
* Non-IID: the label-Dirichlet split of Hsu, Qi, Brown, "Measuring the Effects of Non-Identical
  Data Distribution for Federated Visual Classification", arXiv:1909.06335, 2019 (also used by
  Yurochkin et al., ICML 2019): for every class ``c`` a share vector ``p_c ~ Dir(alpha * 1_K)`` is
  drawn and the class's samples are dealt to the ``K`` clients in those proportions. Large
  ``alpha`` approaches the IID split; small ``alpha`` gives each client few classes.
  Deviation: shares are not re-balanced by client size (some implementations do); instead the draw
  is repeated (up to ``max_tries``) until every client holds at least ``min_size`` samples.
* Client sampling: ``max(1, round(fraction * K))`` or ``count`` distinct clients per round without
  replacement, as in FedAvg (McMahan et al., AISTATS 2017), seeded by ``(seed, round)`` so that any
  round can be reproduced on its own.

>>> import numpy as np
>>> labels = np.repeat(np.arange(4), 25)
>>> p = partition(labels, 5, scheme="iid", seed=0)
>>> p.sizes, sorted(np.concatenate(p.clients).tolist()) == list(range(100))
((20, 20, 20, 20, 20), True)
>>> sample_clients(10, 3, count=4, seed=1).tolist() == sample_clients(10, 3, count=4, seed=1).tolist()
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from gradinv.errors import ConfigError, DataError

__all__ = [
    "SPLITS",
    "Partition",
    "dirichlet_partition",
    "iid_partition",
    "partition",
    "sample_clients",
]

Split = Literal["iid", "dirichlet"]
SPLITS: tuple[str, ...] = get_args(Split)


@dataclass(frozen=True, eq=False)
class Partition:
    """Positions (into the split label array) held by each client, disjoint and covering all rows."""

    clients: tuple[np.ndarray, ...]
    scheme: str
    alpha: float | None = None

    @property
    def num_clients(self) -> int:
        return len(self.clients)

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(int(c.size) for c in self.clients)

    def label_counts(self, labels: np.ndarray, num_classes: int | None = None) -> np.ndarray:
        """``(K, C)`` histogram of each client's labels."""
        y = np.asarray(labels)
        c = num_classes if num_classes is not None else int(y.max()) + 1 if y.size else 0
        return np.stack([np.bincount(y[idx], minlength=c)[:c] for idx in self.clients])


def _check_clients(num_samples: int, num_clients: int, min_size: int) -> None:
    if isinstance(num_clients, bool) or not isinstance(num_clients, int) or num_clients < 1:
        raise ConfigError(f"Expected `num_clients` to be an int >= 1, but got {num_clients!r}.")
    if isinstance(min_size, bool) or not isinstance(min_size, int) or min_size < 0:
        raise ConfigError(f"Expected `min_size` to be an int >= 0, but got {min_size!r}.")
    if num_samples < num_clients * max(min_size, 1):
        raise DataError(
            f"Expected at least {num_clients * max(min_size, 1)} samples to give each of {num_clients} "
            f"clients {max(min_size, 1)}, but got {num_samples}. Use fewer clients or more data."
        )


def iid_partition(num_samples: int, num_clients: int, *, seed: int = 0) -> Partition:
    """A seeded random permutation of ``range(num_samples)`` cut into ``num_clients`` parts whose
    sizes differ by at most one."""
    _check_clients(num_samples, num_clients, 1)
    order = np.random.default_rng(seed).permutation(num_samples)
    parts = tuple(np.sort(p).astype(np.int64) for p in np.array_split(order, num_clients))
    return Partition(parts, "iid")


def dirichlet_partition(
    labels: Sequence[int] | np.ndarray,
    num_clients: int,
    *,
    alpha: float,
    seed: int = 0,
    min_size: int = 1,
    max_tries: int = 1000,
) -> Partition:
    """Label-Dirichlet non-IID split (Hsu et al. 2019): per class, shares ``~ Dir(alpha)`` over the
    clients. Redrawn until every client holds ``min_size`` samples (raises after ``max_tries``)."""
    y = np.asarray(labels)
    if y.ndim != 1 or (y.size and not np.issubdtype(y.dtype, np.integer)):
        raise DataError(f"Expected a 1-D integer label array, but got {y.dtype} of shape {y.shape}.")
    if not (isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and alpha > 0):
        raise ConfigError(
            f"Expected `alpha` > 0, but got {alpha!r}. Small values (0.1) give skewed clients, "
            "large ones (100) nearly IID clients."
        )
    if not math.isfinite(alpha):
        raise ConfigError(f"Expected a finite `alpha`, but got {alpha!r}. Use split = 'iid' instead.")
    _check_clients(int(y.size), num_clients, min_size)
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    for _ in range(max_tries):
        owned: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        for c in classes:
            idx = rng.permutation(np.flatnonzero(y == c))
            shares = rng.dirichlet(np.full(num_clients, float(alpha)))
            cuts = (np.cumsum(shares)[:-1] * idx.size).round().astype(np.int64)
            for k, part in enumerate(np.split(idx, cuts)):
                owned[k].append(part)
        parts = tuple(np.sort(np.concatenate(p)).astype(np.int64) for p in owned)
        if min(p.size for p in parts) >= min_size:
            return Partition(parts, "dirichlet", float(alpha))
    raise DataError(
        f"Expected a Dirichlet(alpha={alpha}) split giving each of {num_clients} clients at least "
        f"{min_size} samples, but {max_tries} draws failed. Raise `alpha`, lower `min_size`, or use "
        "fewer clients."
    )


def partition(
    labels: Sequence[int] | np.ndarray,
    num_clients: int,
    *,
    scheme: str = "iid",
    alpha: float = 0.5,
    seed: int = 0,
    min_size: int = 1,
) -> Partition:
    """Split ``len(labels)`` samples across ``num_clients`` clients with ``scheme`` (``iid`` or
    ``dirichlet``); ``alpha`` and ``min_size`` apply to the Dirichlet split."""
    y = np.asarray(labels)
    if scheme == "iid":
        return iid_partition(int(y.size), num_clients, seed=seed)
    if scheme == "dirichlet":
        return dirichlet_partition(y, num_clients, alpha=alpha, seed=seed, min_size=min_size)
    raise ConfigError(f"Expected `split` to be one of {', '.join(map(repr, SPLITS))}, but got {scheme!r}.")


def sample_clients(
    num_clients: int,
    round_index: int,
    *,
    count: int | None = None,
    fraction: float | None = None,
    seed: int = 0,
) -> np.ndarray:
    """The sorted ids of the clients taking part in round ``round_index``: ``count`` clients, or
    ``max(1, round(fraction * num_clients))``, or all of them when neither is given. Drawn without
    replacement from a generator seeded by ``(seed, round_index)``."""
    if count is not None and fraction is not None:
        raise ConfigError(
            f"Expected either `clients_per_round` or `fraction`, but got both ({count}, {fraction}). "
            "Keep one of them."
        )
    if fraction is not None:
        if not 0 < fraction <= 1:
            raise ConfigError(f"Expected `fraction` in (0, 1], but got {fraction!r}.")
        count = max(1, round(fraction * num_clients))
    if count is None:
        return np.arange(num_clients, dtype=np.int64)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= num_clients:
        raise ConfigError(
            f"Expected `clients_per_round` to be an int in [1, {num_clients}], but got {count!r}."
        )
    if round_index < 0 or seed < 0:
        raise ConfigError(f"Expected a round and seed >= 0, but got round {round_index}, seed {seed}.")
    rng = np.random.default_rng([seed, round_index])
    return np.sort(rng.choice(num_clients, size=count, replace=False)).astype(np.int64)
