"""The operator's dashboard and Prometheus endpoint, served by the coordinator's aiohttp app.

``attach(coordinator)`` adds the routes (``/dashboard``, ``/dashboard/api/state``, ``/metrics``),
a log handler that keeps recent warnings and errors, and a background task that follows the
running session's ``progress.jsonl`` (written by the ServerApp in its own process) to feed both the
page and the metrics. The page is static HTML + plain JavaScript (no build step, no CDN: servers
often have no internet access) that polls ``/dashboard/api/state`` and draws its charts as SVG.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from kosmos_fl.config import ServerConfig
from kosmos_fl.coordinator.admin_auth import protect
from kosmos_fl.coordinator.admission import ClientRecord
from kosmos_fl.coordinator.metrics import FederationMetrics
from kosmos_fl.coordinator.progress import ProgressFollower, SessionView, past_results
from kosmos_fl.coordinator.scrape import ScrapeListener
from kosmos_fl.fl.flower_runtime import runtime
from kosmos_fl.redact import redact, safe
from kosmos_fl.usecases.base import UseCase

log = logging.getLogger("kosmos_fl.dashboard")


class Federation(SessionView, Protocol):
    """What the dashboard reads of the coordinator (``kosmos_fl.coordinator.server.Coordinator``)."""

    @property
    def config(self) -> ServerConfig: ...

    @property
    def clients(self) -> dict[str, ClientRecord]: ...

    @property
    def waiting(self) -> list[str]: ...

    @property
    def mlflow_uri(self) -> str: ...

    @property
    def usecase_cls(self) -> type[UseCase]: ...

    @property
    def superlink(self) -> runtime.ManagedProcess | None: ...

    @property
    def app(self) -> web.Application: ...

    @property
    def work_dir(self) -> Path: ...


STATIC_DIR = Path(__file__).parent / "dashboard_static"
STATIC_FILES = {
    "dashboard.js": "application/javascript",
    "dashboard.css": "text/css",
}
#: Sessions whose per-round progress the dashboard keeps in memory.
TICK_SECONDS = 0.5


class RecentErrors(logging.Handler):
    """Keeps the last warnings/errors of the ``kosmos_fl`` loggers for the page, counts them."""

    def __init__(self, metrics: FederationMetrics, size: int = 50) -> None:
        super().__init__(level=logging.WARNING)
        self.records: collections.deque[dict[str, Any]] = collections.deque(maxlen=size)
        self.metrics = metrics

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.records.append(
                {
                    "ts": record.created,
                    "level": record.levelname.lower(),
                    "logger": record.name,
                    "message": safe(record.getMessage()),
                }
            )
            self.metrics.errors.labels(level=record.levelname.lower()).inc()
        except Exception:  # a log handler must never raise into the code that logs
            self.handleError(record)


class Dashboard:
    """State document for the page, MLflow links, and the HTTP handlers."""

    def __init__(self, coord: Federation) -> None:
        self.coord = coord
        self.started_at = time.time()
        self.metrics = FederationMetrics(self.snapshot)
        self.follower = ProgressFollower(coord, self.metrics)
        self.errors = RecentErrors(self.metrics)
        self._experiment_ids: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None

    # -- data -----------------------------------------------------------------------------------
    def admin_token(self) -> str | None:
        token = self.coord.config.admin_token
        return token.get_secret_value() if token is not None else None

    def admin_hosts(self) -> set[str]:
        """Names the admin side answers to (besides IP literals and localhost)."""
        cfg = self.coord.config
        names = set(cfg.admin_hosts)
        for address in (cfg.socketio_address, cfg.flwr_public_address):
            if address:
                names.add(address.rsplit(":", 1)[0].strip("[]"))
        return names

    def mlflow_ui(self) -> str | None:
        cfg = self.coord.config
        url = cfg.mlflow_ui_url or (
            cfg.mlflow_server_address
            if cfg.mlflow_server_address.startswith(("http://", "https://"))
            else None
        )
        return redact(url.rstrip("/")) if url else None

    def _current_round(self) -> int:
        s = self.coord.session
        if s is None:
            return 0
        rows = self.follower.rows(s.session_id)
        return int(rows[-1]["round"]) if rows else 0

    def snapshot(self) -> dict[str, Any]:
        """What the scrape-time gauges need (cheap; called on every scrape)."""
        self.follower.tick()
        dp = self.coord.config.differential_privacy
        return {
            "client_states": [c.state for c in self.coord.clients.values()],
            "client_names": [(c.identity or c.name or "", c.state) for c in self.coord.clients.values()],
            "max_epsilon": dp.max_epsilon if dp is not None else None,
            "waiting": len(self.coord.waiting),
            "needed": self.coord.config.num_clients,
            "running": self.coord.session is not None,
            "round": self._current_round(),
            "rounds": self.coord.config.n_federated_train_epoch,
        }

    def _experiment_id(self, run_id: str) -> str | None:
        if run_id in self._experiment_ids:
            return self._experiment_ids[run_id]
        try:
            from mlflow.tracking import MlflowClient

            exp = MlflowClient(tracking_uri=self.coord.mlflow_uri).get_run(run_id).info.experiment_id
        except Exception as exc:  # the store may be briefly unreachable; links come back later
            log.debug("no experiment id for run %s: %s", run_id, exc)
            return None
        self._experiment_ids[run_id] = str(exp)
        return str(exp)

    def _links(self, run_id: str | None, model_uri: str | None) -> dict[str, str | None]:
        ui = self.mlflow_ui()
        links: dict[str, str | None] = {"run": None, "model": None}
        if ui and run_id:
            exp = self._experiment_ids.get(run_id)  # looked up off the event loop beforehand
            if exp is not None:
                links["run"] = f"{ui}/#/experiments/{exp}/runs/{run_id}"
        if ui and model_uri and model_uri.startswith("models:/"):
            name, _, version = model_uri.removeprefix("models:/").rpartition("/")
            links["model"] = f"{ui}/#/models/{name}/versions/{version}"
        return links

    def state(self) -> dict[str, Any]:
        """The document the page renders (``GET /dashboard/api/state``)."""
        self.follower.tick()
        coord, cfg = self.coord, self.coord.config
        session = self._session()
        rounds: list[dict[str, Any]] = []
        per_unit: dict[str, float] = {}
        rejected: list[dict[str, Any]] = []
        if session is not None:
            sid = session["session_id"]
            session["links"] = self._links(session["mlflow_run_id"], session["model_uri"])
            rejected = self.follower.rejected(sid)
            rounds = [_round_row(row) for row in self.follower.rows(sid)]
            if self.follower.rows(sid):
                last = self.follower.rows(sid)[-1].get("metrics") or {}
                per_unit = {k.removeprefix("RMSE_"): v for k, v in last.items() if k.startswith("RMSE_")}
            session["round"] = rounds[-1]["round"] if rounds else 0
            session["num_rounds"] = cfg.n_federated_train_epoch
        return {
            "now": time.time(),
            "server": {
                "started_at": self.started_at,
                "usecase": coord.usecase_cls.name,
                "usecase_version": coord.usecase_cls.version,
                "strategy": cfg.strategy.name,
                "num_clients": cfg.num_clients,
                "num_rounds": cfg.n_federated_train_epoch,
                "mlflow_tracking_uri": redact(coord.mlflow_uri),
                "mlflow_ui": self.mlflow_ui(),
                "experiment": cfg.mlflow_experiment_name,
                "superlink_alive": coord.superlink is None or coord.superlink.alive(),
            },
            "clients": [_client_row(c) for c in coord.clients.values()],
            "waiting": len(coord.waiting),
            "session": session,
            "rounds": rounds,
            "per_unit_rmse": per_unit,
            "rejected_updates": rejected,
            "errors": list(self.errors.records)[::-1],
            "sessions_done": [
                {k: d.get(k) for k in ("session_id", "status", "reason", "model_uri", "mlflow_run_id")}
                for d in coord.sessions_done[::-1]
            ],
        }

    def _session(self) -> dict[str, Any] | None:
        """The running session, else the last finished one (None: none yet)."""
        coord = self.coord
        s = coord.session
        if s is not None:
            return {
                "session_id": s.session_id,
                "status": s.status,
                "running": True,
                "started_at": s.started_at,
                "mlflow_run_id": s.mlflow_run_id or None,
                "model_uri": None,
                "reason": None,
            }
        if coord.sessions_done:
            d = coord.sessions_done[-1]
            return {
                "session_id": d["session_id"],
                "status": d["status"],
                "running": False,
                "started_at": None,
                "mlflow_run_id": d.get("mlflow_run_id") or None,
                "model_uri": d.get("model_uri"),
                "reason": d.get("reason"),
            }
        return None

    # -- HTTP -----------------------------------------------------------------------------------
    async def page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in STATIC_FILES:
            raise web.HTTPNotFound(text=f"no dashboard file {name!r}")
        return web.FileResponse(
            STATIC_DIR / name, headers={"Content-Type": STATIC_FILES[name], "Cache-Control": "no-cache"}
        )

    def _shown_run_id(self) -> str | None:
        if self.coord.session is not None:
            return self.coord.session.mlflow_run_id or None
        if self.coord.sessions_done:
            return self.coord.sessions_done[-1].get("mlflow_run_id") or None
        return None

    async def api_state(self, request: web.Request) -> web.Response:
        run_id = self._shown_run_id()
        if run_id and self.mlflow_ui() and run_id not in self._experiment_ids:
            await asyncio.to_thread(self._experiment_id, run_id)  # MLflow must not block the loop
        # built on the loop: the coordinator's state is only ever touched from the loop
        return web.json_response(self.state(), dumps=lambda o: json.dumps(o, default=str))

    async def prometheus(self, request: web.Request) -> web.Response:
        body = self.metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    # -- lifecycle ------------------------------------------------------------------------------
    async def _follow_forever(self) -> None:
        while True:
            try:
                self.follower.tick()
            except Exception:  # keep following; a bad file must not stop the dashboard
                log.exception("following session progress failed")
            await asyncio.sleep(TICK_SECONDS)

    async def on_startup(self, app: web.Application) -> None:
        logging.getLogger("kosmos_fl").addHandler(self.errors)
        # last completed session and champion survive a restart (metrics read the session folders)
        await asyncio.to_thread(self.metrics.restore, past_results(self.coord.work_dir))
        if not self.admin_token():
            log.warning(
                "admin_token is unset: the dashboard and /metrics answer loopback clients only; "
                "set admin_token to reach them from %s",
                self.coord.config.socketio_address,
            )
        self._task = asyncio.create_task(self._follow_forever())

    async def on_cleanup(self, app: web.Application) -> None:
        logging.getLogger("kosmos_fl").removeHandler(self.errors)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def attach(coord: Federation) -> Dashboard:
    """Add the dashboard and /metrics to the coordinator's aiohttp app."""
    dash = Dashboard(coord)
    guard, names = dash.admin_token, dash.admin_hosts
    router = coord.app.router
    router.add_get("/dashboard", protect(dash.page, guard, names))
    router.add_get("/dashboard/", protect(dash.page, guard, names))
    router.add_get("/dashboard/static/{name}", protect(dash.static, guard, names))
    router.add_get("/dashboard/api/state", protect(dash.api_state, guard, names))
    router.add_get("/metrics", protect(dash.prometheus, guard, names))
    if coord.config.metrics_address:  # /metrics without the admin token, for Prometheus
        scrape = ScrapeListener(coord.config.metrics_address, dash.prometheus, names)
        coord.app.on_startup.append(scrape.start)
        coord.app.on_cleanup.append(scrape.stop)
    coord.app.on_startup.append(dash.on_startup)
    coord.app.on_cleanup.append(dash.on_cleanup)
    return dash


def _client_row(c: ClientRecord) -> dict[str, Any]:
    """One connected client as the page shows it."""
    crit = c.criteria or {}
    return {
        "sid": c.sid,
        "name": c.name,
        "address": c.address,
        "state": c.state,
        "criteria_met": crit.get("criteria_are_met") if c.criteria is not None else None,
        "reason": c.reason,
        "data_summary": crit.get("data_summary"),
        "connected_at": c.connected_at,
        "last_seen": c.last_seen,
    }


def _round_row(row: dict[str, Any]) -> dict[str, Any]:
    """One ``round`` progress event as the page's round table shows it."""
    m = row.get("metrics") or {}
    return {
        "round": int(row["round"]),
        "metrics": {k: v for k, v in m.items() if "_" not in k},
        "train_loss": (row.get("client") or {}).get("train_loss"),
        "round_seconds": row.get("round_seconds"),
        "bytes_sent": row.get("bytes_sent"),
        "bytes_received": row.get("bytes_received"),
        "clients_ok": row.get("clients_ok"),
        "clients_failed": row.get("clients_failed"),
    }
