"""The round statistics the ServerApp logs each round, computed from the replies' records
(real Flower records; only the message envelope, which needs a Flower run, is a stand-in)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from flwr.app import ArrayRecord, MetricRecord, RecordDict

from kosmos_fl.fl.rounds.round_stats import (
    RoundTimes,
    client_examples,
    client_metrics,
    latency_split,
    round_statistics,
)


def _reply(
    client_id: int, loss: float, compute: float, started: float, finished: float, **extra: float
) -> Any:
    metrics = {"train_loss": loss, "client-id": client_id, "compute-seconds": compute}
    metrics |= {"started-at": started, "finished-at": finished, **extra}
    content = RecordDict(
        {"arrays": ArrayRecord([np.zeros(10, np.float32)]), "metrics": MetricRecord(metrics)}
    )
    return SimpleNamespace(content=content)


def test_round_statistics_from_replies_and_clocks() -> None:
    a = _reply(0, 1.0, 2.0, started=100.5, finished=103.0, **{"forked-at": 100.25})
    b = _reply(1, 3.0, 5.0, started=101.0, finished=104.0)
    sent = [SimpleNamespace(content=RecordDict({"arrays": ArrayRecord([np.zeros(10, np.float32)])}))] * 2
    latency = latency_split([a, b], sent_at=100.0, received_at=104.5)
    assert latency == {"pickup_seconds_max": 1.0, "return_seconds": 0.5, "process_start_seconds_max": 0.25}
    stats = round_statistics(
        RoundTimes(started=10.0, replies_in=14.0, aggregated=14.5, evaluated=16.0),
        sent=sent,
        ok=[a, b],
        accepted=[a, b],
        failed=1,
        dropped=2,
        timed_out=3,
        rejected=4,
        latency=latency,
    )
    one = a.content["arrays"].count_bytes()
    assert stats == {
        "train_phase_seconds": 4.0,
        "aggregate_seconds": 0.5,
        "eval_seconds": 1.5,
        "round_seconds": 6.0,
        "tracking_seconds": 0.0,
        "clients_ok": 2.0,
        "clients_failed": 1.0,
        "clients_dropped": 2.0,
        "clients_timed_out": 3.0,
        "updates_rejected": 4.0,
        "client_compute_seconds_max": 5.0,
        **latency,
        "bytes_sent": 2.0 * one,
        "bytes_received": 2.0 * one,
    }
    assert client_metrics([a, b]) == {"train_loss_client0": 1.0, "train_loss_client1": 3.0, "train_loss": 2.0}


def test_a_list_where_a_number_belongs_is_named() -> None:
    bad = SimpleNamespace(content=RecordDict({"metrics": MetricRecord({"train_loss": [1.0, 2.0]})}))
    with pytest.raises(TypeError, match="got a list of 2"):
        client_metrics([bad])


def test_client_examples_by_client_id_skips_what_is_not_a_count() -> None:
    a = _reply(0, 1.0, 2.0, 0.0, 1.0, **{"num-examples": 1520})
    b = _reply(1, 3.0, 5.0, 0.0, 1.0, **{"num-examples": 80})
    no_count = _reply(2, 3.0, 5.0, 0.0, 1.0)
    nan = _reply(3, 3.0, 5.0, 0.0, 1.0, **{"num-examples": float("nan")})
    listed = SimpleNamespace(
        content=RecordDict({"metrics": MetricRecord({"client-id": 4, "num-examples": [1, 2]})})
    )
    assert client_examples([a, b, no_count, nan, listed]) == {"0": 1520, "1": 80}
