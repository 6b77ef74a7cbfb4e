"""Per-round checkpoints of a session, so a crashed or restarted server resumes where it stopped.

After every round the ServerApp writes, in the session folder: the global weights
(``checkpoint-r<round>.npz``), the strategy object (``strategy-r<round>.pkl``: server-side optimiser
state of FedAdam/FedYogi/FedAvgM survives a restart) and ``checkpoint.json`` naming them with the
round number, the MLflow run id and the round's metrics. Each file is written to a temporary name,
flushed to disk and renamed, and ``checkpoint.json`` is renamed last, so a crash at any moment
leaves either the previous or the new checkpoint, never a mix.

Exactly-once metrics: the checkpoint is written *before* the round's metrics go to MLflow, with
``metrics_logged`` false, and flipped to true afterwards. A resumed session logs the metrics of a
checkpoint whose flag is still false only if MLflow does not already hold that step.
"""

from __future__ import annotations

import contextlib
import json
import logging
import pickle
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from kosmos_fl.fl.session import CHECKPOINT_FILE, write_atomic

log = logging.getLogger("kosmos_fl.checkpoint")


class Checkpoint(BaseModel):
    """The state after round ``round`` (0: the initial model, evaluated)."""

    model_config = ConfigDict(extra="forbid")

    session_id: str
    mlflow_run_id: str
    round: int
    weights_file: str
    strategy_file: str | None = None
    #: The metrics of this round exactly as logged to MLflow at step ``round``.
    metrics: dict[str, float] = Field(default_factory=dict)
    metrics_logged: bool = False
    #: Accepted update norms of this round (the reference of the next round's norm check).
    norm_history: list[float] = Field(default_factory=list)
    #: Seconds the session had run in total when this round ended (before any restart).
    elapsed_seconds: float = 0.0


def save(
    out_dir: Path,
    ckpt: Checkpoint,
    weights: list[np.ndarray],
    strategy: Any = None,
) -> Checkpoint:
    """Write weights, strategy and ``checkpoint.json`` for ``ckpt.round``; drop older rounds' files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    weights_name = f"checkpoint-r{ckpt.round}.npz"
    write_atomic(out_dir / weights_name, lambda fh: np.savez(fh, *weights))
    strategy_name = None
    if strategy is not None:
        try:
            blob = pickle.dumps(strategy)
        except Exception as exc:  # a strategy holding e.g. a lock: resume starts its state afresh
            log.warning("strategy %s cannot be checkpointed (%s)", type(strategy).__name__, exc)
        else:
            strategy_name = f"strategy-r{ckpt.round}.pkl"
            write_atomic(out_dir / strategy_name, blob)
    ckpt = ckpt.model_copy(update={"weights_file": weights_name, "strategy_file": strategy_name})
    write_atomic(out_dir / CHECKPOINT_FILE, ckpt.model_dump_json(indent=2))
    keep = {weights_name, strategy_name}
    for old in [*out_dir.glob("checkpoint-r*.npz"), *out_dir.glob("strategy-r*.pkl")]:
        if old.name not in keep:
            with contextlib.suppress(OSError):
                old.unlink()
    return ckpt


def mark_logged(out_dir: Path, ckpt: Checkpoint) -> Checkpoint:
    """Record that ``ckpt``'s metrics are in MLflow."""
    ckpt = ckpt.model_copy(update={"metrics_logged": True})
    write_atomic(out_dir / CHECKPOINT_FILE, ckpt.model_dump_json(indent=2))
    return ckpt


def load(out_dir: Path) -> Checkpoint | None:
    """The last complete checkpoint of the session in ``out_dir`` (None: none written yet)."""
    path = out_dir / CHECKPOINT_FILE
    if not path.exists():
        return None
    return Checkpoint.model_validate_json(path.read_text(encoding="utf-8"))


def load_weights(out_dir: Path, ckpt: Checkpoint) -> list[np.ndarray]:
    with np.load(out_dir / ckpt.weights_file, allow_pickle=False) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


def load_strategy(out_dir: Path, ckpt: Checkpoint) -> Any | None:
    """The strategy object as it was after the checkpointed round (our own file, written by us)."""
    if ckpt.strategy_file is None:
        return None
    try:
        return pickle.loads((out_dir / ckpt.strategy_file).read_bytes())
    except Exception as exc:
        log.warning("strategy checkpoint unusable (%s); its state starts afresh", exc)
        return None


def summary(out_dir: Path) -> dict[str, Any] | None:
    """Round and run of the checkpoint in ``out_dir``, for the coordinator (None: none)."""
    try:
        raw = json.loads((out_dir / CHECKPOINT_FILE).read_text(encoding="utf-8"))
        return {"round": int(raw["round"]), "mlflow_run_id": str(raw["mlflow_run_id"])}
    except (OSError, ValueError, KeyError):
        return None
