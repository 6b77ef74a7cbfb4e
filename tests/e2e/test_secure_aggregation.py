"""End to end: a session with SecAgg+ (real server, four real clients, real SuperLink/SuperNodes,
real MLflow store); one client drops out in the middle of a round and the model still improves."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from kosmos_fl.fl.session import read_progress
from kosmos_fl.fl.tracking import tracking_uri
from kosmos_fl.localfed import LocalFederation as Federation
from kosmos_fl.testing.faults import DROPOUT_ENV

pytestmark = pytest.mark.e2e

SITES = {
    "site-a": ["Bearing1_1"],
    "site-b": ["Bearing1_2"],
    "site-c": ["Bearing2_1"],
    "site-d": ["Bearing2_2"],
}


def test_secure_aggregation_survives_a_dropout_and_improves(
    federation: Federation, generated_bearings: Path
) -> None:
    federation.start_server(
        num_clients=4,
        n_federated_train_epoch=2,
        data_path=str(generated_bearings),
        test_bearings=["Bearing1_3", "Bearing2_3"],
        mlflow_experiment_name="secagg",
        usecase={"name": "BearingUseCase", "broadcast_params": {"model": "ffnn"}},
        training={"local_epochs": 3, "learning_rate": 0.01, "batch_size": 16},
        # 4 clients: shares for all, 3 needed to unmask; a round needs 3 survivors
        secure_aggregation={"num_shares": 1.0, "reconstruction_threshold": 3},
    )
    base_env = dict(federation.env)
    for name, units in SITES.items():
        # site-d has shared its keys in round 1, then its ClientApp fails while the others send
        # their masked updates: the server must rebuild site-d's masks from its neighbours' shares
        if name == "site-d":
            federation.env = {**base_env, DROPOUT_ENV: "1:collect_masked_vectors"}
        federation.start_client(name, data_path=str(generated_bearings), bearings=units, torch_threads=1)
        federation.env = base_env
    done = federation.wait_sessions(1, timeout=400)[0]
    assert done["status"] == "completed", done

    rounds = {r["round"]: r for r in read_progress(Path(done["progress"]))}
    assert sorted(rounds) == [0, 1, 2]
    assert rounds[1]["clients_failed"] == 1 and rounds[1]["clients_ok"] == 3, rounds[1]
    assert rounds[2]["clients_failed"] == 0 and rounds[2]["clients_ok"] == 4, rounds[2]
    rmse = [rounds[r]["metrics"]["RMSE"] for r in (0, 1, 2)]
    # the securely aggregated update of the 3 survivors already helps, and training goes on
    assert rmse[1] < 0.9 * rmse[0], rmse
    assert rmse[2] < 0.8 * rmse[0], rmse

    ml = MlflowClient(tracking_uri=tracking_uri(str(federation.root / "mlruns")))
    run = ml.get_run(done["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["secure_aggregation"] == "SecAgg+"
    assert run.data.params["secagg_reconstruction_threshold"] == "3"
    failed = {m.step: m.value for m in ml.get_metric_history(run.info.run_id, "clients_failed")}
    assert failed == {1: 1.0, 2: 0.0}
    assert sorted(m.step for m in ml.get_metric_history(run.info.run_id, "RMSE")) == [0, 1, 2]
    name, version = done["model_uri"].removeprefix("models:/").split("/")
    assert ml.get_model_version(name, version).run_id == run.info.run_id
    # the dropout really happened inside the client's SecAgg+ stage, not somewhere else
    log = (federation.root / "clients").rglob("supernode.log")
    assert any("drops out in round 1, stage collect_masked_vectors" in p.read_text() for p in log)
