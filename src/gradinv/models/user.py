"""Models written by the user, named by an import path instead of a registered name.

Wherever a model name is read (``[model] name``, ``--model``, ``gradinv vet --model``), an import
path works too:

* ``"my_pkg.my_mod:make_model"`` — a module on ``sys.path`` and a callable in it;
* ``"path/to/file.py:make_model"`` — a Python file (relative paths start at the working directory),
  loaded as a module of its own.

The rule for calling the factory: of ``num_classes``, ``in_channels`` and ``image_size`` (an int for
square images, else ``(H, W)``) it gets those its signature names (all three when it takes
``**kwargs``), as keywords; its other named parameters are the model's options, set as further keys
of the ``[model]`` table. It must return an ``nn.Module`` that maps ``(N, C, H, W)`` images to
``(N, num_classes)`` logits; anything else is one :class:`~gradinv.errors.ModelError` saying what was
expected, what came back and how to fix it. Construction runs under ``[model] seed``; a
``checkpoint`` is loaded as for any model (``torch.load(..., weights_only=True)``, strictly).

>>> is_import_path("lenet"), is_import_path("my_pkg.nets:make"), is_import_path("nets/cnn.py:make")
(False, True, True)
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import logging
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from torch import nn

from gradinv._checks import existing_file
from gradinv.errors import ModelError

__all__ = ["SHAPE_ARGUMENTS", "UserFactory", "is_import_path", "load_factory"]

logger = logging.getLogger(__name__)

#: the keywords a factory gets when its signature names them
SHAPE_ARGUMENTS = ("num_classes", "in_channels", "image_size")

_FIX = (
    "Name the model as 'package.module:factory' (a module Python can import) or 'path/to/file.py:factory' "
    "(a Python file), where factory is a function returning an nn.Module."
)


def is_import_path(name: str) -> bool:
    """Whether ``name`` reads as ``module:factory`` or ``file.py:factory`` (not a registered name)."""
    if not isinstance(name, str) or ":" not in name:
        return False
    target, _, attr = name.rpartition(":")
    return bool(target.strip()) and attr.isidentifier()


def _split(name: str) -> tuple[str, str]:
    target, _, attr = name.rpartition(":")
    if not target.strip() or not attr.isidentifier():
        raise ModelError(f"Expected a model import path 'module:factory', but got {name!r}. {_FIX}")
    return target.strip(), attr


def _is_file(target: str) -> bool:
    return target.endswith(".py") or "/" in target or "\\" in target


_MODULES: dict[tuple[str, float], ModuleType] = {}


def _load_file(target: str, name: str) -> ModuleType:
    path = existing_file(target, expected=f"a Python file for model {name!r}", error=ModelError, fix=_FIX)
    resolved = path.resolve()
    key = (str(resolved), resolved.stat().st_mtime)
    if key in _MODULES:
        return _MODULES[key]
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:10]
    mod_name = f"gradinv_user_model_{resolved.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(mod_name, resolved)
    if spec is None or spec.loader is None:
        raise ModelError(
            f"Expected {str(path)!r} to be a Python source file, but it cannot be imported. {_FIX}"
        )
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        sys.modules.pop(mod_name, None)
        raise ModelError(
            f"Expected {str(path)!r} (model {name!r}) to import cleanly, but running it raised "
            f"{type(err).__name__}: {_first_line(err)}. Fix the error in the file."
        ) from err
    _MODULES[key] = module
    return module


def _import_module(target: str, name: str) -> ModuleType:
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as err:
        raise ModelError(
            f"Expected an importable module {target!r} for model {name!r}, but Python cannot find "
            f"{err.name!r}. Install the package, add its folder to PYTHONPATH, or give the file instead: "
            f"'path/to/{target.rsplit('.', 1)[-1]}.py:{name.rpartition(':')[2]}'."
        ) from err
    except Exception as err:
        raise ModelError(
            f"Expected module {target!r} (model {name!r}) to import cleanly, but importing it raised "
            f"{type(err).__name__}: {_first_line(err)}. Fix the error in the module."
        ) from err


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


class UserFactory:
    """A user's model factory, resolved from its import path (see the module docstring)."""

    def __init__(self, name: str, factory: Callable[..., Any], where: str) -> None:
        self.name = name
        self.factory = factory
        self.where = where
        try:
            params = inspect.signature(factory).parameters
        except (TypeError, ValueError):  # a builtin or C callable: pass nothing we cannot name
            params = {}  # type: ignore[assignment]
        kinds = {p.name: p.kind for p in params.values()}
        self.takes_kwargs = any(k is inspect.Parameter.VAR_KEYWORD for k in kinds.values())
        named = [
            n
            for n, k in kinds.items()
            if k in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        ]
        self.shape_args = tuple(a for a in SHAPE_ARGUMENTS if self.takes_kwargs or a in named)
        self.options = tuple(n for n in named if n not in SHAPE_ARGUMENTS)

    @property
    def description(self) -> str:
        doc = (inspect.getdoc(self.factory) or "").split("\n\n", 1)[0]
        return " ".join(doc.split()).rstrip(".") or f"user model {self.name}"

    def builder(self) -> Callable[..., nn.Module]:
        """``builder(shape, **options)`` as :class:`~gradinv.models.ModelSpec` wants it; its
        signature lists the factory's options as keyword-only parameters."""

        def build(shape: Any, **options: Any) -> nn.Module:
            return self.build(shape.num_classes, shape.in_channels, shape.image_size, **options)

        params = [inspect.Parameter("shape", inspect.Parameter.POSITIONAL_ONLY)] + [
            inspect.Parameter(o, inspect.Parameter.KEYWORD_ONLY, default=None) for o in self.options
        ]
        build.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        build.__doc__ = self.description
        return build

    def build(
        self, num_classes: int, in_channels: int, image_size: tuple[int, int], **options: Any
    ) -> nn.Module:
        h, w = image_size
        given = {
            "num_classes": num_classes,
            "in_channels": in_channels,
            "image_size": h if h == w else (h, w),
        }
        kwargs = {k: given[k] for k in self.shape_args}
        kwargs.update(options)
        shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        try:
            model = self.factory(**kwargs)
        except Exception as err:
            raise ModelError(
                f"Expected the model factory {self.name!r} to build a model when called as "
                f"{self.factory.__name__ if hasattr(self.factory, '__name__') else 'factory'}({shown}), "
                f"but it raised {type(err).__name__}: {_first_line(err)}. Fix the factory, or the [model] "
                f"options (it gets {', '.join(SHAPE_ARGUMENTS)} only where its signature names them)."
            ) from err
        if not isinstance(model, nn.Module):
            got = type(model).__name__
            raise ModelError(
                f"Expected the model factory {self.name!r} to return a torch.nn.Module, but it returned "
                f"{'None' if model is None else f'a {got}'} ({_short(model)}). Return the model itself, e.g. "
                f"`return MyNet(num_classes)` (not a class, a state_dict or a tuple)."
            )
        return model


def _short(obj: object) -> str:
    text = repr(obj)
    return text if len(text) <= 80 else text[:77] + "..."


def load_factory(name: str) -> UserFactory:
    """The factory named by import path ``name`` (``module:factory`` or ``file.py:factory``)."""
    target, attr = _split(name)
    module = _load_file(target, name) if _is_file(target) else _import_module(target, name)
    where = getattr(module, "__file__", None) or target
    if not hasattr(module, attr):
        found = sorted(
            n
            for n, v in vars(module).items()
            if callable(v) and not n.startswith("_") and not inspect.ismodule(v)
        )
        from gradinv.errors import did_you_mean

        raise ModelError(
            f"Expected {target!r} to define a model factory {attr!r}, but it does not."
            f"{did_you_mean(attr, found)} "
            f"Callables it defines: {', '.join(found) or 'none'}."
        )
    factory = getattr(module, attr)
    if not callable(factory):
        raise ModelError(
            f"Expected {name!r} to name a callable returning an nn.Module, but {attr!r} is a "
            f"{type(factory).__name__}. Point at a function or class that builds the model."
        )
    logger.debug("model %s: factory %s from %s", name, attr, where)
    return UserFactory(name, factory, str(where))
