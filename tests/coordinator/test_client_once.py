"""Issue 21 point 6: `--once` means once. A client whose connection broke mid-session (so the
server dropped it) exits with a non-completed result instead of registering for another session."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from kosmos_fl.config import ClientConfig
from kosmos_fl.coordinator.client import KosmosClient


class _SuperNode:
    stopped = False

    def stop(self) -> None:
        self.stopped = True


def _reconnect_during_session(tmp_path: Path, once: bool) -> tuple[KosmosClient, _SuperNode, list[Any]]:
    client = KosmosClient(
        ClientConfig(socketio_address="127.0.0.1:6000", work_dir=str(tmp_path)), tmp_path, once=once
    )
    node = _SuperNode()
    client.supernode = node  # type: ignore[assignment]  # in a session
    registered: list[Any] = []

    async def register() -> None:
        registered.append(True)

    client.register = register  # type: ignore[method-assign]
    asyncio.run(client.on_connect())
    return client, node, registered


def test_once_client_dropped_mid_session_exits(tmp_path: Path) -> None:
    client, node, registered = _reconnect_during_session(tmp_path, once=True)
    assert node.stopped and client.supernode is None
    assert registered == []
    assert client.done.is_set()
    assert client.last_result is not None and client.last_result["status"] == "dropped"


def test_long_running_client_dropped_mid_session_registers_again(tmp_path: Path) -> None:
    client, node, registered = _reconnect_during_session(tmp_path, once=False)
    assert node.stopped and registered == [True]
    assert not client.done.is_set()
