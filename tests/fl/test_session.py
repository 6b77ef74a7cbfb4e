"""The session folder contract: one quorum rule, one config mapping, one progress reader."""

from __future__ import annotations

import stat
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from kosmos_fl.config import load_server_config
from kosmos_fl.config.privacy import SecureAggregationConfig
from kosmos_fl.fl.session import (
    NodeSpec,
    ProgressReader,
    RejectedUpdateEvent,
    RoundEvent,
    SessionFolder,
    SessionSpec,
    append_jsonl,
    decide_quorum,
    node_spec_for_run,
    read_progress,
    write_atomic,
)


@pytest.mark.parametrize("clients", [1, 2, 3, 4, 10])
@pytest.mark.parametrize("min_fit", [None, 1, 2])
def test_quorum_is_the_configs(clients: int, min_fit: int | None) -> None:
    if min_fit is not None and min_fit > clients:
        return
    cfg = load_server_config(None, num_clients=clients, min_fit_clients=min_fit)
    assert decide_quorum(clients, min_fit) == cfg.quorum


def test_secure_aggregation_raises_the_quorum_to_its_own() -> None:
    sa = SecureAggregationConfig()
    assert decide_quorum(4, 1, sa) == max(sa.quorum(4), 1)


def test_from_config_takes_the_session_settings_and_the_overrides(tmp_path: Path) -> None:
    cfg = load_server_config(None, num_clients=4, n_federated_train_epoch=7)
    spec = SessionSpec.from_config(
        cfg,
        session_id="s1",
        out_dir=str(tmp_path),
        usecase_name="BearingUseCase",
        usecase_version="1",
        data_path=str(tmp_path),
        mlflow_tracking_uri="file:x",
        mlflow_run_id="r",
        registered_model_name="m",
    )
    assert (spec.num_clients, spec.min_fit_clients, spec.num_rounds) == (4, cfg.quorum, 7)
    assert spec.test_names == list(cfg.test_bearings)
    assert spec.local_epochs == cfg.training.local_epochs
    sim = SessionSpec.from_config(cfg, **{**spec.model_dump(), "num_clients": 9, "min_fit_clients": 9})
    assert (sim.num_clients, sim.min_fit_clients) == (9, 9)


def test_reader_takes_complete_lines_once_and_types_them(tmp_path: Path) -> None:
    folder = SessionFolder(tmp_path)
    reader = ProgressReader(folder.progress_file)
    assert reader.read() == []
    folder.append_progress(RoundEvent(round=0, metrics={"RMSE": 2.0}))
    folder.append_progress(RejectedUpdateEvent(round=1, client="7", reason="norm"))
    with folder.progress_file.open("a", encoding="utf-8") as fh:
        fh.write('{"event": "round", "round": 1, "metr')  # being written right now
    events = reader.read()
    assert [type(e) for e in events] == [RoundEvent, RejectedUpdateEvent]
    assert events[0].row() == {"event": "round", "round": 0, "metrics": {"RMSE": 2.0}}
    with folder.progress_file.open("a", encoding="utf-8") as fh:
        fh.write('ics": {"RMSE": 1.0}, "lat": 0.5}\n')
    (event,) = reader.read()
    assert event.row() == {"event": "round", "round": 1, "metrics": {"RMSE": 1.0}, "lat": 0.5}
    append_jsonl(folder.progress_file, {"event": "something_new", "round": 2})
    assert [r["round"] for r in read_progress(folder.progress_file)] == [0, 1]


def test_write_atomic_leaves_no_temporary_file_and_can_be_private(tmp_path: Path) -> None:
    path = write_atomic(tmp_path / "a" / "key.pem", b"secret", private=True)
    assert path.read_bytes() == b"secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    write_atomic(path, lambda fh: fh.write(b"new"))
    assert path.read_bytes() == b"new"
    assert sorted(p.name for p in path.parent.iterdir()) == ["key.pem"]


def test_a_full_disk_is_named_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    """Issue 21: ENOSPC while writing a session file fails with the disk named, the old file
    intact and no 0-byte .tmp left behind."""
    import errno

    from kosmos_fl.errors import StorageError
    from kosmos_fl.fl.session.folder import write_atomic

    target = tmp_path / "session.json"
    target.write_text("old")

    def full_disk(fh: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(
        StorageError, match=r"cannot write .*session\.json: No space left on device \(ENOSPC\)"
    ):
        write_atomic(target, full_disk)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["session.json"]

    def bug(fh: object) -> None:
        raise ValueError("not a disk problem")

    with pytest.raises(ValueError, match="not a disk problem"):
        write_atomic(target, bug)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["session.json"]


def test_write_problem_reports_a_full_disk_and_clears_on_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 21: /health says not ok, with the reason, while work_dir cannot be written, and ok
    again once it can; the probe leaves no .tmp behind."""
    import errno

    from kosmos_fl.fl.session import folder, write_problem

    assert write_problem(tmp_path) is None

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(folder.os, "fsync", full)
    reason = write_problem(tmp_path)
    assert reason is not None and "No space left on device (ENOSPC)" in reason and str(tmp_path) in reason
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.undo()  # the disk has space again
    assert write_problem(tmp_path) is None
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("x")
    assert write_problem(blocked) is not None  # a file where the folder should be


# ----------------------------------------------------------- the spec a kept SuperNode reads


def _node(session_id: str, data_path: str) -> NodeSpec:
    return NodeSpec(
        session_id=session_id,
        client_id=0,
        usecase_name="BearingUseCase",
        usecase_version="1",
        usecase_params={},
        data_path=data_path,
        selection=None,
    )


def _context(path: Path, session_id: str) -> Any:
    return SimpleNamespace(node_config={"session-file": str(path)}, run_config={"session-id": session_id})


def test_a_clientapp_waits_for_the_spec_of_its_own_session(tmp_path: Path) -> None:
    """A kept SuperNode can get round 1 a moment before its client handled start_train: the
    ClientApp must not train with the previous session's spec."""
    path = tmp_path / "node.json"
    _node("old", str(tmp_path)).write(path)
    timer = threading.Timer(0.3, lambda: _node("new", str(tmp_path)).write(path))
    timer.start()
    try:
        assert node_spec_for_run(_context(path, "new"), timeout=20).session_id == "new"
    finally:
        timer.cancel()


def test_a_spec_that_never_comes_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "node.json"
    with pytest.raises(RuntimeError, match=r"no spec .* session s2; .*start_train"):
        node_spec_for_run(_context(path, "s2"), timeout=0.2)
    _node("s1", str(tmp_path)).write(path)
    with pytest.raises(RuntimeError, match=r"has session s1 .* for session s2"):
        node_spec_for_run(_context(path, "s2"), timeout=0.2)


def test_runs_without_a_session_id_take_the_spec_as_it_is(tmp_path: Path) -> None:
    """Simulations (and runs submitted before session-id existed) have no id to check."""
    path = _node("s1", str(tmp_path)).write(tmp_path / "node.json")
    assert node_spec_for_run(_context(path, ""), timeout=0).session_id == "s1"
