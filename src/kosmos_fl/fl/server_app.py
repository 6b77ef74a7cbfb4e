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
import os
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.exception import PrivacyBudgetExhausted

from kosmos_fl import compat2021
from kosmos_fl.errors import FederationError
from kosmos_fl.fl import checkpoint, federated_eval, strategies
from kosmos_fl.fl.checkpoint import INTERRUPTED_FILE, Checkpoint
from kosmos_fl.fl.liveness import (
    LiveGrid,
    RoundReplies,
    SessionClients,
    quorum_lost_message,
    send_and_collect,
    wait_for_nodes,
)
from kosmos_fl.fl.object_pulls import use_fast_object_pulls
from kosmos_fl.fl.screening import Screened, screen_replies
from kosmos_fl.fl.session import PROGRESS_FILE, RESULT_FILE, SessionSpec, append_jsonl, write_json_atomic
from kosmos_fl.fl.tracking import flat_params
from kosmos_fl.ml.models import count_parameters
from kosmos_fl.ml.train import get_weights, pack_weights, predict, seed_everything, set_weights
from kosmos_fl.usecases import load_usecase

log = logging.getLogger("kosmos_fl.server_app")

app = ServerApp()


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


def _latency_split(replies: list[Message], sent_at: float, received_at: float) -> dict[str, float]:
    """Where a train phase's time went, from the wall clocks of server and clients (only exact
    when they share a clock, as on loopback; across hosts it is as good as their NTP).

    ``pickup``: from sending until a ClientApp handler started (the SuperNode's idle pull interval
    plus the process start); ``start``: the part of it from the ClientApp process being created
    until the handler ran; ``return``: from the last handler finishing until all replies were in.
    """
    pickups, starts, finished = [], [], []
    for msg in replies:
        m = msg.content.metric_records.get("metrics")
        if m is None or "started-at" not in m:
            continue
        pickups.append(float(m["started-at"]) - sent_at)
        finished.append(float(m["finished-at"]))
        if "forked-at" in m:
            starts.append(float(m["started-at"]) - float(m["forked-at"]))
    out: dict[str, float] = {}
    if pickups:
        out["pickup_seconds_max"] = max(pickups)
        out["return_seconds"] = received_at - max(finished)
    if starts:
        out["process_start_seconds_max"] = max(starts)
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

    def has_step(self, metrics: dict[str, float], step: int) -> bool:
        """Whether MLflow already holds this round's metrics (they are logged in one batch)."""
        key = next((k for k, v in metrics.items() if math.isfinite(v)), None)
        if key is None:
            return True
        return any(m.step == step for m in self.client.get_metric_history(self.run_id, key))


def _checkpoint_and_log(
    out_dir: Path, tracker: _Tracker, ckpt: Checkpoint, weights: list[np.ndarray], strategy: Any
) -> Checkpoint:
    """Checkpoint first, then log, then flag as logged: a crash anywhere in between neither loses
    nor duplicates the round's metrics on resume (see kosmos_fl.fl.checkpoint)."""
    ckpt = checkpoint.save(out_dir, ckpt, weights, strategy)
    tracker.metrics(ckpt.metrics, step=ckpt.round)
    return checkpoint.mark_logged(out_dir, ckpt)


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


