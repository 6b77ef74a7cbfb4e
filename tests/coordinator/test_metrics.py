"""Prometheus metrics fed from progress.jsonl, rejected updates from another process, admin auth."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from types import SimpleNamespace

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from kosmos_fl.coordinator.admin_auth import protect
from kosmos_fl.coordinator.metrics import FederationMetrics, report_rejected_update
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
    assert s[("kosmos_eval_metric", (("metric", "RMSE"),))] == 3.0
    assert s[("kosmos_eval_metric", (("metric", "RMSE_B1"),))] == 2.5
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
    assert s[("kosmos_eval_metric", (("metric", "RMSE"),))] == 2.0
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
