"""``kosmos-fl data`` commands through the real top-level CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kosmos_fl.cli import app, main
from kosmos_fl.cli.data import parse_snapshots
from kosmos_fl.errors import DataError

runner = CliRunner()


def test_generate_info_prepare(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    result = runner.invoke(
        app, ["data", "generate", "--out", str(raw), "--bearings", "3", "--seed", "4", "--snapshots", "20:30"]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in raw.iterdir()) == ["Bearing1_1", "Bearing2_1", "Bearing3_1"]
    assert "Bearing3_1" in result.stdout and "1500 rpm" in result.stdout

    result = runner.invoke(app, ["data", "info", str(raw)])
    assert result.exit_code == 0, result.output
    assert "raw layout" in result.stdout and "3 bearings" in result.stdout

    out = tmp_path / "prepared"
    result = runner.invoke(app, ["data", "prepare", str(raw), "--out", str(out)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "kosmos-data.json").read_text())
    assert manifest["bearings"] == ["Bearing1_1", "Bearing2_1", "Bearing3_1"]
    assert "prepared 3 bearings" in result.stdout

    result = runner.invoke(app, ["data", "info", str(out)])
    assert result.exit_code == 0, result.output
    assert "prepared layout" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["data", "info", "{tmp}/missing"],
        ["data", "prepare", "{tmp}/missing", "--out", "{tmp}/out"],
        ["data", "generate", "--out", "{tmp}/g", "--snapshots", "9:2"],
        ["data", "generate", "--out", "{tmp}/g", "--bearings", "40"],
    ],
    ids=["info", "prepare", "snapshots", "bearings"],
)
def test_user_errors_are_one_clean_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    argv = [a.format(tmp=tmp_path) for a in args]
    result = runner.invoke(app, argv)
    assert result.exit_code != 0
    assert isinstance(result.exception, DataError)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err


def test_info_on_an_empty_folder(tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "info", str(tmp_path)])
    assert isinstance(result.exception, DataError)
    assert "kosmos-fl data generate" in str(result.exception)


def test_parse_snapshots() -> None:
    assert parse_snapshots("60:150") == (60, 150)
    assert parse_snapshots("80") == (80, 80)
    with pytest.raises(DataError):
        parse_snapshots("a:b")
