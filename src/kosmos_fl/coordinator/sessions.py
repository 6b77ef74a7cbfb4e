"""One training session at a time: start (or resume) it, submit the Flower run, tell the clients,
watch the session folder for the result, finish or interrupt it.

The runner reaches the clients only through a narrow :class:`Pool` (the waiting list, the client
records, ``announce`` and the revocation check: :class:`~kosmos_fl.coordinator.admission.Admission`
in the server), and the Flower processes only through two callables, so tests can build it alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from kosmos_fl import __version__
from kosmos_fl.config import ServerConfig
from kosmos_fl.coordinator import resume
from kosmos_fl.coordinator.admission import ClientRecord
from kosmos_fl.coordinator.lifecycle import SessionSchedule
from kosmos_fl.coordinator.protocol import EndTrain, StartTrain
from kosmos_fl.errors import FederationError, KosmosError
from kosmos_fl.fl import tracking
from kosmos_fl.fl.apps.model_registry import register_saved
from kosmos_fl.fl.flower_runtime import runtime
from kosmos_fl.fl.rounds.liveness import mark_dead, read_nodes, write_nodes
from kosmos_fl.fl.session import SessionFolder, SessionSpec, decide_quorum, private_dir, write_problem
from kosmos_fl.fl.tracking import create_session_run, ensure_experiment
from kosmos_fl.logs import bind_session
from kosmos_fl.redact import redact
from kosmos_fl.usecases.base import UseCase

log = logging.getLogger("kosmos_fl.server")


class Pool(Protocol):
    """What the session runner needs of the clients (implemented by ``Admission``)."""

    clients: dict[str, ClientRecord]
    waiting: list[str]

    async def announce(self, event: str, data: dict[str, Any], sid: str) -> None: ...

    async def drop_revoked(self) -> None: ...


async def _nothing() -> None:
    """Default ``before_submit``: no node keys to sync."""


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
    #: the server config this session runs with, fixed when it is created (a reload mid-session
    #: applies to the next one: server spec and clients' start_train must agree); None: the runner's
    config: ServerConfig | None = None


class SessionRunner:
    """Starts, resumes, submits, watches, finishes and interrupts one session at a time."""

    def __init__(
        self,
        config: ServerConfig,
        base_dir: Path,
        usecase_cls: type[UseCase],
        mlflow_uri: str,
        pool: Pool,
        *,
        flower_alive: Callable[[], bool] = lambda: True,
        before_submit: Callable[[], Awaitable[None]] = _nothing,
    ) -> None:
        self.config = config
        self.base_dir = base_dir
        self.work_dir = self._path(config.work_dir)
        self.flwr_home = self.work_dir / "flower"
        self.usecase_cls = usecase_cls
        self.mlflow_uri = mlflow_uri
        self.pool = pool
        #: False once the SuperLink died (the session fails instead of waiting forever).
        self.flower_alive = flower_alive
        #: Awaited before each run is submitted (the server syncs the SuperLink's node keys).
        self.before_submit = before_submit
        self.session: Session | None = None
        #: Results of failed sessions that wait for a full disk to take them.
        self.pending_results = resume.PendingResults()
        self.sessions_done: list[dict[str, Any]] = []
        self.task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        #: an interrupted session to continue before any new one (``--resume``)
        self.resume_point: resume.ResumePoint | None = None
        self.schedule = SessionSchedule()  # min_interval, max_sessions, schedule
        self.gone_nodes: set[int] = set()  # SuperNodes of clients that left a session (dead)
        #: the MLflow store created/migrated and the experiment made at server start (issue 18)
        self._tracking_ready: asyncio.Task[str] | None = None
        #: delivers the outboxes of sessions no ServerApp sends any more (issue 21), in a thread
        self.drainer = tracking.Drainer(
            self.work_dir / "sessions", mlflow_uri, {"model": register_saved}, tracking.complete_result
        )

    def prepare_tracking(self) -> None:
        """Create (or migrate) the MLflow store and the experiment now, in the background, so that
        the first session does not wait seconds for it after its clients are ready. A failure here
        is only logged: the session's own ``create_session_run`` then reports it as before. The
        outbox drainer starts too: what earlier sessions could not tell MLflow goes out now."""
        self.drainer.start()
        self._tracking_ready = asyncio.create_task(
            asyncio.to_thread(ensure_experiment, self.mlflow_uri, self.config.mlflow_experiment_name)
        )

    async def _tracking_prepared(self) -> None:
        task, self._tracking_ready = self._tracking_ready, None
        if task is not None:
            try:
                await task
            except Exception as exc:  # reported again by the session's own call
                log.debug("MLflow store not prepared at start: %s", exc)

    def _path(self, value: str) -> Path:
        p = Path(value).expanduser()
        return (p if p.is_absolute() else self.base_dir / p).resolve()

    @property
    def min_fit_clients(self) -> int:
        cfg = self.config
        return decide_quorum(cfg.num_clients, cfg.min_fit_clients, cfg.secure_aggregation)

    def drop_client(self, sid: str, reason: str) -> None:
        """A session client is gone: tell the ServerApp (through the session folder) at once, so
        the round does not wait for Flower's heartbeat timeout."""
        s = self.session
        if s is None or sid not in s.sids:
            return
        client_id = s.sids.index(sid)
        if client_id in s.dead:
            return
        s.dead[client_id] = reason
        if (node := read_nodes(s.out_dir)[0].get(client_id)) is not None:
            self.gone_nodes.add(node)  # Flower lists it for a minute more: no later session's member
        log.warning(
            "session %s: client %d left (%s); dropped from the session", s.session_id, client_id, reason
        )
        with contextlib.suppress(OSError):
            mark_dead(s.out_dir, client_id, reason)

    def _stable_name(self, sid: str) -> str:
        rec = self.pool.clients.get(sid)
        return (rec.identity or rec.name or "") if rec else ""

    async def maybe_start_session(self) -> None:
        if len(self.pool.waiting) >= self.config.num_clients:
            await self.pool.drop_revoked()
        async with self._lock:
            if self.session is not None or len(self.pool.waiting) < self.config.num_clients:
                return
            cfg = self.config
            if self.resume_point is None and not self.schedule.allows(
                cfg.min_interval, cfg.max_sessions, len(self.pool.waiting), self.maybe_start_session,
                cfg.schedule,
            ):  # fmt: skip
                return
            sids = self.pool.waiting[: self.config.num_clients]
            del self.pool.waiting[: self.config.num_clients]
            point, self.resume_point = self.resume_point, None
            if point is not None:
                names = {sid: self.pool.clients[sid].name for sid in sids if sid in self.pool.clients}
                sids = resume.assign_ids(sids, names, point.names)
                self.session = Session(
                    session_id=point.spec.session_id,
                    sids=sids,
                    out_dir=point.out_dir,
                    mlflow_run_id=point.spec.mlflow_run_id,
                    started_at=time.time(),
                    resumed=point,
                    config=self.config,
                )
            else:
                # client ids (and with them training seeds and a 2021 client's data) follow the
                # clients' names, not the order they joined: same seed, same model
                sids = sorted(sids, key=lambda sid: self._stable_name(sid))
                session_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
                self.session = Session(
                    session_id=session_id,
                    sids=sids,
                    out_dir=self.work_dir / "sessions" / session_id,
                    mlflow_run_id="",
                    started_at=time.time(),
                    config=self.config,
                )
            for sid in sids:
                self.pool.clients[sid].state = "training"
            self.task = asyncio.create_task(self.run_session(self.session))

    async def run_session(self, s: Session) -> None:
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
                await self.finish_session(s)

    async def _start_session(self, s: Session) -> None:
        cfg = s.config or self.config
        private_dir(s.out_dir.parent)  # <work_dir>/sessions
        private_dir(s.out_dir)
        if s.resumed is not None:
            await self._start_resumed(s, s.resumed)
            return
        tags = {**cfg.tags, "kosmos.session_id": s.session_id, "kosmos.version": __version__}
        await self._tracking_prepared()
        s.mlflow_run_id = await asyncio.to_thread(
            create_session_run,
            self.mlflow_uri,
            cfg.mlflow_experiment_name,
            f"session-{s.session_id}",
            tags,
        )
        spec = SessionSpec.from_config(
            cfg,
            session_id=s.session_id,
            out_dir=str(s.out_dir),
            usecase_name=self.usecase_cls.name,
            usecase_version=self.usecase_cls.version,
            data_path=str(self._path(cfg.data_path)),
            mlflow_tracking_uri=self.mlflow_uri,
            mlflow_run_id=s.mlflow_run_id,
            registered_model_name=cfg.registered_model_name or f"kosmos-{self.usecase_cls.name}",
            coordinator_pid=os.getpid(),
        )
        await self._submit_and_announce(s, spec)

    async def _start_resumed(self, s: Session, point: resume.ResumePoint) -> None:
        """Continue an interrupted session: same id, folder and MLflow run, a new Flower run."""
        # the run goes back to RUNNING through the outbox: a resume does not wait for MLflow
        tracking.queue_reopen(s.out_dir, s.mlflow_run_id, point.round)
        # client ids are handed out afresh to the clients present now
        folder = SessionFolder(s.out_dir)
        folder.dead_clients_file.unlink(missing_ok=True)
        folder.interrupted_file.unlink(missing_ok=True)
        spec = point.spec.model_copy(update={"coordinator_pid": os.getpid()})
        log.info("resuming session %s after round %d", s.session_id, point.round)
        await self._submit_and_announce(s, spec)

    async def _submit_and_announce(self, s: Session, spec: SessionSpec) -> None:
        """Write the spec, submit the Flower run and send ``start_train`` to the session's clients."""
        cfg = s.config or self.config
        spec_path = spec.write(SessionFolder(s.out_dir).spec_file)
        resume.write_clients(
            s.out_dir, [self.pool.clients[sid].name if sid in self.pool.clients else None for sid in s.sids]
        )
        nodes = {sid: rec.node_id for sid, rec in self.pool.clients.items() if rec.node_id is not None}
        session_nodes = {cid: nodes[sid] for cid, sid in enumerate(s.sids) if sid in nodes}
        others = {n for sid, n in nodes.items() if sid not in s.sids} | self.gone_nodes
        write_nodes(s.out_dir, session_nodes, others - set(session_nodes.values()))
        await self.before_submit()
        run_config = {"session-file": str(spec_path), "session-id": s.session_id}
        s.flower_run_id = await asyncio.to_thread(runtime.submit_run, self.flwr_home, run_config)
        s.status = "running"
        log.info(
            "session %s started: Flower run %s, MLflow run %s, clients %s",
            s.session_id,
            s.flower_run_id,
            s.mlflow_run_id,
            s.sids,
        )
        for client_id, sid in enumerate(s.sids):
            rec = self.pool.clients.get(sid)
            msg = StartTrain(
                client_id=client_id,
                mlflow_experiment_name=cfg.mlflow_experiment_name,
                mlflow_server_address=redact(cfg.mlflow_server_address),  # 2021 key; never credentials
                mlflow_run_id=s.mlflow_run_id,
                flwr_server_address=cfg.flwr_address_for(rec.host if rec else ""),
                usecase_name=self.usecase_cls.name,
                usecase_params=cfg.usecase.broadcast_params,
                usecase_version=self.usecase_cls.version,
                session_id=s.session_id,
                num_clients=spec.num_clients,
                n_federated_train_epoch=spec.num_rounds,
            )
            await self.pool.announce("start_train", msg.model_dump(), sid)

    async def _watch_session(self, s: Session) -> None:
        """Wait for the ServerApp's result file; ask Flower now and then in case it died."""
        folder = SessionFolder(s.out_dir)
        last_check = time.monotonic()
        while True:
            result = folder.read_result()
            if result is not None:
                s.result = result
                s.status = str(result.get("status", "failed"))
                return
            if not self.flower_alive():
                raise FederationError("the Flower SuperLink died during the session")
            if time.monotonic() - last_check > 10 and s.flower_run_id is not None:
                last_check = time.monotonic()
                status = await asyncio.to_thread(runtime.run_status, self.flwr_home, s.flower_run_id)
                if status.startswith("finished"):
                    await asyncio.sleep(1.0)  # the result file may land right after
                    if not folder.result_file.exists():
                        # a full or failing disk is the likeliest cause, and the ServerApp's own
                        # error sits in superlink.log on that very disk: name it here (issue 21)
                        disk = await asyncio.to_thread(write_problem, s.out_dir)
                        why = f": {disk}" if disk else ""
                        raise FederationError(f"Flower run ended ({status}) without a result{why}")
            await asyncio.sleep(0.3)

    async def finish_session(self, s: Session) -> None:
        result = s.result or {"status": "failed", "reason": "unknown"}
        if result.get("status") != "completed":
            log.error("session %s failed: %s", s.session_id, result.get("reason"))
            if not SessionFolder(s.out_dir).result_file.exists():  # never offered for --resume
                self.pending_results.write(s.out_dir, result)
            if s.mlflow_run_id:  # through the outbox: delivered once MLflow answers, even after a restart
                args = (s.out_dir, self.mlflow_uri, s.mlflow_run_id, str(result.get("reason")))
                await asyncio.to_thread(resume.queue_failure, *args)
            if s.flower_run_id is not None:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(runtime.stop_run, self.flwr_home, s.flower_run_id)
        else:  # MLflow down at the end: the drainer registers the model and ends the run later
            log.info("session %s completed: %s", s.session_id, result.get("model_uri") or "model pending")
        self.drainer.wake()  # what the ServerApp left in the outbox goes out now
        end = EndTrain(
            session_id=s.session_id,
            status="completed" if result.get("status") == "completed" else "failed",
            reason=result.get("reason"),
            model_uri=result.get("model_uri"),
            mlflow_run_id=s.mlflow_run_id,
        )
        for sid in s.sids:
            rec = self.pool.clients.get(sid)
            if rec is not None:
                rec.state = "connected"
            with contextlib.suppress(Exception):
                await self.pool.announce("end_train", end.model_dump(), sid)
        self.sessions_done.append(
            {
                "session_id": s.session_id,
                "status": end.status,
                "reason": end.reason,
                "model_uri": end.model_uri,
                "mlflow_run_id": s.mlflow_run_id,
                "out_dir": str(s.out_dir),
                "progress": str(SessionFolder(s.out_dir).progress_file),
                "started_at": s.started_at,  # enough eligible clients were waiting
                "finished_at": time.time(),
            }
        )
        self.session = None
        await self.maybe_start_session()

    def interrupt_session(self) -> None:
        """The server stops during a session: mark it resumable before the SuperLink goes down, so
        the ServerApp exits quietly instead of failing the session and its MLflow run."""
        self.pending_results.retry()
        s = self.session
        if s is None or s.status == "interrupted":
            return
        s.status = "interrupted"
        with contextlib.suppress(OSError):
            SessionFolder(s.out_dir).interrupted_file.write_text("server stopped\n", encoding="utf-8")
        log.warning(
            "session %s interrupted by shutdown; start the server with --resume to continue it", s.session_id
        )
        if s.mlflow_run_id:  # at once, bounded: a stop must not wait on MLflow; else after a restart
            with contextlib.suppress(OSError):
                tracking.queue_tag(s.out_dir, s.mlflow_run_id, "kosmos.status", "interrupted")
            resume.tag_interrupted_bounded(self.mlflow_uri, s.mlflow_run_id)

    def find_interrupted(self) -> None:
        """With ``resume``, pick up the newest interrupted session; otherwise say how to."""
        found = resume.find_interrupted(self.work_dir, resume.failed_within(self.mlflow_uri, 5.0))
        self.resume_point = resume.announce(found, self.config.resume, self.config.num_clients)
