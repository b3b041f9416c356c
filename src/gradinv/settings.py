"""Strict conversion of user mappings (TOML tables, CLI overrides, keyword arguments) into frozen
dataclasses. Defaults live in the dataclasses; a typo is an error listing the valid keys.

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Cfg:
...     lr: float = 0.1
...     steps: int = 10
>>> from_mapping(Cfg, {"lr": 1, "steps": 3})
Cfg(lr=1.0, steps=3)
>>> from_mapping(Cfg, {"stpes": 3}, section="attack")
Traceback (most recent call last):
...
gradinv.errors.ConfigError: Unknown key 'stpes' in [attack]. Did you mean 'steps'? Valid keys: lr, steps.

Numbers must be finite: ``nan``, ``inf`` and ``-inf`` are refused for every ``float`` field unless the
field opts in with ``metadata=ALLOW_NONFINITE`` (e.g. a threshold where ``inf`` means "no limit"):

>>> from_mapping(Cfg, {"lr": float("inf")}, section="attack")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
gradinv.errors.ConfigError: Expected `lr` in [attack] to be a finite number, but got inf. ...
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from gradinv.errors import ConfigError, did_you_mean

__all__ = ["ALLOW_NONFINITE", "as_dict", "from_mapping"]

T = TypeVar("T")

ALLOW_NONFINITE: Mapping[str, Any] = MappingProxyType({"gradinv.allow_nonfinite": True})
"""Field metadata that lets a ``float`` field hold ``inf`` / ``nan``:
``bound: float = field(default=math.inf, metadata=ALLOW_NONFINITE)``."""


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(tp))
    if origin in (tuple, list):
        return "a list"
    if tp is type(None):
        return "none"
    return getattr(tp, "__name__", str(tp))


def _nonfinite(value: Any, where: str) -> ConfigError:
    return ConfigError(
        f"Expected {where} to be a finite number, but got {value!r}. "
        "Give a finite value (nan and inf are not allowed here)."
    )


def _coerce(value: Any, tp: Any, key: str, section: str, *, finite: bool = True) -> Any:
    origin = get_origin(tp)
    where = f"`{key}` in [{section}]" if section else f"`{key}`"

    def fail() -> ConfigError:
        return ConfigError(f"Expected {where} to be {_describe(tp)}, but got {value!r}.")

    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        if finite and float in args and isinstance(value, float) and not math.isfinite(value):
            raise _nonfinite(value, where)
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key, section, finite=finite)
            except ConfigError:
                continue
        raise fail()
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise ConfigError(
            f"Expected {where} to be one of {', '.join(repr(a) for a in get_args(tp))}, but got {value!r}."
            + (did_you_mean(value, [str(a) for a in get_args(tp)]) if isinstance(value, str) else "")
        )
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise fail()
        args = get_args(tp)
        if args and args[-1] is Ellipsis:
            items = [_coerce(v, args[0], key, section, finite=finite) for v in value]
        elif args:
            if len(args) != len(value):
                raise fail()
            items = [_coerce(v, a, key, section, finite=finite) for v, a in zip(value, args)]
        else:
            items = list(value)
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise fail()
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise fail()
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise fail()
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                x = float(value)
            except OverflowError:  # a Python int beyond float range
                raise _nonfinite(value, where) from None
            if finite and not math.isfinite(x):
                raise _nonfinite(value, where)
            return x
        raise fail()
    if tp is str:
        if isinstance(value, str):
            return value
        raise fail()
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise fail()


def from_mapping(cls: type[T], data: Mapping[str, Any] | None, *, section: str = "", context: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise ConfigError.

    ``section`` names the TOML table in messages; ``context`` adds a note such as "for attack 'dlg'"."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    where = (f" in [{section}]" if section else "") + (f" {context}" if context else "")
    for key in data:
        if key not in fields:
            raise ConfigError(
                f"Unknown key {key!r}{where}.{did_you_mean(key, fields)} "
                f"Valid keys: {', '.join(sorted(fields))}."
            )
    kwargs = {
        k: _coerce(v, hints[k], k, section, finite=not fields[k].metadata.get("gradinv.allow_nonfinite"))
        for k, v in data.items()
    }
    try:
        return cls(**kwargs)
    except ConfigError as e:
        if section and not str(e).startswith("["):
            raise ConfigError(f"[{section}] {e}") from None
        raise


def as_dict(obj: Any) -> dict[str, Any]:
    """A JSON-friendly dict of a dataclass (tuples become lists, nested dataclasses dicts)."""

    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, Mapping):
            return {str(k): conv(x) for k, x in v.items()}
        if hasattr(v, "value") and isinstance(getattr(v, "value", None), str):
            return v.value
        return v

    return conv(obj)
