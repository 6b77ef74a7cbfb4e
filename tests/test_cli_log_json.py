"""``--log-json`` (issue 20): every line the command itself prints on stderr is one JSON object,
Flower's and MLflow's lines and the fatal ``error:`` line included, and Flower's start-up warning
appears once. The server and client run as real processes, as an operator starts them."""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kosmos_fl.cli import main as cli_main


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _json_lines(text: str) -> list[dict[str, Any]]:
    """Every line parsed as a JSON object (a failure names the first line that is not)."""
    rows = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            pytest.fail(f"not a JSON line on stderr: {line!r}\n--- stderr ---\n{text}")
        assert isinstance(row, dict), line
        rows.append(row)
    return rows


@pytest.mark.e2e
def test_server_log_json_prints_only_json_flower_and_mlflow_included(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    (tmp_path / "config.yaml").write_text(
        f"num_clients: 2\nsocketio_address: 127.0.0.1:{_free_port()}\n"
        f"flwr_server_address: 127.0.0.1:{_free_port()}\nwork_dir: {tmp_path / 'work'}\n"
        f"mlflow_server_address: {tmp_path / 'mlruns'}\n",
        encoding="utf-8",
    )
    err_path = tmp_path / "stderr.txt"
    with err_path.open("w", encoding="utf-8") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kosmos_fl.cli", "server", "-c", "config.yaml", "--log-json"],
            cwd=tmp_path, env=clean_env, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 180
            # the MLflow store is created in the background after the listeners are up: its lines
            # come from MLflow's own handler, installed when mlflow is imported (after set-up)
            while "Updating database tables" not in err_path.read_text(encoding="utf-8"):
                assert proc.poll() is None, err_path.read_text(encoding="utf-8")
                assert time.monotonic() < deadline, err_path.read_text(encoding="utf-8")
                time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    rows = _json_lines(err_path.read_text(encoding="utf-8"))
    flower = [r for r in rows if r["logger"] == "flwr" and "fraction_evaluate" in r["msg"]]
    assert len(flower) == 1, rows  # Flower's own handler printed it a second time, not as JSON
    assert flower[0]["level"] == "warning"
    assert any(r["logger"].startswith("mlflow") for r in rows), rows
    assert any(r["logger"] == "kosmos_fl.server" and "listening" in r["msg"] for r in rows), rows


@pytest.mark.e2e
def test_client_that_gives_up_says_so_in_json(tmp_path: Path, clean_env: dict[str, str]) -> None:
    (tmp_path / "client.yaml").write_text(
        f"socketio_address: 127.0.0.1:{_free_port()}\nretry_attempts: 2\nretry_initial: 0.2\n"
        f"work_dir: {tmp_path / 'work'}\n",
        encoding="utf-8",
    )
    res = subprocess.run(
        [sys.executable, "-m", "kosmos_fl.cli", "client", "--log-json"],
        cwd=tmp_path, env=clean_env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert res.returncode == 2, res.stderr
    rows = _json_lines(res.stderr)
    assert rows[-1]["level"] == "error" and "retry_attempts: forever" in rows[-1]["msg"], rows
    assert [r for r in rows if r["level"] == "error"] == rows[-1:], rows  # no "Unclosed client session"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """``--log-json`` in this process replaces sys.stderr, the root handlers and the excepthook."""
    root = logging.getLogger()
    saved = (sys.stderr, root.handlers[:], root.level, sys.excepthook)
    yield
    sys.stderr, root.handlers[:], level, sys.excepthook = saved
    root.setLevel(level)
    logging.captureWarnings(False)


@pytest.mark.parametrize("command", ["server", "client"])
def test_a_bad_config_with_log_json_is_one_json_error_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    restore_logging: None,
    command: str,
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("num_clients: [\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        cli_main([command, "-c", str(bad), "--log-json"])
    assert exc.value.code == 2
    rows = _json_lines(capfd.readouterr().err)
    errors = [r for r in rows if r["level"] == "error"]
    assert len(errors) == 1 and "not valid YAML" in errors[0]["msg"], rows
    assert errors[0]["logger"] == "kosmos_fl.cli"


@pytest.mark.e2e
def test_log_format_json_in_the_config_covers_its_own_warnings(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    """``log_format: json`` is known only once the file was read; a warning about the file itself
    (a 2021 key) is held until then and written as JSON too."""
    (tmp_path / "client.yaml").write_text(
        f"log_format: json\nclient_type: BasicClient\nsocketio_address: 127.0.0.1:{_free_port()}\n"
        f"retry_attempts: 1\nwork_dir: {tmp_path / 'work'}\n",
        encoding="utf-8",
    )
    res = subprocess.run(
        [sys.executable, "-m", "kosmos_fl.cli", "client"],
        cwd=tmp_path, env=clean_env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert res.returncode == 2, res.stderr
    rows = _json_lines(res.stderr)
    (note,) = [r for r in rows if "client_type" in r["msg"]]
    assert note["level"] == "warning" and note["logger"] == "kosmos_fl.config"
    assert rows[-1]["level"] == "error", rows
