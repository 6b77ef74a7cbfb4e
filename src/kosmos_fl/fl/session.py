"""The session spec: everything one training session needs, written by the coordinator as JSON.

Flower passes only flat run-config values to the ServerApp, so the coordinator writes this spec
next to the session's outputs and hands its path over as ``session-file``. Clients get their own
smaller spec (:class:`NodeSpec`) through the SuperNode's ``--node-config``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kosmos_fl.fl.privacy_config import DifferentialPrivacyConfig, SecureAggregationConfig

RESULT_FILE = "result.json"
PROGRESS_FILE = "progress.jsonl"


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and make it accessible to the owner only (0700): work and
    session folders hold specs, checkpoints and logs that can carry credentials."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def write(self, path: Path) -> Path:
        """Write atomically, so a reader never sees half a file, and privately: a spec can hold a
        PostgreSQL DSN with its password (``data_path``) and the MLflow URI, so the file is 0600
        from its first byte and its folder 0700."""
        private_dir(path.parent)
        tmp = path.with_suffix(path.suffix + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(self.model_dump_json(indent=2))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
        return path

    @classmethod
    def read(cls, path: Path | str) -> Any:
        return cls.model_validate_json(Path(path).read_text(encoding="utf-8"))


class SessionSpec(_Spec):
    """Server side of one session."""

    session_id: str
    out_dir: str
    usecase_name: str
    usecase_version: str
    usecase_params: dict[str, Any]
    num_clients: int
    min_fit_clients: int
    num_rounds: int
    strategy_name: str
    strategy_params: dict[str, Any] = Field(default_factory=dict)
    local_epochs: int
    learning_rate: float
    batch_size: int
    seed: int
    data_path: str
    test_names: list[str]
    mlflow_tracking_uri: str
    mlflow_run_id: str
    registered_model_name: str
    round_timeout: float
    join_timeout: float
    #: Update validation (see kosmos_fl.fl.validation); None switches a check off.
    max_update_norm_ratio: float | None = 10.0
    max_update_norm: float | None = None
    #: The coordinator process; the ServerApp exits quietly when it is gone (resume picks up).
    coordinator_pid: int | None = None
    #: SecAgg+ settings (None: plain FedAvg messages, the server sees each update).
    secure_aggregation: SecureAggregationConfig | None = None
    #: Central differential privacy settings (None: off).
    differential_privacy: DifferentialPrivacyConfig | None = None
    #: Federated evaluation on the clients' own data after each round (fl/federated_eval.py).
    federated_evaluation: bool = False
    fraction_evaluate: float = 1.0


class NodeSpec(_Spec):
    """Client side of one session, given to the client's SuperNode."""

    session_id: str
    client_id: int
    usecase_name: str
    usecase_version: str
    usecase_params: dict[str, Any]
    data_path: str
    selection: list[str] | None
    torch_threads: int | None = None
    #: This site refuses to send an unmasked update (client config ``require_secure_aggregation``).
    require_secure_aggregation: bool = False
    #: This site's overrides of the server's local epochs and learning rate (client config
    #: ``local_epochs`` / ``learning_rate``, 2021: ``num_client_train_epochs``); None: the server's.
    local_epochs: int | None = None
    learning_rate: float | None = None
    #: ``[index, count]``: train on every count-th sample from index (virtual clients of
    #: ``kosmos-fl simulate`` share one data set); None: all of the selection.
    partition: tuple[int, int] | None = None


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write a small JSON document atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line (progress events read live by the demo and the coordinator)."""
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, default=str) + "\n")
        fh.flush()


def read_progress(path: Path) -> list[dict[str, Any]]:
    """The per-round records a session's ServerApp wrote so far (``progress.jsonl``)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue  # a line being written right now
    return [r for r in rows if r.get("event") == "round"]
