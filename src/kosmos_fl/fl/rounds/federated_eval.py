"""Federated evaluation on the clients' own data, as the 2021 clients did (``fraction_eval 1``).

With ``federated_evaluation: true`` the server sends the new global model to ``fraction_evaluate``
of the round's clients after aggregating; each ClientApp scores it on its own training data and
answers with metrics only (no data, no weights). The server logs them per client
(``RMSE_client<id>``, ``MAE_client<id>``) and weighted by sample count (``RMSE_clients``,
``MAE_clients``) next to its own held-out evaluation, plus ``federated_eval_seconds``.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict

from kosmos_fl.fl.rounds.liveness import send_and_collect
from kosmos_fl.fl.session import SessionSpec, node_spec_for_run
from kosmos_fl.ml.metrics import mae, rmse


def evaluate_on_clients(
    grid: Any, clients: Any, node_ids: list[int], arrays: ArrayRecord, spec: SessionSpec, rnd: int
) -> dict[str, float]:
    """Ask ``fraction_evaluate`` of ``node_ids`` (seeded choice per round) to score ``arrays`` on
    their own data; returns the per-client and weighted metrics (empty when nobody answered)."""
    t0 = time.monotonic()
    nodes = sorted(node_ids)
    if not nodes:
        return {}
    k = max(1, math.ceil(spec.fraction_evaluate * len(nodes)))
    chosen = sorted(random.Random(spec.seed * 1000 + rnd).sample(nodes, k))
    messages = [
        Message(
            content=RecordDict({"arrays": arrays, "config": ConfigRecord({"server-round": rnd})}),
            dst_node_id=node,
            message_type=MessageType.EVALUATE,
        )
        for node in chosen
    ]
    got = send_and_collect(grid, messages, clients, spec.round_timeout)
    out: dict[str, float] = {}
    weighted: dict[str, list[tuple[float, int]]] = {"RMSE": [], "MAE": []}
    for reply in got.replies:
        if reply.has_error():
            continue
        m = reply.content.metric_records["metrics"]
        cid, n = int(m["client-id"]), int(m["num-examples"])
        for key in ("RMSE", "MAE"):
            out[f"{key}_client{cid}"] = float(m[key])
            weighted[key].append((float(m[key]), n))
    for key, values in weighted.items():
        total = sum(n for _, n in values)
        if total:
            out[f"{key}_clients"] = sum(v * n for v, n in values) / total
    out["federated_eval_clients"] = float(len(weighted["RMSE"]))
    out["federated_eval_seconds"] = time.monotonic() - t0
    return out


def client_evaluate(msg: Message, context: Context) -> Message:
    """The ClientApp side: the global model's RMSE and MAE on this site's own training data."""
    from kosmos_fl.fl.rounds.partition import virtual_client_data
    from kosmos_fl.ml.train import predict, set_weights
    from kosmos_fl.usecases import load_usecase

    spec = node_spec_for_run(context)
    if spec.partition is not None:
        usecase, data = virtual_client_data(spec)
    else:
        usecase = load_usecase(spec.usecase_name, spec.usecase_params, version=spec.usecase_version)
        data = usecase.client_dataset(Path(spec.data_path), spec.selection)
    model = usecase.build_model()
    set_weights(model, msg.content["arrays"].to_numpy_ndarrays())
    pred = predict(model, data.x)  # the model's own output, as 2021's eval_fn scored it
    metrics = MetricRecord(
        {
            "RMSE": rmse(data.y, pred),
            "MAE": mae(data.y, pred),
            "num-examples": len(data),
            "client-id": spec.client_id,
        }
    )
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)
