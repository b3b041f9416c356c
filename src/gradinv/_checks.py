"""Validators for config values (``__post_init__`` of config dataclasses, model options).

Each raises :class:`~gradinv.errors.ConfigError` in the project's template, ``Expected `name` …,
but got …`` followed by an optional hint, and returns the value when it is valid.

>>> check_choice("mode", "norm", ("value", "norm"))
'norm'
>>> check_int("bits", 0, minimum=1, maximum=16, fix="Use at least 1 bit.")
Traceback (most recent call last):
...
gradinv.errors.ConfigError: Expected `bits` to be an int in [1, 16], but got 0. Use at least 1 bit.
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection
from pathlib import Path
from typing import TypeVar

from gradinv.errors import ConfigError, GradinvError

__all__ = ["check_choice", "check_int", "check_range", "existing_file"]

T = TypeVar("T")


def _fail(expected: str, got: object, fix: str) -> ConfigError:
    return ConfigError(f"Expected {expected}, but got {got}." + (f" {fix}" if fix else ""))


def check_choice(name: str, value: T, choices: Collection[T], *, fix: str = "") -> T:
    """``value`` when it is one of ``choices``."""
    if value not in choices:
        names = list(choices)
        listed = (
            f"{names[0]!r} or {names[1]!r}" if len(names) == 2 else "one of " + ", ".join(map(str, names))
        )
        raise _fail(f"`{name}` to be {listed}", repr(value), fix)
    return value


def check_int(
    name: str, value: object, *, minimum: int = 1, maximum: int | None = None, fix: str = ""
) -> int:
    """``value`` when it is an int (not a bool) in ``[minimum, maximum]``."""
    ok = not isinstance(value, bool) and isinstance(value, int) and value >= minimum
    if maximum is not None:
        ok = ok and value <= maximum  # type: ignore[operator]
    if not ok:
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise _fail(f"`{name}` to be an int {bound}", repr(value), fix)
    return value  # type: ignore[return-value]


def check_range(
    name: str,
    value: float,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    what: str = "",
    fix: str = "",
) -> float:
    """``value`` when it is finite and within the bounds (``low < value`` with ``low_open``, else
    ``low <= value``; likewise for ``high``). ``what`` describes the value in the message."""
    ok = math.isfinite(value)
    ok = ok and (low is None or (value > low if low_open else value >= low))
    ok = ok and (high is None or (value < high if high_open else value <= high))
    if not ok:
        label = f"`{name}`" + (f" ({what})" if what else "")
        if high is None:
            bound = f"{'>' if low_open else '>='} {low:g}"
        elif low is None:
            bound = f"{'<' if high_open else '<='} {high:g}"
        else:
            bound = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise _fail(f"{label} {bound}", value, fix)
    return value


def existing_file(
    path: str | os.PathLike[str],
    *,
    expected: str,
    error: type[GradinvError] = ConfigError,
    directory: str = "is a directory",
    fix: str = "",
) -> Path:
    """``path`` (``~`` expanded) when it is a file; otherwise ``error``: "Expected ``expected``, but
    'PATH' is a directory (``directory``) / does not exist. Check the path (relative paths start at
    the working directory)." then ``fix``."""
    p = Path(path).expanduser()
    if not p.is_file():
        where = directory if p.is_dir() else "does not exist"
        raise error(
            f"Expected {expected}, but {str(p)!r} {where}. Check the path (relative paths start at "
            f"{Path.cwd()})." + (f" {fix}" if fix else "")
        )
    return p
