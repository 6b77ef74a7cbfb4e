"""MLflow wiring: where runs live, one run per session, and the session's tracking through its
outbox (:mod:`~kosmos_fl.fl.tracking.outbox`, delivered by :mod:`~kosmos_fl.fl.tracking.sender`):
training never waits on MLflow nor fails because it is down (issue 21)."""

from __future__ import annotations

import contextlib
import logging
import re
import time
from pathlib import Path
from typing import Any

from kosmos_fl.errors import ConfigError, KosmosError
from kosmos_fl.fl.session import SessionFolder, SessionSpec
from kosmos_fl.fl.tracking.outbox import Entry, Outbox, State, final_entries, metrics_entry
from kosmos_fl.fl.tracking.sender import Background, Drainer, Handler, Sender

log = logging.getLogger("kosmos_fl.tracking")

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
    """Mark a run FAILED with the reason as a tag, at once (a direct MLflow call; sessions use
    :func:`queue_failure`, which survives an outage)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    client.set_tag(run_id, "kosmos.status", "failed")
    client.set_tag(run_id, "kosmos.failure_reason", reason[:4900])
    client.set_terminated(run_id, status="FAILED")


def queue_failure(out_dir: Path, run_id: str, reason: str) -> None:
    """Put the run's failure (status, reason, FAILED) in the session's outbox: delivered by the
    session's sender or the coordinator's drainer as soon as MLflow answers, even after a restart."""
    outbox = Outbox(SessionFolder(out_dir))
    for entry in final_entries(run_id, "failed", reason):
        outbox.append(entry)


def queue_tag(out_dir: Path, run_id: str, key: str, value: str) -> None:
    """Put a run tag in the session's outbox (delivered in order, also after a restart)."""
    Outbox(SessionFolder(out_dir)).append({"kind": "tag", "run": run_id, "key": key, "value": value})


def queue_reopen(out_dir: Path, run_id: str, from_round: int) -> None:
    """A resumed session's run: back to RUNNING, tagged ``resumed``, the stale failure reason gone."""
    outbox = Outbox(SessionFolder(out_dir))
    for entry in (
        {"kind": "status", "run": run_id, "status": "RUNNING"},
        {"kind": "tag", "run": run_id, "key": "kosmos.status", "value": "resumed"},
        {"kind": "tag", "run": run_id, "key": "kosmos.resumed_after_round", "value": str(from_round)},
        {"kind": "delete_tag", "run": run_id, "key": "kosmos.failure_reason"},
    ):
        outbox.append(entry)


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


def complete_result(folder: SessionFolder, state: State) -> None:
    """A session that ended while MLflow was down: once its outbox is delivered, its result
    names the registered model (drainer thread; ``result.json`` said ``tracking: pending``)."""
    with contextlib.suppress(OSError, ValueError, KosmosError):
        result = folder.read_result()
        model = state.results.get("model")
        if result is None or result.get("tracking") != "pending" or not model:
            return
        result.update(
            tracking="delivered",
            model_uri=model.get("model_uri"),
            registered_version=model.get("version"),
            champion=model.get("champion"),
            champion_reason=model.get("champion_reason"),
        )
        folder.write_result(result)
        log.info("session %s: model registered as %s", folder.path.name, model.get("model_uri"))


class SessionTracker:
    """The session's tracking, bound to its run (created beforehand by the coordinator): every
    call writes to the outbox in the session folder and returns; a background sender delivers.
    ``seconds`` adds up the time spent on tracking (the ``tracking_seconds`` round metric)."""

    def __init__(self, spec: SessionSpec, handlers: dict[str, Handler] | None = None) -> None:
        self.run_id = spec.mlflow_run_id
        self.outbox = Outbox(SessionFolder(Path(spec.out_dir)))
        self.sender = Sender(self.outbox, spec.mlflow_tracking_uri, handlers)
        self.background = Background(self.sender)
        self.seconds = 0.0

    def _put(self, *entries: Entry) -> None:
        t0 = time.monotonic()
        for entry in entries:
            self.outbox.append(entry)
        self.background.wake()
        self.seconds += time.monotonic() - t0

    def take_seconds(self) -> float:
        """Tracking time since the last call (and reset)."""
        out, self.seconds = self.seconds, 0.0
        return out

    def params(self, params: dict[str, Any]) -> None:
        self._put({"kind": "params", "run": self.run_id, "params": flat_params(params)})

    def metrics(self, metrics: dict[str, float], step: int) -> None:
        self._put(metrics_entry(self.run_id, metrics, step, int(time.time() * 1000)))

    def tag(self, key: str, value: str) -> None:
        self._put({"kind": "tag", "run": self.run_id, "key": key, "value": value})

    def artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Log a file of the session folder (it must stay there until delivered)."""
        self._put({"kind": "artifact", "run": self.run_id, "path": str(path), "dir": artifact_path})

    def queue(self, entry: Entry) -> None:
        """An entry for a handler (``model``: register the saved model)."""
        self._put({"run": self.run_id, **entry})

    def finish(self, status: str, reason: str | None = None) -> None:
        """The run's end (``completed`` / ``failed``), delivered after everything before it."""
        self._put(*final_entries(self.run_id, status, reason))

    def has_step(self, metrics: dict[str, float], step: int) -> bool:
        """Whether this round's metrics are in the outbox already (a resume must not add them twice)."""
        return self.outbox.holds_step(self.run_id, metrics, step)

    def flush(self, timeout: float) -> bool:
        """Wait for the sender to deliver everything; False when MLflow is down (the coordinator
        delivers the rest) or ``timeout`` passed."""
        t0 = time.monotonic()
        try:
            return self.background.flush(timeout)
        finally:
            self.seconds += time.monotonic() - t0

    def results(self) -> dict[str, Any]:
        """What handlers returned for delivered entries (``model``: its URI and version)."""
        return self.outbox.read_state().results

    def close(self) -> None:
        self.background.close()


__all__ = [
    "Drainer",
    "Outbox",
    "Sender",
    "SessionTracker",
    "artifact_location",
    "complete_result",
    "create_session_run",
    "ensure_experiment",
    "fail_run",
    "flat_params",
    "local_store",
    "params_2021",
    "queue_failure",
    "queue_reopen",
    "queue_tag",
    "session_params",
    "tracking_uri",
]
