"""Which session clients are alive, and a round loop that stops waiting for the dead ones.

Flower reports a killed SuperNode only after about two heartbeat intervals (a minute; the interval
is fixed at 30 s in Flower 1.42's SuperNode). The KOSMoS coordinator sees a client's Socket.IO
connection drop at once, so it records the dead client's id in the session folder
(:data:`DEAD_FILE`); the ServerApp reads that file while it polls for replies and gives up on the
dead client's node right away instead of blocking in ``send_and_receive``.

Flower node ids are mapped to KOSMoS client ids from the coordinator's :data:`NODES_FILE` (clients
report their SuperNode's id when they register) and from the replies (the ClientApp reports
``client-id``). Before a node's first reply its client may be unknown; a pending unknown node is
given up once every client that could own it is dead.

Clients keep their SuperNode between sessions, so the SuperLink can know nodes of clients that are
not in this session: :class:`MemberGrid` hides them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flwr.app import Message

from kosmos_fl.errors import FederationError
from kosmos_fl.fl.session import DEAD_FILE, NODES_FILE, write_atomic

log = logging.getLogger("kosmos_fl.liveness")

#: ``{"<client id>": "<why it is gone>"}``, written atomically by the coordinator.
#: How often the round loop asks the SuperLink for replies: each poll is one local HTTP call and
#: one small file read, and every 0.1 s saved here is 0.1 s less orchestration overhead per round.
POLL_SECONDS = 0.05


def mark_dead(out_dir: Path, client_id: int, reason: str) -> None:
    """Record (atomically) that session client ``client_id`` is gone and why."""
    dead = read_dead(out_dir)
    dead.setdefault(client_id, reason)
    write_atomic(out_dir / DEAD_FILE, json.dumps({str(k): v for k, v in dead.items()}))


def read_dead(out_dir: Path) -> dict[int, str]:
    """The dead clients recorded so far (client id -> reason)."""
    try:
        raw = json.loads((out_dir / DEAD_FILE).read_text(encoding="utf-8"))
        return {int(k): str(v) for k, v in raw.items()}
    except (OSError, ValueError, AttributeError):
        return {}


def write_nodes(out_dir: Path, session: dict[int, int], others: Iterable[int]) -> None:
    """Record (atomically) the session clients' node ids and the nodes of clients outside it."""
    doc = {"session": {str(k): v for k, v in session.items()}, "others": sorted(set(others))}
    write_atomic(out_dir / NODES_FILE, json.dumps(doc))


def read_nodes(out_dir: Path) -> tuple[dict[int, int], set[int]]:
    """(client id -> node id of the session's clients, node ids of clients outside the session);
    both empty when the file is missing or damaged."""
    try:
        raw = json.loads((out_dir / NODES_FILE).read_text(encoding="utf-8"))
        session = {int(k): int(v) for k, v in raw["session"].items()}
        return session, {int(n) for n in raw["others"]}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}, set()


def reply_client_id(msg: Message) -> int | None:
    """The KOSMoS client id a reply reports (None for error replies or when missing)."""
    if msg.has_error():
        return None
    metrics = msg.content.metric_records.get("metrics")
    if metrics is None or "client-id" not in metrics:
        return None
    try:
        return int(metrics["client-id"])
    except (TypeError, ValueError):
        return None


@dataclass
class SessionClients:
    """Node-to-client mapping and liveness of one session's clients (ids ``0..num_clients-1``)."""

    out_dir: Path
    num_clients: int
    node_client: dict[int, int] = field(default_factory=dict)
    #: the session's nodes when every client announced a distinct one (else None: any node that
    #: is not in ``others``)
    expected: set[int] | None = None
    others: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        announced, self.others = read_nodes(self.out_dir)
        announced = {c: n for c, n in announced.items() if 0 <= c < self.num_clients}
        nodes = set(announced.values())
        if len(announced) == self.num_clients and len(nodes) == self.num_clients:
            self.expected = nodes
        for cid, node in announced.items():
            self.node_client.setdefault(node, cid)
        self.others -= nodes

    def members(self, all_nodes: Iterable[int]) -> list[int]:
        """The nodes of ``all_nodes`` that may belong to this session."""
        if self.expected is not None:
            return [n for n in all_nodes if n in self.expected]
        return [n for n in all_nodes if n not in self.others]

    def dead(self) -> dict[int, str]:
        return {k: v for k, v in read_dead(self.out_dir).items() if 0 <= k < self.num_clients}

    def alive_count(self) -> int:
        return self.num_clients - len(self.dead())

    def learn(self, replies: Iterable[Message]) -> None:
        """Remember which node serves which client, from the replies' ``client-id``."""
        for msg in replies:
            cid = reply_client_id(msg)
            if cid is not None and 0 <= cid < self.num_clients:
                self.node_client[msg.metadata.src_node_id] = cid

    def client_of(self, node_id: int) -> int | None:
        return self.node_client.get(node_id)

    def _unmapped_candidates(self, dead: dict[int, str]) -> set[int]:
        """Clients not yet tied to a node that are still alive (they may own an unknown node)."""
        mapped = set(self.node_client.values())
        return {c for c in range(self.num_clients) if c not in mapped and c not in dead}

    def live_nodes(self, all_nodes: Iterable[int]) -> list[int]:
        """The nodes worth sending to: mapped to a living client, or unknown while a living client
        is still unmapped."""
        dead = self.dead()
        unknown_ok = bool(self._unmapped_candidates(dead))
        out = []
        for node in all_nodes:
            cid = self.node_client.get(node)
            if (cid is None and unknown_ok) or (cid is not None and cid not in dead):
                out.append(node)
        return out

    def given_up(self, pending_nodes: Iterable[int]) -> set[int]:
        """Pending nodes not worth waiting for: their client (or every candidate owner) is dead."""
        dead = self.dead()
        if not dead:
            return set()
        unknown_ok = bool(self._unmapped_candidates(dead))
        out = set()
        for node in pending_nodes:
            cid = self.node_client.get(node)
            if (cid is not None and cid in dead) or (cid is None and not unknown_ok):
                out.add(node)
        return out


