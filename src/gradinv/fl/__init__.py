"""Federated learning simulation: the client's local training and the server's aggregation."""

from gradinv.fl.aggregation import AGGREGATORS, Aggregator, MeanAggregator, weighted_mean
from gradinv.fl.client import (
    ClientHooks,
    StepContext,
    UpdateContext,
    client_loss,
    fedavg_delta,
    fedsgd_gradient,
    local_update,
    sgd_step,
)
from gradinv.fl.hooks import ClientDefense, DefenseChain
from gradinv.fl.rounds import apply_update, run_round, simulate_round
from gradinv.fl.server import MaliciousServer, RoundPlan, RoundSetup, Server, SybilClient, build_aggregator

import sys as _sys  # isort: skip
from gradinv._discovery import import_submodules as _import_submodules  # isort: skip

_import_submodules(_sys.modules[__name__])  # registers aggregators defined in other modules

__all__ = [
    "AGGREGATORS",
    "Aggregator",
    "ClientDefense",
    "ClientHooks",
    "DefenseChain",
    "MaliciousServer",
    "MeanAggregator",
    "RoundPlan",
    "RoundSetup",
    "Server",
    "StepContext",
    "SybilClient",
    "UpdateContext",
    "apply_update",
    "build_aggregator",
    "client_loss",
    "fedavg_delta",
    "fedsgd_gradient",
    "local_update",
    "run_round",
    "sgd_step",
    "simulate_round",
    "weighted_mean",
]
