"""Issue 21 point 6: `--once` means once. A client whose connection broke mid-session (so the
server dropped it) may rejoin that same session when a restarted server resumes it, but it exits
with a non-completed result instead of training in another session."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from kosmos_fl.config import ClientConfig
from kosmos_fl.coordinator.client import KosmosClient
from kosmos_fl.usecases.bearing import BearingUseCase


class _SuperNode:
    stopped = False

    def stop(self) -> None:
        self.stopped = True

    def alive(self) -> bool:
        return not self.stopped


def _start_train(session_id: str) -> dict[str, Any]:
    return {
        "session_id": session_id,
        "client_id": 0,
        "mlflow_experiment_name": "kosmos",
        "mlflow_server_address": "",
        "mlflow_run_id": "run",
        "flwr_server_address": "127.0.0.1:9092",
        "usecase_name": "BearingUseCase",
        "usecase_params": {},
        "usecase_version": BearingUseCase.version,
        "num_clients": 2,
        "n_federated_train_epoch": 1,
    }


def _dropped_client(tmp_path: Path, once: bool) -> tuple[KosmosClient, _SuperNode, list[Any]]:
    """A client in session s1 whose connection broke and came back."""
    client = KosmosClient(
        ClientConfig(socketio_address="127.0.0.1:6000", work_dir=str(tmp_path)), tmp_path, once=once
    )
    node = _SuperNode()
    client.supernode.process = node  # type: ignore[assignment]
    client.session_id, client.in_session = "s1", True
    registered: list[Any] = []

    async def register() -> None:
        registered.append(True)

    client.register = register  # type: ignore[method-assign]
    asyncio.run(client.on_connect())
    return client, node, registered


def test_once_client_dropped_mid_session_does_not_join_another(tmp_path: Path) -> None:
    client, node, registered = _dropped_client(tmp_path, once=True)
    assert node.stopped and client.supernode.process is None
    assert registered == [True]  # a restarted server may resume s1 with it
    assert not client.done.is_set()
    asyncio.run(client.on_start_train(_start_train("s2")))  # another session: refuse and exit
    assert client.done.is_set()
    assert client.supernode.process is None
    assert client.last_result is not None and client.last_result["status"] == "dropped"
    assert "s1" in client.last_result["reason"]


def test_long_running_client_dropped_mid_session_keeps_going(tmp_path: Path) -> None:
    client, node, registered = _dropped_client(tmp_path, once=False)
    assert node.stopped and registered == [True]
    assert client.dropped_from == "s1" and not client.done.is_set()
