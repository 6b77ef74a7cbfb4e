"""End to end: a real server and real clients (separate processes, real sockets, real Flower
SuperLink/SuperNodes, a real MLflow store) run a whole session on generated bearings."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from kosmos_fl.fl.tracking import tracking_uri
from kosmos_fl.localfed import LocalFederation as Federation

pytestmark = pytest.mark.e2e


def test_two_clients_two_rounds_end_to_end(federation: Federation, generated_bearings: Path) -> None:
    federation.start_server(
        num_clients=2,
        n_federated_train_epoch=2,
        data_path=str(generated_bearings),
        test_bearings=["Bearing1_3", "Bearing2_3"],
        mlflow_experiment_name="e2e",
        tags={"purpose": "e2e-test"},
        usecase={"name": "BearingUseCase", "broadcast_params": {"model": "ffnn"}},
        training={"local_epochs": 2, "learning_rate": 0.003, "batch_size": 16},
    )
    clients = [
        federation.start_client(
            "site-a", data_path=str(generated_bearings), bearings=["Bearing1_1", "Bearing1_2"]
        ),
        federation.start_client(
            "site-b", data_path=str(generated_bearings), bearings=["Bearing2_1", "Bearing2_2"]
        ),
    ]
    done = federation.wait_sessions(1, timeout=300)[0]
    assert done["status"] == "completed", done
    for c in clients:
        assert c.proc.wait(60) == 0, c.tail(30)

    # the session's ServerApp was forked from the server's warm template, not cold-started
    superlink_log = (federation.root / "server" / "logs" / "superlink.log").read_text()
    assert re.search(r"warm SuperExec: flwr-serverapp task \d+: forked from the template", superlink_log)
    assert "cold start" not in superlink_log

    # the SuperNodes' pulls after their replies were held until the next round's message existed,
    # instead of each node sleeping out Flower's 3 s idle interval (security/fleet_proxy.py)
    with urllib.request.urlopen(f"{federation.url}/metrics", timeout=10) as resp:
        scraped = resp.read().decode()
    held = re.search(r'^kosmos_fleet_held_pulls_total\{outcome="message"\} (\S+)$', scraped, re.M)
    assert held and float(held.group(1)) >= 1, [ln for ln in scraped.splitlines() if "held" in ln]

    uri = tracking_uri(str(federation.root / "mlruns"))
    ml = MlflowClient(tracking_uri=uri)
    run = ml.get_run(done["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["purpose"] == "e2e-test"
    assert run.data.params["num_clients"] == "2"
    assert run.data.params["strategy"] == "FedAvg"
    assert run.data.params["test_bearings"] == "Bearing1_3,Bearing2_3"
    for key in ("RMSE", "MAE", "PCC", "RMSE_Bearing1_3", "RMSE_Bearing2_3", "PCC_Bearing2_3"):
        steps = sorted(m.step for m in ml.get_metric_history(run.info.run_id, key))
        assert steps == [0, 1, 2], (key, steps)
    for key in ("train_loss", "train_loss_client0", "train_loss_client1"):
        steps = sorted(m.step for m in ml.get_metric_history(run.info.run_id, key))
        assert steps == [1, 2], (key, steps)
    arts = {a.path for a in ml.list_artifacts(run.info.run_id, "plots")}
    assert arts == {"plots/rul_Bearing1_3.png", "plots/rul_Bearing2_3.png"}

    name, version = done["model_uri"].removeprefix("models:/").split("/")
    mv = ml.get_model_version(name, version)
    assert mv.run_id == run.info.run_id
    assert str(ml.get_model_version_by_alias(name, "champion").version) == version  # the first one

    # the registered model predicts for any bearing folder, as CSV; a bare name means its champion
    res = federation.predict(name, generated_bearings)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert lines[0].startswith("bearing,rul_hours")
    assert len(lines) == 1 + 6
    assert all(float(line.split(",")[1]) == float(line.split(",")[1]) for line in lines[1:])
