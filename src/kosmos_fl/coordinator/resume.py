"""Find an interrupted session in the work dir and prepare it to continue (``--resume``).

A session is interrupted when its folder holds a ``session.json`` but no final ``result.json``:
the server crashed or was stopped while it ran. Flower does not resume an in-flight run, so the
coordinator submits a *new* Flower run with the same session spec; the ServerApp finds the
session's checkpoint (:mod:`kosmos_fl.fl.rounds.checkpoint`) and continues after the last completed round
in the same MLflow run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from kosmos_fl.errors import KosmosError
from kosmos_fl.fl.rounds import checkpoint
from kosmos_fl.fl.session import SessionFolder, SessionSpec, write_json_atomic

log = logging.getLogger("kosmos_fl.resume")
T = TypeVar("T")


@dataclass(frozen=True)
class ResumePoint:
    spec: SessionSpec
    out_dir: Path
    #: Last completed round (-1: not even the initial evaluation was checkpointed).
    round: int
    #: client id -> client name of the interrupted session
    names: dict[int, str]


def write_clients(out_dir: Path, names: list[str | None]) -> None:
    write_json_atomic(
        SessionFolder(out_dir).clients_file, [{"client_id": i, "name": n} for i, n in enumerate(names)]
    )


def _read_clients(out_dir: Path) -> dict[int, str]:
    try:
        rows = json.loads(SessionFolder(out_dir).clients_file.read_text(encoding="utf-8"))
        return {int(r["client_id"]): str(r["name"]) for r in rows if r.get("name")}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def find_interrupted(work_dir: Path, failed: Callable[[str], bool] = lambda _: False) -> list[ResumePoint]:
    """Interrupted sessions under ``work_dir/sessions``, newest first. A session without a result
    file whose MLflow run ``failed(run_id)`` says failed is not one: it failed while its result
    could not be written (a full disk), and resuming it would contradict MLflow."""
    out = []
    sessions = work_dir / "sessions"
    if not sessions.is_dir():
        return []
    for folder in sorted(sessions.iterdir(), reverse=True):
        spec_path = SessionFolder(folder).spec_file
        if not spec_path.is_file() or SessionFolder(folder).result_file.exists():
            continue
        try:
            spec = SessionSpec.read(spec_path)
        except (OSError, ValidationError) as exc:
            log.warning("session folder %s has an unreadable session.json (%s); not resumable", folder, exc)
            continue
        if spec.mlflow_run_id and failed(spec.mlflow_run_id):
            log.info("session %s failed (its MLflow run says so); not resumable", spec.session_id)
            continue
        ck = checkpoint.summary(folder)
        out.append(
            ResumePoint(
                spec=spec,
                out_dir=folder,
                round=-1 if ck is None else ck["round"],
                names=_read_clients(folder),
            )
        )
    return out


def announce(found: list[ResumePoint], resume: bool, num_clients: int) -> ResumePoint | None:
    """Log what the interrupted sessions ``found`` mean; the one to resume when ``resume`` is on."""
    if not found:
        return None
    if not resume:
        for p in found:
            log.warning(
                "session %s was interrupted after round %d (MLflow run %s); start the server with "
                "--resume (or resume: true) to continue it",
                p.spec.session_id,
                p.round,
                p.spec.mlflow_run_id,
            )
        return None
    log.info(
        "will resume session %s after round %d of %d (MLflow run %s) once %d clients registered",
        found[0].spec.session_id,
        found[0].round,
        found[0].spec.num_rounds,
        found[0].spec.mlflow_run_id,
        num_clients,
    )
    for p in found[1:]:
        log.warning("older interrupted session %s is not resumed (only the newest is)", p.spec.session_id)
    return found[0]


def assign_ids(sids: list[str], names: dict[str, str | None], previous: dict[int, str]) -> list[str]:
    """Order ``sids`` so that each client whose name held id ``k`` before gets ``k`` again
    (its data selection may depend on it); the others fill the free ids in arrival order."""
    by_name = {name: cid for cid, name in previous.items()}
    slots: list[str | None] = [None] * len(sids)
    rest = []
    for sid in sids:
        cid = by_name.get(names.get(sid) or "")
        if cid is not None and cid < len(slots) and slots[cid] is None:
            slots[cid] = sid
        else:
            rest.append(sid)
    for i, slot in enumerate(slots):
        if slot is None:
            slots[i] = rest.pop(0)
    return [s for s in slots if s is not None]


def reopen_run(uri: str, run_id: str, from_round: int) -> None:
    """Put the session's MLflow run back to RUNNING (a crash may have left it FAILED/KILLED)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    if client.get_run(run_id).info.status != "RUNNING":
        client.update_run(run_id, status="RUNNING")
    client.set_tag(run_id, "kosmos.status", "resumed")
    client.set_tag(run_id, "kosmos.resumed_after_round", str(from_round))
    with contextlib.suppress(Exception):  # a reason from before the resume is no longer true
        client.delete_tag(run_id, "kosmos.failure_reason")


