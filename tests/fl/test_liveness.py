"""The round loop stops waiting for clients the coordinator saw disconnect, and only for those."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from kosmos_fl.errors import FederationError
from kosmos_fl.fl.rounds import liveness
from kosmos_fl.fl.rounds.liveness import (
    LiveGrid,
    SessionClients,
    mark_dead,
    read_dead,
    send_and_collect,
    wait_for_nodes,
)


def _msg(dst: int) -> Any:
    return SimpleNamespace(metadata=SimpleNamespace(dst_node_id=dst))


def _reply(src: int, to: str, client_id: int | None) -> Any:
    metrics = {} if client_id is None else {"client-id": client_id}
    return SimpleNamespace(
        metadata=SimpleNamespace(src_node_id=src, reply_to_message_id=to),
        has_error=lambda: False,
        content=SimpleNamespace(metric_records={"metrics": metrics}),
    )


class FakeGrid:
    """Answers for the nodes in ``answers`` (node -> client id) after ``delay`` seconds."""

    def __init__(self, nodes: list[int], answers: dict[int, int], delay: float = 0.0) -> None:
        self.nodes = nodes
        self.answers = answers
        self.delay = delay
        self.sent: dict[str, int] = {}
        self.t0 = 0.0

    def get_node_ids(self) -> list[int]:
        return list(self.nodes)

    def push_messages(self, messages: list[Any]) -> list[str]:
        self.t0 = time.monotonic()
        ids = [f"m{m.metadata.dst_node_id}" for m in messages]
        self.sent = {i: m.metadata.dst_node_id for i, m in zip(ids, messages, strict=True)}
        return ids

    def pull_messages(self, ids: list[str]) -> list[Any]:
        if time.monotonic() - self.t0 < self.delay:
            return []
        return [
            _reply(self.sent[i], i, self.answers[self.sent[i]]) for i in ids if self.sent[i] in self.answers
        ]


@pytest.fixture(autouse=True)
def fast_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(liveness, "POLL_SECONDS", 0.01)


def test_dead_file_roundtrip_keeps_first_reason(tmp_path: Path) -> None:
    mark_dead(tmp_path, 2, "disconnected: transport close")
    mark_dead(tmp_path, 2, "again")
    mark_dead(tmp_path, 0, "gone")
    assert read_dead(tmp_path) == {2: "disconnected: transport close", 0: "gone"}
    assert read_dead(tmp_path / "missing") == {}


def test_all_replies_collected_and_nodes_mapped(tmp_path: Path) -> None:
    clients = SessionClients(tmp_path, 3)
    grid = FakeGrid([10, 11, 12], {10: 0, 11: 1, 12: 2}, delay=0.05)
    got = send_and_collect(grid, [_msg(n) for n in grid.nodes], clients, timeout=5)
    assert len(got.replies) == 3 and got.dropped == [] and got.timed_out == []
    assert clients.node_client == {10: 0, 11: 1, 12: 2}


def test_unknown_node_of_dead_client_is_given_up_quickly(tmp_path: Path) -> None:
    # round 1: node 12 never answers; its client (2) is reported dead; nothing maps 12 to 2 yet
    clients = SessionClients(tmp_path, 3)
    grid = FakeGrid([10, 11, 12], {10: 0, 11: 1})
    mark_dead(tmp_path, 2, "disconnected")
    t0 = time.monotonic()
    got = send_and_collect(grid, [_msg(n) for n in grid.nodes], clients, timeout=30)
    assert time.monotonic() - t0 < 5
    assert got.dropped == [12] and len(got.replies) == 2 and got.timed_out == []


def test_unknown_node_is_awaited_while_a_living_client_is_unmapped(tmp_path: Path) -> None:
    clients = SessionClients(tmp_path, 3)
    grid = FakeGrid([10, 11, 12], {10: 0})  # clients 1 and 2 silent; only 2 is dead
    mark_dead(tmp_path, 2, "disconnected")
    got = send_and_collect(grid, [_msg(n) for n in grid.nodes], clients, timeout=0.3)
    assert got.dropped == [] and got.timed_out == [11, 12]  # cannot tell which one is 2's


def test_live_grid_excludes_nodes_of_dead_clients(tmp_path: Path) -> None:
    clients = SessionClients(tmp_path, 3, node_client={10: 0, 11: 1, 12: 2})
    grid = LiveGrid(FakeGrid([10, 11, 12], {}), clients)
    assert grid.get_node_ids() == [10, 11, 12]
    mark_dead(tmp_path, 1, "disconnected")
    assert grid.get_node_ids() == [10, 12]
    # an unmapped node is only worth a message while some living client is unmapped
    clients2 = SessionClients(tmp_path, 3, node_client={10: 0, 12: 2})
    assert LiveGrid(FakeGrid([10, 11, 12], {}), clients2).get_node_ids() == [10, 12]
    assert clients2.alive_count() == 2


def test_wait_for_nodes_fails_fast_when_quorum_is_lost(tmp_path: Path) -> None:
    clients = SessionClients(tmp_path, 3)
    mark_dead(tmp_path, 0, "disconnected")
    mark_dead(tmp_path, 1, "disconnected")
    with pytest.raises(FederationError, match="quorum lost before round 1: 1 client"):
        wait_for_nodes(FakeGrid([], {}), clients, quorum=2, timeout=60)


def test_wait_for_nodes_goes_on_with_quorum_after_timeout(tmp_path: Path) -> None:
    clients = SessionClients(tmp_path, 3)
    assert wait_for_nodes(FakeGrid([1, 2], {}), clients, quorum=2, timeout=0.1) == [1, 2]
    with pytest.raises(FederationError, match="only 1 of 3 clients joined"):
        wait_for_nodes(FakeGrid([1], {}), clients, quorum=2, timeout=0.1)


# ------------------------------------------------------------- kept SuperNodes of other clients


def test_member_grid_hides_the_kept_nodes_of_clients_outside_the_session(tmp_path: Path) -> None:
    liveness.write_nodes(tmp_path, {0: 11, 1: 12}, others=[13])
    clients = SessionClients(tmp_path, 2)
    grid = liveness.MemberGrid(FakeGrid([11, 12, 13, 14], {}), clients)
    assert grid.get_node_ids() == [11, 12]  # every client announced its node: only those
    assert clients.client_of(12) == 1  # known before any reply
    assert wait_for_nodes(grid, clients, quorum=2, timeout=1.0) == [11, 12]


def test_without_every_node_announced_only_the_known_outsiders_are_hidden(tmp_path: Path) -> None:
    liveness.write_nodes(tmp_path, {0: 11}, others=[13])
    grid = liveness.MemberGrid(FakeGrid([11, 12, 13], {}), SessionClients(tmp_path, 2))
    assert grid.get_node_ids() == [11, 12]


def test_a_node_claimed_twice_does_not_narrow_the_session(tmp_path: Path) -> None:
    """Two clients reporting the same node id (a confused or lying client) must not make the
    session wait for one node only: fall back to 'everything but the outsiders'."""
    liveness.write_nodes(tmp_path, {0: 11, 1: 11}, others=[])
    grid = liveness.MemberGrid(FakeGrid([11, 12], {}), SessionClients(tmp_path, 2))
    assert grid.get_node_ids() == [11, 12]


def test_missing_or_damaged_nodes_file_means_every_node(tmp_path: Path) -> None:
    assert liveness.MemberGrid(FakeGrid([1, 2], {}), SessionClients(tmp_path, 2)).get_node_ids() == [1, 2]
    (tmp_path / "nodes.json").write_text("{not json")
    assert liveness.read_nodes(tmp_path) == ({}, set())
    assert liveness.MemberGrid(FakeGrid([1, 2], {}), SessionClients(tmp_path, 2)).get_node_ids() == [1, 2]
