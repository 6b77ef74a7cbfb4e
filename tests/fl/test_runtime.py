"""Flower CLI calls that must not crash their caller when the machine is too busy to answer."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kosmos_fl.fl.flower_runtime import runtime


def _too_slow(*args: Any, **kwargs: Any) -> None:
    raise subprocess.TimeoutExpired(cmd="flwr", timeout=kwargs.get("timeout", 60))


def test_a_run_status_that_times_out_is_unknown_not_an_exception(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The session watcher polls ``run_status``; a slow ``flwr ls`` once crashed it (issue 18)."""
    monkeypatch.setattr(runtime.subprocess, "run", _too_slow)
    assert runtime.run_status(tmp_path, 1, tmp_path) == "unknown"
    runtime.stop_run(tmp_path, 1, tmp_path)  # best effort: no exception either


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
