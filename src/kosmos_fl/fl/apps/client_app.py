"""The Flower ClientApp of a KOSMoS session: local training on the site's own data.

Flower starts it per message; the SuperNode's ``--node-config session-file=...`` points at the
:class:`~kosmos_fl.fl.session.NodeSpec` the KOSMoS client writes when ``start_train`` arrives, so the
data path never leaves the site. The SuperNode outlives sessions, so the spec is read for the
message's session (:func:`~kosmos_fl.fl.session.node_spec_for_run`).
"""

from __future__ import annotations

import os
import time

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from kosmos_fl.fl import client_hooks
from kosmos_fl.fl.flower_runtime.warm_exec import FORKED_AT_ENV
from kosmos_fl.fl.rounds import federated_eval, secure
from kosmos_fl.fl.rounds.local_training import train_locally
from kosmos_fl.fl.session import node_spec_for_run
from kosmos_fl.ml.train import get_weights, pack_weights

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train the received global model for the configured local epochs; reply with new weights."""
    if secure.is_secagg_message(msg):  # a SecAgg+ round stage: fl/rounds/secure.py
        return secure.secagg_clientapp(msg, context)
    t0 = time.monotonic()
    started_at = time.time()
    spec = node_spec_for_run(context)
    if spec.require_secure_aggregation:
        raise RuntimeError(
            "this client requires secure aggregation (require_secure_aggregation: true) and refuses "
            "to send an unmasked update; enable secure_aggregation on the server"
        )
    model, data, loss = train_locally(
        spec, msg.content["config"], lambda: msg.content["arrays"].to_numpy_ndarrays()
    )
    metrics = MetricRecord(
        {
            "num-examples": len(data),
            "train_loss": float(loss),
            "client-id": spec.client_id,
            "compute-seconds": time.monotonic() - t0,
            # wall clocks, for the server's latency split (see round_stats.latency_split)
            "started-at": started_at,
            "finished-at": time.time(),
            **({"forked-at": float(os.environ[FORKED_AT_ENV])} if FORKED_AT_ENV in os.environ else {}),
        }
    )
    weights = client_hooks.on_reply(pack_weights(get_weights(model)))  # no-op without hooks
    content = RecordDict({"arrays": ArrayRecord(weights), "metrics": metrics})
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Score the global model on this site's own data (federated evaluation, as in 2021)."""
    return federated_eval.client_evaluate(msg, context)
