"""End to end, a 2021 KOSMoS user's setup on the current product (real processes, sockets, Flower,
MLflow): the 2021 server and client ``config.yaml`` files as they are, the client configured only
through the 2021 compose file's ``DYNACONF_*`` variables (``http://`` Socket.IO address included);
and a 2021-format turbofan CSV with the 2021 parameters, the 2021 LSTM and federated evaluation."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from kosmos_fl.data.bearing.generate import generate_dataset
from kosmos_fl.fl.flower_runtime.runtime import ManagedProcess
from kosmos_fl.fl.tracking import tracking_uri
from kosmos_fl.localfed import CLI, LocalFederation
from tests.conftest import write_2021_turbofan_csv

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).parents[1] / "fixtures" / "2021"


@pytest.fixture
def federation(tmp_path: Path, clean_env: dict[str, str]) -> Iterator[LocalFederation]:
    fed = LocalFederation(tmp_path, clean_env)
    yield fed
    fed.stop()


def _compose_client_env() -> dict[str, str]:
    """The 2021 compose file's client environment, as written there."""
    compose = yaml.safe_load((FIXTURES / "kosmos-fl-docker-compose.yaml").read_text(encoding="utf-8"))
    pairs = [e.split("=", 1) for e in compose["services"]["kosmos_fl_client_0"]["environment"]]
    return dict(pairs)


def _config_warnings(log: str) -> list[str]:
    """What the config loader warned about at start (before logging is set up: bare lines)."""
    return [line for line in log.splitlines() if line.startswith("warning: config")]


def test_2021_configs_and_compose_client_train(federation: LocalFederation, tmp_path: Path) -> None:
    fed = federation
    # the 2021 server config.yaml next to its data; the 2021 compose file's server variables,
    # with loopback addresses (plain traffic on 0.0.0.0 now needs TLS or --insecure) and 2 rounds
    server_dir, client_dir = tmp_path / "server", tmp_path / "client"
    for folder, role in ((server_dir, "server"), (client_dir, "client")):
        folder.mkdir()
        shutil.copy(FIXTURES / role / "config.yaml", folder / "config.yaml")
    generate_dataset(server_dir / "data", bearings=["Bearing1_3", "Bearing1_4"], seed=7, snapshots=(40, 50))
    # the 2021 client file assigns different bearings per client id; as any id may be assigned,
    # the site holds all of them (as every 2021 client did)
    own = [f"Bearing{c}_{i}" for c in (1, 2, 3) for i in (1, 2)]
    generate_dataset(client_dir / "data", bearings=own, seed=8, snapshots=(30, 40))
    server_env = {
        **fed.env,
        "DYNACONF_mlflow_server_address": str(tmp_path / "mlruns"),
        "DYNACONF_flwr_server_address": f"127.0.0.1:{fed.flwr_port}",
        "DYNACONF_socketio_address": f"127.0.0.1:{fed.sio_port}",
        "DYNACONF_num_clients": "1",
        "DYNACONF_n_federated_train_epoch": "2",
        "DYNACONF_work_dir": str(tmp_path / "work"),
    }
    fed.server = ManagedProcess.start(
        "server", [*CLI, "server", "-c", str(server_dir / "config.yaml")], server_env, tmp_path / "server.log"
    )
    fed.procs.append(fed.server)
    deadline = time.monotonic() + 90
    while fed.status() is None:
        assert fed.server.alive(), fed.server.tail(30)
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.3)

    compose = _compose_client_env()
    assert compose == {
        "DYNACONF_flwr_server_address": "kosmos_fl_server:50052",
        "DYNACONF_socketio_address": "http://kosmos_fl_server:6000",
    }
    # exactly these variables, the compose host name replaced by loopback and the ports by free ones
    client_env = {
        **fed.env,
        "DYNACONF_flwr_server_address": f"127.0.0.1:{fed.flwr_port}",
        "DYNACONF_socketio_address": f"http://127.0.0.1:{fed.sio_port}",
    }
    client = ManagedProcess.start(
        "client", [*CLI, "client", "-c", str(client_dir / "config.yaml")], client_env, tmp_path / "client.log"
    )
    fed.procs.append(client)

    done = fed.wait_sessions(1, timeout=400)[0]
    assert done["status"] == "completed", (done, client.tail(40))
    client_log = (tmp_path / "client.log").read_text(encoding="utf-8")
    assert f"connected to http://127.0.0.1:{fed.sio_port}" in client_log
    assert "http://http://" not in client_log
    assert "local_epochs=3" in client_log  # num_client_train_epochs: 3 of the 2021 client file
    # only the documented warnings: client_type, and the 2021 sample broadcast key `test`
    (client_warning,) = _config_warnings(client_log)
    assert "client_type" in client_warning
    (server_warning,) = _config_warnings((tmp_path / "server.log").read_text(encoding="utf-8"))
    assert "usecase.broadcast.test" in server_warning

    ml = MlflowClient(tracking_uri=tracking_uri(str(tmp_path / "mlruns")))
    run = ml.get_run(done["mlflow_run_id"])
    params = run.data.params
    assert ml.get_experiment(run.info.experiment_id).name == "default_config"
    assert run.data.tags["experiment_name"] == "default_config"
    assert params["number_clients"] == "1"
    assert params["number_of_federated_trainingrounds"] == "2"
    assert "Conv2d" in params["model_architecture"]
    assert params["test_bearings"] == "Bearing1_3,Bearing1_4"
    assert params["model"] == "Cnn2021" and params["model_parameters"] == "411421"


