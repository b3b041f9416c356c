"""Studies that reproduce or extend the measurements of the reference papers.

* :mod:`gradinv.studies.frontier` — the privacy–utility frontier of client-side defenses in
  multi-round federated training (a CPU-scaled version of Du et al., "SoK: On Gradient Leakage in
  Federated Learning", USENIX Security 2025, §6, Fig. 11); ``gradinv frontier`` on the command line.
"""

from gradinv.studies.frontier import (
    AttackEntry,
    DefenseSweep,
    FrontierConfig,
    FrontierData,
    FrontierEvent,
    FrontierOptions,
    FrontierResult,
    Point,
    VictimConfig,
    compute_point,
    load_frontier_config,
    load_frontier_data,
    parse_frontier_config,
    run_frontier,
)

__all__ = [
    "AttackEntry",
    "DefenseSweep",
    "FrontierConfig",
    "FrontierData",
    "FrontierEvent",
    "FrontierOptions",
    "FrontierResult",
    "Point",
    "VictimConfig",
    "compute_point",
    "load_frontier_config",
    "load_frontier_data",
    "parse_frontier_config",
    "run_frontier",
]
