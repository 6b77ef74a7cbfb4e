"""``/dashboard/api/state`` (issue 20): units, client names, one row per client of a session, past
sessions selectable, the champion, and the MLflow store in a human, redacted form.

A real coordinator serves the document over HTTP; its past sessions are folders written with the
same classes the ServerApp and the session runner use (``SessionFolder``, the progress events,
``resume.write_clients``), so the dashboard reads what a session leaves behind.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from kosmos_fl.config import load_server_config
from kosmos_fl.coordinator import dashboard, resume
from kosmos_fl.coordinator.admission import ClientRecord
from kosmos_fl.coordinator.dashboard_state import client_rows, store_label
from kosmos_fl.coordinator.server import Coordinator
from kosmos_fl.fl.session import (
    RejectedEvent,
    RejectedUpdateEvent,
    RoundEvent,
    SessionFolder,
    StoppedEvent,
)

OLD, NEW, CUT = "20260101-100000-aaaaaa", "20260102-100000-bbbbbb", "20260103-100000-cccccc"


def write_session(
    work_dir: Path,
    session_id: str,
    names: list[str | None],
    rounds: list[dict[str, Any]],
    result: dict[str, Any] | None,
) -> SessionFolder:
    """A session folder as the runner (spec, clients.json) and the ServerApp (progress, result) leave it."""
    folder = SessionFolder(work_dir / "sessions" / session_id)
    folder.path.mkdir(parents=True)
    spec = {
        "session_id": session_id,
        "num_rounds": len(rounds) - 1,
        "mlflow_run_id": f"run-{session_id[-6:]}",
    }
    spec["mlflow_tracking_uri"] = "postgresql://kosmos:pw-in-spec@db:5432/mlflow"
    folder.spec_file.write_text(json.dumps(spec), encoding="utf-8")
    resume.write_clients(folder.path, names)
    for r in rounds:
        folder.append_progress(RoundEvent.model_validate(r))
    if result is not None:
        folder.write_result(result)
    return folder


def _round(n: int, rmse: float, **clients: float) -> dict[str, Any]:
    losses = {f"train_loss_client{cid[1:]}": v for cid, v in clients.items()}
    return {
        "round": n,
        "metrics": {"RMSE": rmse, "MAE": rmse / 2, "PCC": 0.5, "RMSE_Bearing1_3": rmse + 1},
        "client": {**losses, "train_loss": sum(clients.values()) / len(clients)} if clients else {},
        "examples": {cid[1:]: 100 * (int(cid[1:]) + 1) for cid in clients},
        "round_seconds": 2.5,
    }


def _result(version: str, rmse: float, champion: bool, reason: str) -> dict[str, Any]:
    return {
        "status": "completed",
        "final_metrics": {"RMSE": rmse},
        "model_uri": f"models:/kosmos-BearingUseCase/{version}",
        "registered_version": version,
        "champion": champion,
        "champion_reason": reason,
    }


def seed_sessions(work: Path, *, cut: bool = True) -> None:
    """Two finished sessions (the older one's version 1 became champion, the newer one's did not;
    site-b's update was rejected in round 2 of the newer one) and, with ``cut``, a third the server
    stopped after round 0 (no result)."""
    old = write_session(
        work, OLD, ["site-a", "site-b"], [_round(0, 9.0), _round(1, 7.0, c0=3.0, c1=5.0)],
        _result("1", 7.0, True, "first champion (RMSE 7)"),
    )  # fmt: skip
    old.append_progress(RejectedEvent(round=1, client=1, reason="update norm 1e9 above the limit"))
    new = write_session(
        work, NEW, ["site-a", "site-b"],
        [_round(0, 8.0), _round(1, 6.0, c0=2.0, c1=4.0), _round(2, 5.0, c0=1.5)],
        _result("2", 5.0, False, "RMSE 5 does not beat champion version 1"),
    )  # fmt: skip
    new.append_progress(RejectedUpdateEvent(round=2, client="site-b", reason="late"))
    new.append_progress(RejectedEvent(round=2, client=1, reason="NaN in the update"))
    if cut:
        stopped = write_session(work, CUT, ["site-a", None], [_round(0, 8.5)], None)
        stopped.append_progress(StoppedEvent(round=0, reason="stopped"))


@pytest.fixture
def coord(tmp_path: Path) -> Coordinator:
    config = load_server_config(
        None, work_dir=str(tmp_path / "w"), mlflow_server_address=str(tmp_path / "mlruns"), num_clients=2
    )
    c = Coordinator(config, tmp_path)
    seed_sessions(c.work_dir)
    c.admission.clients["Xq3vT9sid-long-socketio-id"] = ClientRecord(
        sid="Xq3vT9sid-long-socketio-id",
        address="10.0.0.7",
        host="h",
        connected_at=time.time(),
        name="site-a",
    )
    c.admission.clients["Pp0sid-other"] = ClientRecord(
        sid="Pp0sid-other", address="10.0.0.8", host="h", connected_at=time.time(), name="claimed",
        identity="site-c",
    )  # fmt: skip
    return c


def _get(coord: Coordinator, *paths: str) -> list[tuple[int, Any]]:
    """GET each path from the coordinator's app, served on a loopback port (one event loop)."""

    async def run() -> list[tuple[int, Any]]:
        server = TestServer(coord.app, host="127.0.0.1")
        await server.start_server()
        out = []
        try:
            async with aiohttp.ClientSession() as http:
                for path in paths:
                    async with http.get(f"http://127.0.0.1:{server.port}{path}") as r:
                        out.append((r.status, await r.json(content_type=None)))
        finally:
            await server.close()
        return out

    return asyncio.run(run())


@pytest.fixture
def no_champion(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests of other parts of the document: the page's background MLflow lookup answers at once."""
    monkeypatch.setattr(dashboard, "champion_version", lambda uri, name: None)


def test_units_come_from_the_use_case(coord: Coordinator, tmp_path: Path, no_champion: None) -> None:
    status, doc = _get(coord, "/dashboard/api/state")[0]
    assert status == 200
    assert doc["units"]["target"] == "hours"
    assert doc["units"]["RMSE"] == doc["units"]["MAE"] == "hours"
    assert doc["units"]["seconds"] == "s" and doc["units"]["PCC"] == ""
    turbofan = load_server_config(
        None, work_dir=str(tmp_path / "t"), mlflow_server_address=str(tmp_path / "m2"),
        usecase={"name": "TurbofanUseCase"}, test_units=["1"],
    )  # fmt: skip
    assert _get(Coordinator(turbofan, tmp_path), "/dashboard/api/state")[0][1]["units"]["RMSE"] == "cycles"


def test_connected_clients_are_named_not_socketio_ids(coord: Coordinator, no_champion: None) -> None:
    _, doc = _get(coord, "/dashboard/api/state")[0]
    names = {c["sid"]: c["name"] for c in doc["clients"]}
    # the credential's name wins over the name a client claims
    assert names == {"Xq3vT9sid-long-socketio-id": "site-a", "Pp0sid-other": "site-c"}


def test_live_view_is_the_newest_session_with_one_row_per_client(
    coord: Coordinator, no_champion: None
) -> None:
    (_, doc), (_, picked) = _get(coord, "/dashboard/api/state", f"/dashboard/api/state?session={NEW}")
    # nothing ran in this process: the newest folder is the live view (here: the cut-off one)
    assert doc["live_session_id"] == CUT and doc["session"]["session_id"] == CUT
    assert doc["session"]["status"] == "interrupted"
    doc = picked
    assert doc["session"]["session_id"] == NEW and doc["session"]["live"] is False
    rows = {r["name"]: r for r in doc["per_client"]}
    assert rows["site-a"] == {
        "client_id": 0, "name": "site-a", "samples": 100, "rounds": 2, "last_loss": 1.5, "eval_rmse": None,
        "rejected": 0, "last_rejection": None, "connected": True,
    }  # fmt: skip
    b = rows["site-b"]
    assert (b["samples"], b["rounds"], b["last_loss"], b["connected"]) == (200, 1, 4.0, False)
    assert b["rejected"] == 2 and b["last_rejection"] == "round 2: NaN in the update"
    assert [r["round"] for r in doc["rounds"]] == [0, 1, 2]
    assert doc["rounds"][2]["metrics"] == {"RMSE": 5.0, "MAE": 2.5, "PCC": 0.5}
    assert doc["per_unit_rmse"] == {"Bearing1_3": 6.0}
    assert len(doc["rejected_updates"]) == 2


def test_past_sessions_listed_newest_first_and_selectable(coord: Coordinator, no_champion: None) -> None:
    (_, doc), (_, old) = _get(coord, "/dashboard/api/state", f"/dashboard/api/state?session={OLD}")
    listed = [(s["session_id"], s["status"], s["rmse"], s["champion"]) for s in doc["sessions"]]
    assert listed == [
        (CUT, "interrupted", None, None),
        (NEW, "completed", 5.0, False),
        (OLD, "completed", 7.0, True),
    ]
    s = old["session"]
    assert (s["session_id"], s["round"], s["num_rounds"], s["mlflow_run_id"]) == (OLD, 1, 1, "run-aaaaaa")
    assert (s["champion"], s["registered_version"]) == (True, "1")
    assert s["champion_reason"] == "first champion (RMSE 7)"
    assert [r["round"] for r in old["rounds"]] == [0, 1]
    assert {r["name"]: r["rejected"] for r in old["per_client"]} == {"site-a": 0, "site-b": 1}
    assert "pw-in-spec" not in json.dumps(old)  # the spec's URIs are never passed on


@pytest.mark.parametrize("bad", ["20990101-000000-nosuch", "..", "../w", "a/b", "%2e%2e"])
def test_unknown_or_malformed_session_is_404_naming_it(
    coord: Coordinator, bad: str, no_champion: None
) -> None:
    status, body = _get(coord, f"/dashboard/api/state?session={bad}")[0]
    assert status == 404
    assert "no session" in body["detail"] and "work_dir/sessions" in body["detail"]


def test_store_uri_shown_in_human_form_without_credentials(
    coord: Coordinator, tmp_path: Path, no_champion: None
) -> None:
    _, doc = _get(coord, "/dashboard/api/state")[0]
    assert doc["server"]["mlflow_store"] == "local store mlruns (SQLite)"
    assert store_label(f"sqlite:///{tmp_path}/x/mlflow.db") == f"local store {tmp_path}/x (SQLite)"
    assert store_label("sqlite:////elsewhere/mlflow.db", tmp_path) == "local store /elsewhere (SQLite)"
    assert store_label("sqlite:////srv/runs.db") == "SQLite file /srv/runs.db"
    assert store_label("postgresql+psycopg2://kosmos:pw@db:5432/mlflow") == "PostgreSQL db:5432/mlflow"
    assert store_label("https://alice:pw@mlflow.example/") == "https://mlflow.example/"
    assert store_label("http://mlflow:5000") == "http://mlflow:5000"


def test_champion_version_is_asked_from_mlflow(coord: Coordinator) -> None:
    from mlflow.tracking import MlflowClient

    from kosmos_fl.coordinator.dashboard import champion_version

    ml = MlflowClient(tracking_uri=coord.mlflow_uri)
    name = "kosmos-BearingUseCase"
    assert champion_version(coord.mlflow_uri, name) is None  # no such model yet
    ml.create_registered_model(name)
    for _ in range(2):
        ml.create_model_version(name, source="file:///tmp/nowhere")
    assert champion_version(coord.mlflow_uri, name) is None  # versions, no champion
    ml.set_registered_model_alias(name, "champion", "2")
    assert champion_version(coord.mlflow_uri, name) == "2"

    async def run() -> dict[str, Any]:
        await coord.dashboard._refresh_champion()
        return coord.dashboard.state()["champion"]

    assert asyncio.run(run()) == {"model": name, "version": "2", "known": True}


def test_client_rows_from_events_alone() -> None:
    """Ids without a name in clients.json (and a rejection by an unknown id) still get a row."""
    rows = client_rows(
        {0: "site-a"},
        [
            RoundEvent.model_validate(_round(1, 5.0, c0=1.0, c3=2.0)),
            RoundEvent.model_validate({**_round(2, 4.0), "client": {"RMSE_client0": 3.25}}),
            RejectedEvent(round=2, client=None, reason="reply holds no 'metrics' record"),
        ],
        connected=set(),
    )
    assert [(r["client_id"], r["name"], r["rounds"], r["samples"]) for r in rows] == [
        (-1, "client -1", 0, None),
        (0, "site-a", 1, 100),
        (3, "client 3", 1, 400),
    ]
    assert rows[1]["eval_rmse"] == 3.25 and rows[0]["rejected"] == 1


def test_page_sets_values_as_text_only() -> None:
    """Names and reasons come from clients: the page never parses them as HTML."""
    from kosmos_fl.coordinator.dashboard import STATIC_DIR

    js = (STATIC_DIR / "dashboard.js").read_text(encoding="utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in js, sink
