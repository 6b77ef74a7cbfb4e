"""The Flower ServerApp of a KOSMoS session: rounds, central evaluation, MLflow, model registry.

Runs inside Flower's runtime (spawned by the SuperLink for each session). It drives the rounds
itself instead of ``Strategy.start`` so that it can enforce a quorum, fail loudly on a round without
updates, and write progress that the coordinator and the demo read live. Aggregation is delegated to
the configured ``flwr.serverapp.strategy`` class.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from pathlib import Path
from typing import Any, cast

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.exception import PrivacyBudgetExhausted

from kosmos_fl.errors import FederationError, KosmosError, StorageError
from kosmos_fl.fl import strategies
from kosmos_fl.fl.apps import model_registry
from kosmos_fl.fl.flower_runtime.object_pulls import use_fast_object_pulls
from kosmos_fl.fl.rounds import checkpoint, federated_eval
from kosmos_fl.fl.rounds.checkpoint import Checkpoint
from kosmos_fl.fl.rounds.liveness import (
    LiveGrid,
    MemberGrid,
    SessionClients,
    quorum_lost_message,
    wait_for_nodes,
)
from kosmos_fl.fl.rounds.round_stats import (
    RoundTimes,
    client_examples,
    client_metrics,
    round_statistics,
)
from kosmos_fl.fl.rounds.train_round import RoundContext, RoundResult, plain_round, secure_round
from kosmos_fl.fl.session import (
    ResumedEvent,
    RoundEvent,
    SessionFolder,
    SessionSpec,
    StoppedEvent,
)
from kosmos_fl.fl.tracking import SessionTracker, params_2021, session_params
from kosmos_fl.ml.models import count_parameters
from kosmos_fl.ml.train import get_weights, pack_weights, seed_everything, set_weights, trainable_mask
from kosmos_fl.usecases import load_usecase
from kosmos_fl.usecases.base import UseCase

log = logging.getLogger("kosmos_fl.server_app")

#: Seconds a finished session waits for its tracking (model registration) while MLflow answers;
#: while MLflow fails it stops waiting after a few seconds (see ``Background.flush``).
FINISH_WAIT = 600.0

app = ServerApp()


def _checkpoint_and_log(
    out_dir: Path, tracker: SessionTracker, ckpt: Checkpoint, weights: list[np.ndarray], strategy: Any
) -> Checkpoint:
    """Checkpoint first, then the tracking outbox, then flag as logged: a crash anywhere in between
    neither loses nor duplicates the round's metrics on resume (``has_step`` reads the outbox)."""
    ckpt = checkpoint.save(out_dir, ckpt, weights, strategy)
    tracker.metrics(ckpt.metrics, step=ckpt.round)
    return checkpoint.mark_logged(out_dir, ckpt)


def _start_or_resume(
    spec: SessionSpec,
    tracker: SessionTracker,
    usecase: UseCase,
    groups: dict[str, Any],
    model: Any,
    strategy: Any,
) -> tuple[Checkpoint, Any, float, dict[str, float]]:
    """Round 0 of a new session (params, model summary, first evaluation and checkpoint) or the
    state of an interrupted one (weights, strategy state, metrics not yet logged). Returns the
    checkpoint, the strategy, the session's start on the monotonic clock and the current metrics."""
    out_dir = Path(spec.out_dir)
    folder = SessionFolder(out_dir)
    ckpt = checkpoint.load(out_dir)
    if ckpt is None:
        tracker.params(session_params(spec, list(groups), type(model).__name__, count_parameters(model)))
        tracker.params(params_2021(spec, model, usecase))  # the 2021 names, for old dashboards
        if spec.differential_privacy is not None:
            from kosmos_fl.fl.rounds import privacy

            tracker.params(privacy.params(spec))
        tracker.tag("kosmos.session_id", spec.session_id)
        folder.model_summary_file.write_text(str(model), encoding="utf-8")
        tracker.artifact(folder.model_summary_file)
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
        folder.append_progress(RoundEvent(round=0, metrics=metrics, seconds=0.0))
    else:
        # resume: a new Flower run continues from the last completed round of this session
        set_weights(model, checkpoint.load_weights(out_dir, ckpt))
        strategy = checkpoint.load_strategy(out_dir, ckpt) or strategy
        if not ckpt.metrics_logged:
            if not tracker.has_step(ckpt.metrics, ckpt.round):
                tracker.metrics(ckpt.metrics, step=ckpt.round)
            ckpt = checkpoint.mark_logged(out_dir, ckpt)
        log.info("resuming session %s after round %d", spec.session_id, ckpt.round)
        folder.append_progress(ResumedEvent(round=ckpt.round))
        t0 = time.monotonic() - ckpt.elapsed_seconds
        metrics = usecase.evaluate(model, groups)
    return ckpt, strategy, t0, metrics


