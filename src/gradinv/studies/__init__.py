"""Studies that reproduce or extend the measurements of the reference papers.

* :mod:`gradinv.studies.frontier` — the privacy–utility frontier of client-side defenses in
  multi-round federated training (a CPU-scaled version of Du et al., "SoK: On Gradient Leakage in
  Federated Learning", USENIX Security 2025, §6, Fig. 11); ``gradinv frontier`` on the command line.
"""

from gradinv.studies import frontier
from gradinv.studies.frontier import *  # noqa: F403  (the frontier study and its config schema)

__all__ = list(frontier.__all__)
