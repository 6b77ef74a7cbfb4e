"""Flower CLI calls that must not crash their caller when the machine is too busy to answer."""

from __future__ import annotations

import subprocess
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
