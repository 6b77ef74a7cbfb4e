"""The client's addresses and data selection: the 2021 ``http(s)://`` address forms, a turbofan
client without ``units``, and that a client whose eligibility check passes can train."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kosmos_fl.config import ClientConfig, connect_url, split_address
from kosmos_fl.coordinator.client import check_criteria, node_spec
from kosmos_fl.coordinator.protocol import StartTrain
from kosmos_fl.errors import ConfigError
from kosmos_fl.fl.apps.client_app import train_locally
from kosmos_fl.ml.train import get_weights
from kosmos_fl.security.policy import client_security, public_ca_bundle
from kosmos_fl.usecases import load_usecase


@pytest.fixture(scope="module")
def cmapss_train(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated NASA-format train_FD001.txt (12 engines)."""
    from kosmos_fl.data.turbofan.generate import generate_cmapss

    return generate_cmapss(tmp_path_factory.mktemp("cmapss"), units=12, seed=5)


@pytest.mark.parametrize(
    ("address", "tls", "url"),
    [
        ("http://127.0.0.1:6000", False, "http://127.0.0.1:6000"),  # the 2021 client config
        ("http://kosmos_fl_server:6000", False, "http://kosmos_fl_server:6000"),  # 2021 compose
        (
            "https://kosmos.federated-learning.example.io",
            False,
            "https://kosmos.federated-learning.example.io:443",
        ),
        ("http://edge.example", False, "http://edge.example:80"),
        ("https://server.example:8443/", False, "https://server.example:8443"),
        ("127.0.0.1:6000", False, "http://127.0.0.1:6000"),
        ("127.0.0.1:6000", True, "https://127.0.0.1:6000"),
        ("http://[::1]:6000", False, "http://[::1]:6000"),
    ],
)
def test_client_dials_each_address_form_once(address: str, tls: bool, url: str) -> None:
    ClientConfig(socketio_address=address)  # validates
    assert connect_url(address, tls) == url
    assert "://" not in url.partition("://")[2]  # never http://http://


@pytest.mark.parametrize("bad", ["ftp://host:21", "http://host:0", "https://", "http://a/b:1", "host"])
def test_bad_address_forms_get_one_line(bad: str) -> None:
    with pytest.raises(ConfigError, match="socketio_address"):
        split_address(bad, "socketio_address")


def test_https_address_without_ca_verifies_against_public_cas(tmp_path: Path) -> None:
    cfg = ClientConfig(socketio_address="https://kosmos.federated-learning.example.io")
    sec = client_security(cfg, tmp_path)  # no --insecure needed: TLS with the public CAs
    assert sec.tls and sec.ca_certfile == public_ca_bundle()
    assert sec.ssl_context() is not None


def _start(client_id: int, usecase: str, params: dict[str, Any] | None = None) -> StartTrain:
    return StartTrain(
        client_id=client_id, mlflow_experiment_name="e", mlflow_server_address="./mlruns",
        mlflow_run_id="r", flwr_server_address="127.0.0.1:9092", usecase_name=usecase,
        usecase_params=params or {}, usecase_version=load_usecase(usecase, params or {}).version,
        session_id="s", num_clients=3, n_federated_train_epoch=1,
    )  # fmt: skip


def _trains(cfg: ClientConfig, base: Path, client_id: int, broadcast: dict[str, Any]) -> int:
    """Run the ClientApp's local training exactly as a session would; returns the sample count."""
    spec = node_spec(cfg, base, _start(client_id, cfg.usecase.name, broadcast))
    usecase = load_usecase(spec.usecase_name, spec.usecase_params)
    weights = get_weights(usecase.build_model())
    config = {"server-round": 1, "seed": 0, "local-epochs": 1, "learning-rate": 1e-3, "batch-size": 256}
    _, data, loss = train_locally(spec, config, lambda: weights)
    assert np.isfinite(loss)
    return len(data)


