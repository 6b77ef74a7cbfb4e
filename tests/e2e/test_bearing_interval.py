"""End to end: a real federation trains the bearing MLP with interval heads, and ``kosmos-fl
predict`` on the registered model prints the interval after the old columns."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from kosmos_fl.localfed import LocalFederation as Federation

pytestmark = pytest.mark.e2e


def test_mlp_session_and_predict_interval(federation: Federation, generated_bearings: Path) -> None:
    params = {"model": "mlp", "hidden": [16], "spans": [5.0, 20.0], "smooth_span": 10.0}
    federation.start_server(
        num_clients=2,
        n_federated_train_epoch=2,
        data_path=str(generated_bearings),
        test_bearings=["Bearing1_3", "Bearing2_3"],
        usecase={"name": "BearingUseCase", "broadcast_params": params},
        training={"local_epochs": 2, "learning_rate": 0.003, "batch_size": 16},
    )
    for name, units in (("site-a", ["Bearing1_1", "Bearing1_2"]), ("site-b", ["Bearing2_1", "Bearing2_2"])):
        federation.start_client(name, data_path=str(generated_bearings), bearings=units)
    done = federation.wait_sessions(1, timeout=600)[0]
    assert done["status"] == "completed", done

    res = federation.predict(done["model_uri"], generated_bearings)
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert list(rows[0]) == [
        "bearing",
        "rul_hours",
        "snapshot",
        "elapsed_hours",
        "rul_hours_low",
        "rul_hours_high",
        "rul_hours_conservative",
    ]
    assert len(rows) == 6
    for r in rows:
        assert float(r["rul_hours_low"]) <= float(r["rul_hours"]) <= float(r["rul_hours_high"])
        assert r["rul_hours_conservative"] == r["rul_hours_low"]
