"""A full disk under the server's ``work_dir`` mid-session (issue 21, point 4), on a real tmpfs:
the session fails with a reason that names the disk, ``/health`` says not ok while it lasts and
turns back on its own, no ``.tmp`` file is left behind, and a restart does not offer ``--resume``
for the failed session. Before these fixes the reason was "Flower run ended (finished:failed)
without a result", ``/health`` said ok, and a restart announced the session as interrupted."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from kosmos_fl.fl.tracking import tracking_uri
from kosmos_fl.localfed import LocalFederation as Federation

pytestmark = pytest.mark.e2e


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs of its own, so filling it fills nothing else (mounting needs root: CI and
    this project's machines run the suite as root; elsewhere the test says what it needs)."""
    if os.geteuid() != 0:
        pytest.fail("test_full_disk mounts a tmpfs and needs root; run the suite as root (as CI does)")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _health(fed: Federation) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"{fed.url}/health", timeout=5) as resp:
            return dict(json.loads(resp.read()))
    except urllib.error.HTTPError as exc:
        return dict(json.loads(exc.read()))


def _fill(disk: Path) -> Path:
    """Write zeros until the disk is full; returns the filler file."""
    filler = disk / "filler.bin"
    with contextlib.suppress(OSError), filler.open("wb") as fh:
        block = b"\0" * (1 << 20)
        while True:
            fh.write(block)
            fh.flush()
    return filler


def _round_seen(fed: Federation, work_dir: Path, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in work_dir.glob("sessions/*/progress.jsonl"):
            for line in path.read_text(encoding="utf-8").splitlines():
                with contextlib.suppress(ValueError):
                    ev = json.loads(line)
                    if ev.get("event") == "round" and ev.get("round") == n:
                        return
        assert fed.server is not None and fed.server.alive(), fed.server.tail(30) if fed.server else ""
        time.sleep(0.2)
    raise AssertionError(f"round {n} not seen within {timeout} s")


def test_a_full_work_dir_fails_the_session_by_name_and_is_never_offered_for_resume(
    federation: Federation, generated_bearings: Path, small_disk: Path
) -> None:
    work_dir = small_disk / "server"
    config = {
        "work_dir": str(work_dir),
        "num_clients": 2,
        "n_federated_train_epoch": 6,
        "data_path": str(generated_bearings),
        "test_bearings": ["Bearing1_3"],
        "mlflow_experiment_name": "disk",
        "usecase": {"name": "BearingUseCase", "broadcast_params": {"model": "ffnn"}},
        "training": {"local_epochs": 1, "batch_size": 32},
    }
    federation.start_server(timeout=300, **config)
    slow = {"KOSMOS_FL_FAULT": "delay:1"}  # rounds stay open long enough for the disk to fill mid-session
    for name, bearing in (("site-a", "Bearing1_1"), ("site-b", "Bearing2_1")):
        federation.start_client(
            name, extra_env=slow, data_path=str(generated_bearings), bearings=[bearing], torch_threads=1
        )
    _round_seen(federation, work_dir, 1, timeout=480)
    filler = _fill(small_disk)

    done = federation.wait_sessions(1, timeout=300)[0]
    assert done["status"] == "failed", done
    assert "No space left on device" in done["reason"], done
    health = _health(federation)
    assert health["ok"] is False and "No space left on device" in health["reason"], health

    filler.unlink()  # the operator frees space: /health turns back on its own
    assert _health(federation) == {"ok": True}
    # the run's end goes through the session's outbox (issue 21), delivered once it can be
    ml = MlflowClient(tracking_uri=tracking_uri(str(federation.root / "mlruns")))
    deadline = time.monotonic() + 60
    while (run := ml.get_run(done["mlflow_run_id"])).info.status != "FAILED":
        assert time.monotonic() < deadline, (run.info.status, run.data.tags)
        time.sleep(1.0)
    assert "No space left on device" in run.data.tags["kosmos.failure_reason"]
    assert list(work_dir.rglob("*.tmp")) == [], "a half-written temporary file was left behind"

    assert federation.server is not None
    federation.server.stop(timeout=30)
    server = federation.start_server(timeout=300, **config)
    time.sleep(2.0)  # the start-up check of interrupted sessions runs before /status answers
    log = server.tail(200)
    assert "--resume" not in log, log
    assert (federation.status() or {}).get("session") is None
