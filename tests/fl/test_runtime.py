"""Flower runtime calls (Control API, SuperNode ids) must not crash their caller on a busy machine."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import pytest

from kosmos_fl.errors import FederationError
from kosmos_fl.fl.flower_runtime import control, runtime


def test_a_superlink_that_does_not_answer_is_unknown_status_not_an_exception(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The session watcher polls ``run_status``; a slow answer once crashed it (issue 18)."""
    monkeypatch.setattr(control, "TIMEOUT", 0.5)
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        runtime.write_connection(tmp_path, f"127.0.0.1:{silent.getsockname()[1]}")
        assert runtime.run_status(tmp_path, 1) == "unknown"
        runtime.stop_run(tmp_path, 1)  # best effort: no exception either
        with pytest.raises(FederationError, match="Flower refused the training run"):
            runtime.submit_run(tmp_path, {"session-file": "x"})
    assert runtime.run_status(tmp_path / "nowhere", 1) == "unknown"  # no connection file


def test_node_id_is_read_from_this_supernode_start_only(tmp_path: Path) -> None:
    """A kept SuperNode's id comes from its log; an id an earlier SuperNode wrote into the same
    (appended) log must not be taken for the new one's."""
    log = tmp_path / "supernode.log"
    log.write_text("INFO :      SuperNode ID: 111\n")
    script = (
        "import time; time.sleep(0.3); print('INFO :      SuperNode ID: 222', flush=True); time.sleep(30)"
    )
    node = runtime.ManagedProcess.start("SuperNode", [sys.executable, "-c", script], dict(os.environ), log)
    try:
        assert runtime.wait_node_id(node, timeout=20) == 222
    finally:
        node.stop()


def test_no_node_id_when_the_supernode_dies_first(tmp_path: Path) -> None:
    node = runtime.ManagedProcess.start(
        "SuperNode", [sys.executable, "-c", "raise SystemExit(1)"], dict(os.environ), tmp_path / "n.log"
    )
    t0 = time.monotonic()
    assert runtime.wait_node_id(node, timeout=20) is None
    assert time.monotonic() - t0 < 10  # gave up because it died, not by waiting out the timeout


def test_a_stopped_companion_is_named(tmp_path: Path) -> None:
    """/health reports the SuperLink's SuperExec too: without it no session's ServerApp starts."""
    env = runtime.flower_env(tmp_path)
    log_path = tmp_path / "link.log"
    link = runtime.ManagedProcess.start("SuperLink", ["sleep", "30"], env, log_path)
    link.companions.append(runtime.ManagedProcess.start("SuperExec", ["true"], env, log_path))
    try:
        link.companions[0].proc.wait(10)
        assert link.not_running() == ["SuperExec"]
    finally:
        link.stop(timeout=2)
    assert link.not_running() == ["SuperLink", "SuperExec"]
