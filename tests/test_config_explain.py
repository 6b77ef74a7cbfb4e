"""Issue 20: ``kosmos-fl config check`` validates a config without starting anything, and
``config show`` gives each key's effective value and its source (default, file, environment),
secrets masked."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kosmos_fl.cli import main as cli_main


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("DYNACONF_"):
            monkeypatch.delenv(key)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = 0
    try:
        cli_main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_show_names_where_each_value_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("num_clients: 4\nmlflow_server_address: postgresql://kosmos:pw-in-uri@db/mlflow\n")
    monkeypatch.setenv("DYNACONF_n_federated_train_epoch", "7")
    monkeypatch.setenv("DYNACONF_admin_token", "a-very-secret-admin-token-123")
    code, out, _ = _run(capsys, "config", "show", "-c", str(cfg))
    assert code == 0
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") == 4}
    assert rows["num_clients"].split("│")[2].strip() == "4" and "file" in rows["num_clients"]
    assert "7" in rows["n_federated_train_epoch"] and "env" in rows["n_federated_train_epoch"]
    assert "default" in rows["round_timeout"]
    assert "a-very-secret" not in out and "pw-in-uri" not in out  # masked, and the URI's password removed


def test_check_says_valid_or_gives_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "config.yaml"
    good.write_text("num_clients: 2\n")
    code, out, _ = _run(capsys, "config", "check", "-c", str(good))
    assert code == 0 and "a valid server config (1 keys from the file, 0 from the environment)" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("num_clients: 0\n")
    code, _, err = _run(capsys, "config", "check", "-c", str(bad))
    assert code == 2 and "Traceback" not in err
    assert next(line for line in err.splitlines() if line.startswith("error:")).startswith(
        "error: config key 'num_clients'"
    )
    client = tmp_path / "client.yaml"
    client.write_text("socketio_address: 127.0.0.1:6000\n")
    code, out, _ = _run(capsys, "config", "check", "--client", "-c", str(client))
    assert code == 0 and "a valid client config" in out
