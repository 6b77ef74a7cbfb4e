"""The coordinator's pool and session bookkeeping, driven through its Socket.IO handlers
in-process (Flower and MLflow are replaced by a recording stand-in for the session run)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from kosmos_fl.coordinator.sessions import Session
from kosmos_fl.fl.flower_runtime import runtime
from kosmos_fl.fl.rounds import liveness
from kosmos_fl.fl.session import SessionSpec
from tests.coordinator.pieces import Pieces, server_config


class Recorder(Pieces):
    """Admission and session runner whose emits are recorded and whose sessions end when the test says so."""

    def __init__(self, tmp_path: Path, **cfg: Any) -> None:
        super().__init__(tmp_path, server_config(tmp_path, **cfg))
        self.release = asyncio.Event()

    async def run_session(self, s: Session) -> None:
        self.started.append(list(s.sids))
        await self.release.wait()
        self.release.clear()
        s.result = {"status": "completed", "model_uri": "models:/x/1"}
        await self.sessions.finish_session(s)

    def events(self, sid: str, name: str) -> list[Any]:
        return [d for e, to, d in self.emitted if e == name and to == sid]


async def connect(c: Pieces, sid: str) -> None:
    await c.on_connect(sid, {"REMOTE_ADDR": "10.0.0.1", "HTTP_HOST": "server:6000"})


def test_disconnect_while_waiting_leaves_the_pool(tmp_path: Path) -> None:
    async def scenario() -> Recorder:
        c = Recorder(tmp_path, num_clients=2)
        await connect(c, "a")
        await c.on_client_criteria("a", {"criteria_are_met": True})
        assert c.waiting == ["a"]
        await c.on_disconnect("a")
        await connect(c, "b")
        await c.on_client_criteria("b", {"criteria_are_met": True})
        await asyncio.sleep(0)
        return c

    c = asyncio.run(scenario())
    assert c.waiting == ["b"]
    assert c.started == []  # a left, so only one eligible client: no session


def test_ineligible_and_malformed_clients_stay_out(tmp_path: Path) -> None:
    async def scenario() -> Recorder:
        c = Recorder(tmp_path, num_clients=1)
        for sid in ("no", "bad", "wrong-usecase"):
            await connect(c, sid)
        await c.on_client_criteria("no", {"criteria_are_met": False, "reason": "too little data"})
        await c.on_client_criteria("bad", {"criteria_are_met": "maybe"})
        await c.on_client_criteria(
            "wrong-usecase",
            {"criteria_are_met": True, "usecase": {"name": "BearingUseCase", "version": "0.1"}},
        )
        await c.on_unknown("whatever", "bad", {})
        await asyncio.sleep(0)
        return c

    c = asyncio.run(scenario())
    assert c.started == [] and c.waiting == []
    assert c.events("no", "registered")[0]["reason"] == "too little data"
    assert "criteria_are_met" in c.events("bad", "error")[0]["message"]
    assert "unknown event 'whatever'" in c.events("bad", "error")[1]["message"]
    assert "use case mismatch" in c.clients["wrong-usecase"].reason


def test_next_group_starts_the_next_session(tmp_path: Path) -> None:
    async def scenario() -> Recorder:
        c = Recorder(tmp_path, num_clients=2)
        for sid in ("a", "b", "c", "d"):
            await connect(c, sid)
            await c.on_client_criteria(sid, {"criteria_are_met": True})
        await asyncio.sleep(0.01)
        assert c.started == [["a", "b"]]
        assert c.waiting == ["c", "d"]
        c.release.set()  # first session ends -> the waiting group starts the second
        for _ in range(50):
            await asyncio.sleep(0.01)
            if len(c.started) == 2:
                break
        c.release.set()
        await asyncio.sleep(0.05)
        return c

    c = asyncio.run(scenario())
    assert c.started == [["a", "b"], ["c", "d"]]
    assert [s["status"] for s in c.sessions_done] == ["completed", "completed"]
    assert c.events("a", "end_train")[0]["status"] == "completed"
    assert c.clients["a"].state == "connected"  # free to register again


def test_flower_address_follows_the_clients_view(tmp_path: Path) -> None:
    c = Recorder(tmp_path, flwr_server_address="0.0.0.0:9092")
    assert c.flwr_address_for("server") == "server:9092"
    c2 = Recorder(tmp_path, flwr_server_address="0.0.0.0:9092", flwr_public_address="fl.example.org:443")
    assert c2.flwr_address_for("server") == "fl.example.org:443"


@pytest.mark.parametrize("payload", [{"criteria_are_met": True, "blob": "x" * 70_000}])
def test_huge_payload_is_refused(tmp_path: Path, payload: dict) -> None:
    async def scenario() -> Recorder:
        c = Recorder(tmp_path, num_clients=1)
        await connect(c, "big")
        await c.on_client_criteria("big", payload)
        return c

    c = asyncio.run(scenario())
    assert c.started == []
    assert "larger than" in c.events("big", "error")[0]["message"]


def test_mlflow_store_and_experiment_are_prepared_at_start(tmp_path: Path) -> None:
    """``prepare_tracking`` (called when the server starts listening) creates the store and the
    experiment before any client arrives; the first session only awaits it (issue 18)."""
    from mlflow.tracking import MlflowClient

    async def scenario() -> Pieces:
        c = Pieces(tmp_path, server_config(tmp_path, mlflow_experiment_name="prepared"))
        c.sessions.prepare_tracking()
        await c.sessions._tracking_prepared()
        return c

    c = asyncio.run(scenario())
    assert (tmp_path / "m" / "mlflow.db").is_file()
    assert MlflowClient(tracking_uri=c.sessions.mlflow_uri).get_experiment_by_name("prepared") is not None


def test_eligible_clients_learn_where_to_start_their_supernode(tmp_path: Path) -> None:
    async def scenario() -> Recorder:
        c = Recorder(tmp_path, num_clients=2, flwr_server_address="0.0.0.0:9092")
        for sid, ok in (("a", True), ("no", False)):
            await connect(c, sid)
            await c.on_client_criteria(sid, {"criteria_are_met": ok})
        await c.on_client_criteria("a", {"criteria_are_met": True, "node_id": -1})
        return c

    c = asyncio.run(scenario())
    assert c.events("a", "registered")[0]["flwr_server_address"] == "server:9092"  # the host it reached us on
    assert "flwr_server_address" not in c.events("no", "registered")[0]
    assert "node_id" in c.events("a", "error")[0]["message"]  # not a Flower node id


def test_a_session_records_which_kept_supernodes_are_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Clients keep their SuperNode between sessions, so the SuperLink also knows the nodes of
    clients waiting for a later session; the ServerApp learns from nodes.json which are whose."""
    monkeypatch.setattr(runtime, "submit_run", lambda *args: 7)

    async def scenario() -> tuple[Recorder, Session]:
        c = Recorder(tmp_path, num_clients=2)
        for sid, node in (("a", 11), ("b", None), ("c", 13)):
            await connect(c, sid)
            await c.on_client_criteria(sid, {"criteria_are_met": True, **({"node_id": node} if node else {})})
        await asyncio.sleep(0.01)
        s = c.sessions.session
        assert s is not None
        spec = SessionSpec.from_config(
            c.sessions.config,
            session_id=s.session_id,
            out_dir=str(s.out_dir),
            usecase_name="BearingUseCase",
            usecase_version=c.admission.usecase_cls.version,
            data_path=str(tmp_path),
            mlflow_tracking_uri="",
            mlflow_run_id="r",
            registered_model_name="m",
            coordinator_pid=0,
        )
        await c.sessions._submit_and_announce(s, spec)
        return c, s

    c, s = asyncio.run(scenario())
    assert s.sids == ["a", "b"] and s.flower_run_id == 7
    assert liveness.read_nodes(s.out_dir) == ({0: 11}, {13})
    assert c.events("a", "start_train")[0]["session_id"] == s.session_id


