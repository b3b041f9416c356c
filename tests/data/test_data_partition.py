"""Client splits (IID, label-Dirichlet) and per-round client sampling, on scikit-learn's real digit
labels; properties checked against naive counting loops."""

from __future__ import annotations

import numpy as np
import pytest

from gradinv.data import load_digits_dataset
from gradinv.data.partition import dirichlet_partition, iid_partition, partition, sample_clients
from gradinv.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    return load_digits_dataset().labels


def _naive_counts(labels: np.ndarray, clients: tuple[np.ndarray, ...], c: int) -> np.ndarray:
    out = np.zeros((len(clients), c), dtype=np.int64)
    for k, idx in enumerate(clients):
        for i in idx:
            out[k, labels[i]] += 1
    return out


def _assigned_once(p, n: int) -> None:
    owner = np.full(n, -1)
    for k, idx in enumerate(p.clients):
        assert (owner[idx] == -1).all(), "a sample was given to two clients"
        owner[idx] = k
    assert (owner >= 0).all(), "a sample was given to no client"


@pytest.mark.parametrize("seed", [0, 3])
def test_iid_assigns_every_sample_once_in_equal_parts(labels, seed):
    p = iid_partition(len(labels), 7, seed=seed)
    _assigned_once(p, len(labels))
    assert max(p.sizes) - min(p.sizes) <= 1 and sum(p.sizes) == len(labels)
    assert p.scheme == "iid"
    again = iid_partition(len(labels), 7, seed=seed)
    assert all((a == b).all() for a, b in zip(p.clients, again.clients))
    other = iid_partition(len(labels), 7, seed=seed + 1)
    assert any((a != b).any() for a, b in zip(p.clients, other.clients))


@pytest.mark.parametrize("alpha", [0.05, 1.0, 1e5])
def test_dirichlet_assigns_every_sample_once(labels, alpha):
    p = dirichlet_partition(labels, 8, alpha=alpha, seed=1, min_size=5)
    _assigned_once(p, len(labels))
    assert min(p.sizes) >= 5
    np.testing.assert_array_equal(p.label_counts(labels, 10), _naive_counts(labels, p.clients, 10))


def _tv_from_global(labels: np.ndarray, p) -> float:
    """Mean total-variation distance between each client's label distribution and the global one."""
    counts = _naive_counts(labels, p.clients, 10).astype(float)
    glob = np.bincount(labels, minlength=10) / len(labels)
    dists = counts / counts.sum(1, keepdims=True)
    return float(np.mean(0.5 * np.abs(dists - glob).sum(1)))


def test_dirichlet_large_alpha_is_nearly_iid_and_small_alpha_is_skewed(labels):
    iid = _tv_from_global(labels, iid_partition(len(labels), 5, seed=0))
    flat = _tv_from_global(labels, dirichlet_partition(labels, 5, alpha=1e6, seed=0))
    skewed = _tv_from_global(labels, dirichlet_partition(labels, 5, alpha=0.05, seed=0))
    assert flat < 0.02 and flat <= iid + 0.02  # shares ≈ 1/K exactly: even closer than a random split
    assert skewed > 0.5  # most of a client's samples come from a few classes
    top = _naive_counts(labels, dirichlet_partition(labels, 5, alpha=0.05, seed=0).clients, 10)
    assert np.mean(top.max(1) / top.sum(1)) > 0.4


def test_partition_dispatch_and_errors(labels):
    assert partition(labels, 3, scheme="iid", seed=2).sizes == iid_partition(len(labels), 3, seed=2).sizes
    d = partition(labels, 3, scheme="dirichlet", alpha=0.5, seed=2)
    assert d.scheme == "dirichlet" and d.alpha == 0.5
    with pytest.raises(ConfigError, match="'iid', 'dirichlet'"):
        partition(labels, 3, scheme="iidd")
    with pytest.raises(ConfigError, match="alpha"):
        dirichlet_partition(labels, 3, alpha=0.0)
    with pytest.raises(DataError, match="at least 20 samples"):
        iid_partition(10, 20)
    with pytest.raises(DataError, match="Raise `alpha`"):
        dirichlet_partition(labels[:40], 20, alpha=0.01, min_size=2, max_tries=5)


def test_sample_clients_counts_fraction_and_determinism():
    ids = sample_clients(20, 4, count=6, seed=3)
    assert len(ids) == 6 and len(set(ids.tolist())) == 6 and ids.tolist() == sorted(ids.tolist())
    assert ((ids >= 0) & (ids < 20)).all()
    assert sample_clients(20, 4, count=6, seed=3).tolist() == ids.tolist()
    assert len(sample_clients(20, 0, fraction=0.1)) == 2  # max(1, round(C * K)) as in FedAvg
    assert len(sample_clients(20, 0, fraction=0.01)) == 1
    assert sample_clients(5, 0).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ConfigError, match="either"):
        sample_clients(5, 0, count=2, fraction=0.5)
    with pytest.raises(ConfigError, match=r"\[1, 5\]"):
        sample_clients(5, 0, count=6)


def test_sample_clients_is_uniform_over_rounds():
    """Every client takes part in about count/K of the rounds (naive tally over 2000 rounds)."""
    tally = np.zeros(10)
    rounds = 2000
    for t in range(rounds):
        tally[sample_clients(10, t, count=3, seed=0)] += 1
    freq = tally / rounds
    assert np.allclose(freq, 0.3, atol=0.04)
    draws = {tuple(sample_clients(10, t, count=3, seed=0).tolist()) for t in range(50)}
    assert len(draws) > 40  # rounds are not all the same draw
