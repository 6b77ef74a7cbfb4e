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
import threading
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from kosmos_fl.coordinator import dashboard_state
from kosmos_fl.coordinator.admin_auth import protect
from kosmos_fl.coordinator.dashboard_state import Federation, SessionArchive, store_label
from kosmos_fl.coordinator.metrics import FederationMetrics
from kosmos_fl.coordinator.progress import ProgressFollower, past_results
from kosmos_fl.coordinator.scrape import ScrapeListener
from kosmos_fl.redact import redact, safe

log = logging.getLogger("kosmos_fl.dashboard")


STATIC_DIR = Path(__file__).parent / "dashboard_static"
STATIC_FILES = {
    "dashboard.js": "application/javascript",
    "dashboard.css": "text/css",
}
#: How often the progress of the running session is read.
TICK_SECONDS = 0.5
#: How often the page asks MLflow which version is the champion (besides after each session).
CHAMPION_SECONDS = 60


def registered_model_name(coord: Federation) -> str:
    """The registered model the sessions' versions go to (as ``SessionRunner`` names it)."""
    return coord.config.registered_model_name or f"kosmos-{coord.usecase_cls.name}"


def champion_version(tracking_uri: str, model_name: str) -> str | None:
    """The version ``<model_name>@champion`` points at; None when there is no champion yet.
    Raises when the store cannot be asked (the page then keeps what it knew)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from kosmos_fl.fl.apps.champion import ALIAS

    try:
        return str(
            MlflowClient(tracking_uri=tracking_uri).get_model_version_by_alias(model_name, ALIAS).version
        )
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


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
        self.archive = SessionArchive(coord.work_dir)
        #: ``{"model", "version", "known"}``: the registered model's ``@champion`` (known: MLflow said)
        self.champion: dict[str, Any] = {
            "model": registered_model_name(coord),
            "version": None,
            "known": False,
        }
        self._champion_asked: tuple[int, int] | None = None
        self._champion_task: asyncio.Task[None] | None = None

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

    def state(self, shown: str | None = None) -> dict[str, Any]:
        """The document the page renders (``GET /dashboard/api/state[?session=<id>]``); ``shown``:
        the session to show (None: the live one)."""
        self.follower.tick()
        coord, cfg = self.coord, self.coord.config
        doc = dashboard_state.document(coord, self.archive, shown, self._links)
        return {
            **doc,
            "server": {
                "started_at": self.started_at,
                "usecase": coord.usecase_cls.name,
                "usecase_version": coord.usecase_cls.version,
                "strategy": cfg.strategy.name,
                "num_clients": cfg.num_clients,
                "num_rounds": cfg.n_federated_train_epoch,
                "mlflow_tracking_uri": redact(coord.mlflow_uri),
                "mlflow_store": store_label(coord.mlflow_uri, coord.base_dir),
                "mlflow_ui": self.mlflow_ui(),
                "experiment": cfg.mlflow_experiment_name,
                "superlink_alive": coord.superlink is None or coord.superlink.alive(),
            },
            "units": dashboard_state.units(coord.usecase_cls.target_unit),
            "champion": dict(self.champion),
            "errors": list(self.errors.records)[::-1],
            "sessions_done": [
                {k: d.get(k) for k in ("session_id", "status", "reason", "model_uri", "mlflow_run_id")}
                for d in coord.sessions_done[::-1]
            ],
        }

    async def _refresh_champion(self) -> None:
        """Ask MLflow which version is ``@champion`` (when the page first asks, after each session
        and every CHAMPION_SECONDS: someone may move the alias by hand). In a daemon thread, not
        the loop's executor: an MLflow that hangs never holds up the server's stop."""
        name, uri = registered_model_name(self.coord), self.coord.mlflow_uri
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[str | None] = loop.create_future()

        def settle(version: str | None, exc: Exception | None) -> None:
            if answer.done():
                return
            if exc is not None:
                answer.set_exception(exc)
            else:
                answer.set_result(version)

        def ask() -> None:
            try:
                version, exc = champion_version(uri, name), None
            except Exception as error:  # the store may be briefly unreachable; asked again later
                version, exc = None, error
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
                loop.call_soon_threadsafe(settle, version, exc)

        threading.Thread(target=ask, name="kosmos-champion", daemon=True).start()
        try:
            version = await answer
        except Exception as exc:
            log.debug("champion of %s not known: %s", name, exc)
            return
        self.champion = {"model": name, "version": version, "known": True}

    def _champion_due(self) -> bool:
        due = (len(self.coord.sessions_done), int(time.monotonic() // CHAMPION_SECONDS))
        if due == self._champion_asked or (self._champion_task and not self._champion_task.done()):
            return False
        self._champion_asked = due
        return True

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

    def _shown(self, request: web.Request) -> str | None:
        """The session ``?session=<id>`` asks for (None: the live one); 404 for one not there."""
        shown = request.query.get("session") or None
        running = self.coord.session
        if shown is None or (running is not None and running.session_id == shown):
            return shown
        if self.archive.folder(shown) is None:
            raise web.HTTPNotFound(
                text=json.dumps(
                    {"detail": f"no session {shown!r} under work_dir/sessions; pick one of 'sessions'"}
                ),
                content_type="application/json",
            )
        return shown

    async def api_state(self, request: web.Request) -> web.Response:
        shown = self._shown(request)
        sid = shown or dashboard_state.live_session_id(self.coord, self.archive)
        run_id = (
            dashboard_state.summary(self.archive, sid, self.coord.session)["mlflow_run_id"] if sid else None
        )
        if run_id and self.mlflow_ui() and run_id not in self._experiment_ids:
            await asyncio.to_thread(self._experiment_id, run_id)  # MLflow must not block the loop
        if self._champion_due():
            self._champion_task = asyncio.create_task(self._refresh_champion())  # not waited for
        # built on the loop: the coordinator's state is only ever touched from the loop
        return web.json_response(self.state(shown), dumps=lambda o: json.dumps(o, default=str))

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
        for task in (self._task, self._champion_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


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
