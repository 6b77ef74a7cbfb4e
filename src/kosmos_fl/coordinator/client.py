"""The KOSMoS client: checks its criteria, registers over Socket.IO and trains when told to.

Once the server finds it eligible, the client starts a Flower SuperNode (with its warm SuperExec)
that dials the server's SuperLink, and registers again with the SuperNode's node id. It keeps that
SuperNode between sessions, so a session starts with every client's node already connected and its
ClientApp template already warm. On ``start_train`` it writes the session's spec (use case, data
path, its bearings) where the SuperNode's ClientApp reads it, so local data paths never leave the
site. On ``end_train`` it either exits (``--once``) or registers again for the next session. A
lost connection stops the SuperNode (the server may have restarted, or revoked this client); it is
started afresh after the next registration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from pathlib import Path
from typing import Any

import socketio
from pydantic import ValidationError

from kosmos_fl.config import ClientConfig, SiteData, connect_url
from kosmos_fl.coordinator.kept_node import KeptSuperNode
from kosmos_fl.coordinator.protocol import StartTrain
from kosmos_fl.coordinator.signals import install_stop_signals
from kosmos_fl.edge.site import EdgeSite, edge_criteria
from kosmos_fl.errors import KosmosError
from kosmos_fl.fl.session import NODE_FILE, NodeSpec
from kosmos_fl.logs import bind
from kosmos_fl.security.policy import client_security
from kosmos_fl.usecases import usecase_class

log = logging.getLogger("kosmos_fl.client")


def check_criteria(config: ClientConfig, base_dir: Path, edge: EdgeSite | None = None) -> dict[str, Any]:
    """The ``client_criteria`` answer: does this site hold enough readable data? Says why not."""
    try:
        cls = usecase_class(config.usecase.name)
    except KosmosError as exc:
        return {"criteria_are_met": False, "reason": str(exc)}
    answer: dict[str, Any] = {"usecase": {"name": cls.name, "version": cls.version}}
    first: dict[str, Any] | None = None
    for label, site in config.sites():  # every data set an assigned client id may select
        result = _check_site(config, cls, site, base_dir, edge)
        if not result["criteria_are_met"]:
            if label:
                result["reason"] = f"{label}: {result['reason']}"
            return {**answer, **result}
        first = first or result
    return {**answer, **(first or {})}


def _check_site(
    config: ClientConfig, cls: Any, site: SiteData, base_dir: Path, edge: EdgeSite | None
) -> dict[str, Any]:
    selection = site.selection
    data_path = _resolve(site.data_path, base_dir)
    if config.edge is not None and config.edge.enabled:  # data collected over MQTT (docs/EDGE.md)
        verdict, data_path, _ = edge_criteria(config.edge, base_dir, edge)
        if not verdict.eligible:
            return {"criteria_are_met": False, "reason": verdict.reason, "data_summary": verdict.summary}
        selection = verdict.bearings
    if not data_path.exists():
        return {"criteria_are_met": False, "reason": f"data_path {data_path} does not exist"}
    try:
        summary = cls({**config.usecase.params, **site.params}).data_summary(data_path, selection)
    except KosmosError as exc:
        return {"criteria_are_met": False, "reason": str(exc)}
    samples = int(summary.get("samples", 0))
    if samples < config.min_samples:
        return {
            "criteria_are_met": False,
            "data_summary": summary,
            "reason": f"only {samples} labelled samples, at least {config.min_samples} needed",
        }
    return {"criteria_are_met": True, "data_summary": summary}


def node_spec(
    config: ClientConfig, base_dir: Path, msg: StartTrain, edge: EdgeSite | None = None
) -> NodeSpec:
    """What this site's ClientApp trains on in the session ``msg`` starts: the data of its
    :meth:`~kosmos_fl.config.ClientConfig.site` for the assigned client id (or the edge store)."""
    site = config.site(msg.client_id, msg.usecase_name)
    return NodeSpec(
        session_id=msg.session_id,
        client_id=msg.client_id,
        usecase_name=msg.usecase_name,
        usecase_version=msg.usecase_version,
        # as in 2021, the server's broadcast parameters win over this site's own
        usecase_params={**config.usecase.params, **site.params, **msg.usecase_params},
        data_path=str(edge.data_path if edge else _resolve(site.data_path, base_dir)),
        selection=edge.selection() if edge else site.selection,
        torch_threads=config.torch_threads,
        require_secure_aggregation=config.require_secure_aggregation,
        local_epochs=config.local_epochs,
        learning_rate=config.learning_rate,
    )


def _resolve(value: str, base_dir: Path) -> Path:
    p = Path(value).expanduser()
    return (p if p.is_absolute() else base_dir / p).resolve()


class KosmosClient:
    """One site's control-plane client."""

    def __init__(self, config: ClientConfig, base_dir: Path | None = None, once: bool = False) -> None:
        self.config = config
        self.base_dir = (base_dir or Path.cwd()).resolve()
        self.once = once
        self.name = config.client_name or "client"
        self.work_dir = _resolve(config.work_dir, self.base_dir) / self.name
        #: between start_train and end_train
        self.in_session = False
        #: the criteria checked before connecting, used by the first registration
        self._checked: dict[str, Any] | None = None
        self.done = asyncio.Event()
        #: the stop signals received (SIGINT: the command exits 130)
        self.signals: list[int] = []
        self.last_result: dict[str, Any] | None = None
        #: the session this client last joined, and the one it was dropped from (``--once``)
        self.session_id: str | None = None
        self.dropped_from: str | None = None
        #: TLS (CA to trust) and credentials; checked here so a bad setup fails before connecting.
        self.security = client_security(config, self.base_dir)
        if self.security.credentials is not None and config.client_name is None:
            self.name = self.security.credentials.name
            self.work_dir = _resolve(config.work_dir, self.base_dir) / self.name
        self.supernode = KeptSuperNode(self.work_dir, self.security, warm=config.warm_clientapp)
        #: Why the server refused this client's credentials (then it stops instead of retrying).
        self.refused: str | None = None
        #: An error that ended a reconnection after a server-side disconnect (raised by run()).
        self._fatal: KosmosError | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        ssl_ctx = self.security.ssl_context()
        self.edge = (
            EdgeSite(config.edge, self.base_dir, self.name) if config.edge and config.edge.enabled else None
        )
        self.eligible = False
        self.sio = socketio.AsyncClient(
            handle_sigint=False,  # ours (install_stop_signals): a clean stop, exit 130, no traceback
            reconnection=True,
            reconnection_delay=config.retry_initial,
            reconnection_delay_max=config.retry_max,
            reconnection_attempts=config.retry_budget or 0,  # 0: python-socketio's forever
            logger=config.debug,
            engineio_logger=config.debug,
            websocket_extra_options={"ssl": ssl_ctx} if ssl_ctx is not None else None,
        )
        self.sio.on("connect_error", self.on_connect_error)
        self.sio.on("connect", self.on_connect)
        self.sio.on("disconnect", self.on_disconnect)
        self.sio.on("registered", self.on_registered)
        self.sio.on("start_train", self.on_start_train)
        self.sio.on("end_train", self.on_end_train)
        self.sio.on("error", self.on_error)
        self.sio.on("__disconnect_final", self.on_reconnect_ended)

    async def register(self) -> None:
        answer, self._checked = self._checked, None  # the check made just before connecting
        fresh = answer is None  # (that one already said why it is not met)
        if answer is None:
            answer = await asyncio.to_thread(check_criteria, self.config, self.base_dir, self.edge)
        answer["client_name"] = self.name
        if answer["criteria_are_met"] and self.supernode.ready():
            answer["node_id"] = self.supernode.node_id
        self.eligible = bool(answer["criteria_are_met"])
        if not answer["criteria_are_met"] and fresh:
            log.warning("criteria not met: %s", answer.get("reason"))
        await self.sio.emit("client_criteria", answer)

    async def on_connect(self) -> None:
        log.info("connected to %s", self.config.socketio_address)
        if self.in_session:
            # the server dropped us from the session when the connection broke (or it restarted
            # and will resume the session with whoever registers): start over for a session
            self.in_session = False
            # --once: only that session may still be joined (a restarted server resumes it)
            self.dropped_from = self.session_id
            log.warning("reconnected during a session; this client was dropped from it and registers again")
        # a restarted server's SuperLink does not know the old node: a fresh one after registering
        await self.supernode.stop()
        await self.register()

    async def on_disconnect(self, reason: Any = None) -> None:
        if not self.done.is_set():  # not when this client is stopping
            log.warning("disconnected from the server (%s); reconnecting", reason)
        await self.supernode.stop()
        if reason == self.sio.reason.SERVER_DISCONNECT and not self.done.is_set():
            task = asyncio.create_task(self._reconnect())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def on_connect_error(self, data: Any = None) -> None:
        if (
            isinstance(data, dict)
            and isinstance(data.get("data"), dict)
            and data["data"].get("kosmos") == "refused"
        ):
            self.refused = str(data.get("message"))
            log.error("the server refused this client: %s", self.refused)
            self.done.set()

    async def on_registered(self, data: dict[str, Any]) -> None:
        log.info(
            "server: %s (%s of %s waiting)%s",
            data.get("state"),
            data.get("waiting"),
            data.get("needed"),
            f" - {data['reason']}" if data.get("reason") else "",
        )
        address = self.config.flwr_server_address or data.get("flwr_server_address")
        eligible = data.get("state") == "eligible" and isinstance(address, str) and not self.in_session
        if eligible and (not self.supernode.ready() or address != self.supernode.address):
            task = asyncio.create_task(self._prepare_node(str(address)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _prepare_node(self, address: str) -> None:
        """Start the SuperNode while waiting for a session, then register again with its id."""
        if await self.supernode.ensure(address) is not None and not self.in_session and self.sio.connected:
            await self.register()

    async def on_error(self, data: Any) -> None:
        log.error("server refused a message: %s", data)

    async def on_start_train(self, data: Any) -> None:
        try:
            msg = StartTrain.model_validate(data)
            usecase_class(msg.usecase_name, msg.usecase_version)  # refuse unknown / other version
        except (ValidationError, KosmosError) as exc:
            log.error("cannot join the session: %s", exc)
            await self.sio.emit("client_criteria", {"criteria_are_met": False, "reason": str(exc)})
            return
        if self.once and self.dropped_from is not None and msg.session_id != self.dropped_from:
            # --once means one session: the one this client was dropped from ended without it
            reason = f"this client was dropped from session {self.dropped_from} when its connection broke"
            log.error("%s; not joining session %s (--once)", reason, msg.session_id)
            self.last_result = {"status": "dropped", "reason": reason}
            self.done.set()
            return
        self.session_id = msg.session_id
        self.in_session = True
        session_dir = self.work_dir / "sessions" / msg.session_id
        spec = node_spec(self.config, self.base_dir, msg, self.edge)
        flwr_address = self.config.flwr_server_address or msg.flwr_server_address
        spec.write(session_dir / NODE_FILE)  # the session's record
        spec.write(self.supernode.node_file)  # what the SuperNode's ClientApp reads
        log.info(
            "start_train: session %s as client %d, Flower at %s, MLflow run %s",
            msg.session_id,
            msg.client_id,
            flwr_address,
            msg.mlflow_run_id,
            extra={"session_id": msg.session_id},
        )
        if self.config.local_epochs or self.config.learning_rate:
            log.info(
                "this site overrides the server's training settings: local_epochs=%s, learning_rate=%s",
                self.config.local_epochs or "server's",
                self.config.learning_rate or "server's",
            )
        await self.supernode.ensure(flwr_address)  # kept from registration, unless it was not ready

    async def on_end_train(self, data: dict[str, Any]) -> None:
        self.last_result = data
        log.info(
            "end_train: session %s %s%s",
            data.get("session_id"),
            data.get("status"),
            f" - {data['reason']}" if data.get("reason") else "",
            extra={"session_id": data.get("session_id")},
        )
        self.in_session = False
        if self.once:
            self.done.set()
        else:
            await self.register()  # the SuperNode stays, ready for the next session

    async def _recheck_edge(self) -> None:
        """Edge mode: re-check the criteria as data arrives; register again once they are met."""
        assert self.edge is not None
        while not self.done.is_set():
            await asyncio.to_thread(self.edge.changed.wait, self.edge.cfg.recheck_interval)
            self.edge.changed.clear()
            if self.eligible or self.in_session or not self.sio.connected:
                continue
            answer = await asyncio.to_thread(check_criteria, self.config, self.base_dir, self.edge)
            if answer["criteria_are_met"]:
                log.info("collected data now meets the criteria; registering again")
                await self.register()

    async def run(self) -> dict[str, Any] | None:
        """Connect (with back-off), serve sessions; returns the last end_train payload."""
        self.signals = install_stop_signals(self.done)
        bind(client_id=self.name)
        if self.edge is not None:
            await asyncio.to_thread(self.edge.start)
            recheck = asyncio.create_task(self._recheck_edge())
            try:
                return await self._run()
            finally:
                self.edge.changed.set()  # wake the re-check thread so shutdown does not wait for it
                recheck.cancel()
                await asyncio.to_thread(self.edge.stop)
        return await self._run()

    async def _connect(self) -> bool:
        """Connect with back-off; False when stopped meanwhile. Raises when refused or out of
        attempts."""
        url = connect_url(self.config.socketio_address, self.security.tls)
        attempt = 0
        delay = self.config.retry_initial
        while True:
            try:
                await self.sio.connect(
                    url, transports=["websocket"], wait_timeout=10, auth=self.security.auth()
                )
                return True
            except socketio.exceptions.ConnectionError as exc:
                if self.refused is not None:
                    raise KosmosError(
                        f"the KOSMoS server refused this client: {self.refused}; ask the operator "
                        "for valid credentials (kosmos-fl clients add) and set credentials in client.yaml"
                    ) from None
                if self.done.is_set():
                    return False
                attempt += 1
                budget = self.config.retry_budget
                if budget is not None and attempt >= budget:
                    raise self._gave_up(f"after {attempt} attempt{'s' * (attempt > 1)} ({exc})") from None
                log.warning("server %s not reachable (%s); retrying in %.1f s", url, exc, delay)
                with contextlib.suppress(TimeoutError):  # a stop signal ends the wait early
                    await asyncio.wait_for(self.done.wait(), delay * (0.5 + random.random()))
                delay = min(delay * 2, self.config.retry_max)

    def _gave_up(self, how: str) -> KosmosError:
        return KosmosError(
            f"cannot reach the KOSMoS server at {self.config.socketio_address} {how}; check "
            "socketio_address and that the server runs, or set retry_attempts: forever in the client "
            "config (DYNACONF_retry_attempts=forever) to keep trying"
        )

    async def on_reconnect_ended(self) -> None:
        """python-socketio stopped reconnecting after a lost connection: out of ``retry_attempts``
        (or stopped by us, then nothing to say)."""
        if not self.done.is_set() and not self.sio.connected:
            self._fatal = self._gave_up(f"again after {self.config.retry_attempts} reconnection attempts")
            self.done.set()

    async def _reconnect(self) -> None:
        """After the server closed the connection itself (a graceful restart): python-socketio
        reconnects on its own only after transport errors, so connect again here."""
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.done.wait(), self.config.retry_initial)
            # the Engine.IO transport may still be closing; connect() refuses until it has
            for _ in range(100):
                if self.sio.eio.state == "disconnected" or self.done.is_set():
                    break
                await asyncio.sleep(0.1)
            else:
                await self.sio.eio.disconnect(abort=True)
            if not self.done.is_set() and not self.sio.connected:
                await self._connect()
        except KosmosError as exc:
            self._fatal = exc
            self.done.set()
        except Exception:  # never a silent end of reconnecting: say so and stop the client
            log.exception("reconnecting to the server failed")
            self._fatal = KosmosError("lost the server and could not reconnect; restart the client")
            self.done.set()

    async def _run(self) -> dict[str, Any] | None:
        log.info("connecting to %s as %s", self.config.socketio_address, self.name)
        # the data first: a site whose data is missing hears it now, not after the connection
        self._checked = await asyncio.to_thread(check_criteria, self.config, self.base_dir, self.edge)
        if not self._checked["criteria_are_met"]:
            log.warning("criteria not met: %s (registering as not eligible)", self._checked.get("reason"))
        try:
            if not await self._connect():
                return None
            await self.done.wait()
        finally:
            await self.supernode.stop()
            with contextlib.suppress(Exception):
                await self.sio.disconnect()
            if (http := self.sio.eio.http) is not None and not http.closed:
                await http.close()  # left open by a failed connect (no "Unclosed client session")
        if self.refused is not None:
            raise KosmosError(f"the KOSMoS server refused this client: {self.refused}")
        if self._fatal is not None:
            raise self._fatal
        return self.last_result