def _prepare(spec: SessionSpec) -> tuple[SessionTracker, UseCase, dict[str, Any], Any, Any]:
    """Tracker, use case, evaluation data, model and strategy (wrapped for DP) of a session."""
    tracker = SessionTracker(spec, handlers={"model": model_registry.register_saved})
    seed_everything(spec.seed)
    usecase = load_usecase(spec.usecase_name, spec.usecase_params, version=spec.usecase_version)
    groups = usecase.eval_datasets(Path(spec.data_path), spec.test_names)
    model = usecase.build_model()
    strategy = strategies.build(
        spec.strategy_name, spec.strategy_params, spec.num_clients, spec.min_fit_clients
    )
    if spec.differential_privacy is not None:  # clipping + noise + accountant: fl/rounds/privacy.py
        from kosmos_fl.fl.rounds import privacy

        strategy = privacy.build_strategy(spec)
    return tracker, usecase, groups, model, strategy


def _train_config(spec: SessionSpec) -> ConfigRecord:
    return ConfigRecord(
        {
            "local-epochs": spec.local_epochs,
            "learning-rate": spec.learning_rate,
            "batch-size": spec.batch_size,
            "seed": spec.seed,
        }
    )


def _record_round(
    r: RoundContext,
    tracker: SessionTracker,
    rnd: int,
    res: RoundResult,
    model: Any,
    metrics: dict[str, float],
    client: dict[str, float],
    times: RoundTimes,
    norm_history: list[float],
    t0: float,
) -> Checkpoint:
    """Round statistics, checkpoint, MLflow metrics and the progress event of a finished round."""
    spec = r.spec
    round_stats = round_statistics(
        times,
        sent=res.sent,
        ok=res.ok,
        accepted=res.accepted,
        failed=res.failed,
        dropped=res.dropped,
        timed_out=res.timed_out,
        rejected=len(res.rejected),
        latency=res.latency,
    )
    if spec.differential_privacy is not None:
        from kosmos_fl.fl.rounds import privacy

        round_stats.update(privacy.spent(r.strategy))
    for cid, _reason in res.rejected:
        round_stats[f"update_rejected_client{'unknown' if cid is None else cid}"] = 1.0
    done = Checkpoint(
        session_id=spec.session_id,
        mlflow_run_id=spec.mlflow_run_id,
        round=rnd,
        weights_file="",
        metrics={**metrics, **client, **round_stats},
        norm_history=res.norms or norm_history,
        elapsed_seconds=time.monotonic() - t0,
    )
    ckpt = _checkpoint_and_log(r.folder.path, tracker, done, get_weights(model), r.strategy)
    r.folder.append_progress(
        RoundEvent.model_validate(
            {
                "round": rnd,
                "metrics": metrics,
                "client": client,
                "examples": client_examples(res.accepted),
                "seconds": time.monotonic() - t0,
                "at": time.time(),
                **round_stats,
            }
        )
    )
    return ckpt