def tag_interrupted(uri: str, run_id: str) -> None:
    """Say in MLflow that the session stopped with the server and can be resumed."""
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=uri).set_tag(run_id, "kosmos.status", "interrupted")


def _bounded(call: Callable[[], T], timeout: float, name: str) -> tuple[bool, T | None]:
    """``call()`` in a daemon thread, waited for at most ``timeout`` seconds: (answered, result).
    An MLflow that is down or hangs never holds up the server's start or stop for longer."""
    out: list[T] = []

    def run() -> None:
        with contextlib.suppress(Exception):
            out.append(call())

    worker = threading.Thread(target=run, name=name, daemon=True)
    worker.start()
    worker.join(timeout)
    return (True, out[0]) if out else (False, None)


def failed_in_mlflow(uri: str, run_id: str, timeout: float = 5.0) -> bool:
    """Whether the run is tagged ``kosmos.status=failed`` (by :func:`kosmos_fl.fl.tracking.fail_run`);
    False when MLflow does not answer within ``timeout`` (then the session is still offered)."""
    from mlflow.tracking import MlflowClient

    _, tags = _bounded(
        lambda: MlflowClient(tracking_uri=uri).get_run(run_id).data.tags, timeout, "kosmos-run-status"
    )
    return tags is not None and tags.get("kosmos.status") == "failed"


#: Seconds a stopping server waits for MLflow to tag the interrupted run (issue 21: it waited out
#: MLflow's whole retry budget while MLflow was down, and grace periods ended in SIGKILL).
TAG_TIMEOUT = 3.0


def tag_interrupted_bounded(uri: str, run_id: str, timeout: float | None = None) -> bool:
    """:func:`tag_interrupted`, waited for at most ``timeout`` seconds (default
    :data:`TAG_TIMEOUT`); best effort. False when MLflow did not answer in time or failed."""
    done, _ = _bounded(
        lambda: tag_interrupted(uri, run_id),
        TAG_TIMEOUT if timeout is None else timeout,
        "kosmos-tag-interrupted",
    )
    if not done:
        log.warning(
            "MLflow did not tag run %s as interrupted in time (it may be down); --resume still works", run_id
        )
    return done


class PendingResults:
    """Failed sessions' ``result.json`` that a full or failing disk refused: kept, and written
    once the disk takes them (issue 21). Without the file a restart would offer such a session
    for ``--resume`` whenever MLflow's failed tag could not be read in time."""

    def __init__(self) -> None:
        self._pending: dict[Path, dict[str, Any]] = {}

    def write(self, out_dir: Path, result: dict[str, Any]) -> None:
        """Write the result now, or keep it for :meth:`retry`."""
        if not self._write(out_dir, result):
            log.warning("session %s: its result waits for a writable disk (kept in memory)", out_dir.name)

    def retry(self) -> None:
        """Write what waits (the server calls it when the disk answers again and when it stops)."""
        for out_dir, result in list(self._pending.items()):
            if self._write(out_dir, result):
                log.info("session %s: its result is now written", out_dir.name)

    def _write(self, out_dir: Path, result: dict[str, Any]) -> bool:
        try:
            SessionFolder(out_dir).write_result(result)
        except (KosmosError, OSError):
            self._pending[out_dir] = result
            return False
        self._pending.pop(out_dir, None)
        return True


def failed_within(uri: str, budget: float) -> Callable[[str], bool]:
    """:func:`failed_in_mlflow` for the start-up check, all calls sharing one ``budget`` of
    seconds: a server whose MLflow is down still starts at once."""
    deadline = time.monotonic() + budget

    def failed(run_id: str) -> bool:
        return failed_in_mlflow(uri, run_id, max(0.0, deadline - time.monotonic()))

    return failed


def queue_failure(out_dir: Path, uri: str, run_id: str, reason: str) -> None:
    """End a failed session's MLflow run through its outbox (delivered once MLflow answers, even
    after a restart); when the outbox is on a full disk, tell MLflow directly (best effort)."""
    from kosmos_fl.fl import tracking

    try:
        tracking.queue_failure(out_dir, run_id, reason)
    except (KosmosError, OSError):
        with contextlib.suppress(Exception):
            tracking.fail_run(uri, run_id, reason)
