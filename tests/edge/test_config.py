"""The client's edge config and criteria answer: validation, secrets, file-free eligibility."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kosmos_fl.cli import main
from kosmos_fl.config import load_client_config
from kosmos_fl.config.edge import EdgeConfig
from kosmos_fl.coordinator.client import check_criteria
from kosmos_fl.edge.store import EdgeStore
from kosmos_fl.errors import ConfigError
from tests.edge.conftest import make_signals
from tests.edge.test_store import failure, snaps

T0 = 1_700_000_000.0


def _load(tmp_path: Path, edge: dict) -> object:
    path = tmp_path / "client.yaml"
    path.write_text(yaml.safe_dump({"client_name": "s", "edge": edge}))
    return load_client_config(path)


@pytest.mark.parametrize(
    ("edge", "needle"),
    [
        ({"topics": ["a/b"], "broker": "mqtt://u:pw@host:1883"}, "not into the URL"),
        ({"topics": ["a/b"], "broker": "http://host"}, "scheme"),
        ({"topics": ["a/b"], "broker": "mqtt://host:99999"}, "invalid port"),
        ({"topics": []}, "edge.topics"),
        ({"topics": ["a/#/b"]}, "'#' must be the last level"),
        ({"topics": ["a/b+"]}, "invalid MQTT topic filter"),
        ({"topics": ["a"], "tls": {"ca_file": "/nonexistent/ca.pem"}}, "does not exist"),
        ({"topics": ["a"], "tls": {"cert_file": __file__}}, "go together"),
        ({"topics": ["a"], "password": "x"}, "username is not"),
        ({"topics": ["a"], "criteria": {"min_histories": -1}}, "edge.criteria.min_histories"),
        ({"topics": ["a"], "brokr": "x"}, "brokr"),
    ],
)
def test_bad_edge_config_is_one_line_naming_the_key(tmp_path: Path, edge: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, edge)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_password_is_secret_and_never_echoed(tmp_path: Path) -> None:
    cfg = _load(tmp_path, {"topics": ["a"], "username": "u", "password": 987654321})
    assert cfg.edge.password.get_secret_value() == "987654321"  # YAML number taken as text
    assert "987654321" not in repr(cfg) and "987654321" not in cfg.edge.redacted()
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, {"topics": ["a"], "username": "u", "password": ["hunter2-secret"]})
    assert "hunter2-secret" not in str(err.value) and "edge.password" in str(err.value)


def test_tls_broker_defaults(tmp_path: Path) -> None:
    assert EdgeConfig(broker="mqtts://broker.example", topics=["a"]).endpoint == (
        "broker.example",
        8883,
        True,
    )
    assert EdgeConfig(topics=["a"], tls={"insecure": True}).endpoint == ("127.0.0.1", 1883, True)
    assert EdgeConfig(topics=["a"]).endpoint == ("127.0.0.1", 1883, False)


def test_criteria_answer_comes_from_the_collected_data(tmp_path: Path) -> None:
    """The client's criteria check in edge mode reads the store (no data_path, no network)."""
    cfg = load_client_config(
        None,
        client_name="s",
        usecase={"name": "BearingUseCase", "params": {"model": "ffnn"}},
        edge={
            "topics": ["a"],
            "store_dir": str(tmp_path / "edge"),
            "criteria": {"min_labelled_snapshots": 10},
        },
    )
    answer = check_criteria(cfg, tmp_path)
    assert answer["criteria_are_met"] is False
    assert "0 of 1 complete run-to-failure histories" in answer["reason"]
    assert answer["data_summary"]["histories"] == 0

    store = EdgeStore(tmp_path / "edge")
    store.add([*snaps("m1", "Bearing1_1", make_signals(12)), failure("m1", "Bearing1_1", T0 + 110)])
    store.refresh_processed()
    store.close()
    answer = check_criteria(cfg, tmp_path)
    assert answer["criteria_are_met"] is True, answer
    assert answer["data_summary"] == {"bearings": ["Bearing1_1"], "samples": 12}

    plain = load_client_config(None, data_path=str(tmp_path / "missing"))  # file mode still works
    assert "does not exist" in check_criteria(plain, tmp_path)["reason"]


def test_replay_to_an_unreachable_broker_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], generated_bearings: Path
) -> None:
    from kosmos_fl.fl.flower_runtime.runtime import free_port

    with pytest.raises(SystemExit) as exc:
        main(["machine", "replay", str(generated_bearings / "Bearing1_1"), "--broker",
              f"mqtt://127.0.0.1:{free_port()}", "--topic", "t"])  # fmt: skip
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "cannot reach the MQTT broker" in err and "Traceback" not in err
