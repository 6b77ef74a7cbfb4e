"""Issue 20 point 5: `kosmos-fl predict` honours MLFLOW_TRACKING_URI, fails at once and cleanly
when there is no model store, never prints a negative RUL, and the demo prints copyable commands."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
from rich.console import Console

from kosmos_fl import demo
from kosmos_fl.serving import non_negative_rul


def test_missing_store_named_from_the_environment_and_nothing_created(tmp_path: Path) -> None:
    store = tmp_path / "elsewhere" / "mlruns"
    env = {**os.environ, "MLFLOW_TRACKING_URI": str(store)}
    exe = Path(sys.executable).parent / "kosmos-fl"
    done = subprocess.run(
        [str(exe), "predict", "-m", "models:/kosmos-BearingUseCase/1", "-d", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), done.stderr
    assert str(store) in lines[0] and "MLFLOW_TRACKING_URI" in lines[0]
    assert "Traceback" not in done.stderr and "Warning" not in done.stderr
    assert list(tmp_path.iterdir()) == [], "predict created files for a model that is not there"


def test_rul_columns_are_never_negative() -> None:
    table = pd.DataFrame(
        {
            "bearing": ["a", "b"],
            "rul_hours": [-0.0109, 1.5],
            "rul_hours_conservative": [-0.2, 1.0],
            "n": [-1, 2],
        }
    )
    out = non_negative_rul(table)
    assert out["rul_hours"].tolist() == [0.0, 1.5]
    assert out["rul_hours_conservative"].tolist() == [0.0, 1.0]
    assert out["n"].tolist() == [-1, 2]  # not a RUL column: untouched


def test_demo_prints_commands_unwrapped(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    buf = io.StringIO()
    monkeypatch.setattr(demo, "console", Console(file=buf, width=40, color_system=None))
    summary = {"model_uri": "models:/kosmos-BearingUseCase/12", "mlflow_run_id": "0123456789abcdef",
               "out_dir": "/a/rather/long/work/folder/sessions/20261203-000000-abcdef"}  # fmt: skip
    demo._report(summary, 38.0, "/a/rather/long/path/to/mlruns", Path("/a/long/path/to/the/demo/data"))
    text = buf.getvalue()
    try_lines = [line for line in text.splitlines() if line.startswith("Try")]
    assert try_lines == [
        "Try            : kosmos-fl predict --model models:/kosmos-BearingUseCase/12 "
        "--data /a/long/path/to/the/demo/data --mlflow /a/rather/long/path/to/mlruns"
    ]
    assert any("mlflow ui --backend-store-uri sqlite:////a/rather/long/path/to/mlruns/mlflow.db" in line
               for line in text.splitlines())  # fmt: skip