class _GridView:
    """The Grid with ``get_node_ids`` filtered by ``keep``; everything else passes through."""

    def __init__(self, grid: Any, keep: Callable[[Iterable[int]], list[int]]) -> None:
        self._grid = grid
        self._keep = keep

    def get_node_ids(self) -> list[int]:
        return self._keep(self._grid.get_node_ids())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)


class MemberGrid(_GridView):
    """Only this session's nodes (:meth:`SessionClients.members`): kept SuperNodes of clients
    outside the session get nothing."""

    def __init__(self, grid: Any, clients: SessionClients) -> None:
        super().__init__(grid, clients.members)


class LiveGrid(_GridView):
    """Only live nodes (:meth:`SessionClients.live_nodes`), so that a strategy's
    ``configure_train`` never addresses a client the coordinator already saw die."""

    def __init__(self, grid: Any, clients: SessionClients) -> None:
        super().__init__(grid, clients.live_nodes)


def wait_for_nodes(grid: Any, clients: SessionClients, quorum: int, timeout: float) -> list[int]:
    """Wait until every living client's SuperNode joined; after ``timeout`` go on with a quorum.

    Fails at once when the dead clients leave fewer than ``quorum`` alive.
    """
    deadline = time.monotonic() + timeout
    while True:
        dead = clients.dead()
        alive = clients.num_clients - len(dead)
        if alive < quorum:
            raise FederationError(quorum_lost_message("before round 1", alive, quorum, dead))
        nodes = list(grid.get_node_ids())
        if len(nodes) >= alive:
            return nodes
        if time.monotonic() > deadline:
            if len(nodes) >= quorum:
                log.warning(
                    "only %d of %d clients joined within %.0f s; going on with the quorum of %d",
                    len(nodes),
                    alive,
                    timeout,
                    quorum,
                )
                return nodes
            raise FederationError(
                f"only {len(nodes)} of {clients.num_clients} clients joined the Flower session within "
                f"{timeout:.0f} s (min_fit_clients={quorum}); check that clients can reach "
                "flwr_server_address"
            )
        time.sleep(0.2)


def quorum_lost_message(when: str, alive: int, quorum: int, dead: dict[int, str]) -> str:
    gone = ", ".join(f"client {k} ({v})" for k, v in sorted(dead.items())) or "none"
    return f"quorum lost {when}: {alive} client(s) left, fewer than min_fit_clients={quorum}; gone: {gone}"


@dataclass
class RoundReplies:
    """What came back for one round."""

    replies: list[Message]
    #: node ids given up because the coordinator saw their client disconnect
    dropped: list[int]
    #: node ids that neither replied nor were dropped before the timeout
    timed_out: list[int]


def send_and_collect(
    grid: Any, messages: list[Message], clients: SessionClients, timeout: float
) -> RoundReplies:
    """Push ``messages`` and poll for replies until all arrived, the missing ones belong to dead
    clients, or ``timeout`` seconds passed (replaces Flower's blocking ``send_and_receive``,
    which also sleeps 3 s between polls)."""
    ids = list(grid.push_messages(messages))
    pending: dict[str, int] = {
        mid: msg.metadata.dst_node_id for mid, msg in zip(ids, messages, strict=True) if mid
    }
    replies: list[Message] = []
    dropped: list[int] = []
    deadline = time.monotonic() + timeout
    while pending:
        got = list(grid.pull_messages(list(pending)))
        clients.learn(got)
        for msg in got:
            pending.pop(msg.metadata.reply_to_message_id, None)
        replies.extend(got)
        if not pending:
            break
        gone = clients.given_up(pending.values())
        if gone:
            for mid in [m for m, n in pending.items() if n in gone]:
                node = pending.pop(mid)
                dropped.append(node)
                log.warning(
                    "node %s (client %s) disconnected; not waiting for its reply",
                    node,
                    clients.client_of(node),
                )
            if not pending:
                break
        if time.monotonic() > deadline:
            break
        time.sleep(POLL_SECONDS)
    return RoundReplies(replies=replies, dropped=dropped, timed_out=sorted(pending.values()))
