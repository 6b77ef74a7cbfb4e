"""The KOSMoS server: Socket.IO control plane plus the Flower SuperLink it drives.

Clients connect over Socket.IO and answer ``client_criteria``. When ``num_clients`` eligible clients
wait, the server creates the session's MLflow run, writes the session spec, submits the Flower run
to its SuperLink and emits ``start_train`` to each client, which then starts a SuperNode. When the
ServerApp writes its result (or Flower reports the run over), the server emits ``end_train`` and the
next group of waiting clients can start another session.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import socketio
from aiohttp import web

from kosmos_fl import __version__
from kosmos_fl.config import ServerConfig, split_address
from kosmos_fl.coordinator import dashboard, resume
from kosmos_fl.coordinator.guard import GuardedServer, raise_fd_limit
from kosmos_fl.coordinator.protocol import MAX_MESSAGE_BYTES, EndTrain, StartTrain, parse_criteria
from kosmos_fl.coordinator.signals import install_stop_signals
from kosmos_fl.errors import FederationError, KosmosError, ProtocolError
from kosmos_fl.fl import runtime, strategies
from kosmos_fl.fl.checkpoint import INTERRUPTED_FILE
from kosmos_fl.fl.liveness import DEAD_FILE, mark_dead
from kosmos_fl.fl.session import PROGRESS_FILE, RESULT_FILE, SessionSpec
from kosmos_fl.fl.tracking import create_session_run, fail_run, tracking_uri
from kosmos_fl.logs import bind, bind_session
from kosmos_fl.security.fleet_proxy import start_fleet_proxy
from kosmos_fl.security.flower_nodes import NodeKeys
from kosmos_fl.security.policy import ServerSecurity, is_loopback, server_security
from kosmos_fl.usecases import usecase_class

log = logging.getLogger("kosmos_fl.server")


@dataclass
class ClientRecord:
    sid: str
    address: str
    host: str
    connected_at: float
    state: str = "connected"  # connected | eligible | ineligible | training
    name: str | None = None
    criteria: dict[str, Any] | None = None
    reason: str | None = None
    last_seen: float = field(default_factory=time.time)
    #: The onboarded client name its credentials proved (None when client auth is off).
    identity: str | None = None


@dataclass
class Session:
    session_id: str
    sids: list[str]
    out_dir: Path
    mlflow_run_id: str
    started_at: float
    flower_run_id: int | None = None
    status: str = "starting"
    result: dict[str, Any] | None = None
    #: client id -> why it left mid-session (the ServerApp stops waiting for it)
    dead: dict[int, str] = field(default_factory=dict)
    #: set when this session continues an interrupted one (``--resume``)
    resumed: resume.ResumePoint | None = None


class Coordinator:
    """Owns the control plane state; one training session at a time."""

    def __init__(self, config: ServerConfig, base_dir: Path | None = None) -> None:
        self.config = config
        self.base_dir = (base_dir or Path.cwd()).resolve()
        self.work_dir = self._path(config.work_dir)
        self.flwr_home = self.work_dir / "flower"
        self.mlflow_uri = tracking_uri(config.mlflow_server_address, self.base_dir)
        self.usecase_cls = usecase_class(config.usecase.name)
        self.clients: dict[str, ClientRecord] = {}
        self.waiting: list[str] = []
        self.session: Session | None = None
        self.sessions_done: list[dict[str, Any]] = []
        self.superlink: runtime.ManagedProcess | None = None
        self._session_task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._remind_tasks: dict[str, asyncio.Task[None]] = {}
        #: an interrupted session to continue before any new one (``--resume``)
        self.resume_point: resume.ResumePoint | None = None
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
        self.sio.on("connect", self.on_connect)
        self.sio.on("disconnect", self.on_disconnect)
        self.sio.on("client_criteria", self.on_client_criteria)
        self.sio.on("*", self.on_unknown)
        self.app = web.Application()
        self.sio.attach(self.app)
        self.app.router.add_get("/status", self.http_status)
        self.app.router.add_get("/health", self.http_health)
        self.dashboard = dashboard.attach(self)  # /dashboard, /metrics (admin side)
        # validate the strategy before anyone connects: a typo must fail at start-up
        strategies.build(
            config.strategy.name, config.strategy.params, config.num_clients, self.min_fit_clients
        )
        # and the use case's parameters (the ServerApp loads it with the same merge)
        self.usecase_cls({**config.usecase.params, **config.usecase.broadcast_params})

    # -- helpers --------------------------------------------------------------------------------
    def _path(self, value: str) -> Path:
        p = Path(value).expanduser()
        return (p if p.is_absolute() else self.base_dir / p).resolve()

    @property
    def min_fit_clients(self) -> int:
        sa = self.config.secure_aggregation
        if sa is not None:  # SecAgg+ survives dropouts down to its quorum
            return max(sa.quorum(self.config.num_clients), self.config.quorum)
        return self.config.quorum

    def flwr_address_for(self, client_host: str) -> str:
        """The SuperLink address a client should dial: the public address if configured, else
        the host the client reached us on with the SuperLink's port."""
        if self.config.flwr_public_address:
            return self.config.flwr_public_address
        host, port = split_address(self.config.flwr_server_address, "flwr_server_address")
        if host in ("0.0.0.0", "::", ""):
            host = client_host or "127.0.0.1"
        return f"{host}:{port}"

    def status(self) -> dict[str, Any]:
        """Snapshot of the federation for ``/status`` (and later the dashboard)."""
        s = self.session
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
                for c in self.clients.values()
            ],
            "waiting": len(self.waiting),
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
            "sessions_done": self.sessions_done,
            "mlflow_tracking_uri": self.mlflow_uri,
        }

    # -- HTTP -----------------------------------------------------------------------------------
    async def http_status(self, request: web.Request) -> web.Response:
        if request.remote is not None and not is_loopback(request.remote):
            log.warning("refused /status to %s: served on loopback only", request.remote)
            return web.json_response({"detail": "/status is served to loopback clients only"}, status=403)
        return web.json_response(self.status())

    async def http_health(self, request: web.Request) -> web.Response:
        ok = self.superlink is None or self.superlink.alive()
        return web.json_response({"ok": ok}, status=200 if ok else 503)

    # -- Socket.IO events -----------------------------------------------------------------------
    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        bind(client_id=sid)
        host = str(environ.get("HTTP_HOST", "")).rsplit(":", 1)[0].strip("[]")
        peer = environ.get("REMOTE_ADDR") or "?"
        identity = None
        if self.security is not None and self.security.client_auth:
            identity, why = await asyncio.to_thread(self.security.registry.verify, auth)
            if identity is None:
                log.warning("refused connection from %s: %s", peer, why)
                raise socketio.exceptions.ConnectionRefusedError(why, {"kosmos": "refused"})
        self.clients[sid] = ClientRecord(
            sid=sid, address=str(peer), host=host, connected_at=time.time(), identity=identity
        )
        log.info("client %s connected from %s%s", sid, peer, f" as {identity}" if identity else "")
        self._remind_tasks[sid] = asyncio.create_task(self._remind_missing_criteria(sid))

    async def _remind_missing_criteria(self, sid: str) -> None:
        """A client that never answers is told what is missing (and stays out of training)."""
        await asyncio.sleep(self.config.criteria_timeout)
        rec = self.clients.get(sid)
        if rec is not None and rec.criteria is None:
            await self._reject(
                sid,
                "client_criteria",
                f"no client_criteria received within {self.config.criteria_timeout:.0f} s of connecting; "
                'send {"criteria_are_met": true|false} to take part in training',
            )

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        bind(client_id=sid)
        rec = self.clients.pop(sid, None)
        task = self._remind_tasks.pop(sid, None)
        if task is not None:
            task.cancel()
        if sid in self.waiting:
            self.waiting.remove(sid)
        self._drop_from_session(sid, f"disconnected: {reason}")
        log.info(
            "client %s disconnected (%s)%s",
            sid,
            reason,
            " while training" if rec and rec.state == "training" else "",
        )

    def _drop_from_session(self, sid: str, reason: str) -> None:
        """A session client is gone: tell the ServerApp (through the session folder) at once, so
        the round does not wait for Flower's heartbeat timeout."""
        s = self.session
        if s is None or sid not in s.sids:
            return
        client_id = s.sids.index(sid)
        if client_id in s.dead:
            return
        s.dead[client_id] = reason
        log.warning(
            "session %s: client %d left (%s); dropped from the session", s.session_id, client_id, reason
        )
        with contextlib.suppress(OSError):
            mark_dead(s.out_dir, client_id, reason)

    async def on_unknown(self, event: str, sid: str, *args: Any) -> None:
        await self._reject(sid, event, f"unknown event '{event}'; this server understands client_criteria")

    async def _reject(self, sid: str, event: str, message: str) -> None:
        log.warning("client %s: %s", sid, message)
        rec = self.clients.get(sid)
        if rec is not None:
            rec.reason = message
        await self.sio.emit("error", {"event": event, "message": message}, to=sid)

    async def on_client_criteria(self, sid: str, data: Any = None) -> None:
        bind(client_id=sid)
        rec = self.clients.get(sid)
        if rec is None:
            return
        rec.last_seen = time.time()
        try:
            if len(json.dumps(data, default=str)) > MAX_MESSAGE_BYTES:
                raise ProtocolError(f"client_criteria is larger than {MAX_MESSAGE_BYTES} bytes")
            criteria = parse_criteria(data)
        except ProtocolError as exc:
            await self._reject(sid, "client_criteria", str(exc))
            return
        if rec.state == "training":
            await self._reject(sid, "client_criteria", "already training in a session; wait for end_train")
            return
        rec.name = criteria.client_name or rec.name
        rec.criteria = criteria.model_dump()
        uc = criteria.usecase
        if uc is not None and (uc.name != self.usecase_cls.name or uc.version != self.usecase_cls.version):
            rec.state, rec.reason = (
                "ineligible",
                (
                    f"use case mismatch: server runs {self.usecase_cls.name} {self.usecase_cls.version}, "
                    f"client offers {uc.name} {uc.version}"
                ),
            )
        elif not criteria.criteria_are_met:
            rec.state, rec.reason = "ineligible", criteria.reason or "criteria not met"
        else:
            rec.state, rec.reason = "eligible", None
            if sid not in self.waiting:
                self.waiting.append(sid)
        log.info(
            "client %s (%s): %s%s", sid, rec.name or "-", rec.state, f" ({rec.reason})" if rec.reason else ""
        )
        await self.sio.emit(
            "registered",
            {
                "state": rec.state,
                "reason": rec.reason,
                "waiting": len(self.waiting),
                "needed": self.config.num_clients,
            },
            to=sid,
        )
        await self.maybe_start_session()

    # -- sessions -------------------------------------------------------------------------------
    async def _drop_revoked(self) -> None:
        """Before a session: clients whose credentials were revoked since they connected leave."""
        if self.security is None or not self.security.client_auth:
            return
        entries = await asyncio.to_thread(self.security.registry.load)
        for sid in list(self.waiting):
            rec = self.clients.get(sid)
            entry = entries.get(rec.identity or "") if rec is not None else None
            if entry is None or not entry.active:
                self.waiting.remove(sid)
                why = f"client {rec.identity if rec else sid!r} was revoked; it cannot take part in sessions"
                log.warning("refused client %s: %s", sid, why)
                with contextlib.suppress(Exception):
                    await self.sio.emit("error", {"event": "session", "message": why}, to=sid)
                    await self.sio.disconnect(sid)

    async def maybe_start_session(self) -> None:
        if len(self.waiting) >= self.config.num_clients:
            await self._drop_revoked()
        async with self._lock:
            if self.session is not None or len(self.waiting) < self.config.num_clients:
                return
            sids = self.waiting[: self.config.num_clients]
            del self.waiting[: self.config.num_clients]
            point, self.resume_point = self.resume_point, None
            if point is not None:
                names = {sid: self.clients[sid].name for sid in sids if sid in self.clients}
                sids = resume.assign_ids(sids, names, point.names)
                self.session = Session(
                    session_id=point.spec.session_id,
                    sids=sids,
                    out_dir=point.out_dir,
                    mlflow_run_id=point.spec.mlflow_run_id,
                    started_at=time.time(),
                    resumed=point,
                )
            else:
                session_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
                self.session = Session(
                    session_id=session_id,
                    sids=sids,
                    out_dir=self.work_dir / "sessions" / session_id,
                    mlflow_run_id="",
                    started_at=time.time(),
                )
            for sid in sids:
                self.clients[sid].state = "training"
            self._session_task = asyncio.create_task(self._run_session(self.session))

    async def _run_session(self, s: Session) -> None:
        bind_session(s.session_id)
        try:
            await self._start_session(s)
            await self._watch_session(s)
        except KosmosError as exc:
            s.status, s.result = "failed", {"status": "failed", "reason": str(exc)}
        except asyncio.CancelledError:
            # the server is shutting down: leave the session resumable (no result, run not failed)
            self.interrupt_session()
            raise
        except Exception as exc:  # never let one session take the server down
            log.exception("session %s crashed", s.session_id)
            s.status, s.result = "failed", {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
        finally:
            if s.status != "interrupted":
                await self._finish_session(s)

    async def _start_session(self, s: Session) -> None:
        cfg = self.config
        s.out_dir.mkdir(parents=True, exist_ok=True)
        if s.resumed is not None:
            await self._start_resumed(s, s.resumed)
            return
        tags = {**cfg.tags, "kosmos.session_id": s.session_id, "kosmos.version": __version__}
        s.mlflow_run_id = await asyncio.to_thread(
            create_session_run,
            self.mlflow_uri,
            cfg.mlflow_experiment_name,
            f"session-{s.session_id}",
            tags,
        )
        params = {**cfg.usecase.params, **cfg.usecase.broadcast_params}
        spec = SessionSpec(
            session_id=s.session_id,
            out_dir=str(s.out_dir),
            usecase_name=self.usecase_cls.name,
            usecase_version=self.usecase_cls.version,
            usecase_params=params,
            num_clients=cfg.num_clients,
            min_fit_clients=self.min_fit_clients,
            num_rounds=cfg.n_federated_train_epoch,
            strategy_name=cfg.strategy.name,
            strategy_params=cfg.strategy.params,
            local_epochs=cfg.training.local_epochs,
            learning_rate=cfg.training.learning_rate,
            batch_size=cfg.training.batch_size,
            seed=cfg.training.seed,
            data_path=str(self._path(cfg.data_path)),
            test_names=list(cfg.test_bearings),
            mlflow_tracking_uri=self.mlflow_uri,
            mlflow_run_id=s.mlflow_run_id,
            registered_model_name=cfg.registered_model_name or f"kosmos-{self.usecase_cls.name}",
            round_timeout=cfg.round_timeout,
            join_timeout=cfg.join_timeout,
            max_update_norm_ratio=cfg.max_update_norm_ratio,
            max_update_norm=cfg.max_update_norm,
            coordinator_pid=os.getpid(),
            secure_aggregation=cfg.secure_aggregation,
            differential_privacy=cfg.differential_privacy,
            federated_evaluation=cfg.federated_evaluation,
            fraction_evaluate=cfg.fraction_evaluate,
        )
        await self._submit_and_announce(s, spec)

    async def _start_resumed(self, s: Session, point: resume.ResumePoint) -> None:
        """Continue an interrupted session: same id, folder and MLflow run, a new Flower run."""
        await asyncio.to_thread(resume.reopen_run, self.mlflow_uri, s.mlflow_run_id, point.round)
        # client ids are handed out afresh to the clients present now
        (s.out_dir / DEAD_FILE).unlink(missing_ok=True)
        (s.out_dir / INTERRUPTED_FILE).unlink(missing_ok=True)
        spec = point.spec.model_copy(update={"coordinator_pid": os.getpid()})
        log.info("resuming session %s after round %d", s.session_id, point.round)
        await self._submit_and_announce(s, spec)

    async def _submit_and_announce(self, s: Session, spec: SessionSpec) -> None:
        """Write the spec, submit the Flower run and send ``start_train`` to the session's clients."""
        cfg = self.config
        spec_path = spec.write(s.out_dir / "session.json")
        resume.write_clients(
            s.out_dir, [self.clients[sid].name if sid in self.clients else None for sid in s.sids]
        )
        if self.node_keys is not None and self.security is not None:
            entries = await asyncio.to_thread(self.security.registry.load)
            await asyncio.to_thread(self.node_keys.sync, entries)
        s.flower_run_id = await asyncio.to_thread(
            runtime.submit_run, self.flwr_home, {"session-file": str(spec_path)}, s.out_dir
        )
        s.status = "running"
        log.info(
            "session %s started: Flower run %s, MLflow run %s, clients %s",
            s.session_id,
            s.flower_run_id,
            s.mlflow_run_id,
            s.sids,
        )
        for client_id, sid in enumerate(s.sids):
            rec = self.clients.get(sid)
            msg = StartTrain(
                client_id=client_id,
                mlflow_experiment_name=cfg.mlflow_experiment_name,
                mlflow_server_address=cfg.mlflow_server_address,
                mlflow_run_id=s.mlflow_run_id,
                flwr_server_address=self.flwr_address_for(rec.host if rec else ""),
                usecase_name=self.usecase_cls.name,
                usecase_params=cfg.usecase.broadcast_params,
                usecase_version=self.usecase_cls.version,
                session_id=s.session_id,
                num_clients=spec.num_clients,
                n_federated_train_epoch=spec.num_rounds,
            )
            await self.sio.emit("start_train", msg.model_dump(), to=sid)

    async def _watch_session(self, s: Session) -> None:
        """Wait for the ServerApp's result file; ask Flower now and then in case it died."""
        result_path = s.out_dir / RESULT_FILE
        last_check = time.monotonic()
        while True:
            if result_path.exists():
                s.result = json.loads(result_path.read_text(encoding="utf-8"))
                s.status = str(s.result.get("status", "failed"))
                return
            if self.superlink is not None and not self.superlink.alive():
                raise FederationError("the Flower SuperLink died during the session")
            if time.monotonic() - last_check > 10 and s.flower_run_id is not None:
                last_check = time.monotonic()
                status = await asyncio.to_thread(
                    runtime.run_status, self.flwr_home, s.flower_run_id, s.out_dir
                )
                if status.startswith("finished"):
                    await asyncio.sleep(1.0)  # the result file may land right after
                    if not result_path.exists():
                        raise FederationError(f"Flower run ended ({status}) without a result")
            await asyncio.sleep(0.3)

    async def _finish_session(self, s: Session) -> None:
        result = s.result or {"status": "failed", "reason": "unknown"}
        if result.get("status") != "completed":
            log.error("session %s failed: %s", s.session_id, result.get("reason"))
            if s.mlflow_run_id:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(
                        fail_run, self.mlflow_uri, s.mlflow_run_id, str(result.get("reason"))
                    )
            if s.flower_run_id is not None:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(runtime.stop_run, self.flwr_home, s.flower_run_id, s.out_dir)
        else:
            log.info("session %s completed: %s", s.session_id, result.get("model_uri"))
        end = EndTrain(
            session_id=s.session_id,
            status="completed" if result.get("status") == "completed" else "failed",
            reason=result.get("reason"),
            model_uri=result.get("model_uri"),
            mlflow_run_id=s.mlflow_run_id,
        )
        for sid in s.sids:
            rec = self.clients.get(sid)
            if rec is not None:
                rec.state = "connected"
            with contextlib.suppress(Exception):
                await self.sio.emit("end_train", end.model_dump(), to=sid)
        self.sessions_done.append(
            {
                "session_id": s.session_id,
                "status": end.status,
                "reason": end.reason,
                "model_uri": end.model_uri,
                "mlflow_run_id": s.mlflow_run_id,
                "out_dir": str(s.out_dir),
                "progress": str(s.out_dir / PROGRESS_FILE),
            }
        )
        self.session = None
        await self.maybe_start_session()

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> web.AppRunner:
        """Start the SuperLink and the Socket.IO/HTTP server; returns the aiohttp runner."""
        host, port = split_address(self.config.flwr_server_address, "flwr_server_address")
        self.security = sec = server_security(self.config, self.base_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        # The SuperLink serves Fleet, Control (run submission) and Runtime APIs on one port: keep it
        # on loopback and expose only the Fleet API through the proxy (security/fleet_proxy.py).
        internal = runtime.free_port()
        tls = (sec.certfile, sec.keyfile, sec.ca_certfile) if sec.tls else None
        self.superlink = await asyncio.to_thread(
            functools.partial(
                runtime.start_superlink, "127.0.0.1", internal, self.flwr_home,
                self.work_dir / "logs" / "superlink.log", tls=tls, node_auth=sec.tls and sec.client_auth,
            )
        )  # fmt: skip
        self._find_interrupted()
        if sec.tls and sec.client_auth:
            self.node_keys = NodeKeys(self.flwr_home, self.work_dir / "security" / "node-keys")
            await asyncio.to_thread(sec.registry.load)  # an unreadable registry fails start-up
            # registering keys takes a `flwr` call each: done in the background (sessions sync first)
            self._registry_task = asyncio.create_task(self._watch_registry())
        elif sec.client_auth:
            log.warning("client_auth without TLS: the Flower training channel is not authenticated")
        try:
            self._fleet_proxy = await start_fleet_proxy(
                host, port, f"{'https' if sec.tls else 'http'}://127.0.0.1:{internal}",
                sec.upstream_ssl(), sec.server_ssl(),
                hold=self.config.fleet_long_poll, holding=lambda: self.session is not None,
                on_held=lambda outcome: self.dashboard.metrics.fleet_held_pulls.labels(outcome=outcome).inc(),
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
        log.info(
            "KOSMoS server listening on %s (Socket.IO), SuperLink on %s, MLflow %s, TLS %s, client auth %s",
            self.config.socketio_address,
            self.config.flwr_server_address,
            self.mlflow_uri,
            "on" if sec.tls else "off",
            "on" if sec.client_auth else "off",
        )
        return runner

    def interrupt_session(self) -> None:
        """The server stops during a session: mark it resumable before the SuperLink goes down, so
        the ServerApp exits quietly instead of failing the session and its MLflow run."""
        s = self.session
        if s is None or s.status == "interrupted":
            return
        s.status = "interrupted"
        with contextlib.suppress(OSError):
            (s.out_dir / INTERRUPTED_FILE).write_text("server stopped\n", encoding="utf-8")
        log.warning(
            "session %s interrupted by shutdown; start the server with --resume to continue it", s.session_id
        )
        if s.mlflow_run_id:
            with contextlib.suppress(Exception):
                resume.tag_interrupted(self.mlflow_uri, s.mlflow_run_id)

    def _find_interrupted(self) -> None:
        """With ``resume``, pick up the newest interrupted session; otherwise say how to."""
        found = resume.find_interrupted(self.work_dir)
        if not found:
            return
        if not self.config.resume:
            for p in found:
                log.warning(
                    "session %s was interrupted after round %d (MLflow run %s); start the server with "
                    "--resume (or resume: true) to continue it",
                    p.spec.session_id,
                    p.round,
                    p.spec.mlflow_run_id,
                )
            return
        self.resume_point = found[0]
        log.info(
            "will resume session %s after round %d of %d (MLflow run %s) once %d clients registered",
            found[0].spec.session_id,
            found[0].round,
            found[0].spec.num_rounds,
            found[0].spec.mlflow_run_id,
            self.config.num_clients,
        )
        for p in found[1:]:
            log.warning("older interrupted session %s is not resumed (only the newest is)", p.spec.session_id)

    async def _watch_registry(self, every: float = 1.0) -> None:
        """Apply ``kosmos-fl clients add/revoke`` to the SuperLink's node keys within a second."""
        assert self.security is not None and self.node_keys is not None
        path = self.security.registry.path
        seen = -1
        while True:
            mtime = path.stat().st_mtime_ns if path.exists() else 0
            if mtime != seen:
                seen = mtime
                try:
                    entries = await asyncio.to_thread(self.security.registry.load)
                    await asyncio.to_thread(self.node_keys.sync, entries)
                except KosmosError as exc:
                    log.error("client registry change not applied: %s", exc)
            await asyncio.sleep(every)

    def stop(self) -> None:
        if self._registry_task is not None:
            self._registry_task.cancel()
        if self.superlink is not None:
            self.superlink.stop()


async def serve(config: ServerConfig, base_dir: Path | None = None, ready_file: Path | None = None) -> None:
    """Run the server until cancelled (Ctrl-C / SIGTERM)."""
    coord = Coordinator(config, base_dir)
    runner = await coord.start()
    if ready_file is not None:
        ready_file.write_text(json.dumps({"socketio_address": config.socketio_address}), encoding="utf-8")
    stop = asyncio.Event()
    install_stop_signals(stop)
    try:
        await stop.wait()
    finally:
        coord.interrupt_session()
        if coord._session_task is not None:
            coord._session_task.cancel()
        # close every Socket.IO connection before the web server stops: aiohttp otherwise waits for
        # the open WebSocket handlers until its shutdown timeout, and clients notice the restart late
        with contextlib.suppress(Exception):
            await asyncio.wait_for(coord.sio.eio.disconnect(), 5.0)
        await runner.cleanup()
        if coord._fleet_proxy is not None:
            await coord._fleet_proxy.cleanup()
        coord.stop()
