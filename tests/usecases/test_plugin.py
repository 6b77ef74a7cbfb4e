"""A third-party use case as an installable plug-in: the example package in
``examples/kosmos-usecase-pump`` is pip-installed (offline, editable) into this environment, found
through its entry point, and trained in a real federated session; it is uninstalled afterwards."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from kosmos_fl.fl.tracking import tracking_uri
from kosmos_fl.localfed import LocalFederation

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
PUMP = REPO / "examples" / "kosmos-usecase-pump"
DIST = "kosmos-usecase-pump"


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture(scope="module")
def pump_plugin() -> Iterator[None]:
    """The example installed like a user installs it (``pip install -e``); removed again unless it
    was installed before the test."""
    try:
        version(DIST)
        preinstalled = True
    except PackageNotFoundError:
        preinstalled = False
    if not preinstalled:
        res = _pip("install", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-e", str(PUMP))
        assert res.returncode == 0, f"pip install -e {PUMP} failed:\n{res.stderr}"
    yield
    if not preinstalled:
        _pip("uninstall", "-y", "-q", DIST)


def test_pump_plugin_federated_session(pump_plugin: None, tmp_path: Path, clean_env: dict[str, str]) -> None:
    data = tmp_path / "pumps"
    gen = subprocess.run(
        [sys.executable, "-m", "kosmos_usecase_pump.data", str(data), "--pumps", "6", "--seed", "4"],
        capture_output=True, text=True, env=clean_env, timeout=120, check=False,
    )  # fmt: skip
    assert gen.returncode == 0, gen.stderr
    assert len(list(data.glob("pump_*.csv"))) == 6

    fed = LocalFederation(tmp_path / "fed", clean_env)
    try:
        fed.start_server(
            num_clients=2,
            n_federated_train_epoch=2,
            data_path=str(data),
            test_units=["pump05", "pump06"],
            usecase={"name": "PumpUseCase", "broadcast_params": {"hidden": 8}},
            training={"local_epochs": 3, "learning_rate": 0.01, "batch_size": 32},
        )
        for name, pumps in (("site-a", ["pump01", "pump02"]), ("site-b", ["pump03", "pump04"])):
            fed.start_client(name, data_path=str(data), units=pumps, usecase={"name": "PumpUseCase"})
        done = fed.wait_sessions(1, timeout=300)[0]
    finally:
        fed.stop()
    assert done["status"] == "completed", done

    ml = MlflowClient(tracking_uri=tracking_uri(str(fed.root / "mlruns")))
    run = ml.get_run(done["mlflow_run_id"])
    assert run.data.params["usecase"] == "PumpUseCase"
    assert run.data.params["usecase_version"] == "0.1.0"
    assert run.data.params["model"] == "PumpModel"
    for key in ("RMSE", "MAE", "RMSE_pump05", "RMSE_pump06"):
        steps = sorted(m.step for m in ml.get_metric_history(run.info.run_id, key))
        assert steps == [0, 1, 2], (key, steps)
    assert done["model_uri"].startswith("models:/kosmos-PumpUseCase/")

    res = fed.predict(done["model_uri"], data)  # kosmos-fl predict, as a user runs it
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert lines[0].startswith("pump,rul_hours") and len(lines) == 7
