"""The 2021 KOSMoS config files load as they are, with only the documented warnings, and
``kosmos-fl config migrate`` turns them into current files that load without warnings."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from kosmos_fl.cli import main
from kosmos_fl.config import load_client_config, load_server_config
from kosmos_fl.config.compat2021 import server_settings
from kosmos_fl.errors import UseCaseError
from kosmos_fl.usecases import load_usecase

FIXTURES = Path(__file__).parent / "fixtures" / "2021"
SERVER_2021 = FIXTURES / "server" / "config.yaml"
CLIENT_2021 = FIXTURES / "client" / "config.yaml"


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in [k for k in os.environ if k.startswith("DYNACONF_")]:
        monkeypatch.delenv(key)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_2021_server_config_loads_with_its_values(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        cfg = load_server_config(SERVER_2021)
    assert cfg.flwr_server_address == "[::1]:50052"
    assert cfg.socketio_address == "0.0.0.0:6000"
    assert cfg.mlflow_server_address == "http://localhost:5000"
    assert cfg.mlflow_experiment_name == "default_config"
    assert cfg.num_clients == 1
    assert cfg.tags == {"experiment_name": "default_config"}
    assert cfg.n_federated_train_epoch == 10
    assert cfg.usecase.name == "BearingUseCase"
    assert cfg.test_bearings == ("Bearing1_3", "Bearing1_4")  # from usecase.params.test_bearings
    assert cfg.debug is False
    # the only documented warning: the 2021 sample broadcast parameter `test: "Test"`
    (only,) = _warnings(caplog)
    assert "usecase.broadcast.test" in only and "ignored" in only


def test_2021_client_config_loads_with_its_values(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        cfg = load_client_config(CLIENT_2021)
    assert cfg.socketio_address == "http://127.0.0.1:6000"
    assert cfg.local_epochs == 3  # num_client_train_epochs
    assert cfg.learning_rate is None  # null: the server's
    assert cfg.debug is False
    assert cfg.selection(0) == ["Bearing1_1", "Bearing1_2"]
    assert cfg.selection(2) == ["Bearing3_1", "Bearing3_2"]
    site = cfg.site(1, "TurbofanUseCase")
    assert site.data_path == "../train.csv" and site.params == {"file_id": 1}
    assert site.selection is None
    (only,) = _warnings(caplog)
    assert "client_type" in only and "ClientApp" in only


def test_2021_debug_and_flwr_address_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DYNACONF_flwr_server_address", "kosmos_fl_server:50052")
    monkeypatch.setenv("DYNACONF_socketio_address", "http://kosmos_fl_server:6000")
    monkeypatch.setenv("DYNACONF_DEBUG", "true")
    cfg = load_client_config(CLIENT_2021)
    assert cfg.flwr_server_address == "kosmos_fl_server:50052"
    assert cfg.debug is True


@pytest.mark.parametrize("path", [SERVER_2021, CLIENT_2021], ids=["server", "client"])
def test_migrate_prints_a_config_that_loads_without_warnings(
    path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    main(["config", "migrate", str(path)])
    text = capsys.readouterr().out
    new = tmp_path / "config.yaml"
    new.write_text(text, encoding="utf-8")
    raw = yaml.safe_load(text)
    for old_key in ("client_type", "num_client_train_epochs", "DEBUG"):
        assert old_key not in raw
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        if path == SERVER_2021:
            old, cfg = load_server_config(path), load_server_config(new)
        else:
            old, cfg = load_client_config(path), load_client_config(new)
    assert _warnings(caplog) == [_warnings(caplog)[0]]  # only the 2021 file warned
    assert cfg == old  # the same settings


def test_usecase_broadcast_is_broadcast_params() -> None:
    data = {"usecase": {"name": "BearingUseCase", "broadcast": {"model": "ffnn"}}}
    assert server_settings(data)["usecase"]["broadcast_params"] == {"model": "ffnn"}


def test_a_typo_in_todays_keys_stays_an_error() -> None:
    """Only the 2021-only `usecase.broadcast` drops unknown parameters (as 2021 ignored them);
    a typo under today's `broadcast_params` still reaches the use case, which refuses it."""
    data = {"usecase": {"name": "BearingUseCase", "broadcast_params": {"modle": "cnn"}}}
    kept = server_settings(data)["usecase"]["broadcast_params"]
    assert kept == {"modle": "cnn"}
    with pytest.raises(UseCaseError, match="modle"):
        load_usecase("BearingUseCase", kept)
