"""The tracking outbox (issue 21): keying, de-duplication, order, and a crash between send and ack.

A fake MLflow client stands in for the server where the test needs to fail a call at an exact
point; the last tests deliver to a real (SQLite) MLflow store."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from kosmos_fl.fl.session import SessionFolder
from kosmos_fl.fl.tracking import queue_failure, tracking_uri
from kosmos_fl.fl.tracking.outbox import (
    Outbox,
    final_entries,
    metric_keys,
    metrics_entry,
    parse,
    undelivered_metrics,
)
from kosmos_fl.fl.tracking.sender import Drainer, Sender


class FakeMlflow:
    """Stores what it is sent; ``fail`` raises on the next calls, ``store_then_fail`` stores a
    batch and then raises, as a timeout after the server committed does."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.metrics: list[tuple[str, str, int, float]] = []
        self.fail: list[Exception] = []
        self.store_then_fail = False

    def _maybe_fail(self) -> None:
        if self.fail:
            raise self.fail.pop(0)

    def log_batch(self, run: str, metrics: Any = (), params: Any = ()) -> None:
        self._maybe_fail()
        for m in metrics:
            self.metrics.append((run, m.key, m.step, m.value))
        self.calls.append(("log_batch", sorted([m.key for m in metrics] + [p.key for p in params])))
        if self.store_then_fail:
            self.store_then_fail = False
            raise MlflowException("Max retries exceeded (read timeout)")

    def get_metric_history(self, run: str, key: str) -> list[Any]:
        self._maybe_fail()
        return [SimpleNamespace(step=s) for r, k, s, _ in self.metrics if (r, k) == (run, key)]

    def set_tag(self, run: str, key: str, value: str) -> None:
        self._maybe_fail()
        self.calls.append(("set_tag", (key, value)))

    def set_terminated(self, run: str, status: str) -> None:
        self._maybe_fail()
        self.calls.append(("set_terminated", status))


def _outbox(tmp_path: Path, *entries: dict[str, Any]) -> Outbox:
    box = Outbox(SessionFolder(tmp_path))
    for e in entries:
        box.append(e)
    return box


def _metrics(step: int, **values: float) -> dict[str, Any]:
    return metrics_entry("run-1", values, step, 1000 + step)


def test_a_metric_is_keyed_by_run_key_and_step() -> None:
    entry = _metrics(3, RMSE=1.0, MAE=2.0)
    assert metric_keys(entry) == [("run-1", "RMSE", 3), ("run-1", "MAE", 3)]
    assert metric_keys({"kind": "tag", "run": "run-1", "key": "a", "value": "b"}) == []


def test_undelivered_metrics_leaves_out_what_mlflow_holds() -> None:
    entry = _metrics(2, RMSE=1.0, MAE=2.0, loss=3.0)
    assert undelivered_metrics(entry, [("RMSE", 2), ("MAE", 1)]) == {"MAE": 2.0, "loss": 3.0}
    assert undelivered_metrics(entry, [("RMSE", 2), ("MAE", 2), ("loss", 2)]) == {}


def test_non_finite_metrics_stay_out_of_the_entry() -> None:
    assert _metrics(1, RMSE=float("nan"), MAE=2.0, x=float("inf"))["metrics"] == {"MAE": 2.0}


def test_parse_skips_a_half_written_last_line_and_flags_garbage() -> None:
    data = b'{"kind": "tag"}\nnot json\n{"kind": "met'
    assert parse(data, 100) == [(116, {"kind": "tag"}), (125, None)]


def test_an_entry_with_nan_outside_the_metrics_is_kept(tmp_path: Path) -> None:
    """A final evaluation can hold NaN (a constant prediction's PCC): the model entry must still
    be written, or the session would fail at its very end."""
    box = _outbox(tmp_path, {"kind": "model", "run": "run-1", "champion": {"metrics": {"PCC": float("nan")}}})
    ((_, entry),) = box.pending()
    assert entry is not None and entry["champion"]["metrics"]["PCC"] != entry["champion"]["metrics"]["PCC"]


def test_pending_and_backlog_follow_the_acknowledged_offset(tmp_path: Path) -> None:
    box = _outbox(tmp_path, _metrics(0, RMSE=1.0), _metrics(1, RMSE=0.5))
    assert box.backlog() == 2
    first_end = box.pending()[0][0]
    state = box.read_state()
    state.offset = first_end
    box.write_state(state)
    assert [e["step"] for _, e in box.pending() if e] == [1]
    assert box.backlog() == 1
    assert box.holds_step("run-1", {"RMSE": 0.5}, 1)
    assert not box.holds_step("run-1", {"RMSE": 0.5, "MAE": 1.0}, 1)


