"""The warm SuperExec's executor: which tasks it forks from its template, and when it starts cold.

The template here is a stand-in process that writes the task lines it receives to a file, so these
tests see exactly what a real template would be asked to fork, without the real one's warm-up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from queue import Queue
from typing import Any

import pytest
from flwr.supercore.constant import TaskType
from flwr.supercore.superexec.executor.types import ExecutionSpec, LaunchResult, LaunchResultStatus

from kosmos_fl.fl.flower_runtime import warm_exec

#: A stand-in template: appends each task line to the file named by its argument.
_RECORDER = (
    "import sys\n"
    "with open(sys.argv[1], 'a') as out:\n"
    "    for line in sys.stdin:\n"
    "        out.write(line); out.flush()\n"
)


class _Fallback:
    def __init__(self) -> None:
        self.launched: list[ExecutionSpec] = []

    def launch(self, spec: ExecutionSpec) -> LaunchResult:
        self.launched.append(spec)
        return LaunchResult.accepted()


def _spec(task_type: TaskType, task_id: int = 7) -> ExecutionSpec:
    return ExecutionSpec(
        task_type=task_type, runtime_api_address="127.0.0.1:9091", token="tok-" + str(task_id),
        insecure=False, root_certificates_path="/certs/ca.pem", runtime_dependency_install=False,
        parent_pid=4242, suppress_output=task_type == TaskType.SERVER_APP, task_id=task_id,
    )  # fmt: skip


@pytest.fixture
def executor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A WarmExecutor whose templates are recorders (``executor.spawned`` counts them)."""
    spawned: list[subprocess.Popen[bytes]] = []

    def spawn(self: warm_exec.WarmExecutor) -> None:
        self._template = subprocess.Popen(
            [sys.executable, "-c", _RECORDER, str(tmp_path / f"template-{len(spawned)}.jsonl")],
            stdin=subprocess.PIPE,
        )
        spawned.append(self._template)

    monkeypatch.setattr(warm_exec.WarmExecutor, "_spawn", spawn)
    ex = warm_exec.WarmExecutor()
    ex._fallback = _Fallback()  # type: ignore[assignment]
    ex.spawned = spawned  # type: ignore[attr-defined]
    yield ex
    for proc in spawned:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def _lines(path: Path, n: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if path.exists() and len(lines := path.read_text().splitlines()) >= n:
            return [json.loads(line) for line in lines]
        time.sleep(0.05)
    raise AssertionError(f"{path} did not get {n} task lines")


@pytest.mark.parametrize("task_type", [TaskType.SERVER_APP, TaskType.CLIENT_APP])
def test_server_and_client_apps_are_forked_from_the_template(
    executor: Any, tmp_path: Path, task_type: TaskType
) -> None:
    assert executor.launch(_spec(task_type)).status == LaunchResultStatus.ACCEPTED
    (task,) = _lines(tmp_path / "template-0.jsonl", 1)
    assert task == {
        "task_type": str(task_type),
        "runtime_api_address": "127.0.0.1:9091",
        "token": "tok-7",
        "insecure": False,
        "root_certificates_path": "/certs/ca.pem",
        "parent_pid": 4242,
        "suppress_output": task_type == TaskType.SERVER_APP,
    }
    assert executor._fallback.launched == []
    assert len(executor.spawned) == 1


def test_other_task_types_start_cold(executor: Any) -> None:
    spec = _spec(TaskType.SIMULATION)
    executor.launch(spec)
    assert executor._fallback.launched == [spec]


def test_a_dead_template_means_a_cold_start_and_a_new_template(executor: Any, tmp_path: Path) -> None:
    executor.spawned[0].kill()
    executor.spawned[0].wait(10)
    first = _spec(TaskType.SERVER_APP, task_id=1)
    assert executor.launch(first).status == LaunchResultStatus.ACCEPTED
    assert executor._fallback.launched == [first]  # this task: Flower's cold start
    assert len(executor.spawned) == 2  # and a new template for the next ones
    executor.launch(_spec(TaskType.SERVER_APP, task_id=2))
    assert [t["token"] for t in _lines(tmp_path / "template-1.jsonl", 1)] == ["tok-2"]
    assert executor._fallback.launched == [first]


def test_the_forked_server_app_runs_what_flwr_serverapp_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The child's part after the fork: Flower's ``run_serverapp`` with the task's token, address,
    TLS and parent pid, its output mirrored to the log queue the ServerApp uploads, then restored;
    the exit code is that of Flower's ``flwr_exit``."""
    import flwr.supercore.logger
    import flwr.superlink.runtime
    import torch

    calls: dict[str, Any] = {}
    logger = flwr.supercore.logger
    monkeypatch.setattr(logger, "mirror_output_to_queue", lambda q: calls.setdefault("queue", q))
    monkeypatch.setattr(logger, "restore_output", lambda: calls.setdefault("restored", True))

    def run_serverapp(**kwargs: Any) -> None:
        calls["run"] = kwargs
        raise SystemExit(0)  # as flwr_exit ends it

    monkeypatch.setattr(flwr.superlink.runtime, "run_serverapp", run_serverapp)
    monkeypatch.delenv(warm_exec.FORKED_AT_ENV, raising=False)
    threads = torch.get_num_threads()
    task = {
        "task_type": "flwr-serverapp", "runtime_api_address": "127.0.0.1:9091", "token": "tok",
        "insecure": True, "root_certificates_path": None, "parent_pid": 4242, "suppress_output": False,
    }  # fmt: skip
    assert warm_exec._child(task, threads, 123.0) == 0
    run = calls["run"]
    assert run["log_queue"] is calls["queue"] and isinstance(run["log_queue"], Queue)
    assert {k: v for k, v in run.items() if k != "log_queue"} == {
        "runtime_api_address": "127.0.0.1:9091", "token": "tok", "insecure": True, "certificates": None,
        "parent_pid": 4242, "runtime_dependency_install": False,
    }  # fmt: skip
    assert calls["restored"]
    assert os.environ[warm_exec.FORKED_AT_ENV] == "123.0"
