"""The Flower integration in real Flower runs (``flwr.simulation.run_simulation``, Ray backend).

Each simulation has 3 clients on real digits (``sklearn.datasets.load_digits``, 8x8) and a small
MLP; clients train with gradinv's client (:func:`train_handler`). Oracles: the auditor's numbers are
those of gradinv's own stage on the same round rebuilt offline (:func:`local_update` from the same
model), exact recoveries are counted against the clients' true images, and the mods are compared
with the defense applied to the update directly."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

pytest.importorskip("flwr", reason="the [flower] extra is not installed (CI installs it)")

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp
from flwr.serverapp.strategy import FedAvg
from flwr.simulation import run_simulation

from gradinv.defenses import create_defense
from gradinv.fl.client import UpdateContext, local_update
from gradinv.fl.rounds import apply_update
from gradinv.integrations.flower import (
    VET_REFUSED_CODE,
    AuditStrategy,
    DefenseMod,
    MaliciousStrategy,
    VettingMod,
    partition_id_mod,
    train_handler,
    update_from_states,
)
from gradinv.types import Batch, Normalization, TrainingConfig

CLIENTS = 3
NORM = Normalization((0.0,), (1.0,), "identity")


def digits(n: int, start: int = 0) -> Batch:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images[start : start + n] / 16.0, dtype=torch.float32)[:, None]
    return Batch(x, torch.tensor(d.target[start : start + n], dtype=torch.int64), NORM)


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out


def fedavg() -> FedAvg:
    """Flower's FedAvg training every client each round, no federated evaluation."""
    return FedAvg(fraction_evaluate=0.0, min_train_nodes=CLIENTS, min_available_nodes=CLIENTS)


def mlp() -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return MLP()


def run(
    strategy: AuditStrategy | FedAvg, client: ClientApp, initial: nn.Module, *, rounds: int, config: dict
) -> dict:
    """Run a real Flower simulation; returns the ClientApp-side train metrics per round."""
    server = ServerApp()
    out: dict = {}

    @server.main()
    def main(grid, context) -> None:  # type: ignore[no-untyped-def]
        result = strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord(initial.state_dict()),
            num_rounds=rounds,
            train_config=ConfigRecord(config),
        )
        out.update({r: dict(m) for r, m in result.train_metrics_clientapp.items()})

    simulate(server, client)
    return out


def simulate(server: ServerApp, client: ClientApp) -> None:
    """A real Flower simulation of ``CLIENTS`` supernodes on the Ray backend (2 CPUs)."""
    run_simulation(
        server_app=server,
        client_app=client,
        num_supernodes=CLIENTS,
        backend_config={
            "client_resources": {"num_cpus": 1},
            "init_args": {"num_cpus": 2, "include_dashboard": False},
        },
    )


# --------------------------------------------------------------------------------------------------
# Offline checks of the client pieces (no simulation)
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def task_identity():  # type: ignore[no-untyped-def]
    """Messages built outside a Flower run need the identity a run sets (restored afterwards)."""
    from flwr.supercore.task_identity import TaskIdentity

    saved = {k: getattr(TaskIdentity, f"_{k}", None) for k in ("run_id", "node_id", "task_id")}
    for k in saved:
        setattr(TaskIdentity, f"_{k}", 1)
    yield
    for k, v in saved.items():
        setattr(TaskIdentity, f"_{k}", v)


def _train_message(model: nn.Module, config: dict) -> Message:
    content = RecordDict({"arrays": ArrayRecord(model.state_dict()), "config": ConfigRecord(config)})
    return Message(content=content, dst_node_id=7, message_type=MessageType.TRAIN)


def _context(pid: int) -> Context:
    from flwr.app import RecordDict as RD

    return Context(run_id=1, node_id=7, node_config={"partition-id": pid}, state=RD(), run_config={})


def test_train_handler_replies_with_gradinvs_local_update(task_identity: None) -> None:
    model, batch = mlp(), digits(4)
    training = TrainingConfig("fedavg", lr=0.05, epochs=2, batch_size=2, seed=3)
    handle = train_handler(mlp, lambda ctx: batch, training=training)
    reply = handle(_train_message(model, {"lr": 0.05, "server-round": 1}), _context(1))
    got = reply.content["arrays"].to_torch_state_dict()
    want = apply_update(model, local_update(model, batch, training, client_id=1).update).state_dict()
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert reply.content["metrics"]["num-examples"] == 4


