"""Randomness in models without reseeding torch's global random number generator.

Two kinds of model randomness, two tools:

* **construction** — PyTorch's layer constructors initialise their weights from the global RNG and
  take no generator. :func:`seeded` runs such code on a copy of the CPU RNG seeded with ``seed`` and
  restores the caller's RNG state afterwards; it is the one place in the library that seeds torch's
  global RNG. Where a generator can be passed (``nn.init.*``), pass it instead
  (:func:`gradinv.models.init.new_linear`).
* **sampling in forward** — a :class:`SamplingModule` (e.g. PRECODE's variational bottleneck,
  :class:`SeededDropout`) draws
  from its own generator, created on first use on the device of the draw from the module's seed.
  :func:`reseed` gives every sampling module of a model a new seed: the client seeds its working copy
  from its private seed (:func:`gradinv.fl.local_update`), a study seeds the attacked model before
  each attack. A deep copy (or pickle) continues the stream where the original stands.

>>> from torch import nn
>>> state = torch.random.get_rng_state()
>>> with seeded(0):
...     layer = nn.Linear(3, 2)
>>> torch.equal(torch.random.get_rng_state(), state)
True
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["SamplingModule", "SeededDropout", "reseed", "seeded"]


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Run the block on torch's CPU RNG seeded with ``seed`` and restore the caller's RNG state
    afterwards (``None``: run on the caller's RNG as it is)."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class SamplingModule(nn.Module):
    """Base of modules that draw random numbers in ``forward``: from their own generator, never from
    torch's global one. Draw with :meth:`randn`; :meth:`reseed` restarts the stream.

    One generator per device, each seeded with the module's seed when first used (on the CPU the
    stream equals the global RNG's after ``torch.manual_seed(seed)``). The generators are plain
    Python state, not buffers: they are not in the ``state_dict``; deep copies and pickles carry
    their state."""

    def __init__(self, *, seed: int = 0) -> None:
        super().__init__()
        self.sampling_seed = int(seed)
        self._generators: dict[torch.device, torch.Generator] = {}

    def reseed(self, seed: int) -> None:
        """Restart the module's random stream from ``seed``."""
        self.sampling_seed = int(seed)
        self._generators = {}

    def generator(self, device: torch.device | str) -> torch.Generator:
        """The module's generator on ``device`` (created from the seed on first use)."""
        key = torch.device(device)
        gen = self._generators.get(key)
        if gen is None:
            gen = torch.Generator(device=key).manual_seed(self.sampling_seed)
            self._generators[key] = gen
        return gen

    def randn(self, like: Tensor) -> Tensor:
        """Standard normal samples shaped like ``like`` (its dtype and device)."""
        return torch.randn(
            like.shape, generator=self.generator(like.device), dtype=like.dtype, device=like.device
        )

    def rand(self, like: Tensor) -> Tensor:
        """Uniform samples in ``[0, 1)`` shaped like ``like`` (its dtype and device)."""
        return torch.rand(
            like.shape, generator=self.generator(like.device), dtype=like.dtype, device=like.device
        )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_generators"] = {d: g.get_state() for d, g in self._generators.items()}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        states: dict[torch.device, Tensor] = state.pop("_generators", {})
        super().__setstate__(state)
        self._generators = {}
        for device, s in states.items():
            self.generator(device).set_state(s)

    def extra_repr(self) -> str:
        return f"seed={self.sampling_seed}"


class SeededDropout(SamplingModule):
    """``nn.Dropout(p)`` whose masks come from the module's own generator: in training mode every
    entry is zeroed with probability ``p`` and the others are scaled by ``1 / (1 - p)`` (a fresh
    mask per forward pass); in eval mode it is the identity.

    >>> drop = SeededDropout(0.5, seed=1)
    >>> first = drop(torch.ones(2, 4))
    >>> drop.reseed(1)
    >>> torch.equal(drop(torch.ones(2, 4)), first), sorted(set(first.flatten().tolist())) <= [0.0, 2.0]
    (True, True)
    """

    def __init__(self, p: float = 0.5, *, seed: int = 0) -> None:
        super().__init__(seed=seed)
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Expected a dropout probability in [0, 1), but got {p}.")
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = (self.rand(x) >= self.p).to(x.dtype)
        return x * keep * (1.0 / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}, {super().extra_repr()}"


def reseed(model: nn.Module, seed: int) -> int:
    """Reseed every :class:`SamplingModule` in ``model`` (the first with ``seed``, the others with
    seeds drawn from it) and return how many there are; torch's global RNG is not touched."""
    modules = [m for m in model.modules() if isinstance(m, SamplingModule)]
    derive = torch.Generator().manual_seed(seed)
    for i, m in enumerate(modules):
        m.reseed(seed if i == 0 else int(torch.randint(0, 2**62, (1,), generator=derive)))
    return len(modules)