def run_session(grid: Grid, spec: SessionSpec, context: Context | None = None) -> dict[str, Any]:
    """Run all rounds of one session; returns the result document."""
    out_dir = Path(spec.out_dir)
    progress = out_dir / PROGRESS_FILE
    tracker = _Tracker(spec)
    seed_everything(spec.seed)
    usecase = load_usecase(spec.usecase_name, spec.usecase_params, version=spec.usecase_version)
    groups = usecase.eval_datasets(Path(spec.data_path), spec.test_names)
    model = usecase.build_model()

    strategy = strategies.build(
        spec.strategy_name, spec.strategy_params, spec.num_clients, spec.min_fit_clients
    )
    if spec.differential_privacy is not None:  # clipping + noise + accountant: fl/privacy.py
        from kosmos_fl.fl import privacy

        strategy = privacy.build_strategy(spec)
    ckpt = checkpoint.load(out_dir)
    if ckpt is None:
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
                "max_update_norm_ratio": spec.max_update_norm_ratio,
                "max_update_norm": spec.max_update_norm,
                **compat2021.mlflow_params(spec, model, usecase),  # the 2021 names, for old dashboards
            }
        )
        if spec.differential_privacy is not None:
            tracker.params(privacy.params(spec))
        tracker.tag("kosmos.session_id", spec.session_id)
        (out_dir / "model_summary.txt").write_text(str(model), encoding="utf-8")
        tracker.client.log_artifact(tracker.run_id, str(out_dir / "model_summary.txt"))
        t0 = time.monotonic()
        metrics = usecase.evaluate(model, groups)
        first = Checkpoint(
            session_id=spec.session_id,
            mlflow_run_id=spec.mlflow_run_id,
            round=0,
            weights_file="",
            metrics=metrics,
        )
        ckpt = _checkpoint_and_log(out_dir, tracker, first, get_weights(model), strategy)
        append_jsonl(progress, {"event": "round", "round": 0, "metrics": metrics, "seconds": 0.0})
    else:
        # resume: a new Flower run continues from the last completed round of this session
        set_weights(model, checkpoint.load_weights(out_dir, ckpt))
        strategy = checkpoint.load_strategy(out_dir, ckpt) or strategy
        if not ckpt.metrics_logged:
            if not tracker.has_step(ckpt.metrics, ckpt.round):
                tracker.metrics(ckpt.metrics, step=ckpt.round)
            ckpt = checkpoint.mark_logged(out_dir, ckpt)
        log.info("resuming session %s after round %d", spec.session_id, ckpt.round)
        append_jsonl(progress, {"event": "resumed", "round": ckpt.round})
        t0 = time.monotonic() - ckpt.elapsed_seconds
        metrics = usecase.evaluate(model, groups)

    clients = SessionClients(out_dir, spec.num_clients)
    if ckpt.round < spec.num_rounds:
        wait_for_nodes(grid, clients, spec.min_fit_clients, spec.join_timeout)
    live_grid = LiveGrid(grid, clients)
    arrays = ArrayRecord(pack_weights(get_weights(model)))  # one vector per message: fewer objects
    train_config = ConfigRecord(
        {
            "local-epochs": spec.local_epochs,
            "learning-rate": spec.learning_rate,
            "batch-size": spec.batch_size,
            "seed": spec.seed,
        }
    )
    secagg = None
    if spec.secure_aggregation is not None:  # SecAgg+ rounds: fl/secure.py
        from kosmos_fl.fl.secure import SecureRounds

        assert context is not None
        secagg = SecureRounds(grid, context, spec, train_config)
        if ckpt.round == 0:
            tracker.params(secagg.params())
    stop_reason = None
    norm_history = list(ckpt.norm_history)
    completed = ckpt.round
    for rnd in range(ckpt.round + 1, spec.num_rounds + 1):
        t_round = time.monotonic()
        alive = min(clients.alive_count(), len(live_grid.get_node_ids()))
        if alive < spec.min_fit_clients:
            raise FederationError(
                quorum_lost_message(f"before round {rnd}", alive, spec.min_fit_clients, clients.dead())
            )
        train_config["sent-at"] = time.time()  # wall clock: the clients report theirs (latency split)
        secure_arrays = None
        if secagg is not None:
            # the server sees only the masked sum: no per-update screening (docs/SECURITY.md)
            messages = []  # the SecAgg+ workflow sends its own stage messages
            ok, failed, secure_arrays = secagg.train_round(rnd, arrays)
            got = RoundReplies(replies=ok + failed, dropped=[], timed_out=[])
        else:
            try:
                messages = list(strategy.configure_train(rnd, arrays, train_config, live_grid))
            except PrivacyBudgetExhausted as exc:  # stop cleanly, keep the last model
                stop_reason = privacy.budget_reason(exc, rnd, strategy)
                log.warning("%s", stop_reason)
                break
            append_jsonl(
                progress,
                {"event": "round_started", "round": rnd, "nodes": [m.metadata.dst_node_id for m in messages]},
            )
            got = send_and_collect(grid, messages, clients, spec.round_timeout)
            ok = [m for m in got.replies if not m.has_error()]
            failed = [m for m in got.replies if m.has_error()]
        for m in failed:
            log.warning("round %d: client node %s failed: %s", rnd, m.metadata.src_node_id, m.error.reason)
        screened = (
            Screened(accepted=ok, rejected=[], norms=[])
            if secagg is not None
            else screen_replies(
                ok, arrays.to_numpy_ndarrays(), spec.max_update_norm_ratio, spec.max_update_norm, norm_history
            )
        )
        for cid, reason in screened.rejected:
            append_jsonl(progress, {"event": "rejected", "round": rnd, "client": cid, "reason": reason})
        accepted = screened.accepted
        if len(accepted) < spec.min_fit_clients or not accepted:
            dead = clients.dead()
            raise FederationError(
                f"round {rnd} got {len(accepted)} usable client update(s), fewer than "
                f"min_fit_clients={spec.min_fit_clients} ({len(failed)} failed, "
                f"{len(screened.rejected)} rejected, {len(got.dropped)} disconnected, "
                f"{len(got.timed_out)} not answered within round_timeout={spec.round_timeout:g} s)"
                + (
                    f"; gone: {', '.join(f'client {k} ({v})' for k, v in sorted(dead.items()))}"
                    if dead
                    else ""
                )
            )
        t_replies = time.monotonic()
        latency = _latency_split(accepted, float(train_config["sent-at"]), time.time())
        if secagg is not None:
            new_arrays = secure_arrays
        else:
            new_arrays, _ = strategy.aggregate_train(rnd, accepted)
        if new_arrays is None:
            raise FederationError(f"round {rnd}: the strategy produced no aggregate")
        arrays = new_arrays
        set_weights(model, arrays.to_numpy_ndarrays())
        t_eval = time.monotonic()
        metrics = usecase.evaluate(model, groups)
        t_end = time.monotonic()
        client = _client_metrics(accepted)
        if spec.federated_evaluation:  # the clients score the new model on their own data
            client |= federated_eval.evaluate_on_clients(
                grid, clients, live_grid.get_node_ids(), arrays, spec, rnd
            )
        compute = [float(m.content.metric_records["metrics"].get("compute-seconds", 0.0)) for m in accepted]
        round_stats = {
            # train phase: from sending the global model until the last reply arrived
            "train_phase_seconds": t_replies - t_round,
            "aggregate_seconds": t_eval - t_replies,
            "eval_seconds": t_end - t_eval,
            "round_seconds": t_end - t_round,
            "clients_ok": float(len(accepted)),
            "clients_failed": float(len(failed)),
            "clients_dropped": float(len(got.dropped)),
            "clients_timed_out": float(len(got.timed_out)),
            "updates_rejected": float(len(screened.rejected)),
            "client_compute_seconds_max": max(compute) if compute else 0.0,
            **latency,
            # model bytes on the wire: the global model to each client, the updates back
            # (under SecAgg+ the stage messages carry no "arrays" record: not counted)
            "bytes_sent": float(sum(m.content["arrays"].count_bytes() for m in messages)),
            "bytes_received": float(
                sum(m.content["arrays"].count_bytes() for m in ok if "arrays" in m.content)
            ),
        }
        if spec.differential_privacy is not None:
            round_stats.update(privacy.spent(strategy))
        for cid, _reason in screened.rejected:
            round_stats[f"update_rejected_client{'unknown' if cid is None else cid}"] = 1.0
        done = Checkpoint(
            session_id=spec.session_id,
            mlflow_run_id=spec.mlflow_run_id,
            round=rnd,
            weights_file="",
            metrics={**metrics, **client, **round_stats},
            norm_history=screened.norms or norm_history,
            elapsed_seconds=time.monotonic() - t0,
        )
        ckpt = _checkpoint_and_log(out_dir, tracker, done, get_weights(model), strategy)
        norm_history = ckpt.norm_history
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

    if secagg is not None:
        secagg.close()
    if stop_reason is not None:
        tracker.tag("kosmos.stop_reason", stop_reason)
        append_jsonl(progress, {"event": "stopped", "round": completed, "reason": stop_reason})
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
        **({"reason": stop_reason, "stop_reason": stop_reason} if stop_reason is not None else {}),
    }


