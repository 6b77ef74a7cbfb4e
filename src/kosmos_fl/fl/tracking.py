"""MLflow wiring: where runs live, one run per session, model logging and registration."""

from __future__ import annotations

import math
import re
import time
from pathlib import Path
from typing import Any

from kosmos_fl.errors import ConfigError
from kosmos_fl.fl.session import SessionSpec

_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def local_store(address: str, base_dir: Path | None = None) -> Path | None:
    """The folder of an embedded store (``<folder>/mlflow.db``) when ``mlflow_server_address`` is
    a local path (relative to ``base_dir``, default the current folder); None for a URL."""
    if _SCHEME.match(address) or address.startswith("databricks"):
        return None
    folder = Path(address).expanduser()
    if not folder.is_absolute():
        folder = (base_dir or Path.cwd()) / folder
    return folder.resolve()


def tracking_uri(address: str, base_dir: Path | None = None) -> str:
    """Turn ``mlflow_server_address`` into a tracking URI.

    A URL (``http://mlflow:5000``, ``sqlite:///x.db``, ``postgresql://...``) is used as it is. A
    local path means an embedded store in that folder: ``<path>/mlflow.db`` (SQLite, which also
    holds the Model Registry) with artifacts in ``<path>/artifacts``; no server needed.
    """
    folder = local_store(address, base_dir)
    if folder is None:
        return address
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


def session_params(
    spec: SessionSpec, test_names: list[str], model_name: str, model_parameters: int
) -> dict[str, Any]:
    """The MLflow params of a session: its settings, the evaluation groups and the model's size."""
    return {
        "num_clients": spec.num_clients,
        "min_fit_clients": spec.min_fit_clients,
        "n_federated_train_epoch": spec.num_rounds,
        "strategy": spec.strategy_name,
        "strategy_params": spec.strategy_params,
        "local_epochs": spec.local_epochs,
        "learning_rate": spec.learning_rate,
        "batch_size": spec.batch_size,
        "seed": spec.seed,
        "usecase": spec.usecase_name,
        "usecase_version": spec.usecase_version,
        "usecase_params": spec.usecase_params,
        "test_bearings": ",".join(test_names),
        "model": model_name,
        "model_parameters": model_parameters,
        "max_update_norm_ratio": spec.max_update_norm_ratio,
        "max_update_norm": spec.max_update_norm,
    }


def params_2021(spec: Any, model: Any, usecase: Any = None) -> dict[str, Any]:
    """The MLflow params of a 2021 run under their 2021 names (logged besides today's names, so
    old dashboards and queries keep working): ``number_clients``,
    ``number_of_federated_trainingrounds`` and ``model_architecture`` (2021: the Keras summary;
    here the PyTorch module tree, cut to MLflow's 6,000-character limit); for the turbofan use
    case also ``sequence_length``, ``input_shape`` and ``file_id``. ``test_bearings`` has kept
    its name."""
    out: dict[str, Any] = {
        "number_clients": spec.num_clients,
        "number_of_federated_trainingrounds": spec.num_rounds,
        "model_architecture": str(model)[:6000],
    }
    params = getattr(usecase, "params", None)
    if getattr(usecase, "name", None) == "TurbofanUseCase" and params is not None:
        out["sequence_length"] = params.sequence_length
        out["input_shape"] = (params.sequence_length, len(params.sensors))
        out["file_id"] = params.file_id
    return out


class SessionTracker:
    """Thin MLflow logger bound to the session's run (created beforehand by the coordinator)."""

    def __init__(self, spec: SessionSpec) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        mlflow.set_tracking_uri(spec.mlflow_tracking_uri)
        self.client = MlflowClient(tracking_uri=spec.mlflow_tracking_uri)
        self.run_id = spec.mlflow_run_id

    def params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in flat_params(params).items()]
        for i in range(0, len(items), 90):
            self.client.log_batch(self.run_id, params=items[i : i + 90])

    def metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items() if math.isfinite(v)]
        for i in range(0, len(items), 900):
            self.client.log_batch(self.run_id, metrics=items[i : i + 900])

    def tag(self, key: str, value: str) -> None:
        self.client.set_tag(self.run_id, key, value)

    def has_step(self, metrics: dict[str, float], step: int) -> bool:
        """Whether MLflow already holds this round's metrics (they are logged in one batch)."""
        key = next((k for k, v in metrics.items() if math.isfinite(v)), None)
        if key is None:
            return True
        return any(m.step == step for m in self.client.get_metric_history(self.run_id, key))
