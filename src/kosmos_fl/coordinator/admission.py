"""Admission to the federation: the Socket.IO events, one record per connected client, the
waiting list of eligible clients and the revocation check before a session.

It knows nothing of sessions: a client that became eligible calls ``on_ready`` (the
:class:`~kosmos_fl.coordinator.sessions.SessionRunner` starts one when enough wait), a client
that left calls ``on_leave`` (the runner drops it from its session).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import socketio

from kosmos_fl.config import ServerConfig
from kosmos_fl.coordinator.protocol import MAX_MESSAGE_BYTES, parse_criteria
from kosmos_fl.errors import ProtocolError
from kosmos_fl.logs import bind
from kosmos_fl.security.clients import ClientEntry
from kosmos_fl.security.policy import ServerSecurity
from kosmos_fl.usecases.base import UseCase

log = logging.getLogger("kosmos_fl.server")


async def _nothing() -> None:
    """Default ``on_ready`` until the coordinator wires the session runner in."""


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

    @property
    def node_id(self) -> int | None:
        """The Flower node id of the SuperNode this client keeps between sessions, if it said."""
        node = (self.criteria or {}).get("node_id")
        return node if isinstance(node, int) else None


class Admission:
    """Connected clients, their criteria and the waiting list; answers the Socket.IO events."""

    def __init__(self, config: ServerConfig, usecase_cls: type[UseCase], sio: socketio.AsyncServer) -> None:
        self.config = config
        self.usecase_cls = usecase_cls
        self.sio = sio
        self.clients: dict[str, ClientRecord] = {}
        self.waiting: list[str] = []
        self._remind_tasks: dict[str, asyncio.Task[None]] = {}
        #: Set by the coordinator's start(): client-auth decision and registry (docs/SECURITY.md).
        self.security: ServerSecurity | None = None
        #: Called after a client became eligible (the session runner starts a session if it can).
        self.on_ready: Callable[[], Awaitable[None]] = _nothing
        #: Called with (sid, reason) when a client disconnects.
        self.on_leave: Callable[[str, str], None] = lambda sid, reason: None
        sio.on("connect", self.on_connect)
        sio.on("disconnect", self.on_disconnect)
        sio.on("client_criteria", self.on_client_criteria)
        sio.on("*", self.on_unknown)

    async def announce(self, event: str, data: dict[str, Any], sid: str) -> None:
        """Send one event to one client."""
        await self.sio.emit(event, data, to=sid)

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        bind(client_id=sid)
        host = str(environ.get("HTTP_HOST", "")).rsplit(":", 1)[0].strip("[]")
        peer = environ.get("REMOTE_ADDR") or "?"
        identity = None
        if self.security is not None and self.security.client_auth:
            identity, told, why = await asyncio.to_thread(self.security.registry.verify_peer, auth)
            if identity is None:
                log.warning("refused connection from %s: %s", peer, why)
                raise socketio.exceptions.ConnectionRefusedError(told, {"kosmos": "refused"})
            # one live socket per credential: one site can never fill several seats of a session
            # (checked and recorded with no await in between, so two racing handshakes cannot both pass)
            other = next((r for r in self.clients.values() if r.identity == identity), None)
            if other is not None:
                why = (
                    f"client '{identity}' is already connected (from {other.address}); one connection "
                    "per credential: stop the other client first"
                )
                log.warning("refused connection from %s: %s", peer, why)
                # "busy", not "refused": the client retries with back-off instead of giving up, so
                # a site that reconnects before the server noticed its old link die gets back in
                raise socketio.exceptions.ConnectionRefusedError(why, {"kosmos": "busy"})
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
        self.on_leave(sid, f"disconnected: {reason}")
        log.info(
            "client %s disconnected (%s)%s",
            sid,
            reason,
            " while training" if rec and rec.state == "training" else "",
        )

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
            if criteria.node_id is not None and rec.criteria is not None:
                # its SuperNode joined while the session was starting: still in time for nodes.json
                rec.criteria["node_id"] = criteria.node_id
                return
            await self._reject(sid, "client_criteria", "already training in a session; wait for end_train")
            return
        # an authenticated client is its credential's name, whatever it reports (records, the
        # waiting list and resume are keyed on the identity)
        rec.name = rec.identity or criteria.client_name or rec.name
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
                # where the SuperNode dials: an eligible client starts it now and keeps it
                **(
                    {"flwr_server_address": self.config.flwr_address_for(rec.host)}
                    if rec.state == "eligible"
                    else {}
                ),
            },
            to=sid,
        )
        await self.on_ready()

    async def disconnect_revoked(self, entries: Mapping[str, ClientEntry]) -> None:
        """Hang up on every connected client whose credential is revoked or gone (``kosmos-fl
        clients revoke`` takes effect on open sockets, not only on the next handshake)."""
        for sid, rec in list(self.clients.items()):
            if rec.identity is None:
                continue
            entry = entries.get(rec.identity)
            if entry is not None and entry.active:
                continue
            log.warning("client %s (%s): credential revoked; disconnecting", sid, rec.identity)
            with contextlib.suppress(Exception):
                await self.sio.emit("error", {"event": "session", "message": "credential revoked"}, to=sid)
            with contextlib.suppress(Exception):
                await self.sio.disconnect(sid)

    async def drop_revoked(self) -> None:
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
