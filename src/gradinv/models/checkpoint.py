"""Saving and loading model weights safely, with errors that say what does not match.

Checkpoints are read with ``torch.load(path, map_location="cpu", weights_only=True)``, which
refuses arbitrary pickled Python objects. Accepted layouts: a raw ``state_dict``, or a dict holding
one under ``"state_dict"``, ``"model_state_dict"`` or ``"model"`` (other entries such as
``best_prec1`` are ignored). A ``module.`` prefix (``nn.DataParallel``) or ``_orig_mod.`` prefix
(``torch.compile``) is stripped.

>>> import tempfile
>>> from torch import nn
>>> with tempfile.TemporaryDirectory() as d:
...     path = save_checkpoint(nn.Linear(2, 2), Path(d) / "w.pt")
...     _ = load_checkpoint(nn.Linear(2, 2), path)
"""

from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from gradinv.errors import ModelError

__all__ = ["load_checkpoint", "read_state_dict", "save_checkpoint"]

logger = logging.getLogger(__name__)

_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
_PREFIXES = ("module.", "_orig_mod.")
_SHOW = 5


def save_checkpoint(model: nn.Module, path: str | Path) -> Path:
    """Save ``model.state_dict()`` to ``path`` (parent folders are created) and return the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), p)
    logger.info("saved %s weights to %s", type(model).__name__, p)
    return p


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _read(p: Path) -> object:
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if refused:
            raise ModelError(
                f"Expected a checkpoint holding only tensors and plain containers, but '{p}' contains the "
                f"Python object {refused.group(1)}, which torch.load(weights_only=True) refuses to unpickle "
                "because unpickling can run arbitrary code. Re-save it where it was made as a plain "
                "state_dict: torch.save(model.state_dict(), path)."
            ) from err
        raise _unreadable(p, err) from err
    except Exception as err:  # torch.load raises RuntimeError, EOFError, KeyError, OSError, ... on bad files
        raise _unreadable(p, err) from err


def _file_kind(p: Path) -> str | None:
    """Why the file cannot be a torch.save checkpoint, judged from its first bytes (None: it could be)."""
    try:
        with p.open("rb") as f:
            head = f.read(8)
    except OSError:
        return None
    if not head:
        return "the file is empty (0 bytes)"
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":  # zip (torch >= 1.6) or legacy pickle
        return None
    if head.startswith(b"\x93NUMPY"):
        return "it is a NumPy .npy file, not a torch.save file"
    if head.startswith(b"PK"):
        return None
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return f"it is a text file (it starts with {head.decode('ascii')!r})"
    return f"it is not a torch.save file (it starts with bytes {head!r})"


def _unreadable(p: Path, err: BaseException) -> ModelError:
    reason = _file_kind(p) or _first_line(err)
    if "weights only load failed" in reason.lower():
        detail = re.search(r"WeightsUnpickler error:\s*(.+?)\n\n", str(err), flags=re.S)
        reason = f"not a valid torch pickle ({detail.group(1).strip() if detail else 'unsupported content'})"
    elif "central directory" in reason or "zip archive" in reason.lower():
        reason = "the zip archive is incomplete, so the file is truncated or corrupted"
    return ModelError(
        f"Expected a PyTorch checkpoint written by torch.save at '{p}', but could not read it: {reason}. "
        "Check that the file is a complete torch.save file (not an .npz, a truncated download, or a "
        "text file) and re-save it with torch.save(model.state_dict(), path)."
    )


def _describe(obj: object) -> str:
    if isinstance(obj, Mapping):
        keys = [str(k) for k in list(obj)[:_SHOW]]
        return f"a dict with keys {keys}{' ...' if len(obj) > _SHOW else ''}"
    return f"a {type(obj).__name__}"


def _extract_state_dict(payload: object, p: Path) -> dict[str, Tensor]:
    state = payload
    if isinstance(payload, Mapping):
        for key in _WRAPPER_KEYS:
            inner = payload.get(key)
            if isinstance(inner, Mapping):
                state = inner
                break
    if (
        isinstance(state, Mapping)
        and state
        and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items())
    ):
        return dict(state)
    raise ModelError(
        "Expected a state_dict (a dict of named tensors), or a dict holding one under 'state_dict', "
        f"'model_state_dict' or 'model', but '{p}' holds {_describe(payload)}. "
        "Save weights with torch.save(model.state_dict(), path)."
    )


def _strip_prefixes(state: dict[str, Tensor]) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        k = key
        while k.startswith(_PREFIXES):
            k = next(k[len(pre) :] for pre in _PREFIXES if k.startswith(pre))
        out[k] = value
    return out


def _listing(keys: list[str]) -> str:
    """`` (a, b, ...)`` for the first few keys, or nothing when there are none."""
    if not keys:
        return ""
    return f" ({', '.join(keys[:_SHOW])}{', ...' if len(keys) > _SHOW else ''})"


def _check_finite(state: Mapping[str, Tensor], expected: Mapping[str, Tensor], p: Path) -> None:
    """Refuse NaN or infinite weights (a diverged or corrupted checkpoint), naming the tensors."""
    bad: list[str] = []
    for key, value in state.items():
        if key not in expected or not (value.is_floating_point() or value.is_complex()):
            continue
        finite = torch.isfinite(value)
        if not bool(finite.all()):
            bad.append(f"{key!r} ({int((~finite).sum())} of {value.numel()} values)")
    if bad:
        raise ModelError(
            f"Expected finite weights, but '{p}' has NaN or infinite values in {len(bad)} tensor"
            f"{'s' if len(bad) > 1 else ''}: {', '.join(bad[:_SHOW])}{', ...' if len(bad) > _SHOW else ''}. "
            "The checkpoint comes from a diverged training run or is corrupted: use an earlier "
            "checkpoint, or re-train with a lower learning rate."
        )


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The named tensors in a checkpoint file (a state_dict, or a dict holding one under
    ``state_dict`` / ``model_state_dict`` / ``model``; ``module.`` / ``_orig_mod.`` prefixes
    stripped), read with ``torch.load(path, map_location="cpu", weights_only=True)``."""
    p = Path(path)
    if not p.is_file():
        raise ModelError(
            f"Expected a checkpoint file at '{p}', but "
            f"{'it is a directory' if p.exists() else 'it does not exist'}. "
            f"Check the path (relative paths start at {Path.cwd()})."
        )
    return _strip_prefixes(_extract_state_dict(_read(p), p))