def test_2021_turbofan_csv_trains_with_federated_evaluation(
    federation: LocalFederation, tmp_path: Path
) -> None:
    csv = write_2021_turbofan_csv(tmp_path / "data" / "train.csv", units=8, seed=11)
    params_2021 = {
        "model": "lstm2021",
        "sequence_length": 10,
        "loss": "WeightedRootMeanSquaredError",
        "remaining_sensors": ["sensor_02", "sensor_03", "sensor_04", "sensor_07", "sensor_11", "sensor_17"],
        "min_max_norm_columns": ["sensor_17"],
        "padding_value": -99,
    }
    federation.start_server(
        num_clients=2,
        n_federated_train_epoch=2,
        # the 2021 shape: usecase.params.file_path / broadcast; test units 7 and 8 of file 1
        usecase={"name": "TurbofanUseCase", "params": {"file_path": str(csv), "test_bearings": ["7", "8"]},
                 "broadcast": {**params_2021, "file_id": 1}},
        training={"local_epochs": 1, "learning_rate": 0.003, "batch_size": 64},
        federated_evaluation=True,
        fraction_evaluate=1.0,
        mlflow_experiment_name="turbofan-2021",
    )  # fmt: skip
    procs = [
        federation.start_client(
            f"plant-{i}",
            usecase={"name": "TurbofanUseCase"},
            # the 2021 client shape: usecase.<Name>.<client id>.{file_path, file_id}, plus units
            per_client={"TurbofanUseCase": {0: {"file_path": str(csv), "file_id": 1, "units": units}}},
        )
        for i, units in enumerate((["1", "2", "3"], ["4", "5", "6"]))
    ]
    done = federation.wait_sessions(1, timeout=600)[0]
    assert done["status"] == "completed", done
    for p in procs:
        assert p.proc.wait(60) == 0, p.tail(30)

    ml = MlflowClient(tracking_uri=tracking_uri(str(federation.root / "mlruns")))
    run = ml.get_run(done["mlflow_run_id"])
    assert run.data.params["model"] == "Lstm2021Kosmos"
    assert run.data.params["usecase_params.loss"] == "WeightedRootMeanSquaredError"
    history = {
        key: sorted(m.step for m in ml.get_metric_history(run.info.run_id, key))
        for key in ("RMSE", "RMSE_client0", "RMSE_client1", "RMSE_clients", "federated_eval_seconds")
    }
    assert history["RMSE"] == [0, 1, 2]
    for key in ("RMSE_client0", "RMSE_client1", "RMSE_clients", "federated_eval_seconds"):
        assert history[key] == [1, 2], (key, history[key])
    cost = ml.get_metric_history(run.info.run_id, "federated_eval_seconds")
    rounds = ml.get_metric_history(run.info.run_id, "round_seconds")
    print(f"federated evaluation: {[m.value for m in cost]} s of rounds {[m.value for m in rounds]} s")
