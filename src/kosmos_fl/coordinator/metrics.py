"""Prometheus metrics of a running federation (``GET /metrics``).

Gauges that describe the current state (clients by state, running session, current round) are
computed from the coordinator at scrape time, so they can never drift from what ``/status`` says.
Counters and histograms (sessions, rounds, round duration, bytes, rejected updates, errors) are fed
by :class:`kosmos_fl.coordinator.progress.ProgressFollower` from the session's ``progress.jsonl``
and by the log handler that collects warnings and errors.

Each coordinator owns its registry (not the process-global one), so several coordinators in one
process (tests) do not collide.

Other parts of the system record a rejected client update in one of two ways:

* in the server process: ``coordinator.metrics.rejected_updates.labels(reason="...").inc()``;
* in the ServerApp process (Flower runs it separately): :func:`report_rejected_update`, which
  appends a ``rejected_update`` event to ``progress.jsonl``; the coordinator counts it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from kosmos_fl.fl.session import RejectedUpdateEvent, SessionFolder

CLIENT_STATES = ("connected", "eligible", "ineligible", "training")

#: Round duration buckets (seconds): federated rounds take from seconds to many minutes.
ROUND_BUCKETS = (1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)
#: Bytes per round buckets: a tiny model is kilobytes, a CNN many megabytes times clients.
BYTE_BUCKETS = tuple(float(4**i * 1024) for i in range(12))  # 1 KiB .. 4 GiB


def report_rejected_update(out_dir: Path | str, round_: int, client: str | int, reason: str) -> None:
    """Record, from any process, that a client's update was rejected in ``round_`` (and why)."""
    SessionFolder(Path(out_dir)).append_progress(
        RejectedUpdateEvent(round=round_, client=str(client), reason=reason)
    )


class _StateCollector(Collector):
    """Scrape-time gauges from a snapshot function (the coordinator's state)."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        s = self.snapshot()
        clients = GaugeMetricFamily(
            "kosmos_clients", "Connected control-plane clients by state", labels=["state"]
        )
        by_state = {state: 0 for state in CLIENT_STATES}
        for state in s["client_states"]:
            by_state[state] = by_state.get(state, 0) + 1
        for state, n in sorted(by_state.items()):
            clients.add_metric([state], n)
        yield clients
        yield GaugeMetricFamily(
            "kosmos_clients_connected", "Connected clients", value=len(s["client_states"])
        )
        yield GaugeMetricFamily(
            "kosmos_clients_eligible",
            "Clients whose criteria are met (waiting or training)",
            value=by_state["eligible"] + by_state["training"],
        )
        yield GaugeMetricFamily(
            "kosmos_clients_waiting", "Eligible clients waiting for a session", value=s["waiting"]
        )
        yield GaugeMetricFamily(
            "kosmos_clients_needed", "Eligible clients needed to start a session", value=s["needed"]
        )
        yield GaugeMetricFamily(
            "kosmos_session_running", "1 while a training session runs", value=1 if s["running"] else 0
        )
        yield GaugeMetricFamily(
            "kosmos_session_round", "Last completed round of the current session", value=s["round"]
        )
        yield GaugeMetricFamily(
            "kosmos_session_rounds_planned", "Rounds per session (n_federated_train_epoch)", value=s["rounds"]
        )


class FederationMetrics:
    """The registry and the instruments the coordinator updates."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.registry = CollectorRegistry()  # state gauges are collected at scrape only
        r = self.registry
        r.register(_StateCollector(snapshot))
        self.sessions = Counter(
            "kosmos_sessions", "Training sessions that ended, by status", ["status"], registry=r
        )
        self.sessions_started = Counter("kosmos_sessions_started", "Training sessions started", registry=r)
        self.rounds = Counter("kosmos_rounds", "Federated rounds completed", registry=r)
        self.round_duration = Histogram(
            "kosmos_round_duration_seconds",
            "Duration of a federated round (send, train, aggregate, evaluate)",
            buckets=ROUND_BUCKETS,
            registry=r,
        )
        self.round_bytes = Histogram(
            "kosmos_round_bytes",
            "Model bytes moved per round (sent: server to clients, received: clients to server)",
            ["direction"],
            buckets=BYTE_BUCKETS,
            registry=r,
        )
        self.bytes_total = Counter(
            "kosmos_model_bytes", "Model bytes moved over all rounds", ["direction"], registry=r
        )
        self.eval_metric = Gauge(
            "kosmos_eval_metric",
            "Central evaluation of the global model after the last round (RMSE, MAE, PCC, per unit)",
            ["metric"],
            registry=r,
        )
        self.train_loss = Gauge(
            "kosmos_train_loss", "Mean client training loss in the last round", registry=r
        )
        self.client_updates = Counter(
            "kosmos_client_updates", "Client updates received, by outcome", ["outcome"], registry=r
        )
        self.rejected_updates = Counter(
            "kosmos_rejected_updates",
            "Client updates rejected (failed replies, robust aggregation, validation), by reason",
            ["reason"],
            registry=r,
        )
        self.fleet_held_pulls = Counter(
            "kosmos_fleet_held_pulls",
            "SuperNode pulls the server held (long poll) until a message came or the hold ended, by outcome",
            ["outcome"],
            registry=r,
        )
        # -- issue 21 (tracking outbox): set from the coordinator's outbox drainer at scrape ------
        self.tracking_backlog = Gauge(
            "kosmos_tracking_outbox_backlog",
            "Tracking entries in the session outboxes (params, metrics, models, ...) waiting for MLflow",
            registry=r,
        )
        # -- end issue 21 ---------------------------------------------------------------------------
        self.errors = Counter(
            "kosmos_errors", "Warnings and errors logged by the server, by level", ["level"], registry=r
        )

    def observe_round(self, row: dict[str, Any]) -> None:
        """Account one ``round`` row of progress.jsonl (round 0 is the initial evaluation)."""
        for name, value in (row.get("metrics") or {}).items():
            self.eval_metric.labels(metric=name).set(float(value))
        if int(row.get("round", 0)) == 0:
            return
        self.rounds.inc()
        if "round_seconds" in row:
            self.round_duration.observe(float(row["round_seconds"]))
        for direction in ("sent", "received"):
            key = f"bytes_{direction}"
            if key in row:
                self.round_bytes.labels(direction=direction).observe(float(row[key]))
                self.bytes_total.labels(direction=direction).inc(float(row[key]))
        loss = (row.get("client") or {}).get("train_loss")
        if loss is not None:
            self.train_loss.set(float(loss))
        ok, failed = int(row.get("clients_ok", 0)), int(row.get("clients_failed", 0))
        if ok:
            self.client_updates.labels(outcome="accepted").inc(ok)
        if failed:
            self.client_updates.labels(outcome="failed").inc(failed)
            self.rejected_updates.labels(reason="failed_reply").inc(failed)

    def observe_rejected(self, row: dict[str, Any]) -> None:
        self.rejected_updates.labels(reason=str(row.get("reason") or "unspecified")[:60]).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
