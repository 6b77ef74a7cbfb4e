"""The Flower ClientApp of a KOSMoS session: local training on the site's own data.

Flower starts it per message; the SuperNode's ``--node-config session-file=...`` points at the
:class:`~kosmos_fl.fl.session.NodeSpec` the KOSMoS client wrote when ``start_train`` arrived, so the
data path never leaves the site.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from kosmos_fl.fl import faults, federated_eval, secure
from kosmos_fl.fl.partition import virtual_client_data
from kosmos_fl.fl.session import NodeSpec
from kosmos_fl.fl.warm_exec import FORKED_AT_ENV
from kosmos_fl.ml.train import get_weights, pack_weights, seed_everything, set_weights, train_epochs
from kosmos_fl.usecases import load_usecase
from kosmos_fl.usecases.base import ArrayDataset

app = ClientApp()


def train_locally(
    spec: NodeSpec, config: Any, weights: Callable[[], list[np.ndarray]]
) -> tuple[Any, ArrayDataset, float]:
    """The local part of a round, shared by plain and SecAgg+ rounds: this site's data (or its
    simulation partition), the global ``weights`` (read once the model is built; packed or per
    tensor, see :func:`~kosmos_fl.ml.train.pack_weights`), ``local-epochs`` of seeded training."""
    if spec.torch_threads:
        torch.set_num_threads(spec.torch_threads)
    server_round = int(config["server-round"])
    seed = int(config["seed"]) + 1000 * spec.client_id + server_round
    seed_everything(seed)
    if spec.partition is not None:  # a virtual client of `kosmos-fl simulate`: pooled data, once per process
        usecase, data = virtual_client_data(spec)
    else:
        usecase = load_usecase(spec.usecase_name, spec.usecase_params, version=spec.usecase_version)
        data = usecase.client_dataset(Path(spec.data_path), spec.selection)
    model = usecase.build_model()
    set_weights(model, weights())
    faults.before_training()  # test-only hook, inactive unless KOSMOS_FL_FAULT is set
    loss = train_epochs(
        model,
        data.x,
        data.y,
        epochs=spec.local_epochs or int(config["local-epochs"]),  # a site's own override wins
        lr=spec.learning_rate or float(config["learning-rate"]),
        batch_size=int(config["batch-size"]),
        seed=seed,
        proximal_mu=float(config.get("proximal-mu", 0.0)),
    )
    return model, data, float(loss)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train the received global model for the configured local epochs; reply with new weights."""
    if secure.is_secagg_message(msg):  # a SecAgg+ round stage: fl/secure.py
        return secure.secagg_clientapp(msg, context)
    t0 = time.monotonic()
    started_at = time.time()
    spec = NodeSpec.read(str(context.node_config["session-file"]))
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
            # wall clocks, for the server's latency split (see server_app._latency_split)
            "started-at": started_at,
            "finished-at": time.time(),
            **({"forked-at": float(os.environ[FORKED_AT_ENV])} if FORKED_AT_ENV in os.environ else {}),
        }
    )
    weights = faults.corrupt(pack_weights(get_weights(model)))  # test-only hook: kosmos_fl.fl.faults
    content = RecordDict({"arrays": ArrayRecord(weights), "metrics": metrics})
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Score the global model on this site's own data (federated evaluation, as in 2021)."""
    return federated_eval.client_evaluate(msg, context)