def test_entries_go_out_in_order_each_acknowledged(tmp_path: Path) -> None:
    box = _outbox(
        tmp_path,
        {"kind": "params", "run": "run-1", "params": {"lr": "0.1"}},
        _metrics(0, RMSE=1.0),
        *final_entries("run-1", "completed"),
    )
    fake = FakeMlflow()
    assert Sender(box, "unused", client=fake).deliver_pending() == 4
    assert fake.calls == [
        ("log_batch", ["lr"]),
        ("log_batch", ["RMSE"]),
        ("set_tag", ("kosmos.status", "completed")),
        ("set_terminated", "FINISHED"),
    ]
    assert box.backlog() == 0
    assert box.read_state().offset == box.path.stat().st_size


def test_an_outage_keeps_the_rest_for_later_and_nothing_twice(tmp_path: Path) -> None:
    box = _outbox(tmp_path, _metrics(0, RMSE=1.0), _metrics(1, RMSE=0.5), _metrics(2, RMSE=0.4))
    fake = FakeMlflow()
    sender = Sender(box, "unused", client=fake)
    sender.deliver_pending()
    box.append(_metrics(3, RMSE=0.3))
    box.append(_metrics(4, RMSE=0.2))
    fake.fail = [MlflowException("Max retries exceeded with url: /api/2.0/mlflow/runs/log-batch")]
    with pytest.raises(MlflowException):
        sender.deliver_pending()
    assert box.backlog() == 2
    assert sender.deliver_pending() == 2  # MLflow is back
    assert sorted(s for _, _, s, _ in fake.metrics) == [0, 1, 2, 3, 4]


def test_a_crash_between_send_and_ack_does_not_log_a_metric_twice(tmp_path: Path) -> None:
    box = _outbox(tmp_path, _metrics(0, RMSE=1.0, MAE=2.0), _metrics(1, RMSE=0.5, MAE=1.5))
    fake = FakeMlflow()
    fake.store_then_fail = True  # step 0 is stored, but the sender never hears so (no ack)
    with pytest.raises(MlflowException):
        Sender(box, "unused", client=fake).deliver_pending()
    assert box.backlog() == 2
    # a new process (restart): its first entry is uncertain, so it asks MLflow what it holds
    assert Sender(box, "unused", client=fake).deliver_pending() == 2
    keys = [(k, s) for _, k, s, _ in fake.metrics]
    assert sorted(keys) == [("MAE", 0), ("MAE", 1), ("RMSE", 0), ("RMSE", 1)]


def test_without_the_history_check_the_same_crash_would_duplicate(tmp_path: Path) -> None:
    """The check above is what keeps the metric single: a sender that trusts its first entry
    (``_clean``) sends it again."""
    box = _outbox(tmp_path, _metrics(0, RMSE=1.0))
    fake = FakeMlflow()
    fake.store_then_fail = True
    with pytest.raises(MlflowException):
        Sender(box, "unused", client=fake).deliver_pending()
    trusting = Sender(box, "unused", client=fake)
    trusting._clean = True
    trusting.deliver_pending()
    assert [(k, s) for _, k, s, _ in fake.metrics] == [("RMSE", 0), ("RMSE", 0)]


def test_an_entry_mlflow_refuses_for_good_is_recorded_and_skipped(tmp_path: Path) -> None:
    box = _outbox(tmp_path, {"kind": "tag", "run": "run-1", "key": "k", "value": "v"}, _metrics(0, RMSE=1.0))
    fake = FakeMlflow()
    fake.fail = [MlflowException("bad value", error_code=INVALID_PARAMETER_VALUE)]
    assert Sender(box, "unused", client=fake).deliver_pending() == 2
    assert box.read_state().refused == ["tag: bad value"]
    assert [k for _, k, _, _ in fake.metrics] == ["RMSE"]


