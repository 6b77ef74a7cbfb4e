"""The Flower ServerApp of a KOSMoS session: rounds, central evaluation, MLflow, model registry.

Runs inside Flower's runtime (spawned by the SuperLink for each session). It drives the rounds
itself instead of ``Strategy.start`` so that it can enforce a quorum, fail loudly on a round without
updates, and write progress that the coordinator and the demo read live. Aggregation is delegated to
the configured ``flwr.serverapp.strategy`` class.
"""

from __future__ import annotations

import json
import logging
import math
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message
from flwr.serverapp import Grid, ServerApp

from kosmos_fl.errors import FederationError
from kosmos_fl.fl import strategies
from kosmos_fl.fl.session import PROGRESS_FILE, RESULT_FILE, SessionSpec, append_jsonl, write_json_atomic
from kosmos_fl.fl.tracking import flat_params
from kosmos_fl.ml.models import count_parameters
from kosmos_fl.ml.train import get_weights, predict, seed_everything, set_weights
from kosmos_fl.usecases import load_usecase

log = logging.getLogger("kosmos_fl.server_app")

app = ServerApp()


def wait_for_nodes(grid: Grid, wanted: int, timeout: float) -> list[int]:
    """Block until ``wanted`` SuperNodes are connected, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        nodes = list(grid.get_node_ids())
        if len(nodes) >= wanted:
            return nodes
        if time.monotonic() > deadline:
            raise FederationError(
                f"only {len(nodes)} of {wanted} clients joined the Flower session within "
                f"{timeout:.0f} s; check that clients can reach flwr_server_address"
            )
        time.sleep(0.2)


def _client_metrics(replies: list[Message]) -> dict[str, float]:
    """Per-client training loss (``train_loss_client<id>``) and its mean (``train_loss``)."""
    out: dict[str, float] = {}
    losses = []
    for msg in replies:
        metrics = msg.content.metric_records.get("metrics")
        if metrics is None or "train_loss" not in metrics:
            continue
        loss = float(metrics["train_loss"])
        cid = int(metrics.get("client-id", -1))
        out[f"train_loss_client{cid}"] = loss
        losses.append(loss)
    if losses:
        out["train_loss"] = float(np.mean(losses))
    return out


class _Tracker:
    """Thin MLflow logger bound to the session's run (created beforehand by the coordinator)."""

    def __init__(self, spec: SessionSpec) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        mlflow.set_tracking_uri(spec.mlflow_tracking_uri)
        self.client = MlflowClient(tracking_uri=spec.mlflow_tracking_uri)
        self.run_id = spec.mlflow_run_id

    def params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in flat_params(params).items()]
        for i in range(0, len(items), 90):
            self.client.log_batch(self.run_id, params=items[i : i + 90])

    def metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items() if math.isfinite(v)]
        for i in range(0, len(items), 900):
            self.client.log_batch(self.run_id, metrics=items[i : i + 900])

    def tag(self, key: str, value: str) -> None:
        self.client.set_tag(self.run_id, key, value)


