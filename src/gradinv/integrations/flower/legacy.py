"""The auditing wrapper for Flower's legacy strategies — the API that Flower's secure aggregation
(SecAgg+) runs on.

In Flower 1.42 secure aggregation is a workflow of the legacy strategy API
(``flwr.server.workflow.SecAggPlusWorkflow`` inside ``DefaultWorkflow``, driving a
``flwr.server.strategy`` strategy through a ``LegacyContext``; the clients run ``secaggplus_mod``;
https://flower.ai/docs/framework/how-to-use-secure-aggregation.html). The workflow unmasks only the
sum and hands the strategy's ``aggregate_fit`` every client's ``FitRes`` with its parameters
replaced by that aggregate. :class:`LegacyAuditStrategy` wraps such a strategy and reads exactly what
it is handed: when every reply carries the same model it records that the server saw only the
aggregate (``observation = "aggregate"``, the note
:data:`~gradinv.integrations.flower.audit.SECURE_AGGREGATION_SEEN`) and runs the attack once on it,
scored against every client's samples; otherwise it audits each client's individual reply, as
:class:`~gradinv.integrations.flower.audit.AuditStrategy` does for Message-API strategies (the two
share one audit, ``_Auditing``).

The clients of such an app are legacy ``client_fn`` clients; :func:`~gradinv.integrations.flower.
client.numpy_client_fn` is gradinv's client training in that form.
"""

from __future__ import annotations

import logging

import torch
from flwr.common import EvaluateIns, EvaluateRes, FitIns, FitRes, Parameters, Scalar, parameters_to_ndarrays
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import Strategy as LegacyStrategy
from torch import Tensor

from gradinv.errors import UpdateError
from gradinv.integrations.flower.audit import ClientFailure, ClientReply, _Auditing
from gradinv.integrations.flower.convert import training_from_config

__all__ = ["LegacyAuditStrategy"]

logger = logging.getLogger(__name__)


def _node(proxy: ClientProxy) -> int:
    node = getattr(proxy, "node_id", None)
    return int(node) if node is not None else int(proxy.cid)


class LegacyAuditStrategy(_Auditing[LegacyStrategy], LegacyStrategy):
    """Wraps a legacy Flower strategy (``flwr.server.strategy.FedAvg`` ...) and audits the training
    replies its ``aggregate_fit`` is handed — under Flower's ``SecAggPlusWorkflow`` that is the
    aggregate only, which the records say.

    The arguments are those of :class:`~gradinv.integrations.flower.audit.AuditStrategy`
    (``arrayrecord_key`` is unused: legacy parameters are the model's ``state_dict`` arrays in
    order); ``observation`` defaults to ``"auto"``: individual replies where the replies differ, the
    aggregate where every reply carries the same model (secure aggregation). ``"aggregate"``
    declares secure aggregation outright."""

    _OBSERVATIONS = ("auto", "individual", "aggregate")

    # ------------------------------------------------------------------ legacy Strategy interface

    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        return self.strategy.initialize_parameters(client_manager)

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        """Delegate, and remember the model sent to each node and the train config."""
        pairs = self.strategy.configure_fit(server_round, parameters, client_manager)
        if not self._audits_round(server_round) or not pairs:
            return pairs
        try:
            states: dict[int, dict[str, Tensor]] = {}
            self._sent[server_round] = {
                _node(proxy): states.setdefault(id(ins.parameters), self._state(ins.parameters))
                for proxy, ins in pairs
            }
        except UpdateError:  # the audit must never break the federated run
            logger.exception("gradinv audit of round %d: the sent model cannot be read", server_round)
            return pairs
        training = self.training
        if training is None:
            training = training_from_config(dict(pairs[0][1].config))
        self._training[server_round] = training
        return pairs

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        """Audit the replies as handed over (under SecAgg+: the aggregate), then delegate."""
        for failure in failures:
            if isinstance(failure, BaseException):
                self.failures.append(ClientFailure(server_round, -1, -1, repr(failure)))
            else:
                proxy, res = failure
                code = int(res.status.code.value)
                self.failures.append(ClientFailure(server_round, _node(proxy), code, res.status.message))
        if self._audits_round(server_round):
            try:
                replies = [self._read(server_round, proxy, res) for proxy, res in results]
                self._audit_round(server_round, [r for r in replies if r is not None])
            except Exception:  # the audit must never break the federated run
                logger.exception("gradinv audit of round %d failed", server_round)
        self._sent.pop(server_round, None)
        return self.strategy.aggregate_fit(server_round, results, failures)

    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        return self.strategy.configure_evaluate(server_round, parameters, client_manager)

    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[tuple[ClientProxy, EvaluateRes] | BaseException],
    ) -> tuple[float | None, dict[str, Scalar]]:
        return self.strategy.aggregate_evaluate(server_round, results, failures)

    def evaluate(self, server_round: int, parameters: Parameters) -> tuple[float, dict[str, Scalar]] | None:
        return self.strategy.evaluate(server_round, parameters)

    # ------------------------------------------------------------------ reading legacy messages

    def _state(self, parameters: Parameters) -> dict[str, Tensor]:
        """Legacy parameters (the ``state_dict`` arrays in order) as the model's named state."""
        arrays = parameters_to_ndarrays(parameters)
        template = self.model.state_dict()
        shapes = [tuple(v.shape) for v in template.values()]
        if [tuple(a.shape) for a in arrays] != shapes:
            raise UpdateError(
                f"Expected the parameters of the audited model ({len(shapes)} arrays of shapes "
                f"{shapes[:3]}...), but got {len(arrays)} arrays of shapes "
                f"{[tuple(a.shape) for a in arrays][:3]}.... Give the auditor the app's model."
            )
        return {k: torch.as_tensor(a).to(v.dtype).clone() for (k, v), a in zip(template.items(), arrays)}

    def _read(self, server_round: int, proxy: ClientProxy, res: FitRes) -> ClientReply | None:
        state = self._state(res.parameters)
        return self._reply(server_round, _node(proxy), [res.metrics], state, num_examples=res.num_examples)
