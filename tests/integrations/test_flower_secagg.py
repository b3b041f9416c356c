"""Auditing a Flower app under real SecAgg+ (``flwr.server.workflow.SecAggPlusWorkflow`` with the
clients' ``secaggplus_mod``) and the same legacy app without it, in real ``run_simulation`` runs.

Oracles: without secure aggregation the auditor reads each client's individual reply, and the
update it rebuilds equals gradinv's own client update on the same batch (:func:`local_update`);
with SecAgg+ every reply the strategy is handed is the (quantised) sample-weighted mean of those
updates, and the audit says that only the aggregate was seen."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("flwr", reason="the [flower] extra is not installed (CI installs it)")

from flwr.client import ClientApp
from flwr.client.mod import secaggplus_mod
from flwr.common import ndarrays_to_parameters
from flwr.server import LegacyContext, ServerApp, ServerConfig
from flwr.server.strategy import FedAvg as LegacyFedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow

from gradinv.fl.client import local_update
from gradinv.integrations.flower import LegacyAuditStrategy, numpy_client_fn
from gradinv.integrations.flower.audit import SECURE_AGGREGATION_SEEN
from gradinv.types import TrainingConfig
from tests.integrations.test_flower import CLIENTS, FEDSGD, digits, mlp, simulate

BATCHES = {k: digits(1, start=10 * k) for k in range(CLIENTS)}


def audited_run(*, secagg: bool) -> LegacyAuditStrategy:
    """One FedSGD round of 3 clients on a legacy FedAvg, audited with fc-bias under threat model B."""
    initial = [v.numpy() for v in mlp().state_dict().values()]
    strategy = LegacyFedAvg(
        fraction_evaluate=0.0,
        min_fit_clients=CLIENTS,
        min_available_clients=CLIENTS,
        initial_parameters=ndarrays_to_parameters(initial),
        on_fit_config_fn=lambda rnd: dict(FEDSGD),
    )
    audit = LegacyAuditStrategy(strategy, model=mlp(), attack="fc-bias", threat="B", client_data=BATCHES)
    client_fn = numpy_client_fn(mlp, lambda ctx: BATCHES[int(ctx.node_config["partition-id"])])
    client = ClientApp(client_fn=client_fn, mods=[secaggplus_mod] if secagg else [])
    server = ServerApp()

    @server.main()
    def main(grid, context) -> None:  # type: ignore[no-untyped-def]
        legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=1), strategy=audit)
        fit = SecAggPlusWorkflow(num_shares=CLIENTS, reconstruction_threshold=2) if secagg else None
        DefaultWorkflow(fit_workflow=fit)(grid, legacy)

    simulate(server, client)
    return audit


def test_without_secure_aggregation_each_reply_is_audited_and_leaks() -> None:
    audit = audited_run(secagg=False)
    assert sorted((r.client, r.observation, r.aggregated_over) for r in audit.records) == [
        (k, "individual", 1) for k in range(CLIENTS)
    ]
    assert all(r.skipped == "" and r.psnr >= 25 for r in audit.records), [r.to_dict() for r in audit.records]
    # oracle: the update the auditor read back is gradinv's own client update on that batch
    (rec,) = [r for r in audit.records if r.client == 1]
    assert rec.scored is not None
    offline = local_update(mlp(), BATCHES[1], TrainingConfig("fedsgd", lr=0.1), client_id=1)
    for name, g in offline.update.params.items():
        torch.testing.assert_close(rec.scored.view.update.params[name], g, rtol=1e-3, atol=1e-5)


def test_under_secagg_plus_the_audit_reports_that_only_the_aggregate_is_seen() -> None:
    audit = audited_run(secagg=True)
    (rec,) = audit.records
    assert (rec.client, rec.observation, rec.aggregated_over) == (None, "aggregate", CLIENTS)
    assert rec.notes[0] == SECURE_AGGREGATION_SEEN and rec.skipped == ""
    assert rec.scored is not None and rec.scored.target.size == CLIENTS
    # oracle: what the server saw is the sample-weighted mean of the three updates, up to SecAgg+'s
    # stochastic quantisation of the weighted states: one level, (2 * clipping range / levels) *
    # max weight / examples, divided by the FedSGD lr (Flower's defaults: 8, 2^22, 1000; 1 example)
    step = 2 * 8.0 / 2**22 * 1000 / 1 / FEDSGD["lr"]
    fedsgd = TrainingConfig("fedsgd", lr=0.1)
    updates = [local_update(mlp(), BATCHES[k], fedsgd, client_id=k) for k in BATCHES]
    for name, seen in rec.scored.view.update.params.items():
        mean = sum(u.update.params[name] for u in updates) / CLIENTS
        assert float((seen - mean).abs().max()) <= 1.01 * step, name
        assert float((seen - mean).abs().mean()) < step / 2, name
