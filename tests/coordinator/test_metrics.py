"""Prometheus metrics fed from progress.jsonl, rejected updates from another process, admin auth."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import socket
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from kosmos_fl import __version__
from kosmos_fl.coordinator.admin_auth import protect
from kosmos_fl.coordinator.metrics import FederationMetrics, report_rejected_update, split_eval_key
from kosmos_fl.coordinator.progress import ProgressFollower
from kosmos_fl.fl.session import PROGRESS_FILE, append_jsonl


def _samples(metrics: FederationMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(metrics.exposition().decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_follower_counts_rounds_bytes_and_rejections_once(tmp_path: Path) -> None:
    out = tmp_path / "s1"
    out.mkdir()
    session = SimpleNamespace(session_id="s1", out_dir=out)
    coord = SimpleNamespace(session=session, sessions_done=[])
    snap = {"client_states": ["training", "training", "eligible", "ineligible"], "waiting": 1,
            "needed": 2, "running": True, "round": 1, "rounds": 3}  # fmt: skip
    metrics = FederationMetrics(lambda: snap)
    follower = ProgressFollower(coord, metrics)  # type: ignore[arg-type]
    progress = out / PROGRESS_FILE
    append_jsonl(progress, {"event": "round", "round": 0, "metrics": {"RMSE": 5.0, "RMSE_B1": 4.0}})
    append_jsonl(progress, {"event": "round", "round": 1, "metrics": {"RMSE": 3.0, "RMSE_B1": 2.5},
                            "client": {"train_loss": 0.7}, "round_seconds": 4.0, "bytes_sent": 2000.0,
                            "bytes_received": 1900.0, "clients_ok": 2.0, "clients_failed": 1.0})  # fmt: skip
    report_rejected_update(out, 1, "node-7", "norm_too_large")  # what a ServerApp process would do
    with progress.open("a") as fh:
        fh.write('{"event": "round", "round": 2')  # a line being written right now: not yet read
    follower.tick()
    follower.tick()  # nothing new: nothing counted twice
    s = _samples(metrics)
    assert s[("kosmos_rounds_total", ())] == 1
    assert s[("kosmos_round_duration_seconds_count", ())] == 1
    assert s[("kosmos_round_duration_seconds_sum", ())] == 4.0
    assert s[("kosmos_round_bytes_sum", (("direction", "sent"),))] == 2000.0
    assert s[("kosmos_model_bytes_total", (("direction", "received"),))] == 1900.0
    assert s[("kosmos_eval_metric", (("metric", "RMSE"), ("unit", "all")))] == 3.0
    assert s[("kosmos_eval_metric", (("metric", "RMSE"), ("unit", "B1")))] == 2.5
    assert s[("kosmos_train_loss", ())] == 0.7
    assert s[("kosmos_rejected_updates_total", (("reason", "norm_too_large"),))] == 1
    assert s[("kosmos_rejected_updates_total", (("reason", "failed_reply"),))] == 1
    assert s[("kosmos_client_updates_total", (("outcome", "accepted"),))] == 2
    assert s[("kosmos_clients_connected", ())] == 4
    assert s[("kosmos_clients_eligible", ())] == 3
    assert s[("kosmos_clients", (("state", "training"),))] == 2
    assert s[("kosmos_session_running", ())] == 1
    assert s[("kosmos_sessions_started_total", ())] == 1

    with progress.open("a") as fh:  # the rest of the line lands; the session ends
        fh.write(', "metrics": {"RMSE": 2.0}, "round_seconds": 6.0}\n')
    coord.session = None
    coord.sessions_done.append({"session_id": "s1", "status": "completed", "out_dir": str(out)})
    follower.tick()
    follower.tick()
    s = _samples(metrics)
    assert s[("kosmos_rounds_total", ())] == 2
    assert s[("kosmos_eval_metric", (("metric", "RMSE"), ("unit", "all")))] == 2.0
    assert s[("kosmos_sessions_total", (("status", "completed"),))] == 1
    assert s[("kosmos_sessions_started_total", ())] == 1
    assert [r["round"] for r in follower.rows("s1")] == [0, 1, 2]
    assert follower.rejected("s1")[0]["client"] == "node-7"


def test_garbage_progress_line_is_skipped(tmp_path: Path) -> None:
    out = tmp_path / "s2"
    out.mkdir()
    (out / PROGRESS_FILE).write_text(
        "not json\n" + json.dumps({"event": "round", "round": 1, "metrics": {}}) + "\n"
    )
    coord = SimpleNamespace(session=SimpleNamespace(session_id="s2", out_dir=out), sessions_done=[])
    metrics = FederationMetrics(lambda: {})  # never scraped here
    follower = ProgressFollower(coord, metrics)  # type: ignore[arg-type]
    follower.tick()
    assert [r["round"] for r in follower.rows("s2")] == [1]


def test_admin_guard_accepts_basic_and_bearer_only_with_the_token() -> None:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="secret page")

    async def scenario() -> dict[str, int]:
        app = web.Application()
        app.router.add_get("/x", protect(ok, lambda: "tok"))
        app.router.add_get("/open", protect(ok, lambda: None))
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        basic = lambda pw: "Basic " + base64.b64encode(f"anyone:{pw}".encode()).decode()  # noqa: E731
        cases = {
            "none": {},
            "bearer": {"Authorization": "Bearer tok"},
            "bearer-wrong": {"Authorization": "Bearer tok2"},
            "basic": {"Authorization": basic("tok")},
            "basic-wrong": {"Authorization": basic("nope")},
            "garbage": {"Authorization": "Basic %%%"},
        }
        codes = {}
        async with aiohttp.ClientSession() as http:
            for name, headers in cases.items():
                async with http.get(f"http://127.0.0.1:{port}/x", headers=headers) as resp:
                    codes[name] = resp.status
                    if resp.status == 401:
                        assert resp.headers["WWW-Authenticate"].startswith("Basic ")
            async with http.get(f"http://127.0.0.1:{port}/open") as resp:
                codes["open"] = resp.status
        await runner.cleanup()
        return codes

    codes = asyncio.run(scenario())
    assert codes == {"none": 401, "bearer": 200, "bearer-wrong": 401, "basic": 200, "basic-wrong": 401,
                     "garbage": 401, "open": 200}  # fmt: skip


# -- issue 20: series from start, labels, no made-up values ------------------------------------


def _snap(**over: object) -> dict[str, object]:
    base: dict[str, object] = {"client_states": [], "client_names": [], "waiting": 0, "needed": 2,
                               "running": False, "round": 0, "rounds": 3, "max_epsilon": None}  # fmt: skip
    return {**base, **over}


def _session(tmp_path: Path, sid: str) -> tuple[SimpleNamespace, Path]:
    out = tmp_path / sid
    out.mkdir()
    return SimpleNamespace(session_id=sid, out_dir=out), out / PROGRESS_FILE


def test_series_an_alert_watches_exist_before_their_first_event() -> None:
    """``increase(kosmos_sessions_total{status="failed"}[1h]) > 0`` needs the 0 before the first
    failure; a gauge nobody knows yet reads NaN, never 0."""
    s = _samples(FederationMetrics(lambda: _snap()))
    for status in ("completed", "failed"):
        assert s[("kosmos_sessions_total", (("status", status),))] == 0
    for outcome in ("accepted", "failed", "rejected"):
        assert s[("kosmos_client_updates_total", (("outcome", outcome),))] == 0
    for direction in ("sent", "received"):
        assert s[("kosmos_model_bytes_total", (("direction", direction),))] == 0
        assert s[("kosmos_round_bytes_count", (("direction", direction),))] == 0
    assert s[("kosmos_rejected_updates_total", (("reason", "failed_reply"),))] == 0
    assert s[("kosmos_errors_total", (("level", "error"),))] == 0
    assert s[("kosmos_fleet_held_pulls_total", (("outcome", "message"),))] == 0
    assert s[("kosmos_rounds_total", ())] == 0
    assert s[("kosmos_build_info", (("version", __version__),))] == 1
    assert s[("kosmos_last_successful_session_timestamp_seconds", ())] == 0
    for nan in ("kosmos_train_loss", "kosmos_champion_model_version", "kosmos_privacy_epsilon_spent",
                "kosmos_privacy_epsilon_max"):  # fmt: skip
        assert math.isnan(s[(nan, ())]), nan
    assert s[("process_start_time_seconds", ())] > 0  # prometheus_client's process collector
    assert s[("process_resident_memory_bytes", ())] > 0
    assert not [k for k in s if k[0] == "kosmos_eval_metric"]  # nothing evaluated: no score at all


def test_client_states_do_not_overlap_and_gone_clients_read_0() -> None:
    snap = _snap(client_states=["connected", "eligible", "training", "ineligible", "connected"],
                 client_names=[("a", "connected"), ("b", "eligible"), ("c", "training"),
                               ("d", "ineligible"), ("", "connected")])  # fmt: skip
    metrics = FederationMetrics(lambda: snap)
    s = _samples(metrics)
    states = {dict(k[1])["state"]: v for k, v in s.items() if k[0] == "kosmos_clients"}
    assert states == {"pending": 2, "eligible": 1, "training": 1, "ineligible": 1}
    assert sum(states.values()) == s[("kosmos_clients_connected", ())] == 5  # each client once
    assert {k[1]: v for k, v in s.items() if k[0] == "kosmos_client_connected"} == {
        (("client", n),): 1 for n in "abcd"
    }
    snap["client_names"] = [("a", "connected")]  # b, c, d left: the offline alert sees 0
    s = _samples(metrics)
    assert s[("kosmos_client_connected", (("client", "b"),))] == 0
    assert s[("kosmos_client_connected", (("client", "a"),))] == 1


def test_made_up_client_names_cannot_grow_the_series_without_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("kosmos_fl.coordinator.metrics.MAX_CLIENT_SERIES", 3)
    snap = _snap(client_names=[("site", "eligible")])
    metrics = FederationMetrics(lambda: snap)
    _samples(metrics)
    for i in range(10):  # a peer without credentials reconnects under a new name each time
        snap["client_names"] = [("site", "eligible"), (f"fake{i}", "connected")]
        _samples(metrics)
    snap["client_names"] = [("site", "eligible")]
    names = {dict(k[1])["client"] for k in _samples(metrics) if k[0] == "kosmos_client_connected"}
    assert names == {"site", "fake8", "fake9"}  # the connected one stays, the oldest gone go


def test_updates_the_serverapp_screened_out_are_counted() -> None:
    """The ServerApp's screening (NaN, shapes, norms) refused updates were in progress.jsonl and
    MLflow but not in kosmos_rejected_updates_total; they count under one fixed reason."""
    metrics = FederationMetrics(lambda: _snap())
    assert _samples(metrics)[("kosmos_rejected_updates_total", (("reason", "validation"),))] == 0
    metrics.observe_round({"round": 1, "metrics": {}, "clients_ok": 2.0, "updates_rejected": 1.0})
    s = _samples(metrics)
    assert s[("kosmos_rejected_updates_total", (("reason", "validation"),))] == 1
    assert s[("kosmos_client_updates_total", (("outcome", "rejected"),))] == 1
    assert s[("kosmos_client_updates_total", (("outcome", "accepted"),))] == 2


def test_eval_labels_are_metric_and_unit() -> None:
    assert split_eval_key("RMSE_Bearing3_2", {"RMSE"}) == ("RMSE", "Bearing3_2")
    assert split_eval_key("RMSE", {"RMSE"}) == ("RMSE", "all")
    assert split_eval_key("R2_score", {"RMSE"}) == ("R2_score", "all")  # no aggregate R2: one metric
    metrics = FederationMetrics(lambda: _snap())
    metrics.observe_round({"round": 1, "metrics": {"RMSE": 3.0, "RMSE_unit12": 2.0, "PHM08": 9.0,
                                                   "PHM08_unit12": 8.0, "RMSE_last": 4.0}})  # fmt: skip
    s = _samples(metrics)
    got = {tuple(sorted(dict(k[1]).items())): v for k, v in s.items() if k[0] == "kosmos_eval_metric"}
    assert got == {
        (("metric", "RMSE"), ("unit", "all")): 3.0,
        (("metric", "RMSE"), ("unit", "unit12")): 2.0,
        (("metric", "PHM08"), ("unit", "all")): 9.0,
        (("metric", "PHM08"), ("unit", "unit12")): 8.0,
        (("metric", "RMSE"), ("unit", "last")): 4.0,
    }


def test_eval_never_shows_round_0_nor_a_failed_sessions_scores(tmp_path: Path) -> None:
    """Round 0 scores the untrained model; when a session fails, the last completed session's
    scores come back (none before the first: the series are gone, not 0)."""
    sa, pa = _session(tmp_path, "a")
    coord = SimpleNamespace(session=sa, sessions_done=[])
    metrics = FederationMetrics(lambda: _snap())
    follower = ProgressFollower(coord, metrics)  # type: ignore[arg-type]
    rmse = ("kosmos_eval_metric", (("metric", "RMSE"), ("unit", "all")))
    append_jsonl(pa, {"event": "round", "round": 0, "metrics": {"RMSE": 50.0}})
    follower.tick()
    assert rmse not in _samples(metrics)
    assert math.isnan(_samples(metrics)[("kosmos_train_loss", ())])
    append_jsonl(pa, {"event": "round", "round": 1, "metrics": {"RMSE": 7.0}, "client": {"train_loss": 0.5}})
    coord.session = None
    coord.sessions_done.append({"session_id": "a", "status": "completed", "out_dir": str(pa.parent),
                                "finished_at": 1700000000.0})  # fmt: skip
    follower.tick()
    assert _samples(metrics)[rmse] == 7.0
    assert _samples(metrics)[("kosmos_train_loss", ())] == 0.5

    sb, pb = _session(tmp_path, "b")
    coord.session = sb
    append_jsonl(pb, {"event": "round", "round": 0, "metrics": {"RMSE": 60.0}})
    follower.tick()
    assert _samples(metrics)[rmse] == 7.0  # b's initial model is not the model of the last round
    append_jsonl(pb, {"event": "round", "round": 1, "metrics": {"RMSE": 9.0}})
    follower.tick()
    assert _samples(metrics)[rmse] == 9.0  # live: b's trained round
    coord.session = None
    coord.sessions_done.append({"session_id": "b", "status": "failed", "out_dir": str(pb.parent)})
    follower.tick()
    s = _samples(metrics)
    assert s[rmse] == 7.0
    assert s[("kosmos_sessions_total", (("status", "failed"),))] == 1
    assert s[("kosmos_last_successful_session_timestamp_seconds", ())] == 1700000000.0

    fresh = FederationMetrics(lambda: _snap())  # a first session that fails after round 0
    fresh.observe_round({"round": 0, "metrics": {"RMSE": 50.0}})
    fresh.session_ended({"status": "failed"}, None)
    assert not [k for k in _samples(fresh) if k[0] == "kosmos_eval_metric"]


def test_champion_version_and_privacy_budget(tmp_path: Path) -> None:
    sa, pa = _session(tmp_path, "a")
    (pa.parent / "result.json").write_text(
        json.dumps({"status": "completed", "champion": True, "registered_version": "3"})
    )
    coord = SimpleNamespace(session=sa, sessions_done=[])
    metrics = FederationMetrics(lambda: _snap(max_epsilon=8.0))
    follower = ProgressFollower(coord, metrics)  # type: ignore[arg-type]
    append_jsonl(pa, {"event": "round", "round": 1, "metrics": {"RMSE": 1.0}, "dp_epsilon": 2.5})
    follower.tick()
    coord.session = None
    coord.sessions_done.append({"session_id": "a", "status": "completed", "out_dir": str(pa.parent),
                                "finished_at": 1.0})  # fmt: skip
    follower.tick()
    s = _samples(metrics)
    assert s[("kosmos_champion_model_version", ())] == 3
    assert s[("kosmos_privacy_epsilon_spent", ())] == 2.5
    assert s[("kosmos_privacy_epsilon_max", ())] == 8.0
    metrics.session_ended({"status": "completed", "finished_at": 2.0}, {"champion": False,
                                                                      "registered_version": "4"})  # fmt: skip
    assert _samples(metrics)[("kosmos_champion_model_version", ())] == 3  # 4 did not win


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_metrics_address_serves_metrics_without_the_admin_token(tmp_path: Path) -> None:
    """Prometheus (k8s annotations carry no credentials) scrapes ``metrics_address``; the admin
    side on ``socketio_address`` still wants the token, and the scrape port serves nothing else."""
    from kosmos_fl.coordinator.server import Coordinator
    from tests.coordinator.pieces import server_config

    main, scrape = _free_port(), _free_port()
    cfg = server_config(tmp_path, admin_token="s3cret", socketio_address=f"127.0.0.1:{main}",
                        metrics_address=f"127.0.0.1:{scrape}")  # fmt: skip
    coord = Coordinator(cfg, tmp_path)

    async def scenario() -> dict[str, int]:
        runner = web.AppRunner(coord.app)
        await runner.setup()  # on_startup: the scrape listener binds
        await web.TCPSite(runner, "127.0.0.1", main).start()
        codes = {}
        try:
            async with aiohttp.ClientSession() as http:
                for name, url, headers in (
                    ("scrape", f"http://127.0.0.1:{scrape}/metrics", {}),
                    ("scrape-dashboard", f"http://127.0.0.1:{scrape}/dashboard", {}),
                    ("scrape-status", f"http://127.0.0.1:{scrape}/status", {}),
                    ("scrape-rebound", f"http://127.0.0.1:{scrape}/metrics", {"Host": "evil.example"}),
                    ("admin-no-token", f"http://127.0.0.1:{main}/metrics", {}),
                    ("admin-token", f"http://127.0.0.1:{main}/metrics", {"Authorization": "Bearer s3cret"}),
                ):
                    async with http.get(url, headers=headers) as resp:
                        codes[name] = resp.status
                        if name == "scrape":
                            assert "kosmos_sessions_total" in await resp.text()
        finally:
            await runner.cleanup()
        return codes

    codes = asyncio.run(scenario())
    assert codes == {"scrape": 200, "scrape-dashboard": 404, "scrape-status": 404, "scrape-rebound": 421,
                     "admin-no-token": 401, "admin-token": 200}  # fmt: skip


def test_a_taken_metrics_address_is_one_line(tmp_path: Path) -> None:
    from kosmos_fl.coordinator.scrape import ScrapeListener
    from kosmos_fl.errors import FederationError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        async def ok(request: web.Request) -> web.Response:
            return web.Response(text="")

        listener = ScrapeListener(f"127.0.0.1:{port}", ok, tuple)
        with pytest.raises(
            FederationError, match=rf"cannot listen on metrics_address 127.0.0.1:{port}: .*free port"
        ):
            asyncio.run(listener.start())


def test_last_success_and_champion_survive_a_restart(tmp_path: Path) -> None:
    """A new server process reads them from its work_dir's session results (newest first); a
    session of its own then takes over. Counters start at 0 again: they are per process."""
    from kosmos_fl.coordinator.progress import past_results

    def session(name: str, result: dict[str, object]) -> None:
        (tmp_path / "sessions" / name).mkdir(parents=True)
        (tmp_path / "sessions" / name / "result.json").write_text(json.dumps(result))

    session("20260101-000000-aaaaaa", {"status": "completed", "champion": True, "registered_version": "2",
                                       "finished_at": 100.0})  # fmt: skip
    session("20260102-000000-bbbbbb", {"status": "completed", "champion": False, "registered_version": "3",
                                       "finished_at": 200.0})  # fmt: skip
    session("20260103-000000-cccccc", {"status": "failed", "finished_at": 300.0})
    session("20260103-120000-ffffff", {"status": "completed", "champion": True, "registered_version": None,
                                       "finished_at": "garbage"})  # fmt: skip
    (tmp_path / "sessions" / "20260104-000000-dddddd").mkdir()  # interrupted: no result yet
    metrics = FederationMetrics(lambda: _snap())
    metrics.restore(past_results(tmp_path))
    s = _samples(metrics)
    assert s[("kosmos_last_successful_session_timestamp_seconds", ())] == 200.0
    assert s[("kosmos_champion_model_version", ())] == 2  # version 3 did not beat it
    assert s[("kosmos_sessions_total", (("status", "completed"),))] == 0
    assert list(past_results(tmp_path / "nowhere")) == []
    (tmp_path / "sessions" / "20260105-000000-eeeeee").mkdir()
    (tmp_path / "sessions" / "20260105-000000-eeeeee" / "result.json").write_text("[1, 2]")  # not ours
    assert [r["finished_at"] for r in past_results(tmp_path)] == ["garbage", 300.0, 200.0, 100.0]