def test_a_reload_mid_start_does_not_split_the_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The e2e reload test once caught the server spec and the clients' start_train built from two
    configs (the reload landed between them): a session keeps the config it started with."""
    monkeypatch.setattr(runtime, "submit_run", lambda *args: 7)

    async def scenario() -> Recorder:
        c = Recorder(
            tmp_path, num_clients=1, usecase={"name": "BearingUseCase", "broadcast_params": {"model": "ffnn"}}
        )
        await connect(c, "a")
        await c.on_client_criteria("a", {"criteria_are_met": True})
        await asyncio.sleep(0.01)
        s = c.sessions.session
        assert s is not None
        assert s.config is c.sessions.config  # fixed when the session was created
        reloaded = server_config(
            tmp_path, num_clients=1, usecase={"name": "BearingUseCase", "broadcast_params": {"model": "mlp"}}
        )
        c.sessions.config = reloaded
        spec = SessionSpec.from_config(
            s.config, session_id=s.session_id, out_dir=str(s.out_dir), usecase_name="BearingUseCase",
            usecase_version=c.admission.usecase_cls.version, data_path=str(tmp_path), mlflow_tracking_uri="",
            mlflow_run_id="r", registered_model_name="m", coordinator_pid=0,
        )  # fmt: skip
        await c.sessions._submit_and_announce(s, spec)
        return c

    c = asyncio.run(scenario())
    assert c.events("a", "start_train")[0]["usecase_params"] == {"model": "ffnn"}


@pytest.mark.parametrize(
    ("lifecycle", "sessions"),
    [({"min_interval": 300}, 1), ({"min_interval": 0.3}, 2), ({"max_sessions": 1}, 1), ({}, 2)],
)
def test_min_interval_and_max_sessions_hold_back_the_next_group(
    tmp_path: Path, lifecycle: dict[str, Any], sessions: int
) -> None:
    """Issue 20: with ``min_interval: 300`` two eligible groups get one session, not two; a short
    interval lets the second start once it has passed; ``max_sessions: 1`` never starts another."""

    async def scenario() -> Recorder:
        c = Recorder(tmp_path, num_clients=2, **lifecycle)
        for sid in ("a", "b", "c", "d"):
            await connect(c, sid)
            await c.on_client_criteria(sid, {"criteria_are_met": True})
        await asyncio.sleep(0.01)
        c.release.set()  # the first session ends; c and d wait
        for _ in range(100):
            await asyncio.sleep(0.01)
            if len(c.started) == 2:
                break
        c.release.set()
        await asyncio.sleep(0.05)
        return c

    c = asyncio.run(scenario())
    assert c.started == [["a", "b"], ["c", "d"]][:sessions]
    if sessions == 1:
        assert c.waiting == ["c", "d"]


def test_a_failed_session_without_a_result_gets_one(tmp_path: Path) -> None:
    """The ServerApp died before writing result.json: the coordinator writes the failure, so a
    restart never offers the session for --resume (issue 21 point 4)."""
    c = Recorder(tmp_path)
    out = tmp_path / "w" / "sessions" / "s1"
    out.mkdir(parents=True)
    s = Session("s1", [], out, "", time.time(), result={"status": "failed", "reason": "Flower run ended"})
    asyncio.run(c.sessions.finish_session(s))
    assert json.loads((out / "result.json").read_text())["reason"] == "Flower run ended"


def test_a_failed_session_ends_its_run_through_the_outbox(tmp_path: Path) -> None:
    """Issue 21 point 1: the coordinator does not call MLflow when a session fails; the failure goes
    into the session's outbox and its drainer thread delivers it (here: at once, MLflow is up)."""
    from mlflow.tracking import MlflowClient

    from kosmos_fl.fl.tracking import Outbox, create_session_run

    c = Recorder(tmp_path)
    run = create_session_run(c.sessions.mlflow_uri, "exp", "s1", {})
    out = tmp_path / "w" / "sessions" / "s1"
    out.mkdir(parents=True)
    s = Session("s1", [], out, run, time.time(), result={"status": "failed", "reason": "quorum lost"})
    asyncio.run(c.sessions.finish_session(s))
    box = Outbox(out)
    assert box.backlog() == 3  # status tag, reason, FAILED: nothing was sent on the event loop
    assert MlflowClient(tracking_uri=c.sessions.mlflow_uri).get_run(run).info.status == "RUNNING"
    assert c.sessions.drainer.run_once() == 0
    got = MlflowClient(tracking_uri=c.sessions.mlflow_uri).get_run(run)
    assert got.info.status == "FAILED" and got.data.tags["kosmos.failure_reason"] == "quorum lost"
    assert c.sessions.drainer.backlog == 0


