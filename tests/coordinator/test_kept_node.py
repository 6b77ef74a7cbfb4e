"""Issue 18: a client starts its SuperNode while it waits for a session and keeps it between
sessions; a lost connection stops it (the server may have restarted or revoked the client)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from kosmos_fl.config import ClientConfig
from kosmos_fl.coordinator import client as client_module
from kosmos_fl.coordinator.client import KosmosClient
from kosmos_fl.fl.session import NodeSpec
from tests.coordinator.test_client_once import _start_train


class FakeNode:
    """Stands in for KeptSuperNode: records what the client asked of it."""

    def __init__(self, node_file: Path) -> None:
        self.node_file = node_file
        self.calls: list[str] = []
        self.address: str | None = None
        self.node_id: int | None = None

    def ready(self) -> bool:
        return self.node_id is not None

    async def ensure(self, address: str) -> int | None:
        self.calls.append(f"ensure {address}")
        if self.address != address:
            self.address, self.node_id = address, 4242
        return self.node_id

    async def stop(self) -> None:
        self.calls.append("stop")
        self.address = self.node_id = None


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[KosmosClient, FakeNode, list[Any]]:
    monkeypatch.setattr(client_module, "check_criteria", lambda *a: {"criteria_are_met": True})
    c = KosmosClient(ClientConfig(socketio_address="127.0.0.1:6000", work_dir=str(tmp_path)), tmp_path)
    node = FakeNode(c.work_dir / "node.json")
    c.supernode = node  # type: ignore[assignment]
    sent: list[Any] = []

    async def emit(event: str, data: Any = None, **_: Any) -> None:
        sent.append((event, data))

    c.sio.emit = emit  # type: ignore[method-assign]
    c.sio.connected = True
    return c, node, sent


def test_an_eligible_client_starts_its_supernode_and_registers_with_its_id(
    client: tuple[KosmosClient, FakeNode, list[Any]],
) -> None:
    c, node, sent = client

    async def scenario() -> None:
        await c.register()
        await c.on_registered({"state": "eligible", "flwr_server_address": "srv:9092"})
        await asyncio.gather(*c._tasks)
        await c.on_registered({"state": "eligible", "flwr_server_address": "srv:9092"})  # ready
        await c.on_registered({"state": "ineligible"})

    asyncio.run(scenario())
    assert node.calls == ["ensure srv:9092"]  # once; nothing for the later answers
    criteria = [d for e, d in sent if e == "client_criteria"]
    assert "node_id" not in criteria[0] and criteria[1]["node_id"] == 4242


def test_sessions_reuse_the_supernode_and_rewrite_its_spec(
    client: tuple[KosmosClient, FakeNode, list[Any]],
) -> None:
    c, node, sent = client

    async def scenario() -> None:
        await node.ensure("127.0.0.1:9092")
        for session in ("s1", "s2"):
            await c.on_start_train(_start_train(session))
            assert NodeSpec.read(node.node_file).session_id == session
            await c.on_end_train({"session_id": session, "status": "completed"})

    asyncio.run(scenario())
    assert "stop" not in node.calls and node.node_id == 4242
    assert (c.work_dir / "sessions" / "s2" / "node.json").exists()  # the session's own record
    assert [d["node_id"] for e, d in sent if e == "client_criteria"] == [4242, 4242]


def test_a_lost_connection_stops_the_supernode(client: tuple[KosmosClient, FakeNode, list[Any]]) -> None:
    c, node, _ = client
    asyncio.run(node.ensure("127.0.0.1:9092"))
    asyncio.run(c.on_disconnect("transport close"))
    assert node.calls[-1] == "stop" and not node.ready()


def test_the_client_says_where_it_connects_and_checks_its_data_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 20: "connecting to ..." at once, and the data checked before the connection, so a site
    whose data is missing hears it at once; that check also serves the first registration."""
    order: list[str] = []

    def check(*_: Any) -> dict[str, Any]:
        order.append("check")
        return {"criteria_are_met": False, "reason": "no bearing folders in /nowhere"}

    monkeypatch.setattr(client_module, "check_criteria", check)
    c = KosmosClient(ClientConfig(socketio_address="127.0.0.1:6000", work_dir=str(tmp_path)), tmp_path)
    sent: list[Any] = []

    async def connect() -> bool:
        order.append("connect")
        await c.register()  # as on_connect does
        return False  # stop here

    async def emit(event: str, data: Any = None, **_: Any) -> None:
        sent.append((event, data))

    c._connect = connect  # type: ignore[method-assign]
    c.sio.emit = emit  # type: ignore[method-assign]
    with caplog.at_level("INFO", logger="kosmos_fl.client"):
        asyncio.run(c._run())
    assert order == ["check", "connect"]  # one check, before connecting, reused by the registration
    assert caplog.messages[0] == "connecting to 127.0.0.1:6000 as client"
    assert [m for m in caplog.messages if "criteria not met" in m] == [
        "criteria not met: no bearing folders in /nowhere (registering as not eligible)"
    ]
    assert sent[0][1]["criteria_are_met"] is False
