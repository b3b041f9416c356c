"""The one place that imports ``flwr``: a missing extra is one clear error naming it."""

from __future__ import annotations

import importlib
from types import ModuleType

from gradinv.errors import ConfigError

__all__ = ["FLOWER_EXTRA_HINT", "require_flwr"]

FLOWER_EXTRA_HINT = "pip install 'gradinv[flower]'"


def require_flwr() -> ModuleType:
    """Import and return ``flwr``, or raise :class:`~gradinv.errors.ConfigError` naming the extra.

    Same shape as the Ray executor's import helper (``gradinv.studies.executors``)."""
    try:
        return importlib.import_module("flwr")
    except ImportError as exc:
        raise ConfigError(
            "Expected the Flower package (flwr) for gradinv.integrations.flower, but it is not "
            f"installed ({exc}). Install the extra: {FLOWER_EXTRA_HINT} (it brings "
            "flwr[simulation], i.e. flwr with Ray, for flwr.simulation.run_simulation)."
        ) from None
