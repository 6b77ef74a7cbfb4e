"""Prometheus metrics of a running federation (``GET /metrics``; docs/OPERATIONS.md lists them).

Gauges that describe the current state (clients by state, running session, current round) are
computed from the coordinator at scrape time, so they can never drift from what ``/status`` says.
Counters and histograms (sessions, rounds, round duration, bytes, rejected updates, errors) are fed
by :class:`kosmos_fl.coordinator.progress.ProgressFollower` from the session's ``progress.jsonl``
and by the log handler that collects warnings and errors.

Every series an alert may watch exists from the first scrape: labelled counters start at 0 for
each known label value (``increase(kosmos_sessions_total{status="failed"}[1h]) > 0`` catches the
first failure after a restart), and a gauge whose value is not known yet reads NaN, never a made-up
0 (``kosmos_train_loss`` before any round). Evaluation gauges carry the metric and the test unit
(bearing or engine) as two labels, and are set by rounds >= 1 only: round 0 scores the untrained
initial model, and a failed session's values give way to the last completed session's.

Each coordinator owns its registry (not the process-global one), so several coordinators in one
process (tests) do not collide.

Other parts of the system record a rejected client update in one of two ways:

* in the server process: ``coordinator.metrics.rejected_updates.labels(reason="...").inc()``;
* in the ServerApp process (Flower runs it separately): :func:`report_rejected_update`, which
  appends a ``rejected_update`` event to ``progress.jsonl``; the coordinator counts it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from kosmos_fl import __version__
from kosmos_fl.fl.session import RejectedUpdateEvent, SessionFolder

#: ``kosmos_clients{state}``: one state per client, so ``sum(kosmos_clients)`` counts each once.
#: ``pending``: connected, criteria not (yet again) answered; the coordinator calls it "connected".
CLIENT_STATES = ("pending", "eligible", "ineligible", "training")
_STATE_LABEL = {"connected": "pending"}
#: Label values known before their first event (their series start at 0).
SESSION_STATUSES = ("completed", "failed")
UPDATE_OUTCOMES = ("accepted", "failed", "rejected")
DIRECTIONS = ("sent", "received")
HELD_PULL_OUTCOMES = ("message", "empty")
LOG_LEVELS = ("warning", "error", "critical")
#: ``failed_reply``: Flower reported the client's reply as an error; ``validation``: the ServerApp's
#: update screening refused it (shape, dtype, NaN, norm; the reason text is in the log and MLflow).
REJECT_REASONS = ("failed_reply", "validation")
#: ``kosmos_client_connected`` keeps at most this many gone clients' series (oldest dropped first).
MAX_CLIENT_SERIES = 1000
#: ``unit`` label of an evaluation over all units (``RMSE``: the unweighted mean over units). The
#: score over each unit's last window (``RMSE_last``, the C-MAPSS convention) gets ``unit="last"``.
ALL_UNITS = "all"

#: Round duration buckets (seconds): federated rounds take from seconds to many minutes.
ROUND_BUCKETS = (1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)
#: Bytes per round buckets: a tiny model is kilobytes, a CNN many megabytes times clients.
BYTE_BUCKETS = tuple(float(4**i * 1024) for i in range(12))  # 1 KiB .. 4 GiB


def report_rejected_update(out_dir: Path | str, round_: int, client: str | int, reason: str) -> None:
    """Record, from any process, that a client's update was rejected in ``round_`` (and why)."""
    SessionFolder(Path(out_dir)).append_progress(
        RejectedUpdateEvent(round=round_, client=str(client), reason=reason)
    )


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _champion(result: Mapping[str, Any] | None) -> float | None:
    """The registered version a session's result says it made champion (None: it did not)."""
    if not result or not result.get("champion"):
        return None
    return _number(result.get("registered_version"))


def split_eval_key(key: str, aggregates: set[str]) -> tuple[str, str]:
    """``(metric, unit)`` of an evaluation key: ``RMSE_Bearing3_2`` -> ``("RMSE", "Bearing3_2")``
    when ``RMSE`` is one of the aggregate (underscore-free) keys of the same evaluation; the
    aggregate itself and any other key -> ``(key, "all")``."""
    metric, sep, unit = key.partition("_")
    if sep and unit and metric in aggregates:
        return metric, unit
    return key, ALL_UNITS


