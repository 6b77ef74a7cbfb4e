"""MLflow wiring: where runs live, one run per session, model logging and registration."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from kosmos_fl.errors import ConfigError

_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def tracking_uri(address: str, base_dir: Path | None = None) -> str:
    """Turn ``mlflow_server_address`` into a tracking URI.

    A URL (``http://mlflow:5000``, ``sqlite:///x.db``, ``postgresql://...``) is used as it is. A
    local path means an embedded store in that folder: ``<path>/mlflow.db`` (SQLite, which also
    holds the Model Registry) with artifacts in ``<path>/artifacts``; no server needed.
    """
    if _SCHEME.match(address) or address.startswith("databricks"):
        return address
    folder = Path(address).expanduser()
    if not folder.is_absolute():
        folder = (base_dir or Path.cwd()) / folder
    folder = folder.resolve()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"config key 'mlflow_server_address': cannot create local MLflow store {folder} "
            f"({exc.strerror}); choose a writable folder or an http:// URL"
        ) from None
    return f"sqlite:///{folder / 'mlflow.db'}"


def artifact_location(uri: str) -> str | None:
    """Artifact root for a new experiment in an embedded store (None: server decides)."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").as_uri()
    return None


def ensure_experiment(uri: str, name: str) -> str:
    """Id of experiment ``name``, created if missing."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location(uri))


def create_session_run(uri: str, experiment: str, run_name: str, tags: dict[str, str]) -> str:
    """Create the session's MLflow run (server and clients share it) and return its id."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp_id = ensure_experiment(uri, experiment)
    run = client.create_run(exp_id, run_name=run_name, tags=dict(tags))
    return run.info.run_id


def fail_run(uri: str, run_id: str, reason: str) -> None:
    """Mark a run FAILED with the reason as a tag (used when a session dies)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    client.set_tag(run_id, "kosmos.status", "failed")
    client.set_tag(run_id, "kosmos.failure_reason", reason[:4900])
    client.set_terminated(run_id, status="FAILED")


def flat_params(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten nested params for ``log_params`` (MLflow params are flat strings)."""
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_params(value, f"{name}."))
        else:
            out[name] = str(value)[:6000]
    return out
