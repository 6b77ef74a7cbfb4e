"""A real Prometheus (Debian's ``prometheus``, the package that brings promtool) scrapes the
server's token-free metrics listener, loads the shipped alert rules, and answers every query of the
shipped Grafana dashboard with data: the kit works against what the server really exports, without
Docker or Grafana."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from kosmos_fl.coordinator.metrics import FederationMetrics
from kosmos_fl.coordinator.scrape import ScrapeListener
from tests.test_observability_kit import PROM, dashboard_queries, metric_names

pytestmark = pytest.mark.e2e

SCRAPE_SECONDS = 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def _fed_metrics(tmp_path: Path) -> FederationMetrics:
    """Metrics as a server has them after one completed session with DP and a client gone."""
    snap = {"client_states": ["eligible", "connected"], "client_names": [("site-a", "eligible"),
            ("site-b", "connected")], "waiting": 1, "needed": 2, "running": True, "round": 2,
            "rounds": 2, "max_epsilon": 8.0}  # fmt: skip
    metrics = FederationMetrics(lambda: snap)
    for rnd in (1, 2):
        evaluation = {"RMSE": 3.0 / rnd, "RMSE_Bearing1_3": 2.0 / rnd}
        metrics.observe_round({"round": rnd, "metrics": evaluation, "round_seconds": 4.0,
                               "bytes_sent": 2e5, "bytes_received": 2e5, "client": {"train_loss": 0.5 / rnd},
                               "clients_ok": 2, "dp_epsilon": 7.5})  # fmt: skip
    metrics.session_ended({"status": "completed", "finished_at": time.time()},
                          {"champion": True, "registered_version": "1"})  # fmt: skip
    return metrics


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[FederationMetrics, int]]:
    """The metrics behind a real :class:`ScrapeListener` on a loopback port (its own loop thread)."""
    metrics = _fed_metrics(tmp_path)

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=metrics.exposition(), content_type="text/plain")

    port = _free_port()
    listener = ScrapeListener(f"127.0.0.1:{port}", handler, tuple)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(listener.start(), loop).result(10)
    try:
        yield metrics, port
    finally:
        asyncio.run_coroutine_threadsafe(listener.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture
def prometheus(tmp_path: Path, served: tuple[FederationMetrics, int]) -> Iterator[str]:
    """A Prometheus scraping ``served`` every second with the shipped rules; yields its URL."""
    exe = shutil.which("prometheus")
    if exe is None:
        pytest.fail(
            "prometheus not installed; `make test` installs it (scripts/services.sh: Debian's prometheus)"
        )
    shutil.copy(PROM / "kosmos-alerts.yml", tmp_path / "kosmos-alerts.yml")
    cfg = yaml.safe_load((PROM / "prometheus.yml").read_text(encoding="utf-8"))  # the shipped job
    cfg["global"] = {"scrape_interval": f"{SCRAPE_SECONDS}s", "evaluation_interval": f"{SCRAPE_SECONDS}s"}
    cfg["scrape_configs"][0]["static_configs"] = [{"targets": [f"127.0.0.1:{served[1]}"]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    port = _free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [exe, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:  # ready, and the first scrape landed
            try:
                if _get(f"{url}/api/v1/query?query=kosmos_build_info")["data"]["result"]:
                    break
            except OSError:
                pass
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text(errors="replace")[-2000:]
            assert time.monotonic() < deadline, "Prometheus did not scrape the server within 60 s"
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def _query(url: str, expr: str) -> list[dict[str, Any]]:
    body = _get(f"{url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")
    assert body["status"] == "success", (expr, body)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def test_prometheus_answers_every_dashboard_query_and_loads_the_rules(
    prometheus: str, served: tuple[FederationMetrics, int]
) -> None:
    metrics, _ = served
    for _ in range(4):  # a round per scrape, so rates and quantiles have something to show
        metrics.observe_round({"round": 3, "metrics": {"RMSE": 1.0, "RMSE_Bearing1_3": 1.0},
                               "round_seconds": 5.0, "bytes_sent": 1e5, "bytes_received": 1e5})  # fmt: skip
        time.sleep(SCRAPE_SECONDS * 1.2)
    queries = dashboard_queries(rate_interval=f"{30 * SCRAPE_SECONDS}s")  # every scrape so far
    for expr in queries:
        for name in metric_names(expr):
            assert _query(prometheus, name), f"Prometheus has no series {name} (used by {expr!r})"
        assert _query(prometheus, expr), f"no data for the dashboard query {expr!r}"
    per_unit = _query(prometheus, 'kosmos_eval_metric{metric="RMSE", unit!~"all|last"}')
    assert {r["metric"]["unit"] for r in per_unit} == {"Bearing1_3"}

    deadline = time.monotonic() + 30
    while True:  # every shipped rule evaluated once against the real series, without an error
        groups = _get(f"{prometheus}/api/v1/rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        if rules and all(not r.get("lastEvaluation", "0001").startswith("0001") for r in rules):
            break
        assert time.monotonic() < deadline, rules
        time.sleep(0.5)
    assert len(rules) == 7
    assert [(r["name"], r["health"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []
    firing = {r["name"] for r in rules if r["state"] != "inactive"}
    assert "KosmosPrivacyBudgetNearlySpent" in firing  # 7.5 of 8 spent, no `for`: fires at once
