"""`kosmos-fl server` / `client` with a bad config file, bad environment override or bad use-case
parameters: one ``error:`` line naming the thing and the fix, exit status 2, no traceback, nothing
started. Plus property-based tests of config parsing (any YAML document, any env value)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kosmos_fl.fl.strategies  # noqa: F401 - Flower binds its log handler to stderr at import: do it now
from kosmos_fl.cli import main
from kosmos_fl.config import load_client_config, load_server_config
from kosmos_fl.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("DYNACONF_"):
            monkeypatch.delenv(key)


@pytest.fixture(autouse=True)
def _no_log_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process runs must not install the CLI's log handler on pytest's captured stderr."""
    import kosmos_fl.cli

    monkeypatch.setattr(kosmos_fl.cli, "_logging", lambda verbose: None)


def run_cli(capfd: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    assert exit_info.value.code == 2
    out = capfd.readouterr().err
    assert "Traceback" not in out, out
    err = out.strip().splitlines()[-1]  # Flower may warn about its strategy first
    assert err.startswith("error:"), out
    assert sum(line.startswith("error:") for line in out.splitlines()) == 1, out
    return err


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("num_clients: [\n", ["not valid YAML at line", "fix the syntax"]),
        ("limits: {messages_per_second: 0}\n",
         ["limits.messages_per_second", "DYNACONF_limits__messages_per_second"]),
        ("limits: {burts: 3}\n", ["did you mean 'burst'"]),
        ("usecase: {name: NoSuchUseCase}\n", ["NoSuchUseCase"]),
        ("usecase: {name: BearingUseCase, broadcast_params: {model: transformer}}\n", ["model"]),
        ("usecase: {name: BearingUseCase, params: {modle: cnn}}\n", ["allowed parameters"]),
        ("strategy: {name: FedAvg, params: {no_such_arg: 1}}\n", ["no_such_arg"]),
    ],
)  # fmt: skip
def test_server_refuses_bad_config_in_one_line(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], text: str, needles: list[str]
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(f"work_dir: {tmp_path / 'w'}\n{text}", encoding="utf-8")
    err = run_cli(capfd, "server", "-c", str(path))
    for needle in needles:
        assert needle in err, err
    assert not (tmp_path / "w").exists()  # nothing was started


def test_client_refuses_a_bad_env_override(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DYNACONF_retry_max", "soon")
    err = run_cli(capfd, "client", "-c", str(tmp_path / "missing.yaml"))
    assert "does not exist" in err  # the file is checked first
    err = run_cli(capfd, "client")
    assert "DYNACONF_retry_max" in err


def test_real_process_prints_one_line_for_a_malformed_env_value(tmp_path: Path) -> None:
    """As an operator sees it: a separate process, a TOML-ish value dynaconf cannot parse."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DYNACONF_")}
    env["DYNACONF_tags"] = "@json {not json"
    res = subprocess.run(
        [sys.executable, "-m", "kosmos_fl.cli", "server"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert res.returncode == 2, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    assert "DYNACONF_" in lines[0]


yaml_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=15)
yaml_values = st.recursive(
    yaml_scalars,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=10), kids, max_size=3),
    max_leaves=8,
)
known_keys = st.sampled_from(
    ["num_clients", "socketio_address", "limits", "usecase", "strategy", "training", "tags",
     "test_bearings", "round_timeout", "n_federated_train_epoch", "data_path", "criteria_timeout"]
)  # fmt: skip
documents = st.one_of(
    st.dictionaries(known_keys | st.text(max_size=10), yaml_values, max_size=5).map(yaml.safe_dump),
    st.text(max_size=80),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=documents)
def test_any_config_document_loads_or_is_refused_in_one_line(tmp_path: Path, document: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(document, encoding="utf-8")
    for load in (load_server_config, load_client_config):
        try:
            load(path)
        except ConfigError as exc:
            assert str(exc) and "\n" not in str(exc)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    key=st.sampled_from(["num_clients", "limits__burst", "socketio_address", "tags",
                         "training__learning_rate", "test_bearings", "usecase__params__model", "limits"]),
    value=st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=30),
)  # fmt: skip
def test_any_env_override_loads_or_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, key: str, value: str
) -> None:
    monkeypatch.setenv(f"DYNACONF_{key}", value)
    try:
        cfg = load_server_config(None)
    except ConfigError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert cfg.num_clients >= 1 and cfg.limits.burst >= 1
