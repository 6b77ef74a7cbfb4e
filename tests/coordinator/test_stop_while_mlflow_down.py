"""Issue 21 point 5: a graceful stop does not wait on MLflow. Tagging the interrupted run is
bounded; while MLflow hangs, the session is still marked resumable on disk and the stop goes on."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from kosmos_fl.coordinator import resume
from kosmos_fl.coordinator.sessions import Session
from kosmos_fl.fl.session import SessionFolder

from .pieces import Pieces, server_config


@pytest.fixture
def hanging_mlflow(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    release = threading.Event()
    calls: list[str] = []

    def tag(uri: str, run_id: str) -> None:  # MLflow down: the call hangs in its retries
        calls.append(run_id)
        release.wait(60)

    monkeypatch.setattr(resume, "tag_interrupted", tag)
    monkeypatch.setattr(resume, "TAG_TIMEOUT", 0.3)
    yield calls
    release.set()


def test_bounded_tag_gives_up_while_mlflow_hangs(hanging_mlflow: list[str]) -> None:
    t0 = time.monotonic()
    assert resume.tag_interrupted_bounded("http://127.0.0.1:9", "run-1") is False
    assert hanging_mlflow == ["run-1"]
    assert time.monotonic() - t0 < 30  # far below the hang: it did not wait for MLflow


def test_interrupt_session_marks_resumable_without_waiting(tmp_path: Path, hanging_mlflow: list[str]) -> None:
    pieces = Pieces(tmp_path, server_config(tmp_path, num_clients=2))
    out = tmp_path / "w" / "sessions" / "s1"
    out.mkdir(parents=True)
    pieces.sessions.session = Session("s1", ["a", "b"], out, "run-9", time.time(), status="running")
    t0 = time.monotonic()
    pieces.sessions.interrupt_session()
    assert time.monotonic() - t0 < 30
    assert hanging_mlflow == ["run-9"]
    assert SessionFolder(out).interrupted_file.is_file()
    assert pieces.sessions.session.status == "interrupted"
    # MLflow did not answer in time: the tag waits in the outbox for the next start (issue 21.1)
    from kosmos_fl.fl.tracking import Outbox

    assert [e for _, e in Outbox(out).pending()] == [
        {"kind": "tag", "run": "run-9", "key": "kosmos.status", "value": "interrupted"}
    ]


def test_bounded_tag_reports_success(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    monkeypatch.setattr(resume, "tag_interrupted", lambda uri, run_id: seen.append(run_id))
    assert resume.tag_interrupted_bounded("sqlite:///x.db", "run-2") is True
    assert seen == ["run-2"]