def _finish(
    spec: SessionSpec,
    tracker: SessionTracker,
    usecase: UseCase,
    groups: dict[str, Any],
    model: Any,
    completed: int,
    metrics: dict[str, float],
    stop_reason: str | None,
) -> dict[str, Any]:
    """Plots and the registered model of the finished session; returns the result document."""
    folder = SessionFolder(Path(spec.out_dir))
    if stop_reason is not None:
        tracker.tag("kosmos.stop_reason", stop_reason)
        folder.append_progress(StoppedEvent(round=completed, reason=stop_reason))
    plot_paths = model_registry.plots(usecase, model, groups, folder.plots_dir)
    for p in plot_paths:
        tracker.artifact(p, "plots")
    entry = model_registry.save_for_registry(spec, usecase, model, groups, folder.model_dir)
    eval_set, metric, margin = list(groups), spec.champion_metric, spec.champion_margin
    tracker.queue({**entry, "champion": {"metrics": metrics, "eval_set": eval_set, "metric": metric,
                                         "margin": margin}})  # fmt: skip
    tracker.finish("completed")
    # MLflow up: wait for the registration (the result names the version); down: the coordinator
    # registers the model and ends the run once MLflow is back (issue 21)
    delivered = tracker.flush(timeout=FINISH_WAIT)
    registered = tracker.results().get("model", {})
    if not delivered:
        log.warning(
            "MLflow did not take the session's tracking yet; the server delivers it (model, run "
            "status) once MLflow answers: %d entries in %s",
            tracker.outbox.backlog(),
            tracker.outbox.path,
        )
    return {
        "status": "completed",
        "rounds_completed": completed,
        "final_metrics": metrics,
        "model_uri": registered.get("model_uri"),
        "registered_model": spec.registered_model_name,
        "registered_version": registered.get("version"),
        "champion": registered.get("champion"),
        "champion_reason": registered.get("champion_reason", "pending: MLflow unreachable"),
        "tracking": "delivered" if delivered else "pending",
        "plots": [str(p) for p in plot_paths],
        **({"reason": stop_reason, "stop_reason": stop_reason} if stop_reason is not None else {}),
    }


def run_session(grid: Grid, spec: SessionSpec, context: Context | None = None) -> dict[str, Any]:
    """Run all rounds of one session; returns the result document."""
    tracker, usecase, groups, model, strategy = _prepare(spec)
    try:
        return _run_rounds(grid, spec, context, tracker, usecase, groups, model, strategy)
    finally:
        tracker.close()  # what is left in the outbox, the coordinator delivers