def test_turbofan_client_without_units_selects_turbofan_data(cmapss_train: Path) -> None:
    cfg = ClientConfig(usecase={"name": "TurbofanUseCase"}, data_path=str(cmapss_train))
    for cid in (0, 1, 2):
        assert cfg.selection(cid) is None  # all its engines, never the bearing assignment
    bearing = ClientConfig(usecase={"name": "BearingUseCase"})
    assert bearing.selection(0) == ["Bearing1_1", "Bearing1_2"]  # the 2021 assignment stays


TURBOFAN = {"model": "cnn", "sequence_length": 10}


def _cases(nasa: Path, csv_2021: Path, bearings: Path) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    tf = {"name": "TurbofanUseCase"}
    blocks = {i: {"file_path": str(csv_2021), "file_id": 1} for i in range(3)}
    return [
        ("turbofan, no units", {"usecase": tf, "data_path": str(nasa)}, TURBOFAN),
        ("turbofan, own units", {"usecase": tf, "data_path": str(nasa), "units": ["1", "unit2"]}, TURBOFAN),
        (
            "turbofan, 2021 per-id blocks",
            {"usecase": tf, "per_client": {"TurbofanUseCase": blocks}},
            TURBOFAN,
        ),
        (
            "bearing, own bearings",
            {"data_path": str(bearings), "bearings": ["Bearing2_1"]},
            {"model": "ffnn"},
        ),
        ("turbofan, one 2021 block (for client 1 only)",
         {"usecase": tf, "per_client": {"TurbofanUseCase": {1: blocks[1]}}}, TURBOFAN),
        ("bearing, 2021 per-id blocks that differ", {"data_path": str(bearings), "per_client": {
            "BearingUseCase": {0: {"test_bearings": ["Bearing1_1", "Bearing1_2"]},
                               1: {"test_bearings": ["Bearing2_1"]}}}}, {"model": "ffnn"}),
    ]  # fmt: skip


def test_eligible_clients_can_train(
    cmapss_train: Path, turbofan_2021_csv: Path, generated_bearings: Path, tmp_path: Path
) -> None:
    """The tie between the two checks: for each way of telling a client its data, if
    check_criteria says the site is eligible, training succeeds as every client id the server may
    assign."""
    for name, values, broadcast in _cases(cmapss_train, turbofan_2021_csv, generated_bearings):
        cfg = ClientConfig.model_validate(
            {**values, "usecase": {**values.get("usecase", {}), "params": broadcast}}
        )
        answer = check_criteria(cfg, tmp_path)
        assert answer["criteria_are_met"], (name, answer)
        for cid in (0, 1, 2):
            assert _trains(cfg, tmp_path, cid, broadcast) > 0, (name, cid)


def test_ineligible_when_training_would_fail(
    turbofan_2021_csv: Path, generated_bearings: Path, tmp_path: Path
) -> None:
    """The other direction: a 2021 CSV mixing two files without file_id cannot train, and the
    eligibility check already says so; so for a per-id block whose bearings the site lacks."""
    blocks = {i: {"test_bearings": [f"Bearing{i + 1}_1"]} for i in range(3)}  # no Bearing3_1 here
    cfg = ClientConfig(data_path=str(generated_bearings), per_client={"BearingUseCase": blocks})
    answer = check_criteria(cfg, tmp_path)
    assert not answer["criteria_are_met"] and answer["reason"].startswith("as client 2:"), answer
    with pytest.raises(Exception, match="Bearing3_1"):
        _trains(cfg, tmp_path, 2, {"model": "ffnn"})
    cfg = ClientConfig(
        usecase={"name": "TurbofanUseCase", "params": TURBOFAN}, data_path=str(turbofan_2021_csv)
    )
    answer = check_criteria(cfg, tmp_path)
    assert not answer["criteria_are_met"] and "file_id" in answer["reason"]
    with pytest.raises(Exception, match="file_id"):
        _trains(cfg, tmp_path, 0, TURBOFAN)