def load_checkpoint(model: nn.Module, path: str | Path, *, strict: bool = True) -> nn.Module:
    """Load weights from ``path`` into ``model`` in place and return it.

    With ``strict=False`` missing and unexpected keys are logged and skipped; shape mismatches are
    always an error. Missing ``num_batches_tracked`` buffers (older BatchNorm checkpoints) keep the
    model's values.
    """
    p = Path(path)
    state = read_state_dict(p)
    expected = model.state_dict()
    arch = type(model).__name__

    for key, value in expected.items():
        if key not in state and key.endswith("num_batches_tracked"):
            state[key] = value
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        msg = (
            f"Expected a checkpoint for {arch} ({len(expected)} tensors), but '{p}' has {len(missing)} "
            f"missing keys{_listing(missing)} and {len(unexpected)} unexpected keys{_listing(unexpected)}."
        )
        if strict:
            raise ModelError(
                f"{msg} Was it saved from the same architecture and options (e.g. resnet20 vs resnet56, "
                "width)? Pass strict=False to load only the matching tensors."
            )
        logger.warning("%s Loading the matching tensors only.", msg)

    wrong = [k for k in state if k in expected and tuple(state[k].shape) != tuple(expected[k].shape)]
    if wrong:
        details = "; ".join(
            f"{k!r} of shape {tuple(expected[k].shape)} but got {tuple(state[k].shape)}"
            for k in wrong[:_SHOW]
        )
        raise ModelError(
            f"Expected checkpoint tensors shaped like {arch}'s, but '{p}' has {len(wrong)} mismatches: "
            f"expected {details}. Build the model with the settings the checkpoint was trained with "
            "(num_classes, in_channels, image_size, width)."
        )
    _check_finite(state, expected, p)
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=strict)
    logger.info("loaded %d tensors into %s from %s", len(state), arch, p)
    return model
