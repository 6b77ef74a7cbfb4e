"""Finding interrupted sessions and keeping client ids when a session resumes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kosmos_fl.coordinator.resume import PendingResults, assign_ids, find_interrupted, write_clients
from kosmos_fl.fl.rounds import checkpoint
from kosmos_fl.fl.rounds.checkpoint import Checkpoint
from kosmos_fl.fl.session import SessionSpec


def _spec(out: Path, sid: str) -> SessionSpec:
    return SessionSpec(
        session_id=sid, out_dir=str(out), usecase_name="BearingUseCase", usecase_version="1",
        usecase_params={}, num_clients=2, min_fit_clients=2, num_rounds=3, strategy_name="FedAvg",
        local_epochs=1, learning_rate=0.001, batch_size=32, seed=1, data_path="/d", test_names=[],
        mlflow_tracking_uri="sqlite:///x.db", mlflow_run_id=f"run-{sid}", registered_model_name="m",
        round_timeout=10, join_timeout=10,
    )  # fmt: skip


def test_find_interrupted_newest_first_skips_finished(tmp_path: Path) -> None:
    sessions = tmp_path / "sessions"
    for sid in ("20260101-000000-aaaaaa", "20260102-000000-bbbbbb", "20260103-000000-cccccc"):
        _spec(sessions / sid, sid).write(sessions / sid / "session.json")
    (sessions / "20260103-000000-cccccc" / "result.json").write_text('{"status": "completed"}')
    b = sessions / "20260102-000000-bbbbbb"
    ck = Checkpoint(session_id="b", mlflow_run_id="run-b", round=2, weights_file="")
    checkpoint.save(b, ck, [np.zeros(1, dtype=np.float32)])
    write_clients(b, ["site-a", "site-b"])
    (sessions / "broken").mkdir()
    (sessions / "broken" / "session.json").write_text("{not json")

    found = find_interrupted(tmp_path)
    assert [p.spec.session_id for p in found] == ["20260102-000000-bbbbbb", "20260101-000000-aaaaaa"]
    assert found[0].round == 2 and found[0].names == {0: "site-a", 1: "site-b"}
    assert found[1].round == -1
    assert find_interrupted(tmp_path / "nothing") == []


def test_assign_ids_keeps_previous_ids_by_name() -> None:
    previous = {0: "site-a", 1: "site-b", 2: "site-c"}
    names = {"s1": "site-c", "s2": "new", "s3": "site-a"}
    assert assign_ids(["s1", "s2", "s3"], names, previous) == ["s3", "s2", "s1"]
    assert assign_ids(["x", "y"], {}, {}) == ["x", "y"]


def test_a_session_its_mlflow_run_says_failed_is_not_offered_for_resume(tmp_path: Path) -> None:
    """Issue 21 point 4: a session that failed while its result.json could not be written (a full
    disk) has no result file; its MLflow run, tagged failed, keeps it from being called resumable."""
    from mlflow.tracking import MlflowClient

    from kosmos_fl.coordinator.resume import failed_in_mlflow, reopen_run
    from kosmos_fl.fl.tracking import fail_run, tracking_uri

    uri = tracking_uri(str(tmp_path / "mlruns"))
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("e")
    failed_run, ok_run = (client.create_run(exp).info.run_id for _ in range(2))
    fail_run(uri, failed_run, "No space left on device")
    sessions = tmp_path / "sessions"
    for sid, run in (("20260101-000000-aaaaaa", failed_run), ("20260102-000000-bbbbbb", ok_run)):
        _spec(sessions / sid, sid).model_copy(update={"mlflow_run_id": run}).write(
            sessions / sid / "session.json"
        )

    found = find_interrupted(tmp_path, lambda run: failed_in_mlflow(uri, run))
    assert [p.spec.session_id for p in found] == ["20260102-000000-bbbbbb"]
    assert not failed_in_mlflow("http://127.0.0.1:9", failed_run, timeout=2)  # unreachable: still offered

    # a failed run resumed by hand (after deleting result.json, as OPERATIONS.md says) sheds the old reason
    reopen_run(uri, failed_run, 3)
    tags = client.get_run(failed_run).data.tags
    assert tags["kosmos.status"] == "resumed" and "kosmos.failure_reason" not in tags


def test_a_result_the_full_disk_refused_is_written_once_the_disk_takes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed session whose result.json could not be written (full disk) would be offered for
    --resume after a restart; the pending result is written on the next try that succeeds."""
    from kosmos_fl.errors import StorageError
    from kosmos_fl.fl.session import SessionFolder

    folder = tmp_path / "sessions" / "s1"
    _spec(folder, "s1").write(SessionFolder(folder).spec_file)
    real = SessionFolder.write_result
    full = {"disk": True}

    def write_result(self: SessionFolder, result: dict[str, Any]) -> Any:
        if full["disk"]:
            raise StorageError(f"cannot write {self.result_file}: No space left on device (ENOSPC)")
        return real(self, result)

    monkeypatch.setattr(SessionFolder, "write_result", write_result)
    pending = PendingResults()
    pending.write(folder, {"status": "failed", "reason": "disk full"})
    assert not (folder / "result.json").exists()
    assert [p.spec.session_id for p in find_interrupted(tmp_path)] == ["s1"]  # what a restart saw

    pending.retry()  # still full: kept
    assert not (folder / "result.json").exists()
    full["disk"] = False
    pending.retry()
    assert SessionFolder(folder).read_result() == {"status": "failed", "reason": "disk full"}
    assert find_interrupted(tmp_path) == []
