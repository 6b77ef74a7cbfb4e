"""End to end: a session with differential privacy stops cleanly when the privacy budget would be
exceeded, keeps and registers the last model, and logs epsilon/delta every round."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from kosmos_fl.fl.session import read_progress
from kosmos_fl.fl.tracking import tracking_uri
from kosmos_fl.localfed import LocalFederation as Federation

pytestmark = pytest.mark.e2e

NOISE, DELTA = 1.0, 1e-5


def rdp_epsilon(rounds: int) -> float:
    """Epsilon after ``rounds`` Gaussian releases, straight from Google's dp-accounting (no Flower)."""
    from dp_accounting import dp_event, rdp

    acc = rdp.RdpAccountant()
    acc.compose(dp_event.GaussianDpEvent(NOISE), rounds)
    return float(acc.get_epsilon(DELTA))


def test_privacy_budget_stops_the_session_and_keeps_the_model(
    federation: Federation, generated_bearings: Path
) -> None:
    eps = {k: rdp_epsilon(k) for k in (1, 2, 3)}
    budget = (eps[2] + eps[3]) / 2  # allows two rounds, not a third
    federation.start_server(
        num_clients=3,
        n_federated_train_epoch=5,
        data_path=str(generated_bearings),
        test_bearings=["Bearing1_3"],
        mlflow_experiment_name="dp",
        usecase={"name": "BearingUseCase", "broadcast_params": {"model": "ffnn"}},
        training={"local_epochs": 1, "learning_rate": 0.003, "batch_size": 16},
        differential_privacy={
            "noise_multiplier": NOISE,
            "clipping_norm": 0.05,
            "target_delta": DELTA,
            "max_epsilon": budget,
        },
    )
    units = {"site-a": ["Bearing1_1"], "site-b": ["Bearing1_2"], "site-c": ["Bearing2_1", "Bearing2_2"]}
    for name, bearings in units.items():
        federation.start_client(name, data_path=str(generated_bearings), bearings=bearings, torch_threads=1)
    done = federation.wait_sessions(1, timeout=300)[0]

    # a clean stop, not a failure: the clients are told why
    assert done["status"] == "completed", done
    assert done["reason"].startswith("privacy budget exhausted: round 3 would exceed max_epsilon"), done
    rounds = [r["round"] for r in read_progress(Path(done["progress"]))]
    assert rounds == [0, 1, 2]

    ml = MlflowClient(tracking_uri=tracking_uri(str(federation.root / "mlruns")))
    run = ml.get_run(done["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["kosmos.status"] == "completed"
    assert run.data.tags["kosmos.stop_reason"] == done["reason"]
    assert run.data.params["dp_noise_multiplier"] == "1.0"
    assert run.data.params["dp_unit"] == "client (user-level)"
    logged = {m.step: m.value for m in ml.get_metric_history(run.info.run_id, "dp_epsilon")}
    assert logged.keys() == {1, 2}
    for k in (1, 2):
        assert logged[k] == pytest.approx(eps[k], rel=1e-9)
    assert logged[2] <= budget < eps[3]
    delta = {m.step: m.value for m in ml.get_metric_history(run.info.run_id, "dp_delta")}
    assert delta == {1: DELTA, 2: DELTA}

    # the model of round 2 (the last one within budget) is logged and registered
    name, version = done["model_uri"].removeprefix("models:/").split("/")
    assert ml.get_model_version(name, version).run_id == run.info.run_id
    res = federation.predict(done["model_uri"], generated_bearings)
    assert res.returncode == 0, res.stderr