def eval_series(metrics: Mapping[str, float]) -> dict[tuple[str, str], float]:
    """An evaluation's values keyed by ``(metric, unit)`` labels (see :func:`split_eval_key`)."""
    aggregates = {k for k in metrics if "_" not in k}
    return {split_eval_key(k, aggregates): float(v) for k, v in metrics.items()}


class _StateCollector(Collector):
    """Scrape-time gauges from a snapshot function (the coordinator's state)."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.snapshot = snapshot
        #: Names seen since the start, oldest first (a dict keeps the order).
        self.seen_clients: dict[str, None] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        s = self.snapshot()
        clients = GaugeMetricFamily(
            "kosmos_clients",
            "Connected control-plane clients by state (exclusive: the sum is the connected clients)",
            labels=["state"],
        )
        by_state = {state: 0 for state in CLIENT_STATES}
        for state in s["client_states"]:
            label = _STATE_LABEL.get(state, state)
            by_state[label] = by_state.get(label, 0) + 1
        for state, n in sorted(by_state.items()):
            clients.add_metric([state], n)
        yield clients
        yield from self._per_client(s.get("client_names", []))
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
        max_eps = s.get("max_epsilon")
        yield GaugeMetricFamily(
            "kosmos_privacy_epsilon_max",
            "Differential privacy budget per session (max_epsilon); NaN: no budget configured",
            value=math.nan if max_eps is None else float(max_eps),
        )

    def _per_client(self, names: list[tuple[str, str]]) -> Iterator[GaugeMetricFamily]:
        """``kosmos_client_connected{client}``: 1 per named client now connected, 0 for one seen
        since the server started and gone (what the "client offline" alert watches)."""
        up = {name for name, _state in names if name}
        self.seen_clients.update(dict.fromkeys(sorted(up)))
        # without client authentication names are self-chosen: forget the oldest gone ones
        # rather than grow a series per name a peer ever made up
        gone = [n for n in self.seen_clients if n not in up]
        for name in gone[: max(0, len(self.seen_clients) - MAX_CLIENT_SERIES)]:
            del self.seen_clients[name]
        fam = GaugeMetricFamily(
            "kosmos_client_connected",
            "1 while the named client is connected, 0 once gone (clients seen since the server started)",
            labels=["client"],
        )
        for name in sorted(self.seen_clients):
            fam.add_metric([name], 1 if name in up else 0)
        yield fam


class FederationMetrics:
    """The registry and the instruments the coordinator updates."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.registry = CollectorRegistry()  # state gauges are collected at scrape only
        r = self.registry
        r.register(_StateCollector(snapshot))
        ProcessCollector(registry=r)  # process_cpu_seconds_total, process_start_time_seconds, ...
        PlatformCollector(registry=r)  # python_info
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
            "Central evaluation of the global model after the last round >= 1, by metric and test "
            "unit (bearing or engine; unit=all: over all units)",
            ["metric", "unit"],
            registry=r,
        )
        self.train_loss = Gauge(
            "kosmos_train_loss", "Mean client training loss in the last round (NaN before any)", registry=r
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
        # set from the coordinator's outbox drainer at scrape time (issue 21)
        self.tracking_backlog = Gauge(
            "kosmos_tracking_outbox_backlog",
            "Tracking entries in the session outboxes (params, metrics, models, ...) waiting for MLflow",
            registry=r,
        )
        self.errors = Counter(
            "kosmos_errors", "Warnings and errors logged by the server, by level", ["level"], registry=r
        )
        self._add_lifecycle_gauges(r)
        self._start_series()

    def _add_lifecycle_gauges(self, r: CollectorRegistry) -> None:
        """Build, champion, last success and privacy budget (issue 20)."""
        Info("kosmos_build", "kosmos-fl version of this server", registry=r).info({"version": __version__})
        self.champion_version = Gauge(
            "kosmos_champion_model_version",
            "Version the last promotion by a session in this work_dir made @champion (NaN: none)",
            registry=r,
        )
        self.last_success = Gauge(
            "kosmos_last_successful_session_timestamp_seconds",
            "Unix time the last completed session in this work_dir ended (0: none)",
            registry=r,
        )
        self.privacy_epsilon = Gauge(
            "kosmos_privacy_epsilon_spent",
            "Differential privacy epsilon spent by the running or last session (NaN: none with DP)",
            registry=r,
        )
        #: Whether a session of this process set the two gauges above (restore() then leaves them).
        self._seen_success = self._seen_champion = False
        #: Evaluation of the running session's last round >= 1, and of the last completed session.
        self._eval_current: dict[tuple[str, str], float] = {}
        self._eval_completed: dict[tuple[str, str], float] = {}

    def _start_series(self) -> None:
        """Series whose value is known at start: 0 for counters, NaN for what is not known yet."""
        for status in SESSION_STATUSES:
            self.sessions.labels(status=status)
        for direction in DIRECTIONS:
            self.round_bytes.labels(direction=direction)
            self.bytes_total.labels(direction=direction)
        for outcome in UPDATE_OUTCOMES:
            self.client_updates.labels(outcome=outcome)
        for reason in REJECT_REASONS:
            self.rejected_updates.labels(reason=reason)
        for outcome in HELD_PULL_OUTCOMES:
            self.fleet_held_pulls.labels(outcome=outcome)
        for level in LOG_LEVELS:
            self.errors.labels(level=level)
        for gauge in (self.train_loss, self.champion_version, self.privacy_epsilon):
            gauge.set(math.nan)

    def _show_eval(self, values: dict[tuple[str, str], float]) -> None:
        self.eval_metric.clear()  # the units of another session may differ
        for (metric, unit), value in values.items():
            self.eval_metric.labels(metric=metric, unit=unit).set(value)

    def observe_round(self, row: dict[str, Any]) -> None:
        """Account one ``round`` row of progress.jsonl (round 0 is the initial evaluation: it
        counts nothing and sets no gauge, it scores a model nobody trained)."""
        if int(row.get("round", 0)) == 0:
            return
        self._eval_current = eval_series(row.get("metrics") or {})
        self._show_eval(self._eval_current)
        self.rounds.inc()
        if "round_seconds" in row:
            self.round_duration.observe(float(row["round_seconds"]))
        for direction in DIRECTIONS:
            key = f"bytes_{direction}"
            if key in row:
                self.round_bytes.labels(direction=direction).observe(float(row[key]))
                self.bytes_total.labels(direction=direction).inc(float(row[key]))
        loss = (row.get("client") or {}).get("train_loss")
        if loss is not None:
            self.train_loss.set(float(loss))
        if "dp_epsilon" in row:
            self.privacy_epsilon.set(float(row["dp_epsilon"]))
        ok, failed = int(row.get("clients_ok", 0)), int(row.get("clients_failed", 0))
        if ok:
            self.client_updates.labels(outcome="accepted").inc(ok)
        if failed:
            self.client_updates.labels(outcome="failed").inc(failed)
            self.rejected_updates.labels(reason="failed_reply").inc(failed)
        screened = int(row.get("updates_rejected", 0))
        if screened:
            self.client_updates.labels(outcome="rejected").inc(screened)
            self.rejected_updates.labels(reason="validation").inc(screened)

    def observe_rejected(self, row: dict[str, Any]) -> None:
        self.rejected_updates.labels(reason=str(row.get("reason") or "unspecified")[:60]).inc()

    def session_started(self) -> None:
        self.sessions_started.inc()

    def session_ended(self, done: Mapping[str, Any], result: Mapping[str, Any] | None) -> None:
        """Account a finished session (an entry of the coordinator's ``sessions_done`` and the
        ServerApp's result document, if any): its status, and for a completed one its time, its
        evaluation and the champion it made; a failed one's evaluation is dropped."""
        status = str(done.get("status") or "failed")
        self.sessions.labels(status=status).inc()
        if status == "completed":
            self.last_success.set(float(done.get("finished_at") or 0.0))
            self._seen_success = True
            self._eval_completed = dict(self._eval_current)
            version = _champion(result)
            if version is not None:
                self.champion_version.set(version)
                self._seen_champion = True
        else:
            self._eval_current = dict(self._eval_completed)
            self._show_eval(self._eval_current)

    def restore(self, past: Iterable[Mapping[str, Any]]) -> None:
        """After a restart, from the result documents of this work_dir's sessions, newest first
        (:func:`kosmos_fl.coordinator.progress.past_results`): when the last session completed and
        the version the last promotion made champion. Counters start again at 0 (per process)."""
        success: float | None = None
        champion: float | None = None
        for result in past:
            if result.get("status") != "completed":
                continue
            success = success or _number(result.get("finished_at"))
            champion = champion if champion is not None else _champion(result)
            if success and champion is not None:
                break
        if success and not self._seen_success:  # a session of this process knows better
            self.last_success.set(success)
        if champion is not None and not self._seen_champion:
            self.champion_version.set(champion)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
