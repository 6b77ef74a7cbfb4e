"""Where MLflow runs live: URLs pass through, local folders become an embedded SQLite store."""

from __future__ import annotations

from pathlib import Path

from kosmos_fl.fl.tracking import artifact_location, create_session_run, flat_params, tracking_uri


def test_urls_pass_through(tmp_path: Path) -> None:
    assert tracking_uri("http://mlflow:5000") == "http://mlflow:5000"
    assert tracking_uri("postgresql://u@h/db") == "postgresql://u@h/db"


def test_local_folder_becomes_sqlite_store(tmp_path: Path) -> None:
    uri = tracking_uri("mlruns", base_dir=tmp_path)
    assert uri == f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    assert (tmp_path / "mlruns").is_dir()
    assert artifact_location(uri) == (tmp_path / "mlruns" / "artifacts").as_uri()


def test_session_run_is_created_with_tags(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = tracking_uri(str(tmp_path / "store"))
    run_id = create_session_run(uri, "exp", "session-1", {"site": "linz"})
    run = MlflowClient(tracking_uri=uri).get_run(run_id)
    assert run.data.tags["site"] == "linz"
    assert run.info.run_name == "session-1"


def test_flat_params() -> None:
    assert flat_params({"a": 1, "b": {"c": [1, 2], "d": {"e": "x"}}}) == {
        "a": "1",
        "b.c": "[1, 2]",
        "b.d.e": "x",
    }