def test_defense_mod_clips_the_update_the_server_reads(task_identity: None) -> None:
    model, batch = mlp(), digits(2)
    clip = create_defense("clipping", mode="norm", bound=0.01)
    training = TrainingConfig("fedsgd", lr=0.1)
    mod = DefenseMod(mlp, [clip], training=training)
    msg = _train_message(model, {"protocol": "fedsgd", "lr": 0.1})
    inner = train_handler(mlp, lambda ctx: batch, training=training)
    reply = mod(msg, _context(0), inner)
    sent, got = model.state_dict(), reply.content["arrays"].to_torch_state_dict()
    read = update_from_states(model, sent, got, training)  # what the server reads: the clipped gradient
    plain = local_update(model, batch, training).update
    ctx = UpdateContext(model, batch, training, 0, 1, torch.Generator())
    want, _ = clip.apply(plain, ctx)
    for k in want.params:
        torch.testing.assert_close(read.params[k], want.params[k], rtol=1e-4, atol=1e-6)
    norm = math.sqrt(sum(float(v.double().pow(2).sum()) for v in read.params.values()))
    assert norm == pytest.approx(0.01, rel=1e-3)


def test_defense_mod_refuses_defenses_that_act_inside_training() -> None:
    from gradinv.errors import ConfigError

    with pytest.raises(ConfigError, match="train_handler"):
        DefenseMod(mlp, [create_defense("dp-sgd")])
    with pytest.raises(ConfigError, match="data_fn"):
        DefenseMod(mlp, [create_defense("soteria")])


# --------------------------------------------------------------------------------------------------
# Real Flower runs
# --------------------------------------------------------------------------------------------------

FEDSGD = {"protocol": "fedsgd", "lr": 0.1}


def _per_client_mod(mods: dict[int, object]):  # type: ignore[no-untyped-def]
    """A mod that applies ``mods[partition-id]`` (one defense per client, in one simulation)."""

    def mod(msg, context, call_next):  # type: ignore[no-untyped-def]
        chosen = mods.get(int(context.node_config["partition-id"]))
        return chosen(msg, context, call_next) if chosen is not None else call_next(msg, context)

    return mod


def test_audit_reconstructs_a_victim_and_defenses_cut_the_leak() -> None:
    batches = {k: digits(1, start=10 * k) for k in range(CLIENTS)}
    training = TrainingConfig("fedsgd", lr=0.1)
    defended = {
        1: DefenseMod(
            mlp, [create_defense("gaussian-noise", sigma=0.05)], training=training, report_stats=False
        ),
        2: DefenseMod(mlp, [create_defense("topk", ratio=0.05)], training=training, report_stats=False),
    }
    client = ClientApp(mods=[partition_id_mod, _per_client_mod(defended)])
    client.train()(train_handler(mlp, lambda ctx: batches[int(ctx.node_config["partition-id"])]))
    audit = AuditStrategy(
        fedavg(),
        model=mlp(),
        attack="fc-bias",
        threat="B",
        client_data=batches,
    )
    run(audit, client, mlp(), rounds=2, config=FEDSGD)
    assert [r.skipped for r in audit.records] == [""] * 2 * CLIENTS
    psnr = {(r.round, r.client): r.psnr for r in audit.records}
    # the undefended client's image is reconstructed; noise and top-k cut it down markedly
    for rnd in (1, 2):
        assert psnr[rnd, 0] >= 25, psnr
        assert psnr[rnd, 1] < psnr[rnd, 0] - 10, psnr
        assert psnr[rnd, 2] < psnr[rnd, 0] - 10, psnr
    # oracle: round 1's undefended client, rebuilt offline with gradinv's own round
    from gradinv.fl.rounds import simulate_round
    from gradinv.pipeline import attack_and_score

    truth = simulate_round(mlp(), [batches[0]], training, num_classes=10)
    offline = attack_and_score(truth, audit.attack, audit.threat, None)
    (seen,) = [r for r in audit.records if (r.round, r.client) == (1, 0)]
    assert seen.scored is not None
    for name, g in offline.view.update.params.items():  # read back from W - lr g in float32
        torch.testing.assert_close(seen.scored.view.update.params[name], g, rtol=1e-3, atol=1e-5)
    assert min(psnr[1, 0], float(offline.evaluation.metrics["psnr"].mean)) > 100  # both exact


