"""End to end: a real server and two real clients (processes, sockets, Flower, MLflow) train the
turbofan use case on a generated C-MAPSS file; then ``kosmos-fl predict`` uses the registered model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from kosmos_fl.fl.tracking import tracking_uri
from kosmos_fl.localfed import LocalFederation
from kosmos_fl.usecases.turbofan import TurbofanUseCase

pytestmark = pytest.mark.e2e


@pytest.fixture
def federation(tmp_path: Path, clean_env: dict[str, str]) -> Iterator[LocalFederation]:
    fed = LocalFederation(tmp_path, clean_env)
    yield fed
    fed.stop()


def test_turbofan_session_and_predict(federation: LocalFederation, cmapss_train: Path) -> None:
    params = {"model": "cnn", "sequence_length": 20}
    clients, test = TurbofanUseCase(params).federation_split(cmapss_train, 2)
    federation.start_server(
        num_clients=2,
        n_federated_train_epoch=2,
        data_path=str(cmapss_train),
        test_units=test,
        mlflow_experiment_name="turbofan-e2e",
        usecase={"name": "TurbofanUseCase", "broadcast_params": params},
        training={"local_epochs": 1, "learning_rate": 0.003, "batch_size": 64},
    )
    procs = [
        federation.start_client(
            f"plant-{i}", data_path=str(cmapss_train), units=units, usecase={"name": "TurbofanUseCase"}
        )
        for i, units in enumerate(clients)
    ]
    done = federation.wait_sessions(1, timeout=300)[0]
    assert done["status"] == "completed", done
    for p in procs:
        assert p.proc.wait(60) == 0, p.tail(30)

    ml = MlflowClient(tracking_uri=tracking_uri(str(federation.root / "mlruns")))
    run = ml.get_run(done["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["usecase"] == "TurbofanUseCase"
    assert run.data.params["model"] == "CnnRul"
    assert run.data.params["test_bearings"] == ",".join(f"unit{u}" for u in test)
    per_unit = [f"{m}_unit{test[0]}" for m in ("RMSE", "MAE", "PHM08")]
    for key in ("RMSE", "MAE", "PHM08", "RMSE_last", "MAE_last", "PHM08_last", *per_unit):
        steps = sorted(m.step for m in ml.get_metric_history(run.info.run_id, key))
        assert steps == [0, 1, 2], (key, steps)
    rmse = {m.step: m.value for m in ml.get_metric_history(run.info.run_id, "RMSE")}
    assert rmse[2] < rmse[0], rmse  # two rounds of federated training help
    plots = {a.path for a in ml.list_artifacts(run.info.run_id, "plots")}
    assert plots == {f"plots/rul_unit{u}.png" for u in test}
    assert done["model_uri"].startswith("models:/kosmos-TurbofanUseCase/")

    res = federation.predict(done["model_uri"], cmapss_train)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert lines[0].startswith("unit,rul_cycles")
    assert [int(line.split(",")[0]) for line in lines[1:]] == list(range(1, 21))
    assert all(float(line.split(",")[1]) >= 0 for line in lines[1:])
