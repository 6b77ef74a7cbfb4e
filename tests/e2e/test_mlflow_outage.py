"""Issue 21, point 1: an MLflow outage longer than MLflow's own HTTP retry budget neither blocks nor
fails training. A real ``mlflow server`` on a loopback port is SIGKILLed after round 1 and stays down
until the session has completed; once it is back, every metric is in MLflow exactly once, the model
is registered and the run is FINISHED. Real server and clients, generated bearings."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from kosmos_fl.fl.flower_runtime.runtime import ManagedProcess, free_port
from kosmos_fl.fl.session import SessionFolder
from kosmos_fl.fl.tracking import Outbox
from kosmos_fl.localfed import LocalFederation as Federation

pytestmark = pytest.mark.e2e

START_TIMEOUT = 300.0
#: MLflow's client gives up after about 1 + 2 s here (its default is 7 retries, minutes): the
#: outage below is many times that budget.
SHORT_BUDGET = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
}
ROUNDS = 4


class MlflowServer:
    """``mlflow server`` on 127.0.0.1 with a SQLite store in ``root``; killed and started again
    on the same port and store, as a crashed tracking server that comes back."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.port = free_port()
        self.proc: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> None:
        args = [
            sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
            "--workers", "1", "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
            "--artifacts-destination", str(self.root / "artifacts"),
        ]  # fmt: skip
        self.proc = ManagedProcess.start("mlflow", args, self.env, self.root / "mlflow.log")
        deadline = time.monotonic() + timeout
        while not self.up():
            assert self.proc.alive(), self.proc.tail(30)
            assert time.monotonic() < deadline, f"mlflow server did not start:\n{self.proc.tail(30)}"
            time.sleep(0.5)

    def up(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.proc.pid, signal.SIGKILL)  # the server and its workers
        self.proc.proc.wait(10)
        assert not self.up()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


@pytest.fixture
def mlflow_server(tmp_path: Path, clean_env: dict[str, str]) -> Iterator[MlflowServer]:
    server = MlflowServer(tmp_path / "mlflow-server", clean_env)
    server.root.mkdir()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def short_budget_env(clean_env: dict[str, str]) -> dict[str, str]:
    clean_env.update(SHORT_BUDGET)
    return clean_env


def _rounds_done(fed: Federation) -> list[int]:
    out = []
    for path in (fed.root / "server" / "sessions").glob("*/progress.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            with_round = json.loads(line)
            if with_round.get("event") == "round" and with_round.get("round", 0) > 0:
                out.append(int(with_round["round"]))
    return out


def _wait(pred: Any, timeout: float, what: str, fed: Federation) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.name}\n{p.tail(30)}" for p in fed.procs)
            raise AssertionError(f"{what} not within {timeout:.0f} s:\n{logs}")
        time.sleep(0.5)


@pytest.mark.parametrize("restart", [False, True], ids=["same-server", "server-restarted"])
def test_mlflow_down_longer_than_its_retry_budget_does_not_fail_the_session(
    mlflow_server: MlflowServer,
    short_budget_env: dict[str, str],
    generated_bearings: Path,
    tmp_path: Path,
    restart: bool,
) -> None:
    """``server-restarted``: the KOSMoS server is stopped while MLflow is still down and started
    again after MLflow is back; the new server process delivers what the old one could not."""
    fed = Federation(tmp_path / "fed", short_budget_env)
    try:
        _outage(fed, mlflow_server, generated_bearings, restart)
    finally:
        assert fed.stop() == [], "processes outlived the federation"


def _outage(fed: Federation, mlflow_server: MlflowServer, data: Path, restart: bool) -> None:
    config = dict(
        data_path=str(data),
        test_bearings=["Bearing1_3"],
        mlflow_server_address=mlflow_server.url,
        mlflow_experiment_name="outage",
        registered_model_name="outage-model",
        num_clients=2,
        n_federated_train_epoch=ROUNDS,
        usecase={"name": "BearingUseCase", "broadcast_params": {"model": "ffnn"}},
        training={"local_epochs": 1, "batch_size": 32},
    )
    fed.start_server(timeout=START_TIMEOUT, **config)
    slow = {"KOSMOS_FL_FAULT": "delay:2"}  # each round takes a few seconds: the outage spans rounds
    client = {"torch_threads": 1, "retry_max": 2.0, "data_path": str(data)}
    fed.start_client("site-a", extra_env=slow, bearings=["Bearing1_1"], **client)
    fed.start_client("site-b", extra_env=slow, bearings=["Bearing2_1"], **client)
    _wait(lambda: 1 in _rounds_done(fed), 480, "round 1", fed)

    mlflow_server.kill()
    killed = time.monotonic()
    done = fed.wait_sessions(1, timeout=480)[0]
    down_for = time.monotonic() - killed
    assert done["status"] == "completed", done
    assert sorted(_rounds_done(fed)) == list(range(1, ROUNDS + 1))
    assert down_for > 3 * 3.0, f"the outage ({down_for:.1f} s) must outlast MLflow's retry budget"
    assert not mlflow_server.up()
    folder = next((fed.root / "server" / "sessions").iterdir())
    result = json.loads((folder / "result.json").read_text())
    assert result["tracking"] == "pending" and result["model_uri"] is None, result

    if restart:
        assert fed.server is not None
        fed.server.stop(timeout=30)  # the outbox outlives the server process
    mlflow_server.start()  # MLflow is back: the coordinator delivers the outbox
    if restart:
        fed.start_server(timeout=START_TIMEOUT, **config)
    ml = MlflowClient(tracking_uri=mlflow_server.url)
    run_id = done["mlflow_run_id"]
    outbox = Outbox(SessionFolder(folder))
    _wait(lambda: outbox.backlog() == 0, 240, "the outbox delivered", fed)
    assert ml.get_run(run_id).info.status == "FINISHED"

    run = ml.get_run(run_id)
    assert run.data.tags["kosmos.status"] == "completed"
    assert "kosmos.failure_reason" not in run.data.tags
    for key in ("RMSE", "MAE"):
        steps = [m.step for m in ml.get_metric_history(run_id, key)]
        assert sorted(steps) == list(range(ROUNDS + 1)), (key, steps)  # each round exactly once
    for key in ("train_loss", "round_seconds", "tracking_seconds", "clients_ok"):
        steps = [m.step for m in ml.get_metric_history(run_id, key)]
        assert sorted(steps) == list(range(1, ROUNDS + 1)), (key, steps)
    # round_seconds is wall time: the rounds add up to the session's time between them
    walls = sum(m.value for m in ml.get_metric_history(run_id, "round_seconds"))
    assert walls > ROUNDS * 2.0, walls  # each round waits at least the clients' 2 s delay
    versions = ml.search_model_versions("name='outage-model'")
    assert [(v.version, v.run_id) for v in versions] == [("1", run_id)]
    assert ml.get_model_version_by_alias("outage-model", "champion").version == "1"
    artifacts = {a.path for a in ml.list_artifacts(run_id)}
    assert {"plots", "model_summary.txt"} <= artifacts, artifacts
    state = outbox.read_state()
    assert state.refused == []
    assert state.results["model"]["model_uri"] == "models:/outage-model/1"
    result = json.loads((folder / "result.json").read_text())  # the result names the model now
    assert (result["tracking"], result["model_uri"], result["champion"]) == (
        "delivered",
        "models:/outage-model/1",
        True,
    ), result
