"""End to end: real FEMTO bearings replayed over the machine's Mosquitto to two KOSMoS clients,
which collect and label them, become eligible from that data alone and train a federated model
that the server evaluates on its test bearing (real processes, sockets, Flower, MLflow)."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from kosmos_fl.fl.tracking import tracking_uri
from kosmos_fl.localfed import CLI
from kosmos_fl.localfed import LocalFederation as Federation
from tests.edge.conftest import extract_bearing

pytestmark = [pytest.mark.e2e, pytest.mark.realdata]


@pytest.fixture(scope="module")
def femto(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Bearing3_1 (515 snapshots), Bearing2_2 (797) and the failure end of Bearing1_4 (the server's
    test bearing: its last 300 snapshots, whose RUL labels are the true ones)."""
    root = tmp_path_factory.mktemp("femto-edge")
    return {
        "Bearing3_1": extract_bearing("Learning_set_Bearing3_1.tar.xz", root / "a"),
        "Bearing2_2": extract_bearing("Learning_set_Bearing2_2.tar.xz", root / "b"),
        "Bearing1_4": extract_bearing("Full_Test_Set_Bearing1_4.tar.xz", root / "server", last=300),
    }


@pytest.fixture
def federation(tmp_path: Path, clean_env: dict[str, str]) -> Iterator[Federation]:
    fed = Federation(tmp_path, clean_env)
    yield fed
    assert fed.stop() == [], "processes outlived the federation"


def _client_states(fed: Federation) -> dict[str, dict]:
    return {c["name"]: c for c in (fed.status() or {}).get("clients", []) if c.get("name")}


def test_clients_collect_over_mqtt_become_eligible_and_train(
    federation: Federation, femto: dict[str, Path], shared_broker: str, clean_env: dict[str, str]
) -> None:
    federation.start_server(
        timeout=300,  # a busy shared machine can take minutes to import and start everything
        num_clients=2,
        n_federated_train_epoch=1,
        data_path=str(femto["Bearing1_4"].parent),
        test_bearings=["Bearing1_4"],
        mlflow_experiment_name="edge-e2e",
        usecase={"name": "BearingUseCase", "broadcast_params": {"model": "ffnn"}},
        training={"local_epochs": 1, "learning_rate": 0.003, "batch_size": 32},
    )
    run = uuid.uuid4().hex[:8]
    sites = {"site-a": ("press-a", "Bearing3_1", []), "site-b": ("press-b", "Bearing2_2", ["--stride", "2"])}
    configs = {}
    for name, (machine, _, _) in sites.items():
        edge = {
            "broker": shared_broker,
            "topics": [f"kosmos-e2e/{run}/{machine}"],
            "client_id": f"kosmos-e2e-{run}-{name}",
            "session_expiry": 300,
            "store_dir": str(federation.root / name / "edge"),
            "recheck_interval": 1.0,
            "criteria": {"min_histories": 1, "min_labelled_snapshots": 300},
        }
        configs[name] = edge
        federation.start_client(name, usecase={"name": "BearingUseCase", "params": {"model": "ffnn"}},
                                torch_threads=1, edge=edge)  # fmt: skip

    # nothing collected yet: both register, but as ineligible, and say why
    deadline = time.monotonic() + 90
    while True:
        states = _client_states(federation)
        if len(states) == 2 and all(s["state"] == "ineligible" for s in states.values()):
            break
        assert time.monotonic() < deadline, f"clients did not register as ineligible: {states}"
        time.sleep(0.3)
    for s in states.values():
        assert "0 of 1 complete run-to-failure histories" in s["reason"], s

    # the machines publish their bearings' lives (accelerated), each ending in a failure event
    replays = []
    for name, (machine, bearing, extra) in sites.items():
        args = [*CLI, "machine", "replay", str(femto[bearing]), "--broker", shared_broker, "--topic",
                configs[name]["topics"][0], "--machine-id", machine, "--speed", "5000", *extra]  # fmt: skip
        replays.append(
            subprocess.Popen(args, env=clean_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        )
    for proc in replays:
        out = proc.communicate(timeout=180)[0].decode()
        assert proc.returncode == 0, out
        assert "failure event" in out

    done = federation.wait_sessions(1, timeout=300)[0]
    assert done["status"] == "completed", done
    for proc in federation.procs[1:]:
        assert proc.proc.wait(60) == 0, proc.tail(40)

    for name in sites:
        log = " ".join((federation.root / "logs" / f"{name}.log").read_text().split())  # unwrap rich lines
        assert "criteria not met" in log and "now meets the criteria; registering again" in log, log[-3000:]
    # what each site holds, from its own store (the status command an operator would run)
    expected = {"site-a": ("Bearing3_1", 515), "site-b": ("Bearing2_2", 399)}
    for name, (bearing, n) in expected.items():
        cfg = federation.root / "config" / f"{name}.yaml"
        res = subprocess.run(
            [*CLI, "machine", "status", "-c", str(cfg)],
            env=clean_env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert res.returncode == 0, res.stderr
        doc = json.loads(res.stdout)
        assert doc["eligible"] is True, doc
        assert doc["summary"]["bearings"] == [bearing]
        assert doc["summary"]["labelled_snapshots"] == n
        assert doc["counters"]["bad"] == 0 and doc["counters"]["stored"] == n

    ml = MlflowClient(tracking_uri=tracking_uri(str(federation.root / "mlruns")))
    mlrun = ml.get_run(done["mlflow_run_id"])
    assert mlrun.info.status == "FINISHED"
    assert mlrun.data.params["test_bearings"] == "Bearing1_4"
    history = ml.get_metric_history(mlrun.info.run_id, "RMSE_Bearing1_4")
    assert sorted(m.step for m in history) == [0, 1]
    assert all(m.value == m.value and m.value >= 0 for m in history)
    for key in ("train_loss_client0", "train_loss_client1"):
        assert sorted(m.step for m in ml.get_metric_history(mlrun.info.run_id, key)) == [1]
