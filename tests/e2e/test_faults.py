"""Fault injection with real processes: a client killed mid-round, a server killed mid-session, a
client that sends poisoned updates. Each runs a real server (SuperLink, ServerApp) and real clients
(SuperNodes, ClientApps) over loopback with a real MLflow store, on tiny generated bearings."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from mlflow.tracking import MlflowClient

from kosmos_fl.fl.tracking import tracking_uri
from kosmos_fl.localfed import LocalFederation as Federation

pytestmark = pytest.mark.e2e

#: Flower reports a SIGKILLed SuperNode only after two 30 s heartbeat intervals.
FLOWER_DETECTION_SECONDS = 60.0
#: Generous: on a machine shared with other heavy jobs the server's start-up alone can take minutes.
START_TIMEOUT = 300.0


def _server(data: Path, **values: Any) -> dict[str, Any]:
    return {
        "data_path": str(data),
        "test_bearings": ["Bearing1_3"],
        "mlflow_experiment_name": "faults",
        "usecase": {"name": "BearingUseCase", "broadcast_params": {"model": "ffnn"}},
        "training": {"local_epochs": 1, "batch_size": 32},
        **values,
    }


def _client(data: Path, bearing: str) -> dict[str, Any]:
    # retry_attempts: the clients outlive the server's restart (default: they give up after ~2 min)
    return {
        "data_path": str(data), "bearings": [bearing], "torch_threads": 1, "retry_max": 2.0,
        "retry_attempts": "forever",
    }  # fmt: skip


def _events(fed: Federation) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for path in sorted((fed.root / "server" / "sessions").glob("*/progress.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
    return rows


def _wait_event(fed: Federation, pred: Any, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for ev in _events(fed):
            if pred(ev):
                return ev
        assert fed.server is not None and fed.server.alive(), fed.server.tail(30) if fed.server else ""
        time.sleep(0.2)
    logs = "\n".join(f"--- {p.name}\n{p.tail(20)}" for p in fed.procs)
    raise AssertionError(f"event not seen within {timeout} s:\n{logs}")


def _steps(ml: MlflowClient, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in ml.get_metric_history(run_id, key))


def _metric(ml: MlflowClient, run_id: str, key: str, step: int) -> float:
    values = [m.value for m in ml.get_metric_history(run_id, key) if m.step == step]
    assert len(values) == 1, (key, step, values)
    return values[0]


def test_client_killed_mid_round_session_completes_with_quorum_and_client_rejoins_later(
    federation: Federation, generated_bearings: Path
) -> None:
    federation.start_server(
        timeout=START_TIMEOUT,
        **_server(generated_bearings, num_clients=3, min_fit_clients=2, n_federated_train_epoch=2),
        round_timeout=300,
    )
    a = federation.start_client("site-a", once=False, **_client(generated_bearings, "Bearing1_1"))
    b = federation.start_client("site-b", once=False, **_client(generated_bearings, "Bearing2_1"))
    # site-c holds round 1 open (its ClientApp sleeps), so the kill surely lands mid-round
    c = federation.start_client(
        "site-c", extra_env={"KOSMOS_FL_FAULT": "delay:120"}, **_client(generated_bearings, "Bearing1_2")
    )
    _wait_event(federation, lambda e: e.get("event") == "round_started" and e["round"] == 1, 480)
    time.sleep(4.0)  # every SuperNode pulled its TRAIN message by now (they poll every 3 s)
    killed_at = time.monotonic()
    federation.kill(c)  # SIGKILL the whole site: client, SuperNode, ClientApp

    round1 = _wait_event(federation, lambda e: e.get("event") == "round" and e.get("round") == 1, 120)
    noticed = time.monotonic() - killed_at
    assert noticed < FLOWER_DETECTION_SECONDS / 2, f"round 1 ended {noticed:.1f} s after the kill"
    assert round1["clients_ok"] == 2 and round1["clients_dropped"] == 1, round1

    done = federation.wait_sessions(1, timeout=480)[0]
    assert done["status"] == "completed", done
    ml = MlflowClient(tracking_uri=tracking_uri(str(federation.root / "mlruns")))
    run = ml.get_run(done["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["min_fit_clients"] == "2"
    assert _steps(ml, run.info.run_id, "RMSE") == [0, 1, 2]
    # round 2 went only to the two living clients (the dead node is still listed by Flower)
    assert _metric(ml, run.info.run_id, "clients_ok", 2) == 2
    assert _metric(ml, run.info.run_id, "clients_dropped", 2) == 0
    assert _metric(ml, run.info.run_id, "clients_timed_out", 2) == 0

    # the site comes back and joins the next session with the two that stayed
    federation.start_client("site-c", **_client(generated_bearings, "Bearing1_2"))
    second = federation.wait_sessions(2, timeout=480)[1]
    assert second["status"] == "completed", second
    assert _metric(ml, second["mlflow_run_id"], "clients_ok", 1) == 3
    assert a.alive() and b.alive()


def test_quorum_lost_ends_the_session_quickly_with_a_clear_status(
    federation: Federation, generated_bearings: Path
) -> None:
    federation.start_server(
        timeout=START_TIMEOUT, **_server(generated_bearings, num_clients=2, n_federated_train_epoch=2)
    )
    federation.start_client("site-a", **_client(generated_bearings, "Bearing1_1"))
    b = federation.start_client(
        "site-b", extra_env={"KOSMOS_FL_FAULT": "delay:120"}, **_client(generated_bearings, "Bearing2_1")
    )
    _wait_event(federation, lambda e: e.get("event") == "round_started" and e["round"] == 1, 480)
    killed_at = time.monotonic()
    federation.kill(b)
    done = federation.wait_sessions(1, timeout=480)[0]
    assert time.monotonic() - killed_at < FLOWER_DETECTION_SECONDS / 2
    assert done["status"] == "failed"
    assert "fewer than min_fit_clients=2" in done["reason"] and "disconnected" in done["reason"], done
    ml = MlflowClient(tracking_uri=tracking_uri(str(federation.root / "mlruns")))
    run = ml.get_run(done["mlflow_run_id"])
    assert run.info.status == "FAILED"
    assert run.data.tags["kosmos.status"] == "failed"
    assert "min_fit_clients=2" in run.data.tags["kosmos.failure_reason"]


def test_poisoned_updates_are_rejected_and_session_completes(
    federation: Federation, generated_bearings: Path
) -> None:
    federation.start_server(
        timeout=START_TIMEOUT,
        **_server(generated_bearings, num_clients=3, min_fit_clients=1, n_federated_train_epoch=2),
    )
    federation.start_client("honest", **_client(generated_bearings, "Bearing1_1"))
    federation.start_client(
        "nan", extra_env={"KOSMOS_FL_FAULT": "nan"}, **_client(generated_bearings, "Bearing2_1")
    )
    federation.start_client(
        "huge", extra_env={"KOSMOS_FL_FAULT": "huge"}, **_client(generated_bearings, "Bearing1_2")
    )
    done = federation.wait_sessions(1, timeout=480)[0]
    assert done["status"] == "completed", done

    rejected = [e for e in _events(federation) if e.get("event") == "rejected"]
    assert sorted(e["round"] for e in rejected) == [1, 1, 2, 2]
    reasons = " | ".join(e["reason"] for e in rejected)
    assert "NaN/Inf" in reasons and "median of the others" in reasons
    names = json.loads(next((federation.root / "server" / "sessions").glob("*/clients.json")).read_text())
    ids = {row["name"]: row["client_id"] for row in names}
    assert {e["client"] for e in rejected} == {ids["nan"], ids["huge"]}

    ml = MlflowClient(tracking_uri=tracking_uri(str(federation.root / "mlruns")))
    run_id = done["mlflow_run_id"]
    for step in (1, 2):
        assert _metric(ml, run_id, "updates_rejected", step) == 2
        assert _metric(ml, run_id, "clients_ok", step) == 1
        assert _metric(ml, run_id, f"update_rejected_client{ids['nan']}", step) == 1
    # the global model stayed sane: the honest client's update alone was aggregated
    rmse = _metric(ml, run_id, "RMSE", 2)
    assert rmse == rmse and rmse < 1e3


@pytest.mark.parametrize("how", ["crash", "stop"])
def test_server_killed_mid_session_resumes_into_the_same_run(
    federation: Federation, generated_bearings: Path, how: str
) -> None:
    """``crash``: SIGKILL of the server process; ``stop``: SIGTERM (an operator's restart)."""
    config = _server(generated_bearings, num_clients=2, n_federated_train_epoch=3)
    server = federation.start_server(timeout=START_TIMEOUT, **config)
    slow = {"KOSMOS_FL_FAULT": "delay:2"}  # keeps each round open a little, so the kill lands mid-session
    federation.start_client("site-a", extra_env=slow, **_client(generated_bearings, "Bearing1_1"))
    federation.start_client("site-b", extra_env=slow, **_client(generated_bearings, "Bearing2_1"))
    _wait_event(federation, lambda e: e.get("event") == "round" and e.get("round") == 1, 480)

    server_tree = psutil.Process(server.proc.pid).children(recursive=True)
    # a ServerApp forked from the warm template carries Flower's name, not its command line
    running = [f"{p.name()} {' '.join(p.cmdline())}".lower() for p in server_tree]
    assert any("serverapp" in c for c in running), f"no ServerApp running: {running}"
    if how == "crash":
        federation.kill(server, tree=False)  # a crash of the server process alone
    else:
        server.stop(timeout=30)  # SIGTERM: graceful shutdown in the middle of the session
    _, alive = psutil.wait_procs(server_tree, timeout=10)
    orphans = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    for p in orphans:  # never leak them, even when the assertion fails
        p.kill()
    assert orphans == [], "processes outlived the killed server (SuperLink / ServerApp orphans)"

    ml = MlflowClient(tracking_uri=tracking_uri(str(federation.root / "mlruns")))
    (interrupted,) = ml.search_runs([ml.get_experiment_by_name("faults").experiment_id])
    assert interrupted.info.status == "RUNNING", "an interrupted session must not be failed"
    assert not list((federation.root / "server" / "sessions").glob("*/result.json"))
    if how == "stop":
        assert interrupted.data.tags["kosmos.status"] == "interrupted"

    federation.start_server(timeout=START_TIMEOUT, **config, resume=True)
    done = federation.wait_sessions(1, timeout=480)[0]
    assert done["status"] == "completed", done

    runs = ml.search_runs([ml.get_experiment_by_name("faults").experiment_id])
    assert [r.info.run_id for r in runs] == [done["mlflow_run_id"]], "resume must not start a new run"
    run = runs[0]
    assert run.info.status == "FINISHED"
    resumed_after = int(run.data.tags["kosmos.resumed_after_round"])
    assert 1 <= resumed_after < 3
    for key in ("RMSE", "MAE", "RMSE_Bearing1_3"):
        assert _steps(ml, run.info.run_id, key) == [0, 1, 2, 3], key
    for key in ("train_loss", "round_seconds", "clients_ok"):
        assert _steps(ml, run.info.run_id, key) == [1, 2, 3], key
    events = _events(federation)
    assert [e["round"] for e in events if e.get("event") == "resumed"] == [resumed_after]