def test_a_model_entry_waits_for_a_sender_with_its_handler(tmp_path: Path) -> None:
    box = _outbox(
        tmp_path, {"kind": "model", "id": "model", "run": "run-1"}, *final_entries("run-1", "completed")
    )
    fake = FakeMlflow()
    assert Sender(box, "unused", client=fake).drain(patience=1) is False
    assert fake.calls == [] and box.backlog() == 3  # the run is not ended before its model
    handler = {"model": lambda client, entry: {"model_uri": "models:/m/1", "version": "1"}}
    assert Sender(box, "unused", handler, client=fake).drain(patience=1) is True
    assert box.read_state().results == {"model": {"model_uri": "models:/m/1", "version": "1"}}
    assert fake.calls[-1] == ("set_terminated", "FINISHED")


def test_drain_retries_until_mlflow_answers(tmp_path: Path) -> None:
    box = _outbox(tmp_path, _metrics(0, RMSE=1.0))
    fake = FakeMlflow()
    fake.fail = [MlflowException("down"), MlflowException("down")]
    sender = Sender(box, "unused", client=fake, max_wait=0.2)
    assert sender.drain(patience=30) is True
    assert [k for _, k, _, _ in fake.metrics] == ["RMSE"]


def test_one_sender_at_a_time(tmp_path: Path) -> None:
    box = _outbox(tmp_path, _metrics(0, RMSE=1.0))
    first, second = Sender(box, "unused"), Sender(box, "unused")
    assert first.try_lock()
    assert not second.try_lock()
    first.unlock()
    assert second.try_lock()
    second.unlock()


def test_drainer_leaves_a_session_whose_serverapp_sends_itself(tmp_path: Path) -> None:
    sessions = tmp_path / "sessions"
    busy = _outbox(sessions / "a", _metrics(0, RMSE=1.0))
    idle = _outbox(sessions / "b", _metrics(0, RMSE=1.0), _metrics(1, RMSE=0.5))
    owner = Sender(busy, "unused")
    assert owner.try_lock()
    uri = tracking_uri(str(tmp_path / "mlruns"))
    from kosmos_fl.fl.tracking import create_session_run

    run = create_session_run(uri, "exp", "s", {})
    for box in (busy, idle):  # point the entries at a real run
        lines = [json.loads(line) | {"run": run} for line in box.path.read_text().splitlines()]
        box.path.write_text("".join(json.dumps(e) + "\n" for e in lines))
    drainer = Drainer(sessions, uri)
    assert drainer.run_once() == 1  # the busy one's entry is left to its owner
    assert idle.backlog() == 0 and busy.backlog() == 1
    owner.unlock()


def test_real_mlflow_gets_each_metric_once_after_a_lost_ack(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from kosmos_fl.fl.tracking import create_session_run

    uri = tracking_uri(str(tmp_path / "mlruns"))
    run = create_session_run(uri, "exp", "s", {})
    box = Outbox(SessionFolder(tmp_path / "session"))
    for step in range(3):
        box.append(metrics_entry(run, {"RMSE": 1.0 / (step + 1), "MAE": 2.0}, step, 1000 + step))
    assert Sender(box, uri).deliver_pending() == 3
    state = box.read_state()
    state.offset = box.entries()[1][0]  # the ack of step 2 was lost in a crash
    box.write_state(state)
    queue_failure(tmp_path / "session", run, "quorum lost")
    assert Sender(box, uri).deliver_pending() == 4
    client = MlflowClient(tracking_uri=uri)
    for key in ("RMSE", "MAE"):
        assert sorted(m.step for m in client.get_metric_history(run, key)) == [0, 1, 2], key
    got = client.get_run(run)
    assert got.info.status == "FAILED"
    assert got.data.tags["kosmos.failure_reason"] == "quorum lost"


def test_the_serverapp_stops_waiting_for_a_down_mlflow_and_waits_for_an_up_one(tmp_path: Path) -> None:
    from kosmos_fl.fl.tracking.sender import Background

    box = _outbox(tmp_path, _metrics(0, RMSE=1.0))
    down = FakeMlflow()
    down.fail = [MlflowException("Max retries exceeded")] * 1000
    background = Background(Sender(box, "unused", client=down, max_wait=0.2))
    t0 = time.monotonic()
    assert background.flush(timeout=60, give_up_after=0.5) is False
    assert time.monotonic() - t0 < 30 and box.backlog() == 1
    background.close()

    up = FakeMlflow()
    background = Background(Sender(box, "unused", client=up))
    assert background.flush(timeout=60) is True
    assert [k for _, k, _, _ in up.metrics] == ["RMSE"] and box.backlog() == 0
    background.close()