def _plots(usecase: Any, model: Any, groups: dict[str, Any], out: Path) -> list[Path]:
    """Predicted vs true target per evaluation group, one PNG each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in groups.items():
        pred = predict(model, data.x)
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot(data.y, label="true RUL", color="black", linewidth=1.5)
        ax.plot(pred, label="predicted RUL", color="tab:blue", alpha=0.8, linewidth=1)
        ax.set_xlabel("sample (time order)")
        ax.set_ylabel(f"RUL [{usecase.target_unit}]")
        ax.set_title(f"{name}: predicted vs true remaining useful life")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out / f"rul_{name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def run_session(grid: Grid, spec: SessionSpec) -> dict[str, Any]:
    """Run all rounds of one session; returns the result document."""
    out_dir = Path(spec.out_dir)
    progress = out_dir / PROGRESS_FILE
    tracker = _Tracker(spec)
    seed_everything(spec.seed)
    usecase = load_usecase(spec.usecase_name, spec.usecase_params, version=spec.usecase_version)
    groups = usecase.eval_datasets(Path(spec.data_path), spec.test_names)
    model = usecase.build_model()

    tracker.params(
        {
            "num_clients": spec.num_clients,
            "min_fit_clients": spec.min_fit_clients,
            "n_federated_train_epoch": spec.num_rounds,
            "strategy": spec.strategy_name,
            "strategy_params": spec.strategy_params,
            "local_epochs": spec.local_epochs,
            "learning_rate": spec.learning_rate,
            "batch_size": spec.batch_size,
            "seed": spec.seed,
            "usecase": spec.usecase_name,
            "usecase_version": spec.usecase_version,
            "usecase_params": spec.usecase_params,
            "test_bearings": ",".join(groups),
            "model": type(model).__name__,
            "model_parameters": count_parameters(model),
        }
    )
    tracker.tag("kosmos.session_id", spec.session_id)
    (out_dir / "model_summary.txt").write_text(str(model), encoding="utf-8")
    tracker.client.log_artifact(tracker.run_id, str(out_dir / "model_summary.txt"))

    t0 = time.monotonic()
    metrics = usecase.evaluate(model, groups)
    tracker.metrics(metrics, step=0)
    append_jsonl(progress, {"event": "round", "round": 0, "metrics": metrics, "seconds": 0.0})

    wait_for_nodes(grid, spec.num_clients, spec.join_timeout)
    strategy = strategies.build(
        spec.strategy_name, spec.strategy_params, spec.num_clients, spec.min_fit_clients
    )
    arrays = ArrayRecord(get_weights(model))
    train_config = ConfigRecord(
        {
            "local-epochs": spec.local_epochs,
            "learning-rate": spec.learning_rate,
            "batch-size": spec.batch_size,
            "seed": spec.seed,
        }
    )
    completed = 0
    for rnd in range(1, spec.num_rounds + 1):
        t_round = time.monotonic()
        messages = list(strategy.configure_train(rnd, arrays, train_config, grid))
        replies = list(grid.send_and_receive(messages=messages, timeout=spec.round_timeout))
        ok = [m for m in replies if not m.has_error()]
        failed = [m for m in replies if m.has_error()]
        for m in failed:
            log.warning("round %d: client node %s failed: %s", rnd, m.metadata.src_node_id, m.error.reason)
        if not ok:
            raise FederationError(f"round {rnd} got no client updates ({len(failed)} failed replies)")
        if len(ok) < spec.min_fit_clients:
            raise FederationError(
                f"round {rnd} got {len(ok)} client updates, fewer than min_fit_clients={spec.min_fit_clients}"
            )
        t_replies = time.monotonic()
        new_arrays, _ = strategy.aggregate_train(rnd, ok)
        if new_arrays is None:
            raise FederationError(f"round {rnd}: the strategy produced no aggregate")
        arrays = new_arrays
        set_weights(model, arrays.to_numpy_ndarrays())
        t_eval = time.monotonic()
        metrics = usecase.evaluate(model, groups)
        t_end = time.monotonic()
        client = _client_metrics(ok)
        compute = [float(m.content.metric_records["metrics"].get("compute-seconds", 0.0)) for m in ok]
        round_stats = {
            # train phase: from sending the global model until the last reply arrived
            "train_phase_seconds": t_replies - t_round,
            "aggregate_seconds": t_eval - t_replies,
            "eval_seconds": t_end - t_eval,
            "round_seconds": t_end - t_round,
            "clients_ok": float(len(ok)),
            "clients_failed": float(len(failed)),
            "client_compute_seconds_max": max(compute) if compute else 0.0,
            # model bytes on the wire: the global model to each client, the updates back
            "bytes_sent": float(sum(m.content["arrays"].count_bytes() for m in messages)),
            "bytes_received": float(sum(m.content["arrays"].count_bytes() for m in ok)),
        }
        tracker.metrics({**metrics, **client, **round_stats}, step=rnd)
        append_jsonl(
            progress,
            {
                "event": "round",
                "round": rnd,
                "metrics": metrics,
                "client": client,
                "seconds": time.monotonic() - t0,
                **round_stats,
            },
        )
        completed = rnd

    plot_paths = _plots(usecase, model, groups, out_dir / "plots")
    for p in plot_paths:
        tracker.client.log_artifact(tracker.run_id, str(p), artifact_path="plots")
    model_uri, version = _log_model(spec, usecase, model, groups)
    return {
        "status": "completed",
        "rounds_completed": completed,
        "final_metrics": metrics,
        "model_uri": model_uri,
        "registered_model": spec.registered_model_name,
        "registered_version": version,
        "plots": [str(p) for p in plot_paths],
    }


def _log_model(spec: SessionSpec, usecase: Any, model: Any, groups: dict[str, Any]) -> tuple[str, str]:
    """Log the final global model with a signature and register it; returns its models:/ URI."""
    import mlflow
    import torch
    from mlflow.models import infer_signature

    first = next(iter(groups.values()))
    example = usecase.input_example(first)
    signature = infer_signature(example, predict(model, example).astype(np.float32))
    metadata = {
        "kosmos_usecase": spec.usecase_name,
        "kosmos_usecase_version": spec.usecase_version,
        "kosmos_usecase_params": json.dumps(spec.usecase_params),
        "kosmos_session_id": spec.session_id,
        "target_unit": usecase.target_unit,
    }
    model.eval()
    with mlflow.start_run(run_id=spec.mlflow_run_id):
        info = mlflow.pytorch.log_model(
            pytorch_model=model,
            name="model",
            signature=signature,
            registered_model_name=spec.registered_model_name,
            metadata=metadata,
            # "pt2" graphs cannot be put in eval mode once loaded (MLflow 3.17), so the model is
            # pickled: loading it needs kosmos_fl (and the use case's package) installed.
            serialization_format="pickle",
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
        )
        mlflow.set_tag("kosmos.status", "completed")
    version = str(info.registered_model_version)
    return f"models:/{spec.registered_model_name}/{version}", version


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Flower entry point: read the session spec, run it, always leave a result document."""
    spec = SessionSpec.read(str(context.run_config["session-file"]))
    out_dir = Path(spec.out_dir)
    logging.basicConfig(level=logging.INFO)
    try:
        result = run_session(grid, spec)
    except Exception as exc:
        reason = str(exc) if isinstance(exc, FederationError) else f"{type(exc).__name__}: {exc}"
        write_json_atomic(
            out_dir / RESULT_FILE,
            {"status": "failed", "reason": reason, "traceback": traceback.format_exc()},
        )
        try:
            from kosmos_fl.fl.tracking import fail_run

            fail_run(spec.mlflow_tracking_uri, spec.mlflow_run_id, reason)
        except Exception:
            log.exception("could not mark the MLflow run as failed")
        raise
    write_json_atomic(out_dir / RESULT_FILE, result)
