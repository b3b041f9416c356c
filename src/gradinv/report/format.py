"""How numbers, iteration counts and threat-model ratings are written for people.

Every human-readable output (the HTML report, the demo index, the CLI summary and dry run, the
frontier report) formats through this module, so one value reads the same everywhere:

* a **metric** in its registered format (:attr:`gradinv.metrics.MetricSpec.fmt`: PSNR with 2
  decimals, scores in [-1, 1] such as SSIM and LPIPS with 4, error metrics such as MSE with 3
  significant digits in scientific notation); non-finite values as ``inf`` / ``-inf`` / ``nan``,
  and a value that rounds to zero never carries a minus sign (``-0.0000`` is ``0.0000``);
* any **other number** (a loss, a norm, a parameter) with 4 significant digits (:func:`format_number`),
  seconds with 2 decimals (:func:`format_seconds`);
* an attack's **iteration count** with what it counts (:func:`iteration_counts`): optimiser steps and
  objective evaluations are told apart, as L-BFGS makes several evaluations per step;
* a threat model's **applicability** rating with its meaning (:data:`APPLICABILITY`).

>>> format_metric("psnr", 5.9213), format_metric("ssim", -0.0002238), format_metric("mse", 0.2285)
('5.92', '-0.0002', '2.29e-01')
>>> format_metric("ssim", -0.00002), format_metric("psnr", float("inf")), format_number(0.000123456)
('0.0000', 'inf', '0.0001235')
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

from gradinv.metrics import METRICS
from gradinv.types import AttackResult

__all__ = [
    "APPLICABILITY",
    "DEFAULT_FMT",
    "IterationCounts",
    "applicability_text",
    "format_metric",
    "format_number",
    "format_seconds",
    "iteration_counts",
]

#: the format of a number that is not a registered metric (4 significant digits)
DEFAULT_FMT = ".4g"

_ZERO = re.compile(r"-(?=0*\.?0*(e[+-]?\d+)?$)")

#: The SoK's real-world applicability rating of threat models A–H (Carletti et al., USENIX Security
#: 2025, threat-model table), in our words, plus ``custom`` for threat models derived from them.
APPLICABILITY: Mapping[str, str] = {
    "***": "high — a passive attacker, realistic in deployed FL and hard to detect",
    "**": "medium — realistic in some deployments only, as it needs data or statistics of the clients",
    "*": "low — the server must tamper with the protocol, which clients can detect",
    "custom": "not rated — a threat model derived from A–H (+flag / -flag) or from Du et al.'s levels",
}


def _unsigned_zero(text: str) -> str:
    return _ZERO.sub("", text) if text.startswith("-") else text


def _non_finite(v: float) -> str | None:
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return None


def format_number(value: float | int, fmt: str = DEFAULT_FMT) -> str:
    """``value`` in ``fmt`` (default 4 significant digits), ``inf`` / ``-inf`` / ``nan`` when not
    finite, without the sign of a negative value that rounds to zero. Integers stay integers.

    >>> format_number(2), format_number(-1e-9, ".2f"), format_number(float("nan")), format_number(1234567.0)
    ('2', '0.00', 'nan', '1.235e+06')
    """
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    v = float(value)
    return _non_finite(v) or _unsigned_zero(format(v, fmt))


def format_metric(name: str, value: float) -> str:
    """A metric value in its registered format (:attr:`~gradinv.metrics.MetricSpec.fmt`; 4
    significant digits for a name the registry does not know)."""
    return format_number(float(value), METRICS[name].fmt if name in METRICS else DEFAULT_FMT)


def format_seconds(seconds: float) -> str:
    """Seconds with 2 decimals (``"4.42"``); ``nan`` when unknown."""
    return format_number(float(seconds), ".2f")


def applicability_text(rating: str) -> str:
    """A threat model's applicability rating with its meaning (``"*** (high: ...)"``); empty when
    the threat model has none."""
    if not rating:
        return ""
    meaning = APPLICABILITY.get(rating)
    return f"{rating} ({meaning})" if meaning else rating


IterationKind = Literal["lbfgs", "first-order", "other"]


@dataclass(frozen=True)
class IterationCounts:
    """What an attack's iteration count counts (report.json's ``attack.iteration_counts``).

    * ``kind``: ``lbfgs`` (DLG, iDLG, CPL, FedAvg leakage with ``optimizer = "lbfgs"``: each step
      makes up to ``max_iter`` objective evaluations), ``first-order`` (Adam or signed SGD on the
      gradient-matching objective: one evaluation per step) or ``other`` (analytic and
      malicious-server attacks: the count is the attack's own, e.g. R-GAP's layers inverted).
    * ``steps``: optimiser steps completed (``None`` for ``other``); ``steps_requested`` the
      configured ``iterations``.
    * ``objective_evaluations``: evaluations of the gradient-matching objective (``None`` for
      ``other``).
    * ``iterations``: ``AttackResult.iterations`` as the attack reported it (report.json's
      ``attack.iterations``: evaluations for L-BFGS, steps for first-order attacks).
    * ``per``: the unit of the time per count (``evaluation``, ``step``, ``iteration``).
    * ``text``: one line for people, e.g. ``"2 L-BFGS steps (40 objective evaluations)"``."""

    kind: IterationKind
    steps: int | None
    steps_requested: int | None
    objective_evaluations: int | None
    iterations: int
    per: str
    text: str

    def to_dict(self) -> dict[str, Any]:
        """Every field but ``per``, in field order."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "per"}


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _is_lbfgs(parameters: Mapping[str, Any]) -> bool:
    return (
        "max_iter" in parameters
        and "history_size" in parameters
        and parameters.get("optimizer", "lbfgs") == "lbfgs"
    )


def iteration_counts(result: AttackResult, *, family: str) -> IterationCounts:
    """What ``result.iterations`` counts for an attack of ``family`` (``Attack.family``), with the
    optimiser steps and objective evaluations told apart.

    L-BFGS attacks report objective evaluations; their steps are the recorded loss history (one
    entry per completed step). First-order optimisation attacks report steps, one evaluation each.
    Other attacks report a count of their own, shown as it is."""
    params = result.parameters
    requested = _int(params.get("iterations"))
    n = int(result.iterations)
    interrupted = " (interrupted: best so far)" if result.interrupted else ""
    if family == "optimization" and _is_lbfgs(params):
        steps = len(result.loss_history)
        of = f" of {requested}" if requested is not None and steps != requested else ""
        text = (
            f"{steps}{of} L-BFGS step{'' if steps == 1 and not of else 's'} "
            f"({_plural(n, 'objective evaluation')}){interrupted}"
        )
        return IterationCounts("lbfgs", steps, requested, n, n, "evaluation", text)
    if family == "optimization":
        of = f" of {requested}" if requested is not None and n != requested else ""
        unit = "step" if n == 1 and not of else "steps"
        text = f"{n}{of} optimiser {unit} (one objective evaluation each){interrupted}"
        return IterationCounts("first-order", n, requested, n, n, "step", text)
    text = f"{_plural(n, 'iteration')} of the attack's own algorithm (not optimiser steps){interrupted}"
    return IterationCounts("other", None, requested, None, n, "iteration", text)
