"""The KOSMoS server: Socket.IO control plane plus the Flower SuperLink it drives (wiring only).

Clients connect over Socket.IO and answer ``client_criteria`` (:mod:`~kosmos_fl.coordinator.admission`).
When ``num_clients`` eligible clients wait, the session runner (:mod:`~kosmos_fl.coordinator.sessions`)
creates the session's MLflow run, writes the session spec, submits the Flower run to the SuperLink
started here and emits ``start_train`` to each client, which then starts a SuperNode. When the
ServerApp writes its result (or Flower reports the run over), the runner emits ``end_train`` and the
next group of waiting clients can start another session. This module starts the processes and
listeners, serves ``/status`` and ``/health`` and connects the pieces.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from kosmos_fl import __version__
from kosmos_fl.config import ServerConfig, split_address
from kosmos_fl.coordinator import dashboard, lifecycle
from kosmos_fl.coordinator.admin_auth import host_allowed, protect, refuse_host
from kosmos_fl.coordinator.admission import Admission, ClientRecord
from kosmos_fl.coordinator.guard import GuardedServer, raise_fd_limit
from kosmos_fl.coordinator.reload import config_changes
from kosmos_fl.coordinator.sessions import Session, SessionRunner
from kosmos_fl.coordinator.signals import install_stop_signals
from kosmos_fl.errors import FederationError, KosmosError
from kosmos_fl.fl import strategies
from kosmos_fl.fl.flower_runtime import runtime, superlink
from kosmos_fl.fl.session import private_dir, write_problem
from kosmos_fl.fl.tracking import tracking_uri
from kosmos_fl.redact import redact
from kosmos_fl.security.fleet_proxy import FleetLimits, start_fleet_proxy
from kosmos_fl.security.flower_nodes import NodeKeys
from kosmos_fl.security.policy import ServerSecurity, is_loopback, server_security
from kosmos_fl.usecases import usecase_class

log = logging.getLogger("kosmos_fl.server")


class Coordinator:
    """Connects admission, the session runner, the SuperLink, the Fleet proxy and the dashboard."""

    def __init__(self, config: ServerConfig, base_dir: Path | None = None) -> None:
        self.config = config
        self.base_dir = (base_dir or Path.cwd()).resolve()
        self.mlflow_uri = tracking_uri(config.mlflow_server_address, self.base_dir)
        self.usecase_cls = usecase_class(config.usecase.name)
        self.superlink: runtime.ManagedProcess | None = None
        #: Set by start(): TLS files, client-auth decision, registry (docs/SECURITY.md).
        self.security: ServerSecurity | None = None
        self.node_keys: NodeKeys | None = None
        self._fleet_proxy: web.AppRunner | None = None
        self._registry_task: asyncio.Task[None] | None = None
        self.sio = GuardedServer(
            limits=config.limits,
            async_mode="aiohttp",
            logger=False,
            engineio_logger=False,
        )
        self.admission = Admission(config, self.usecase_cls, self.sio)
        self.sessions = SessionRunner(
            config,
            self.base_dir,
            self.usecase_cls,
            self.mlflow_uri,
            self.admission,
            flower_alive=lambda: self.superlink is None or self.superlink.alive(),
            before_submit=self._sync_node_keys,
        )
        self.admission.on_ready = self.sessions.maybe_start_session
        self.admission.on_leave = self.sessions.drop_client
        self.work_dir = self.sessions.work_dir
        self.flwr_home = self.sessions.flwr_home
        self.app = web.Application()
        self.sio.attach(self.app)
        self.app.router.add_get("/status", self.http_status)
        self.app.router.add_get("/health", self.http_health)
        self.dashboard = dashboard.attach(self)  # /dashboard, /metrics (admin side)
        self.app.router.add_post(
            "/sessions/start", protect(self.http_start_session, self._admin_token, self.dashboard.admin_hosts)
        )
        self.dashboard.metrics.tracking_backlog.set_function(lambda: self.sessions.drainer.backlog)
        # validate the strategy before anyone connects: a typo must fail at start-up
        strategies.build(
            config.strategy.name, config.strategy.params, config.num_clients, self.sessions.min_fit_clients
        )
        # and the use case's parameters (the ServerApp loads it with the same merge)
        self.usecase_cls({**config.usecase.params, **config.usecase.broadcast_params})

    # -- what /status and the dashboard read -------------------------------------------------
    @property
    def clients(self) -> dict[str, ClientRecord]:
        return self.admission.clients

    @property
    def waiting(self) -> list[str]:
        return self.admission.waiting

    @property
    def session(self) -> Session | None:
        return self.sessions.session

    @property
    def sessions_done(self) -> list[dict[str, Any]]:
        return self.sessions.sessions_done

    async def _sync_node_keys(self) -> None:
        """Before a run is submitted: the SuperLink knows exactly the active clients' node keys."""
        if self.node_keys is not None and self.security is not None:
            entries = await asyncio.to_thread(self.security.registry.load)
            await asyncio.to_thread(self.node_keys.sync, entries)

    def status(self) -> dict[str, Any]:
        """Snapshot of the federation for ``/status`` (and later the dashboard)."""
        s = self.sessions.session
        return {
            "version": __version__,
            "num_clients": self.config.num_clients,
            "clients": [
                {
                    "sid": c.sid,
                    "name": c.name,
                    "address": c.address,
                    "state": c.state,
                    "reason": c.reason,
                    "last_seen": c.last_seen,
                }
                for c in self.admission.clients.values()
            ],
            "waiting": len(self.admission.waiting),
            "session": None
            if s is None
            else {
                "session_id": s.session_id,
                "status": s.status,
                "out_dir": str(s.out_dir),
                "mlflow_run_id": s.mlflow_run_id,
                "flower_run_id": s.flower_run_id,
                "dead_clients": {str(k): v for k, v in s.dead.items()},
                "resumed_after_round": None if s.resumed is None else s.resumed.round,
            },
            "sessions_done": self.sessions.sessions_done,
            "mlflow_tracking_uri": redact(self.mlflow_uri),
        }

    # -- HTTP -----------------------------------------------------------------------------------
    async def http_status(self, request: web.Request) -> web.Response:
        if not host_allowed(request, self.dashboard.admin_hosts()):
            return refuse_host(request)
        if request.remote is not None and not is_loopback(request.remote):
            log.warning("refused /status to %s: served on loopback only", request.remote)
            return web.json_response({"detail": "/status is served to loopback clients only"}, status=403)
        return web.json_response(self.status())

    def _admin_token(self) -> str | None:
        token = self.config.admin_token
        return token.get_secret_value() if token is not None else None

    async def http_start_session(self, request: web.Request) -> web.Response:
        """``kosmos-fl session start`` (admin side): start a session now if enough eligible clients
        wait; 409 with the reason when not. JSON only: a web page cannot post it across sites
        without a CORS preflight, which this server never grants."""
        if request.content_type != "application/json":
            return web.json_response(
                {"started": False, "message": "send the request as Content-Type: application/json"},
                status=415,
            )
        started, message = await lifecycle.start_now(self.sessions)
        return web.json_response({"started": started, "message": message}, status=200 if started else 409)

    async def http_health(self, request: web.Request) -> web.Response:
        # the SuperLink and its warm SuperExec (without it no session's ServerApp starts)
        down = [] if self.superlink is None else self.superlink.not_running()
        problems = [f"the {name} is not running" for name in down]
        disk = await asyncio.to_thread(write_problem, self.work_dir)
        problems += [disk] if disk else []
        if not disk:  # the disk takes files again: write what waited for it
            await asyncio.to_thread(self.sessions.pending_results.retry)
        body: dict[str, Any] = {"ok": not problems, **({"reason": "; ".join(problems)} if problems else {})}
        return web.json_response(body, status=503 if problems else 200)

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> web.AppRunner:
        """Start the SuperLink and the Socket.IO/HTTP server; returns the aiohttp runner."""
        host, port = split_address(self.config.flwr_server_address, "flwr_server_address")
        self.security = self.admission.security = sec = server_security(self.config, self.base_dir)
        private_dir(self.work_dir)  # sessions, logs, node keys: owner only (0700)
        # The SuperLink serves Fleet, Control (run submission) and Runtime APIs on one port: keep it
        # off the network (its own network namespace, else loopback) and expose only the Fleet API
        # through the proxy (security/fleet_proxy.py).
        internal = runtime.free_port()
        tls = (sec.certfile, sec.keyfile, sec.ca_certfile) if sec.tls else None
        self.superlink = await asyncio.to_thread(
            functools.partial(
                superlink.start_superlink, "127.0.0.1", internal, self.flwr_home,
                self.work_dir / "logs" / "superlink.log", tls=tls, node_auth=sec.tls and sec.client_auth,
                warm=self.config.warm_serverapp, isolation=self.config.superlink_isolation,
            )
        )  # fmt: skip
        upstream = runtime.endpoint(self.flwr_home)
        self.sessions.find_interrupted()
        if sec.tls and sec.client_auth:
            self.node_keys = NodeKeys(self.flwr_home, self.work_dir / "security" / "node-keys")
        elif sec.client_auth:
            log.warning("client_auth without TLS: the Flower training channel is not authenticated")
        if sec.client_auth:
            await asyncio.to_thread(sec.registry.load)  # an unreadable registry fails start-up
            # registering keys takes a `flwr` call each: done in the background (sessions sync first)
            self._registry_task = asyncio.create_task(self._watch_registry())
        try:
            self._fleet_proxy = await start_fleet_proxy(
                host, port, upstream.url, sec.upstream_ssl() if upstream.verify else None, sec.server_ssl(),
                hold=self.config.fleet_long_poll, holding=lambda: self.sessions.session is not None,
                on_held=lambda outcome: self.dashboard.metrics.fleet_held_pulls.labels(outcome=outcome).inc(),
                limits=self.fleet_limits(), upstream_socket=upstream.unix_socket,
            )  # fmt: skip
        except OSError as exc:
            self.stop()
            raise FederationError(
                f"cannot listen on flwr_server_address {self.config.flwr_server_address}: {exc.strerror}; "
                "choose a free port"
            ) from None
        sio_host, sio_port = split_address(self.config.socketio_address, "socketio_address")
        raise_fd_limit()
        # on shutdown the Socket.IO connections are closed first (serve()); this only bounds the wait
        # for a handler that does not end (aiohttp's default is 60 s)
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=5.0)
        await runner.setup()
        site = web.TCPSite(runner, sio_host, sio_port, ssl_context=sec.server_ssl(), backlog=1024)
        try:
            await site.start()
        except OSError as exc:
            self.stop()
            raise FederationError(
                f"cannot listen on socketio_address {self.config.socketio_address}: {exc.strerror}; "
                "choose a free port"
            ) from None
        self.sessions.prepare_tracking()  # while the clients connect, not after they are ready
        log.info(
            "KOSMoS server listening on %s (Socket.IO), SuperLink on %s, MLflow %s, TLS %s, client auth %s",
            self.config.socketio_address,
            self.config.flwr_server_address,
            redact(self.mlflow_uri),
            "on" if sec.tls else "off",
            "on" if sec.client_auth else "off",
        )
        return runner

    def fleet_limits(self) -> FleetLimits:
        """The Fleet proxy's limits; the push limit defaults to 4x the model's weights + 1 MiB
        (an update and its serialisation overhead, with room to spare)."""
        lim = self.config.limits
        push = lim.fleet_max_push_bytes
        if push is None:
            model = self.usecase_cls({**self.config.usecase.params, **self.config.usecase.broadcast_params})
            weights = sum(t.numel() * t.element_size() for t in model.build_model().state_dict().values())
            push = 4 * int(weights) + (1 << 20)
        return FleetLimits(
            push, lim.fleet_max_request_bytes, lim.fleet_max_inflight, lim.fleet_max_inflight_per_ip
        )

    async def _watch_registry(self, every: float = 0.25) -> None:
        """Apply ``kosmos-fl clients add/revoke`` within a second: revoked clients' open sockets are
        closed, the SuperLink's node keys follow the registry."""
        assert self.security is not None
        path = self.security.registry.path
        seen = -1
        while True:
            mtime = path.stat().st_mtime_ns if path.exists() else 0
            if mtime != seen:
                seen = mtime
                try:
                    entries = await asyncio.to_thread(self.security.registry.load)
                    await self.admission.disconnect_revoked(entries)
                    if self.node_keys is not None:
                        await asyncio.to_thread(self.node_keys.sync, entries)
                except KosmosError as exc:
                    log.error("client registry change not applied: %s", exc)
            await asyncio.sleep(every)

    def reload(self, load: Callable[[], ServerConfig]) -> bool:
        """Apply a re-read config to the next sessions (see :mod:`kosmos_fl.coordinator.reload`);
        False, with the reason logged, when it is invalid or changes what needs a restart."""
        try:
            new = load()
        except KosmosError as exc:
            log.error("config not reloaded: %s", exc)
            return False
        changed, refused = config_changes(self.config, new)
        if refused:
            log.error("config not reloaded: %s can only change with a server restart", ", ".join(refused))
            return False
        self.config = self.admission.config = self.sessions.config = new
        log.info("config reloaded; changed for the next session: %s", ", ".join(changed) or "nothing")
        return True

    def stop(self) -> None:
        if self._registry_task is not None:
            self._registry_task.cancel()
        if self.superlink is not None:
            self.superlink.stop()


async def serve(
    config: ServerConfig,
    base_dir: Path | None = None,
    ready_file: Path | None = None,
    reload: Callable[[], ServerConfig] | None = None,
) -> None:
    """Run the server until cancelled (Ctrl-C / SIGTERM); SIGHUP applies ``reload()`` (the config
    read again) to the next sessions."""
    coord = Coordinator(config, base_dir)
    runner = await coord.start()
    if reload is not None:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, coord.reload, reload)
    if ready_file is not None:
        ready_file.write_text(json.dumps({"socketio_address": config.socketio_address}), encoding="utf-8")
    stop = asyncio.Event()
    install_stop_signals(stop)
    try:
        await stop.wait()
    finally:
        coord.sessions.interrupt_session()
        if coord.sessions.task is not None:
            coord.sessions.task.cancel()
        # close every Socket.IO connection before the web server stops: aiohttp otherwise waits for
        # the open WebSocket handlers until its shutdown timeout, and clients notice the restart late
        with contextlib.suppress(Exception):
            await asyncio.wait_for(coord.sio.eio.disconnect(), 5.0)
        await runner.cleanup()
        if coord._fleet_proxy is not None:
            await coord._fleet_proxy.cleanup()
        coord.stop()
