"""Secure aggregation (Flower's SecAgg+) for KOSMoS sessions: the server only learns the sum.

In Flower 1.42 SecAgg+ exists only as a legacy workflow (``SecAggPlusWorkflow`` on a
``LegacyContext``) and a client mod (``secaggplus_mod``) in front of a ``NumPyClient``. Instead of
handing the whole session to ``DefaultWorkflow``, the ServerApp keeps its own round loop (quorum,
central evaluation, MLflow, progress, model registration) and runs *one* SecAgg+ round per
iteration through :class:`SecureRounds`; only the aggregation step differs from the plain path.

Clients send their *update* (trained minus received weights), not their weights: SecAgg+ clips every
weighted entry to ``+-clipping_range`` before quantising it, and updates are small where weights
(a regression head's bias, say) need not be. The server adds the securely averaged update to the
global model.

Messages: four per client and round (setup, share keys, collect masked vectors, unmask), all of
Flower type ``train``; the KOSMoS ClientApp hands those that carry the SecAgg+ record to
:data:`secagg_clientapp`, so a plain session is unchanged.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.app.message_type import MessageType
from flwr.client import NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS
from flwr.server.workflow import SecAggPlusWorkflow

from kosmos_fl.errors import FederationError
from kosmos_fl.fl import client_hooks
from kosmos_fl.fl.rounds.local_training import train_locally
from kosmos_fl.fl.session import SessionSpec, node_spec_for_run

log = logging.getLogger("kosmos_fl.secure")


# --------------------------------------------------------------------------------------------------
# client side
# --------------------------------------------------------------------------------------------------
def is_secagg_message(msg: Message) -> bool:
    """True for the messages of a SecAgg+ round (they carry Flower's SecAgg+ config record)."""
    return RECORD_KEY_CONFIGS in msg.content.config_records


class _UpdateClient(NumPyClient):
    """Local training as in :func:`kosmos_fl.fl.apps.client_app.train`, returning the update."""

    def __init__(self, context: Context) -> None:
        self.context = context

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple[Any, int, dict[str, Any]]:
        from kosmos_fl.ml.train import get_weights, pack_weights

        t0 = time.monotonic()
        spec = node_spec_for_run(self.context)
        model, data, loss = train_locally(spec, config, lambda: parameters)
        update = [new - old for new, old in zip(pack_weights(get_weights(model)), parameters, strict=True)]
        metrics = {
            "train_loss": float(loss),
            "client-id": spec.client_id,
            "compute-seconds": time.monotonic() - t0,
        }
        return update, len(data), metrics


def _client_fn(context: Context) -> Any:
    return _UpdateClient(context).to_client()


#: The SecAgg+ client: Flower's mod masks the update that :class:`_UpdateClient` computes.
secagg_clientapp = ClientApp(client_fn=_client_fn, mods=[client_hooks.mod, secaggplus_mod])


# --------------------------------------------------------------------------------------------------
# server side
# --------------------------------------------------------------------------------------------------
def _legacy_strategy(spec: SessionSpec, train_config: ConfigRecord) -> Any:
    """A legacy FedAvg that samples every connected client (at least the quorum, so a client lost
    for good does not block later rounds) and hands back the securely summed update (SecAgg+ has
    already divided it by the total weight) instead of averaging again."""
    from flwr.server.strategy import FedAvg

    class _SumCapture(FedAvg):  # type: ignore[misc]
        captured: tuple[list[Any], list[Any]] | None = None

        def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
            self.captured = (list(results), list(failures))
            if not results:
                return None, {}
            return results[0][1].parameters, {}

    def fit_config(server_round: int) -> dict[str, Any]:
        return {**dict(train_config), "server-round": server_round}

    return _SumCapture(
        fraction_fit=1.0,
        fraction_evaluate=0.0,
        min_fit_clients=spec.min_fit_clients,
        min_evaluate_clients=0,
        min_available_clients=spec.min_fit_clients,
        on_fit_config_fn=fit_config,
    )


class _Workflow(SecAggPlusWorkflow):  # type: ignore[misc]
    """SecAgg+ that remembers who took part, so dropouts can be reported and counted."""

    sampled: set[int]
    active: set[int]
    threshold: int

    def _check_threshold(self, state: Any) -> bool:
        self.sampled, self.active, self.threshold = (
            set(state.sampled_node_ids),
            set(state.active_node_ids),
            state.threshold,
        )
        return bool(super()._check_threshold(state))

    def unmask_stage(self, grid: Any, context: Any, state: Any) -> bool:
        self.active = set(state.active_node_ids)  # those whose masked update is in the sum
        return bool(super().unmask_stage(grid, context, state))


class SecureRounds:
    """Runs one SecAgg+ round at a time inside the KOSMoS ServerApp's own loop."""

    def __init__(self, grid: Any, context: Context, spec: SessionSpec, train_config: ConfigRecord) -> None:
        from flwr.server import ServerConfig, SimpleClientManager
        from flwr.server.compat.app_utils import start_update_client_manager_thread
        from flwr.server.compat.legacy_context import LegacyContext

        sa = spec.secure_aggregation
        assert sa is not None
        self.grid = grid
        self.spec = spec
        self.strategy = _legacy_strategy(spec, train_config)
        self.context = LegacyContext(
            context,
            config=ServerConfig(num_rounds=spec.num_rounds),
            strategy=self.strategy,
            client_manager=SimpleClientManager(),
        )
        self._thread, self._stop, registered = start_update_client_manager_thread(
            grid, self.context.client_manager
        )
        registered.wait()
        self.workflow = _Workflow(
            sa.num_shares,
            sa.reconstruction_threshold,
            max_weight=sa.max_weight,
            clipping_range=sa.clipping_range,
            timeout=spec.round_timeout,
        )
        self.num_shares, self.threshold = sa.resolve(spec.num_clients)

    def params(self) -> dict[str, Any]:
        """What the MLflow run records about the protocol."""
        sa = self.spec.secure_aggregation
        assert sa is not None
        return {
            "secure_aggregation": "SecAgg+",
            "secagg_num_shares": self.num_shares,
            "secagg_reconstruction_threshold": self.threshold,
            "secagg_min_clients": sa.quorum(self.spec.num_clients),
            "secagg_clipping_range": sa.clipping_range,
            "secagg_max_weight": sa.max_weight,
        }

    def train_round(self, rnd: int, arrays: ArrayRecord) -> tuple[list[Message], list[Message], ArrayRecord]:
        """One SecAgg+ round from ``arrays``: (replies with the clients' metrics, error replies
        of the clients that dropped out, the new global arrays)."""
        from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
        from flwr.server.workflow.constant import Key as WorkflowKey

        state = self.context.state
        state.array_records[MAIN_PARAMS_RECORD] = arrays
        state.config_records[MAIN_CONFIGS_RECORD] = ConfigRecord(
            {WorkflowKey.CURRENT_ROUND: rnd, WorkflowKey.START_TIME: time.time()}
        )
        self.strategy.captured = None
        self.workflow.sampled, self.workflow.active = set(), set()
        self.workflow(self.grid, self.context)
        sampled, active = self.workflow.sampled, self.workflow.active
        dropped = [_error_reply(nid, rnd) for nid in sorted(sampled - active)]
        if self.strategy.captured is None or not self.strategy.captured[0]:
            raise FederationError(
                f"round {rnd}: secure aggregation stopped with {len(active)} of {len(sampled)} clients "
                f"left; SecAgg+ needs {self.threshold} (reconstruction_threshold) to unmask the sum"
            )
        results, _ = self.strategy.captured
        ok = [_metrics_reply(proxy.node_id, fitres.metrics) for proxy, fitres in results]
        from flwr.common import parameters_to_ndarrays

        update = parameters_to_ndarrays(results[0][1].parameters)
        old = arrays.to_numpy_ndarrays()
        new = [(o + u).astype(o.dtype, copy=False) for o, u in zip(old, update, strict=True)]
        return ok, dropped, ArrayRecord(new)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _metrics_reply(node_id: int, metrics: dict[str, Any]) -> Message:
    """A reply-shaped message with one client's training metrics (no weights: there are none)."""
    return Message(
        RecordDict({"metrics": MetricRecord({k: v for k, v in metrics.items() if _is_num(v)})}),
        dst_node_id=node_id,
        message_type=MessageType.TRAIN,
    )


def _error_reply(node_id: int, rnd: int) -> Message:
    from flwr.app import Error

    out = Message(RecordDict(), dst_node_id=node_id, message_type=MessageType.TRAIN)
    return Message(Error(code=0, reason=f"dropped out of secure aggregation in round {rnd}"), reply_to=out)


def _is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
