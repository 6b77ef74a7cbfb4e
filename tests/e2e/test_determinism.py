"""Same seed, same data: the same registered model and the same ``predict`` output, whichever
client joins first (issue #15). Two real sessions on one server; the clients join in opposite
orders."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from kosmos_fl.localfed import LocalFederation as Federation
from kosmos_fl.ml.train import get_weights
from kosmos_fl.serving import load_model

pytestmark = pytest.mark.e2e

SITES = {"site-a": ["Bearing1_1", "Bearing1_2"], "site-b": ["Bearing2_1", "Bearing2_2"]}


def _join(federation: Federation, data: Path, order: list[str], sessions_before: int) -> None:
    """Start the clients one by one, each only once the previous one waits, so the server sees
    them join in ``order``."""
    for i, name in enumerate(order):
        federation.start_client(name, data_path=str(data), bearings=SITES[name])
        deadline = time.monotonic() + 120
        while True:
            st = federation.status() or {}
            if st.get("waiting", 0) >= i + 1 or len(st.get("sessions_done", [])) > sessions_before:
                break
            if st.get("session") and i == len(order) - 1:
                break
            assert time.monotonic() < deadline, f"{name} did not register"
            time.sleep(0.2)


def test_same_seed_gives_identical_registered_weights(
    federation: Federation, generated_bearings: Path
) -> None:
    federation.start_server(
        num_clients=2,
        n_federated_train_epoch=2,
        data_path=str(generated_bearings),
        test_bearings=["Bearing1_3"],
        usecase={"name": "BearingUseCase", "broadcast_params": {"model": "ratio"}},
        training={"local_epochs": 1, "learning_rate": 0.01, "batch_size": 64, "seed": 7},
    )
    _join(federation, generated_bearings, ["site-a", "site-b"], 0)
    first = federation.wait_sessions(1, timeout=300)[0]
    _join(federation, generated_bearings, ["site-b", "site-a"], 1)
    second = federation.wait_sessions(2, timeout=300)[1]
    assert first["status"] == second["status"] == "completed", (first, second)
    assert first["model_uri"] != second["model_uri"]

    store = str(federation.root / "mlruns")
    w1 = get_weights(load_model(first["model_uri"], store)[0])
    w2 = get_weights(load_model(second["model_uri"], store)[0])
    assert len(w1) == len(w2) and w1
    for a, b in zip(w1, w2, strict=True):
        np.testing.assert_array_equal(a, b)

    out1 = federation.predict(first["model_uri"], generated_bearings)
    out2 = federation.predict(second["model_uri"], generated_bearings)
    assert out1.returncode == out2.returncode == 0, (out1.stderr, out2.stderr)
    assert out1.stdout == out2.stdout
