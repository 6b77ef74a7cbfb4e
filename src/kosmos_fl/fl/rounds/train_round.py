"""One training round, plain or SecAgg+, as the ServerApp's session loop runs it.

:func:`plain_round` sends Flower TRAIN messages, screens each update and aggregates with the
strategy; :func:`secure_round` runs a SecAgg+ exchange, where the server only sees the masked sum.
Both return a :class:`RoundResult`, so the loop evaluates, checkpoints and reports either the same
way.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message
from flwr.serverapp import Grid

from kosmos_fl.errors import FederationError
from kosmos_fl.fl.rounds.liveness import LiveGrid, RoundReplies, SessionClients, send_and_collect
from kosmos_fl.fl.rounds.round_stats import latency_split, reply_client_id
from kosmos_fl.fl.rounds.screening import Screened, screen_replies
from kosmos_fl.fl.session import RejectedEvent, RoundStartedEvent, SessionFolder, SessionSpec

log = logging.getLogger("kosmos_fl.server_app")


@dataclass
class RoundContext:
    """What every round of one session uses."""

    grid: Grid
    live_grid: LiveGrid
    clients: SessionClients
    spec: SessionSpec
    folder: SessionFolder
    strategy: Any
    train_config: ConfigRecord
    #: flat mask of the trainable elements (``ml.train.trainable_mask``): the update screen's norm
    trainable: np.ndarray | None = None


@dataclass
class RoundResult:
    """What a plain and a SecAgg+ round hand back to the session loop alike."""

    #: the new global arrays (None: the strategy produced no aggregate)
    arrays: ArrayRecord | None
    #: the TRAIN messages sent (none for SecAgg+: its workflow sends its own stage messages)
    sent: list[Message]
    ok: list[Message]
    #: the usable updates, in client-id order
    accepted: list[Message]
    failed: int
    dropped: int
    timed_out: int
    rejected: list[tuple[int | None, str]]
    #: norms of the accepted updates (empty for SecAgg+: the server sees only their masked sum)
    norms: list[float]
    t_replies: float
    latency: dict[str, float]


def _settle(
    r: RoundContext, rnd: int, ok: list[Message], failed: list[Message], got: RoundReplies, screened: Screened
) -> tuple[list[Message], float, dict[str, float]]:
    """Log what failed or was rejected and check the quorum; returns the accepted updates in
    client-id order, when the replies were in, and the latency split."""
    for m in failed:
        log.warning("round %d: client node %s failed: %s", rnd, m.metadata.src_node_id, m.error.reason)
    for cid, reason in screened.rejected:
        r.folder.append_progress(RejectedEvent(round=rnd, client=cid, reason=reason))
    # aggregate in client-id order, not arrival order: float sums depend on the order
    accepted = sorted(screened.accepted, key=reply_client_id)
    spec = r.spec
    if len(accepted) < spec.min_fit_clients or not accepted:
        dead = r.clients.dead()
        raise FederationError(
            f"round {rnd} got {len(accepted)} usable client update(s), fewer than "
            f"min_fit_clients={spec.min_fit_clients} ({len(failed)} failed, "
            f"{len(screened.rejected)} rejected, {len(got.dropped)} disconnected, "
            f"{len(got.timed_out)} not answered within round_timeout={spec.round_timeout:g} s)"
            + (f"; gone: {', '.join(f'client {k} ({v})' for k, v in sorted(dead.items()))}" if dead else "")
        )
    t_replies = time.monotonic()
    return accepted, t_replies, latency_split(accepted, cast(float, r.train_config["sent-at"]), time.time())


def plain_round(r: RoundContext, rnd: int, arrays: ArrayRecord, norm_history: list[float]) -> RoundResult:
    """One round of plain Flower messages: the server sees, screens and aggregates each update.
    Raises Flower's ``PrivacyBudgetExhausted`` when differential privacy allows no further round."""
    messages = list(r.strategy.configure_train(rnd, arrays, r.train_config, r.live_grid))
    nodes = [m.metadata.dst_node_id for m in messages]
    r.folder.append_progress(RoundStartedEvent(round=rnd, nodes=nodes, at=time.time()))
    got = send_and_collect(r.grid, messages, r.clients, r.spec.round_timeout)
    ok = [m for m in got.replies if not m.has_error()]
    failed = [m for m in got.replies if m.has_error()]
    spec = r.spec
    screened = screen_replies(
        ok,
        arrays.to_numpy_ndarrays(),
        spec.max_update_norm_ratio,
        spec.max_update_norm,
        norm_history,
        r.trainable,
    )
    accepted, t_replies, latency = _settle(r, rnd, ok, failed, got, screened)
    new_arrays, _ = r.strategy.aggregate_train(rnd, accepted)
    return RoundResult(
        new_arrays, messages, ok, accepted, len(failed), len(got.dropped), len(got.timed_out),
        screened.rejected, screened.norms, t_replies, latency,
    )  # fmt: skip


def secure_round(r: RoundContext, secagg: Any, rnd: int, arrays: ArrayRecord) -> RoundResult:
    """One SecAgg+ round: the server gets only the masked sum, so no per-update screening
    (docs/SECURITY.md)."""
    ok, failed, new_arrays = secagg.train_round(rnd, arrays)
    got = RoundReplies(replies=ok + failed, dropped=[], timed_out=[])
    screened = Screened(accepted=ok, rejected=[], norms=[])
    accepted, t_replies, latency = _settle(r, rnd, ok, failed, got, screened)
    return RoundResult(new_arrays, [], ok, accepted, len(failed), 0, 0, [], [], t_replies, latency)