def registered_params(usecase: Any, given: dict[str, Any]) -> dict[str, Any]:
    """The use-case parameters the model was trained with, defaults resolved, so ``predict``
    prepares inputs and post-processes exactly as in training even after a default changes;
    ``cache_dir`` is a host-local path and stays out."""
    params = getattr(usecase, "params", None)
    if params is None or not hasattr(params, "model_dump"):
        return dict(given)
    return {k: v for k, v in params.model_dump(mode="json").items() if k != "cache_dir"}


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
        "kosmos_usecase_params": json.dumps(registered_params(usecase, spec.usecase_params)),
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


def _coordinator_gone(pid: int | None) -> bool:
    import psutil

    return pid is not None and not psutil.pid_exists(pid)


def _watch_coordinator(pid: int | None, out_dir: Path) -> None:
    """Exit at once when the KOSMoS server process dies or marks the session interrupted (a
    graceful stop), so that an orphaned ServerApp never logs a round, finishes the session or
    fails the MLflow run that a resumed session will continue."""
    marker = out_dir / INTERRUPTED_FILE

    def watch() -> None:
        while not _coordinator_gone(pid) and not marker.exists():
            time.sleep(0.2)
        log.warning("the KOSMoS server (pid %s) stopped or is gone; the session stays resumable", pid)
        os._exit(3)

    threading.Thread(target=watch, name="coordinator-watch", daemon=True).start()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Flower entry point: read the session spec, run it, always leave a result document."""
    spec = SessionSpec.read(str(context.run_config["session-file"]))
    out_dir = Path(spec.out_dir)
    logging.basicConfig(level=logging.INFO)
    use_fast_object_pulls()  # replies' arrays: no 1 s first retry (see fl/object_pulls.py)
    _watch_coordinator(spec.coordinator_pid, out_dir)
    try:
        result = run_session(grid, spec, context)
    except Exception as exc:
        if _coordinator_gone(spec.coordinator_pid) or (out_dir / INTERRUPTED_FILE).exists():
            # the server crashed or stopped: leave the session resumable (no result, run not failed)
            os._exit(3)
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
