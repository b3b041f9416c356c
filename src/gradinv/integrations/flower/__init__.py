"""Flower integration: audit the leakage of a real Flower app (``pip install 'gradinv[flower]'``).

Built on Flower's Message API (``ServerApp`` / ``ClientApp``, ``flwr.serverapp.strategy``
strategies, ``flwr.simulation.run_simulation``; https://flower.ai/docs/framework/):

* :class:`AuditStrategy` — a strategy wrapper (like Flower's DP wrappers) that rebuilds the
  attacker's view of each client's reply under a threat model A–H, runs a gradinv attack through
  :func:`gradinv.pipeline.attack_and_score` and records the leakage per round and client;
* :class:`LegacyAuditStrategy` — the same audit for Flower's legacy strategies, the API its secure
  aggregation (``SecAggPlusWorkflow``) drives: under SecAgg+ it records that only the aggregate is
  seen and attacks that; :func:`numpy_client_fn` is gradinv's client for such apps;
* :class:`MaliciousStrategy` — a malicious server: sends models crafted by a gradinv active attack
  (Robbing the Fed, trap weights, fishing...) and attacks the replies;
* :func:`train_handler` — gradinv's client training (every defense stage) as a ClientApp's
  ``@app.train()`` function;
* :class:`DefenseMod` — update-stage defenses (noise, clipping, QSGD, top-k, Soteria...) as a client
  mod on any ClientApp; :class:`VettingMod` — ``gradinv vet`` on every received model, refusing
  flagged ones;
* :func:`partition_id_mod` — a client mod that tags replies with the simulation's partition id so
  the auditor can score against the client's true data;
* :func:`update_from_states`, :func:`training_from_config` — Flower replies and configs as
  gradinv's typed updates and training configs.

Without ``flwr`` importing this package raises one :class:`~gradinv.errors.ConfigError` naming the
extra. See ``docs/flower.md``.
"""

from __future__ import annotations

from gradinv.integrations.flower._flwr import require_flwr

require_flwr()

from gradinv.integrations.flower.audit import (  # noqa: E402
    AuditStrategy,
    ClientFailure,
    ClientReply,
    LeakageRecord,
    Observation,
    round_truth,
)
from gradinv.integrations.flower.client import numpy_client_fn, train_handler  # noqa: E402
from gradinv.integrations.flower.convert import (  # noqa: E402
    CONFIG_KEYS,
    training_from_config,
    update_from_states,
)
from gradinv.integrations.flower.legacy import LegacyAuditStrategy  # noqa: E402
from gradinv.integrations.flower.malicious import MaliciousStrategy  # noqa: E402
from gradinv.integrations.flower.mods import (  # noqa: E402
    PARTITION_KEY,
    VET_REFUSED_CODE,
    DefenseMod,
    VettingMod,
    partition_id_mod,
)

__all__ = [
    "CONFIG_KEYS",
    "PARTITION_KEY",
    "VET_REFUSED_CODE",
    "AuditStrategy",
    "ClientFailure",
    "ClientReply",
    "DefenseMod",
    "LeakageRecord",
    "LegacyAuditStrategy",
    "MaliciousStrategy",
    "Observation",
    "VettingMod",
    "numpy_client_fn",
    "partition_id_mod",
    "require_flwr",
    "round_truth",
    "train_handler",
    "training_from_config",
    "update_from_states",
]