def test_a_dead_clients_supernode_is_no_member_of_the_next_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A killed client's SuperNode stays in Flower's node list for a minute; the next session's
    nodes.json lists it under ``others`` so its ServerApp neither waits for it nor sends it round 1
    (the outbox made the ServerApp reach round 1 before a restarted client's new node joined)."""
    monkeypatch.setattr(runtime, "submit_run", lambda *args: 7)

    async def scenario() -> Session:
        c = Recorder(tmp_path, num_clients=2)
        old = tmp_path / "w" / "sessions" / "old"
        old.mkdir(parents=True)
        liveness.write_nodes(old, {0: 11, 1: 21}, [])
        c.sessions.session = Session("old", ["x", "y"], old, "r0", time.time(), status="running")
        c.sessions.drop_client("y", "disconnected: transport close")
        c.sessions.session = None
        for sid, node in (("a", 11), ("b", None)):  # b restarted: its new node is not known yet
            await connect(c, sid)
            await c.on_client_criteria(sid, {"criteria_are_met": True, **({"node_id": node} if node else {})})
        await asyncio.sleep(0.01)
        s = c.sessions.session
        assert s is not None
        spec = SessionSpec.from_config(
            c.sessions.config, session_id=s.session_id, out_dir=str(s.out_dir), usecase_name="BearingUseCase",
            usecase_version=c.admission.usecase_cls.version, data_path=str(tmp_path), mlflow_tracking_uri="",
            mlflow_run_id="r", registered_model_name="m", coordinator_pid=0,
        )  # fmt: skip
        await c.sessions._submit_and_announce(s, spec)
        return s

    s = asyncio.run(scenario())
    assert liveness.read_nodes(s.out_dir) == ({0: 11}, {21})
