"""Round statistics from the clients' replies: pure functions of the reply metrics (tested without
Flower's runtime), logged by the ServerApp each round."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from flwr.app import Message

MetricValue = int | float | list[int] | list[float]


def _number(value: MetricValue) -> float:
    """A scalar reply metric as float (a list is a client's protocol error)."""
    if isinstance(value, list):
        raise TypeError(f"expected a number in the reply metrics, got a list of {len(value)}")
    return float(value)


def client_metrics(replies: list[Message]) -> dict[str, float]:
    """Per-client training loss (``train_loss_client<id>``) and its mean (``train_loss``)."""
    out: dict[str, float] = {}
    losses = []
    for msg in replies:
        metrics = msg.content.metric_records.get("metrics")
        if metrics is None or "train_loss" not in metrics:
            continue
        loss = _number(metrics["train_loss"])
        cid = int(_number(metrics.get("client-id", -1)))
        out[f"train_loss_client{cid}"] = loss
        losses.append(loss)
    if losses:
        out["train_loss"] = float(np.mean(losses))
    return out


def client_examples(replies: list[Message]) -> dict[str, int]:
    """Training examples per client id (``num-examples`` of each reply that states both as
    numbers), for the dashboard's per-client table. Not logged to MLflow (a count, not a metric of
    the model); a reply that states them wrongly is left out, never fails the round."""
    out: dict[str, int] = {}
    for msg in replies:
        metrics = msg.content.metric_records.get("metrics")
        if metrics is None or "num-examples" not in metrics or "client-id" not in metrics:
            continue
        try:
            out[str(int(_number(metrics["client-id"])))] = int(_number(metrics["num-examples"]))
        except (TypeError, ValueError, OverflowError):  # a list, NaN or inf
            continue
    return out


def reply_client_id(msg: Message) -> int:
    """The session client id a reply reports (replies without one sort first)."""
    try:
        return int(msg.content["metrics"]["client-id"])  # type: ignore[arg-type]  # a list: TypeError, -1
    except (KeyError, TypeError, ValueError):
        return -1


def latency_split(replies: list[Message], sent_at: float, received_at: float) -> dict[str, float]:
    """Where a train phase's time went, from the wall clocks of server and clients (only exact
    when they share a clock, as on loopback; across hosts it is as good as their NTP).

    ``pickup``: from sending until a ClientApp handler started (the SuperNode's idle pull interval
    plus the process start); ``start``: the part of it from the ClientApp process being created
    until the handler ran; ``return``: from the last handler finishing until all replies were in.
    """
    pickups, starts, finished = [], [], []
    for msg in replies:
        m = msg.content.metric_records.get("metrics")
        if m is None or "started-at" not in m:
            continue
        pickups.append(_number(m["started-at"]) - sent_at)
        finished.append(_number(m["finished-at"]))
        if "forked-at" in m:
            starts.append(_number(m["started-at"]) - _number(m["forked-at"]))
    out: dict[str, float] = {}
    if pickups:
        out["pickup_seconds_max"] = max(pickups)
        out["return_seconds"] = received_at - max(finished)
    if starts:
        out["process_start_seconds_max"] = max(starts)
    return out


@dataclass(frozen=True)
class RoundTimes:
    """Monotonic clock readings of one round. ``previous`` (when the previous round was recorded,
    or the round loop began) and ``recorded`` (now) make ``round_seconds`` the round's wall time,
    with everything between rounds (federated evaluation, checkpoint, tracking) in it; without
    them it is ``evaluated - started``. ``tracking``: seconds of it spent on tracking."""

    started: float
    replies_in: float
    aggregated: float
    evaluated: float
    previous: float | None = None
    recorded: float | None = None
    tracking: float = 0.0

    @property
    def wall(self) -> float:
        if self.previous is None or self.recorded is None:
            return self.evaluated - self.started
        return self.recorded - self.previous


def round_statistics(
    times: RoundTimes,
    *,
    sent: list[Message],
    ok: list[Message],
    accepted: list[Message],
    failed: int,
    dropped: int,
    timed_out: int,
    rejected: int,
    latency: dict[str, float],
) -> dict[str, float]:
    """The per-round numbers logged to MLflow and progress.jsonl: phase times, client outcomes,
    the slowest client's compute time, the latency split and the model bytes on the wire."""
    compute = [_number(m.content.metric_records["metrics"].get("compute-seconds", 0.0)) for m in accepted]
    return {
        # train phase: from sending the global model until the last reply arrived
        "train_phase_seconds": times.replies_in - times.started,
        "aggregate_seconds": times.aggregated - times.replies_in,
        "eval_seconds": times.evaluated - times.aggregated,
        "round_seconds": times.wall,
        # waiting on tracking (the outbox write; MLflow itself is never waited for): issue 21
        "tracking_seconds": times.tracking,
        "clients_ok": float(len(accepted)),
        "clients_failed": float(failed),
        "clients_dropped": float(dropped),
        "clients_timed_out": float(timed_out),
        "updates_rejected": float(rejected),
        "client_compute_seconds_max": max(compute) if compute else 0.0,
        **latency,
        # model bytes on the wire: the global model to each client, the updates back
        # (under SecAgg+ the stage messages carry no "arrays" record: not counted)
        "bytes_sent": float(sum(m.content["arrays"].count_bytes() for m in sent)),
        "bytes_received": float(sum(m.content["arrays"].count_bytes() for m in ok if "arrays" in m.content)),
    }