def test_audit_under_declared_secure_aggregation_sees_only_the_aggregate() -> None:
    batches = {k: digits(1, start=10 * k) for k in range(CLIENTS)}
    client = ClientApp(mods=[partition_id_mod])
    client.train()(train_handler(mlp, lambda ctx: batches[int(ctx.node_config["partition-id"])]))
    audit = AuditStrategy(
        fedavg(),
        model=mlp(),
        attack="fc-bias",
        threat="B",
        client_data=batches,
        observation="aggregate",
    )
    run(audit, client, mlp(), rounds=1, config=FEDSGD)
    (rec,) = audit.records
    assert rec.client is None and rec.observation == "aggregate" and rec.aggregated_over == CLIENTS
    # the attack ran on the weighted mean only (and says so); it is scored against all 3 images, and
    # on this tiny round (3 images, 64 ReLU rows) fc-bias still separates them: aggregation of 3 is no defense
    assert rec.skipped == "" and any("aggregate of 3 clients" in n for n in rec.notes), rec.notes
    assert rec.scored is not None and rec.scored.target.size == CLIENTS


def _exact(reconstruction: torch.Tensor, truth: torch.Tensor) -> int:
    """Truth images some reconstruction matches to within 1/255 at every pixel (the exactness of
    Fowl et al.), by brute force."""
    if not len(reconstruction):
        return 0
    err = (reconstruction.flatten(1)[:, None] - truth.flatten(1)[None]).abs().amax(-1)
    return int((err.amin(0) < 1 / 255).sum())


def test_malicious_server_robbing_the_fed_then_vetting_clients_refuse() -> None:
    batches = {k: digits(32, start=32 * k) for k in range(CLIENTS)}

    def strategy() -> MaliciousStrategy:
        return MaliciousStrategy(
            fedavg(),
            model=mlp(),
            attack="robbing-the-fed",
            # cut-offs near the digits' brightness; a small gain keeps the imprint exact in float32 replies
            attack_params={"bins": 1000, "mean": 0.3, "std": 0.06, "gain": 0.01},
            threat="F",
            client_data=batches,
            training=TrainingConfig("fedsgd", lr=0.1),
        )

    attacker = strategy()
    shipped = attacker.client_model()  # the server ships the app, so the clients run its architecture
    data = lambda ctx: batches[int(ctx.node_config["partition-id"])]  # noqa: E731
    client = ClientApp(mods=[partition_id_mod])
    client.train()(train_handler(lambda: copy.deepcopy(shipped), data))
    run(attacker, client, shipped, rounds=1, config=FEDSGD)
    assert len(attacker.records) == CLIENTS and all(not r.skipped for r in attacker.records)
    for rec in attacker.records:
        recon = rec.scored.result.reconstruction.images
        exact = _exact(recon, batches[rec.client].images)
        assert exact >= 0.9 * 32, (rec.client, exact)

    # the same run, the clients vetting what they receive: every one refuses the crafted model
    vetting = ClientApp(mods=[partition_id_mod, VettingMod(lambda: copy.deepcopy(shipped), data_fn=data)])
    vetting.train()(train_handler(lambda: copy.deepcopy(shipped), data))
    attacker = strategy()
    run(attacker, vetting, shipped, rounds=1, config=FEDSGD)
    assert attacker.records == []
    assert len(attacker.failures) == CLIENTS
    assert all(f.code == VET_REFUSED_CODE and "gradinv vet refused" in f.reason for f in attacker.failures)


def test_vetting_clients_accept_an_honest_run() -> None:
    batches = {k: digits(32, start=32 * k) for k in range(CLIENTS)}
    data = lambda ctx: batches[int(ctx.node_config["partition-id"])]  # noqa: E731
    client = ClientApp(mods=[partition_id_mod, VettingMod(mlp, data_fn=data)])
    client.train()(
        train_handler(mlp, data, training=TrainingConfig("fedavg", lr=0.1, epochs=1, batch_size=8))
    )
    audit = AuditStrategy(
        fedavg(),
        model=mlp(),
        attack="fc-bias",
        threat="B",
        client_data=batches,
        rounds=[],
    )
    metrics = run(
        audit,
        client,
        mlp(),
        rounds=3,
        config={"protocol": "fedavg", "lr": 0.1, "local-epochs": 1, "batch-size": 8},
    )
    assert audit.failures == []
    # every client vetted (the mod's metric is in every round's replies) and trained in every round
    assert sorted(metrics) == [1, 2, 3]
    assert all(m["gradinv-vet-findings"] == 0 for m in metrics.values()), metrics
