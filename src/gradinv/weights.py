"""Finding the weight files gradinv does not ship: one search order for every file.

Used for LPIPS's ImageNet AlexNet backbone (``alexnet-owt-7be5be79.pth``) and the ST-LPIPS weights
(``stlpips_alex_shift_tolerant.pth``). :func:`find_weight_file` looks, in this order:

1. **the explicit path** — a function argument (``backbone_weights=``, ``weights=``) or the config
   key it comes from (``[metrics] lpips_weights`` / ``stlpips_weights``): the file itself, or a
   folder holding it. When given, it is the only place looked at: a wrong path is an error, never
   silently replaced by another file;
2. **``$GRADINV_WEIGHTS``** — a folder, or several separated by :data:`os.pathsep` (``:`` on Linux
   and macOS, ``;`` on Windows), searched in the order given;
3. **the torch hub cache** — ``torch.hub.get_dir()/checkpoints`` (by default
   ``~/.cache/torch/hub/checkpoints``, moved by ``$TORCH_HOME``), where torchvision and the ``lpips``
   package put the AlexNet weights they download.

A caller may add one last step: LPIPS downloads the AlexNet checkpoint into the hub cache when asked
to (``download=True``). When the file is nowhere, the error lists every place tried and how to fix it.

Deprecated: ``$GRADINV_LPIPS_BACKBONE`` and ``$GRADINV_STLPIPS_WEIGHTS`` (each the path of one file)
are still honoured in gradinv 0.1, between steps 1 and 2, with a logged warning; they will be removed
in the next release. Use ``$GRADINV_WEIGHTS`` (a folder) instead.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as d:
...     _ = (Path(d) / "w.pth").write_bytes(b"")
...     find_weight_file("w.pth", explicit=d, what="demo weights") == Path(d) / "w.pth"
True
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from gradinv.errors import GradinvError, MetricUnavailable

__all__ = [
    "WEIGHTS_ENV",
    "WeightSearch",
    "find_weight_file",
    "hub_checkpoints_dir",
    "not_found_message",
    "search_weight_file",
    "weight_dirs",
]

logger = logging.getLogger(__name__)

#: The environment variable naming the folder(s) of weight files.
WEIGHTS_ENV = "GRADINV_WEIGHTS"

_warned: set[str] = set()


@dataclass(frozen=True)
class WeightSearch:
    """The outcome of :func:`search_weight_file`: the file found (``path``) or ``None``, every place
    looked at in order (``tried``), and, when not found, why the search stopped (``failure``)."""

    filename: str
    path: Path | None
    tried: tuple[str, ...]
    failure: str = ""
    explicit: bool = False
    legacy_env: str | None = None
    explicit_name: str = "path"


def weight_dirs() -> list[Path]:
    """The folders named by ``$GRADINV_WEIGHTS`` (separated by :data:`os.pathsep`), in order."""
    value = os.environ.get(WEIGHTS_ENV, "")
    return [Path(p).expanduser() for p in value.split(os.pathsep) if p.strip()]


def hub_checkpoints_dir() -> Path:
    """``torch.hub.get_dir()/checkpoints``: where torchvision and ``lpips`` keep downloaded weights."""
    import torch.hub  # imported here: this module is imported before anything heavy

    return Path(torch.hub.get_dir()) / "checkpoints"


def _warn_deprecated(env: str) -> None:
    if env not in _warned:
        _warned.add(env)
        logger.warning(
            "$%s is deprecated and will be removed in the next gradinv release; put the file in a folder "
            "and set %s=/that/folder instead (see gradinv.weights).",
            env,
            WEIGHTS_ENV,
        )


def _one_path(filename: str, value: str | os.PathLike[str], label: str) -> tuple[Path | None, str, str]:
    """``(found file or None, the place as tried, why not)`` for a path naming the file or its folder."""
    p = Path(value).expanduser()
    where = f"{label}={p}"
    candidate = p / filename if p.is_dir() else p
    if candidate.is_file():
        return candidate, where, ""
    return None, where, f"{where} has no {filename}" if p.is_dir() else f"{where} does not exist"


def search_weight_file(
    filename: str,
    *,
    explicit: str | os.PathLike[str] | None = None,
    explicit_name: str = "path",
    legacy_env: str | None = None,
) -> WeightSearch:
    """Look for ``filename`` in the order of this module's docstring; never raises.

    Args:
        filename: the file's name, e.g. ``"alexnet-owt-7be5be79.pth"``.
        explicit: a path given by the user (file, or folder holding ``filename``); when not ``None``
            nothing else is searched.
        explicit_name: how the explicit path is named in messages (``"backbone_weights"``).
        legacy_env: a deprecated per-file environment variable still honoured (warned about once).
    """

    def result(
        path: Path | None, tried: list[str], failure: str = "", *, explicit: bool = False
    ) -> WeightSearch:
        return WeightSearch(filename, path, tuple(tried), failure, explicit, legacy_env, explicit_name)

    if explicit is not None:
        path, where, why = _one_path(filename, explicit, explicit_name)
        return result(path, [where], why, explicit=True)
    if legacy_env and os.environ.get(legacy_env):
        _warn_deprecated(legacy_env)
        path, where, why = _one_path(filename, os.environ[legacy_env], f"${legacy_env}")
        return result(path, [where], why, explicit=True)
    tried: list[str] = []
    dirs = weight_dirs()
    if not dirs:
        tried.append(f"${WEIGHTS_ENV} (unset)")
    for d in dirs:
        candidate = d if d.is_file() and d.name == filename else d / filename
        tried.append(str(candidate))
        if candidate.is_file():
            return result(candidate, tried)
    hub = hub_checkpoints_dir() / filename
    tried.append(str(hub))
    if hub.is_file():
        return result(hub, tried)
    return result(None, tried, "none of these places has it")


def not_found_message(
    search: WeightSearch,
    *,
    what: str,
    fix: str = "",
    failure: str | None = None,
    also_tried: tuple[str, ...] = (),
) -> str:
    """The error text for a failed :class:`WeightSearch`: what was expected, every place tried, how
    to fix it (the generic ways, then ``fix``)."""
    tried = "; ".join((*search.tried, *also_tried))
    replaces = f"; it replaces the deprecated ${search.legacy_env}" if search.legacy_env else ""
    hub = hub_checkpoints_dir()
    name = search.filename
    return (
        f"Expected {name} ({what}), but {failure or search.failure}. Places tried, in order: {tried}. "
        f"To fix: pass its path (`{search.explicit_name}=/path/to/{name}` or the config key), or put "
        f"{name} in a folder and set {WEIGHTS_ENV}=/that/folder (several folders: separate them with "
        f"{os.pathsep!r}{replaces}), or copy it to {hub}." + (f" {fix}" if fix else "")
    )


def find_weight_file(
    filename: str,
    *,
    explicit: str | os.PathLike[str] | None = None,
    what: str,
    explicit_name: str = "path",
    fix: str = "",
    legacy_env: str | None = None,
    error: type[GradinvError] = MetricUnavailable,
) -> Path:
    """The path of ``filename``: the explicit path, ``$GRADINV_WEIGHTS``, the torch hub cache.

    Raises ``error`` (default :class:`~gradinv.errors.MetricUnavailable`) naming every place tried
    when the file is in none of them; ``what`` describes the file and ``fix`` adds a remedy."""
    search = search_weight_file(
        filename, explicit=explicit, explicit_name=explicit_name, legacy_env=legacy_env
    )
    if search.path is None:
        raise error(not_found_message(search, what=what, fix=fix))
    return search.path