def _run_rounds(
    grid: Grid,
    spec: SessionSpec,
    context: Context | None,
    tracker: SessionTracker,
    usecase: UseCase,
    groups: dict[str, Any],
    model: Any,
    strategy: Any,
) -> dict[str, Any]:
    """The session after its preparation: round 0 or the resume, the rounds, the finish."""
    folder = SessionFolder(Path(spec.out_dir))
    ckpt, strategy, t0, metrics = _start_or_resume(spec, tracker, usecase, groups, model, strategy)

    clients = SessionClients(folder.path, spec.num_clients)
    # the SuperLink also knows the kept SuperNodes of clients waiting for a later session
    grid = cast(Grid, MemberGrid(grid, clients))
    if ckpt.round < spec.num_rounds:
        wait_for_nodes(grid, clients, spec.min_fit_clients, spec.join_timeout)
    r = RoundContext(grid, LiveGrid(grid, clients), clients, spec, folder, strategy,
                     _train_config(spec), trainable_mask(model))  # fmt: skip
    arrays = ArrayRecord(pack_weights(get_weights(model)))  # one vector per message: fewer objects
    secagg = None
    if spec.secure_aggregation is not None:  # SecAgg+ rounds: fl/rounds/secure.py
        from kosmos_fl.fl.rounds.secure import SecureRounds

        assert context is not None
        secagg = SecureRounds(grid, context, spec, r.train_config)
        if ckpt.round == 0:
            tracker.params(secagg.params())
    stop_reason = None
    norm_history = list(ckpt.norm_history)
    completed = ckpt.round
    recorded = time.monotonic()  # the previous round's record: round_seconds is wall time
    for rnd in range(ckpt.round + 1, spec.num_rounds + 1):
        t_round = time.monotonic()
        alive = min(clients.alive_count(), len(r.live_grid.get_node_ids()))
        if alive < spec.min_fit_clients:
            raise FederationError(
                quorum_lost_message(f"before round {rnd}", alive, spec.min_fit_clients, clients.dead())
            )
        r.train_config["sent-at"] = time.time()  # wall clock: the clients report theirs (latency split)
        if secagg is not None:
            res = secure_round(r, secagg, rnd, arrays)
        else:
            try:
                res = plain_round(r, rnd, arrays, norm_history)
            except PrivacyBudgetExhausted as exc:  # stop cleanly, keep the last model
                from kosmos_fl.fl.rounds import privacy

                stop_reason = privacy.budget_reason(exc, rnd, strategy)
                log.warning("%s", stop_reason)
                break
        if res.arrays is None:
            raise FederationError(f"round {rnd}: the strategy produced no aggregate")
        arrays = res.arrays
        set_weights(model, arrays.to_numpy_ndarrays())
        t_eval = time.monotonic()
        metrics = usecase.evaluate(model, groups)
        t_end = time.monotonic()
        client = client_metrics(res.accepted)
        if spec.federated_evaluation:  # the clients score the new model on their own data
            client |= federated_eval.evaluate_on_clients(
                grid, clients, r.live_grid.get_node_ids(), arrays, spec, rnd
            )
        now = time.monotonic()
        times = RoundTimes(t_round, res.t_replies, t_eval, t_end, recorded, now, tracker.take_seconds())
        recorded = now
        ckpt = _record_round(r, tracker, rnd, res, model, metrics, client, times, norm_history, t0)
        norm_history = ckpt.norm_history
        completed = rnd

    if secagg is not None:
        secagg.close()
    return _finish(spec, tracker, usecase, groups, model, completed, metrics, stop_reason)


def _coordinator_gone(pid: int | None) -> bool:
    import psutil

    return pid is not None and not psutil.pid_exists(pid)


def _watch_coordinator(pid: int | None, out_dir: Path) -> None:
    """Exit at once when the KOSMoS server process dies or marks the session interrupted (a
    graceful stop), so that an orphaned ServerApp never logs a round, finishes the session or
    fails the MLflow run that a resumed session will continue."""
    marker = SessionFolder(out_dir).interrupted_file

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
    folder = SessionFolder(out_dir)
    logging.basicConfig(level=logging.INFO)
    use_fast_object_pulls()  # replies' arrays: no 1 s first retry (see fl/flower_runtime/object_pulls.py)
    _watch_coordinator(spec.coordinator_pid, out_dir)
    try:
        result = run_session(grid, spec, context)
    except Exception as exc:
        if _coordinator_gone(spec.coordinator_pid) or folder.interrupted_file.exists():
            # the server crashed or stopped: leave the session resumable (no result, run not failed)
            os._exit(3)
        reason = str(exc) if isinstance(exc, KosmosError) else f"{type(exc).__name__}: {exc}"
        try:
            folder.write_result({"status": "failed", "reason": reason, "traceback": traceback.format_exc()})
        except StorageError as disk:  # a full disk must not hide the reason, nor skip the MLflow tag
            log.error("session failed: %s; its result could not be written either: %s", reason, disk)
        try:  # into the outbox: the coordinator delivers it once MLflow answers, even after a restart
            from kosmos_fl.fl.tracking import queue_failure

            queue_failure(out_dir, spec.mlflow_run_id, reason)
        except Exception:
            log.exception("could not record the MLflow run's failure")
        raise
    folder.write_result(result)
