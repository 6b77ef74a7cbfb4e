"""Config loading: 2021 keys and defaults, DYNACONF_ overrides, one clear line per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kosmos_fl.config import load_client_config, load_server_config
from kosmos_fl.errors import ConfigError
from kosmos_fl.usecases.bearing import DEFAULT_TEST_BEARINGS


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("DYNACONF_"):
            monkeypatch.delenv(key)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_the_shipped_ones() -> None:
    """The 2021 keys and addresses; rounds and training of the shipped, tuned config.yaml (issue 20,
    tests/test_config_defaults.py)."""
    cfg = load_server_config(None)
    assert cfg.num_clients == 3
    assert cfg.socketio_address == "0.0.0.0:6000"
    assert cfg.mlflow_experiment_name == "Default"
    assert cfg.n_federated_train_epoch == 13
    assert cfg.test_bearings == DEFAULT_TEST_BEARINGS
    assert len(cfg.test_bearings) == 11
    assert cfg.usecase.name == "BearingUseCase"
    assert cfg.strategy.name == "FedAvg"


def test_file_values_and_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(
        tmp_path,
        "num_clients: 4\nmlflow_experiment_name: plant\ntags: {site: linz, version: 2}\n"
        "usecase:\n  name: BearingUseCase\n  broadcast_params: {model: cnn}\n",
    )
    monkeypatch.setenv("DYNACONF_num_clients", "1")
    monkeypatch.setenv("DYNACONF_usecase__broadcast_params__model", "ffnn")
    cfg = load_server_config(path)
    assert cfg.num_clients == 1
    assert cfg.mlflow_experiment_name == "plant"
    assert cfg.tags == {"site": "linz", "version": "2"}
    assert cfg.usecase.broadcast_params == {"model": "ffnn"}


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("num_clients: 0\n", "num_clients"),
        ("num_clients: many\n", "num_clients"),
        ("socketio_address: localhost\n", "socketio_address"),
        ("flwr_server_address: 'host:99999'\n", "flwr_server_address"),
        ("num_clientz: 3\n", "did you mean 'num_clients'"),
        ("strategy: {name: FedFoo}\n", "strategy.name"),
        ("n_federated_train_epoch: -1\n", "n_federated_train_epoch"),
        ("- just\n- a list\n", "mapping"),
        ("num_clients: [\n", "not valid YAML"),
    ],
)
def test_bad_values_get_one_clear_line(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_server_config(write(tmp_path, text))
    message = str(err.value)
    assert needle in message
    assert "\n" not in message


def test_bad_env_override_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DYNACONF_num_clients", "zero")
    with pytest.raises(ConfigError, match="DYNACONF_num_clients"):
        load_server_config(None)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_server_config(tmp_path / "nope.yaml")


def test_client_config_2021_shape(tmp_path: Path) -> None:
    path = write(tmp_path, "client_bearings:\n  0: [Bearing1_1]\n  1: [Bearing2_1, Bearing2_2]\n")
    cfg = load_client_config(path)
    assert cfg.selection(1) == ["Bearing2_1", "Bearing2_2"]
    assert cfg.selection(7) is None
    own = load_client_config(write(tmp_path, "bearings: [Bearing3_1]\n"))
    assert own.selection(0) == ["Bearing3_1"]


@settings(max_examples=60, deadline=None)
@given(value=st.one_of(st.integers(), st.text(max_size=12), st.floats(allow_nan=True), st.booleans()))
def test_num_clients_fuzz_never_crashes(value: object) -> None:
    """Any value either validates to a sane int or is refused with a ConfigError."""
    try:
        cfg = load_server_config(None, num_clients=value)
    except ConfigError as exc:
        assert "num_clients" in str(exc)
    else:
        assert isinstance(cfg.num_clients, int) and cfg.num_clients >= 1


def test_relative_config_path_reads_the_file_in_the_current_folder(tmp_path: Path) -> None:
    """Issue 20: `-c config.yaml` in another folder must read that folder's file, not a
    config.yaml that sits beside the venv (the checkout's, in the `make setup` layout)."""
    import subprocess
    import sys

    (tmp_path / "config.yaml").write_text("num_clientz: 2\n")
    exe = Path(sys.executable).parent / "kosmos-fl"
    done = subprocess.run(
        [str(exe), "server", "-c", "config.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert "num_clientz" in done.stderr and "did you mean 'num_clients'" in done.stderr, done.stderr
