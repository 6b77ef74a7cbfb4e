"""`kosmos-fl simulate`: the production ServerApp and ClientApp on Flower's Ray engine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from kosmos_fl.cli import app
from kosmos_fl.errors import DataError
from kosmos_fl.fl.simulation.engine import plan_data, ray_leftovers
from kosmos_fl.fl.tracking import tracking_uri
from kosmos_fl.usecases import load_usecase

pytestmark = pytest.mark.e2e


def test_simulate_five_virtual_clients_one_round(tmp_path: Path, generated_bearings: Path) -> None:
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    mlruns = tmp_path / "mlruns"
    res = CliRunner().invoke(
        app,
        ["simulate", "--clients", "5", "--rounds", "1", "--data", str(generated_bearings),
         "--work-dir", str(tmp_path / "work"), "--mlflow", str(mlruns), "--cpus", "2",
         "--config", str(_config(tmp_path))],
    )  # fmt: skip
    assert res.exit_code == 0, (res.output, res.exception)
    nodes_dirs = list((tmp_path / "work" / "sessions").glob("*/nodes"))
    assert len(nodes_dirs) == 1
    leftovers = [" ".join(p.cmdline())[:100] for p in ray_leftovers(str(nodes_dirs[0]))]
    assert leftovers == [], "Ray processes outlived the simulation"
    assert "5 virtual clients" in res.output
    ml = MlflowClient(tracking_uri=tracking_uri(str(mlruns)))
    runs = ml.search_runs([ml.get_experiment_by_name("sim-test").experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["num_clients"] == "5"
    assert run.data.tags["kosmos.simulation"] == "true"
    # all five virtual clients trained (one loss each), the server evaluated rounds 0 and 1
    for cid in range(5):
        assert [m.step for m in ml.get_metric_history(run.info.run_id, f"train_loss_client{cid}")] == [1]
    assert sorted(m.step for m in ml.get_metric_history(run.info.run_id, "RMSE")) == [0, 1]
    assert ml.get_metric_history(run.info.run_id, "clients_ok")[0].value == 5
    versions = ml.search_model_versions("name='kosmos-BearingUseCase-simulation'")
    assert [v.run_id for v in versions] == [run.info.run_id]


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "sim.yaml"
    path.write_text(
        "mlflow_experiment_name: sim-test\n"
        "usecase: {name: BearingUseCase, broadcast_params: {model: ffnn}}\n"
        "test_bearings: [Bearing1_3, Bearing2_3]\n"
        "training: {local_epochs: 1, batch_size: 16}\n",
        encoding="utf-8",
    )
    return path


def test_more_virtual_clients_than_samples_is_a_clear_error(generated_bearings: Path) -> None:
    usecase = load_usecase("BearingUseCase", {"model": "ffnn"})
    with pytest.raises(DataError, match="virtual clients need at least 100000 training samples"):
        plan_data(usecase, generated_bearings, 100_000)
