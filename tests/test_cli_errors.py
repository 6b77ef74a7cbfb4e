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
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import kosmos_fl.coordinator.server  # noqa: F401  (imports Flower now: its log handler keeps this stderr)
from kosmos_fl.cli import main as cli_main
from kosmos_fl.config import load_client_config, load_server_config
from kosmos_fl.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("DYNACONF_"):
            monkeypatch.delenv(key)


def _one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr  # (Flower may print a warning about its strategy first)
    return errors[0]


def run_cli(tmp_path: Path, *argv: str, env: dict[str, str] | None = None) -> str:
    """Run ``kosmos-fl ARGV`` as a separate process (as an operator does); return its error line."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("DYNACONF_")}
    res = subprocess.run(
        [sys.executable, "-m", "kosmos_fl.cli", *argv],
        cwd=tmp_path, env={**base, **(env or {})}, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert res.returncode == 2, res.stderr
    return _one_error_line(res.stderr)


def run_cli_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], *argv: str
) -> str:
    """``kosmos-fl ARGV`` through the same entry point (:func:`kosmos_fl.cli.main`) in this process:
    the same exit status and error line as :func:`run_cli` without a 5-20 s interpreter start
    (torch, Flower) per case; the two environment tests below keep the real process."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        cli_main(list(argv))
    err = capfd.readouterr().err
    assert exc.value.code == 2, err
    return _one_error_line(err)


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("num_clients: [\n", ["not valid YAML at line", "fix the syntax"]),
        ("limits: {messages_per_second: 0}\n",
         ["limits.messages_per_second", "DYNACONF_limits__messages_per_second"]),
        ("limits: {burts: 3}\n", ["did you mean 'burst'"]),
        ("usecase: {name: NoSuchUseCase}\n", ["NoSuchUseCase"]),
        ("usecase: {name: BearingUseCase, broadcast_params: {model: transformer}}\n", ["model", "cnn"]),
    ],
)  # fmt: skip
def test_server_refuses_bad_config_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], text: str,
    needles: list[str],
) -> None:  # fmt: skip
    path = tmp_path / "config.yaml"
    path.write_text(f"work_dir: {tmp_path / 'w'}\n{text}", encoding="utf-8")
    err = run_cli_in_process(tmp_path, monkeypatch, capfd, "server", "-c", str(path))
    for needle in needles:
        assert needle in err, err
    assert not (tmp_path / "w").exists()  # nothing was started


def test_client_refuses_a_bad_env_override(tmp_path: Path) -> None:
    err = run_cli(tmp_path, "client", env={"DYNACONF_retry_max": "soon"})
    assert "DYNACONF_retry_max" in err


def test_server_refuses_a_malformed_env_value(tmp_path: Path) -> None:
    """A value dynaconf itself cannot parse (``@json`` with broken JSON)."""
    err = run_cli(tmp_path, "server", env={"DYNACONF_tags": "@json {not json"})
    assert "DYNACONF_" in err


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
@example(document=yaml.safe_dump({"0\n0": 1}))  # a key with a newline (found by hypothesis in CI)
@example(document=yaml.safe_dump({"test_bearings": ["Bearing1\n3"], "num_clients": "x\ny"}))
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
