"""Admission control for the Socket.IO control plane: size caps, rate limits, malformed packets.

Every message a client sends passes :meth:`GuardedServer._handle_eio_message` before python-socketio
decodes and dispatches it, so one place refuses what the event handlers must never see:

- a frame larger than ``max_frame_bytes`` is cut off by the transport (WebSocket close 1009 "message
  too big", HTTP 400 for long-polling) and logged here with the peer's address;
- a message larger than ``max_message_bytes`` is dropped with an ``error`` event to the sender;
- more than ``messages_per_second`` (after a ``burst``) are dropped with one ``error`` event per
  streak; a client that keeps flooding for another ``burst`` messages is told why and disconnected;
- undecodable packets, events without a string name, reserved names (``connect``, ``disconnect``)
  and payloads that do not match the handler's arguments get an ``error`` event;
- more than ``max_connections_per_ip`` open connections from one address are refused (HTTP 401,
  connection closed); a connection that has not completed the Socket.IO handshake within
  ``handshake_timeout`` seconds, or whose handshake was refused, is closed.

Each refusal is one ``WARNING`` line in the server log naming the client and its address. Nothing a
client sends can raise out of here, so one bad client never stops the server serving the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import resource
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import socketio
from aiohttp import WSCloseCode
from engineio.async_drivers import aiohttp as eio_aiohttp
from socketio import packet

from kosmos_fl.config import LimitsConfig as Limits

log = logging.getLogger("kosmos_fl.server")

#: Event names python-socketio dispatches itself; a client must not be able to fake them.
RESERVED_EVENTS = frozenset({"connect", "disconnect", "connect_error", "message"})
MAX_EVENT_NAME = 100
_NAME_SHOWN = 40  # characters of a client-chosen event name echoed back in messages
_BANNED_KEPT = 10_000
_tasks: set[asyncio.Task[None]] = set()  # keeps hang-up tasks referenced until done


@dataclass
class _Bucket:
    """Token bucket of one connection, plus how many messages in a row it dropped."""

    tokens: float
    stamp: float = field(default_factory=time.monotonic)
    dropped: int = 0

    def take(self, rate: float, burst: int) -> bool:
        now = time.monotonic()
        self.tokens = min(float(burst), self.tokens + (now - self.stamp) * rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            self.dropped = 0
            return True
        self.dropped += 1
        return False


def _shown(name: Any) -> str:
    text = name if isinstance(name, str) else repr(name)
    return text if len(text) <= _NAME_SHOWN else text[:_NAME_SHOWN] + "..."


def _eio_sid(environ: dict[str, Any]) -> str:
    return parse_qs(environ.get("QUERY_STRING", "")).get("sid", ["?"])[0]


class _LoggingWebSocket(eio_aiohttp.WebSocket):  # type: ignore[misc]
    """engine.io's aiohttp WebSocket wrapper that logs why a frame was refused (too big) and
    lets :class:`GuardedServer` close the TCP connection of an abuser (engine.io itself keeps
    reading from a socket it closed until the peer hangs up)."""

    async def __call__(self, environ: dict[str, Any]) -> Any:
        registry: dict[str, _LoggingWebSocket] = getattr(self.server, "kosmos_websockets", {})
        # the engine.io socket this transport serves (a direct WebSocket has no sid in its URL)
        sid = getattr(getattr(self.handler, "__self__", None), "sid", None) or _eio_sid(environ)
        self.eio_sid = sid
        registry[sid] = self
        try:
            return await super().__call__(environ)
        finally:
            registry.pop(sid, None)

    async def hang_up(self, code: int, reason: str) -> None:
        if self._sock is not None and not self._sock.closed:
            await self._sock.close(code=code, message=reason.encode()[:120])

    async def wait(self) -> Any:
        msg = await self._sock.receive()
        if not isinstance(msg.data, bytes | str):
            exc = msg.data if isinstance(msg.data, BaseException) else None
            if getattr(exc, "code", None) == WSCloseCode.MESSAGE_TOO_BIG:
                environ = getattr(self, "environ", {}) or {}
                log.warning(
                    "client %s (engine.io %s) sent a frame over %d bytes; connection closed "
                    "(WebSocket 1009 'message too big')",
                    environ.get("REMOTE_ADDR", "?"),
                    getattr(self, "eio_sid", "?"),
                    self.server.max_http_buffer_size,
                )
            raise OSError()
        return msg.data


class GuardedServer(socketio.AsyncServer):  # type: ignore[misc]
    """``socketio.AsyncServer`` that enforces :class:`Limits` and never lets a client's message
    raise into the event loop."""

    def __init__(self, limits: Limits | None = None, **kwargs: Any) -> None:
        self.limits = limits or Limits()
        kwargs.setdefault("max_http_buffer_size", self.limits.max_frame_bytes)
        kwargs.setdefault("ping_interval", self.limits.ping_interval)
        kwargs.setdefault("ping_timeout", self.limits.ping_timeout)
        super().__init__(**kwargs)
        self._buckets: dict[str, _Bucket] = {}
        #: open engine.io sessions per peer address (the per-IP connection cap)
        self._per_ip: dict[str, set[str]] = {}
        self._peer_of: dict[str, str] = {}
        self._capped_logged: dict[str, float] = {}
        # engine.io sids hung up on; whatever they still send is dropped quietly (bounded memory)
        self._banned: OrderedDict[str, None] = OrderedDict()
        self.eio.kosmos_websockets = {}
        drivers = getattr(self.eio, "_async", None)
        if isinstance(drivers, dict) and drivers.get("websocket") is eio_aiohttp.WebSocket:
            self.eio._async = {**drivers, "websocket": _LoggingWebSocket}  # per instance

    # -- helpers --------------------------------------------------------------------------------
    def _peer(self, eio_sid: str) -> str:
        environ = self.environ.get(eio_sid) or {}
        return str(environ.get("REMOTE_ADDR") or "?")

    async def refuse(self, eio_sid: str, event: str, message: str, *, disconnect: bool = False) -> None:
        """Tell the sender why (``error`` event), log one line, optionally hang up."""
        sid = self.manager.sid_from_eio_sid(eio_sid, "/")
        log.warning("client %s (%s): %s", sid or f"engine.io {eio_sid}", self._peer(eio_sid), message)
        if sid is not None:
            try:
                await self.emit("error", {"event": event, "message": message}, to=sid)
            except Exception:  # the client may be gone already
                log.debug("could not send the error to %s", sid, exc_info=True)
        if disconnect:
            self._banned[eio_sid] = None
            while len(self._banned) > _BANNED_KEPT:
                self._banned.popitem(last=False)
            task = asyncio.create_task(self._hang_up(eio_sid, sid, message))
            _tasks.add(task)
            task.add_done_callback(_tasks.discard)

    async def _hang_up(self, eio_sid: str, sid: str | None, message: str) -> None:
        """Disconnect an abuser: Socket.IO DISCONNECT (after the ``error`` event had a moment to
        leave), then close the transport (WebSocket 1008 'policy violation' with the reason)."""
        try:
            await asyncio.sleep(0.2)
            if sid is not None:
                await self.disconnect(sid)
            # the error events and the DISCONNECT wait in engine.io's send queue; on a busy machine
            # its writer can lag behind, and closing the WebSocket first loses them: let it drain
            sock = getattr(self.eio, "sockets", {}).get(eio_sid)
            if sock is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(sock.queue.join(), 5.0)
            ws = self.eio.kosmos_websockets.get(eio_sid)
            with contextlib.suppress(Exception):
                if ws is not None:
                    await asyncio.wait_for(ws.hang_up(WSCloseCode.POLICY_VIOLATION, message), 5.0)
                # a peer that does not read could block the close forever: bound the wait
                await asyncio.wait_for(self.eio.disconnect(eio_sid), 5.0)
        finally:
            self._buckets.pop(eio_sid, None)

    async def _handle_eio_connect(self, eio_sid: str, environ: dict[str, Any]) -> Any:
        # engine.io's aiohttp driver puts REMOTE_ADDR=127.0.0.1 for every client; the log, /status
        # and refusals must name the real peer
        request = environ.get("aiohttp.request")
        peer = getattr(request, "remote", None)
        if peer:
            environ["REMOTE_ADDR"] = peer
        addr = str(environ.get("REMOTE_ADDR") or "?")
        open_here = self._per_ip.setdefault(addr, set())
        if len(open_here) >= self.limits.max_connections_per_ip:
            now = time.monotonic()
            if now - self._capped_logged.get(addr, -60.0) >= 60.0:  # one line a minute per address
                self._capped_logged[addr] = now
                log.warning(
                    "refused connections from %s: %d open, the limit is limits.max_connections_per_ip=%d",
                    addr, len(open_here), self.limits.max_connections_per_ip,
                )  # fmt: skip
            if request is not None:  # no keep-alive: the TCP connection ends with the 401
                with contextlib.suppress(Exception):
                    request.protocol.force_close()
            return "too many connections from this address"
        open_here.add(eio_sid)
        self._peer_of[eio_sid] = addr
        self._spawn(self._handshake_deadline(eio_sid))
        return await super()._handle_eio_connect(eio_sid, environ)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)

    def _forget(self, eio_sid: str) -> None:
        addr = self._peer_of.pop(eio_sid, None)
        if addr is not None:
            open_here = self._per_ip.get(addr)
            if open_here is not None:
                open_here.discard(eio_sid)
                if not open_here:
                    del self._per_ip[addr]

    def _handshake_done(self, eio_sid: str) -> bool:
        return self.manager.sid_from_eio_sid(eio_sid, "/") is not None

    async def _handshake_deadline(self, eio_sid: str) -> None:
        """Close a connection that has not completed the Socket.IO handshake in time."""
        await asyncio.sleep(self.limits.handshake_timeout)
        if eio_sid in self._peer_of and not self._handshake_done(eio_sid):
            log.warning(
                "client engine.io %s (%s): no Socket.IO handshake within %g s; connection closed",
                eio_sid, self._peer_of.get(eio_sid, "?"), self.limits.handshake_timeout,
            )  # fmt: skip
            await self._close_transport(eio_sid, "no handshake in time")

    async def _close_transport(self, eio_sid: str, reason: str) -> None:
        ws = self.eio.kosmos_websockets.get(eio_sid)
        with contextlib.suppress(Exception):
            if ws is not None:
                await asyncio.wait_for(ws.hang_up(WSCloseCode.POLICY_VIOLATION, reason), 5.0)
            await asyncio.wait_for(self.eio.disconnect(eio_sid), 5.0)
        self._forget(eio_sid)

    async def _handle_connect(self, eio_sid: str, namespace: str | None, data: Any) -> None:
        await super()._handle_connect(eio_sid, namespace, data)
        if not self._handshake_done(eio_sid):  # refused: the CONNECT_ERROR is sent; now hang up
            self._banned[eio_sid] = None
            while len(self._banned) > _BANNED_KEPT:
                self._banned.popitem(last=False)
            self._spawn(self._close_after_refusal(eio_sid))

    async def _close_after_refusal(self, eio_sid: str) -> None:
        await asyncio.sleep(0.2)  # let the refusal reach the client first
        await self._close_transport(eio_sid, "handshake refused")

    # -- the gate every incoming message passes -------------------------------------------------
    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        lim = self.limits
        if eio_sid in self._banned:
            return
        bucket = self._buckets.get(eio_sid)
        if bucket is None:
            bucket = self._buckets[eio_sid] = _Bucket(tokens=float(lim.burst))
        if not bucket.take(lim.messages_per_second, lim.burst):
            if bucket.dropped == 1:
                await self.refuse(
                    eio_sid,
                    "*",
                    f"rate limit: more than {lim.messages_per_second:g} messages per second "
                    f"(burst {lim.burst}); messages are dropped until you slow down",
                )
            elif bucket.dropped >= lim.burst:
                await self.refuse(
                    eio_sid,
                    "*",
                    f"disconnected for flooding: {bucket.dropped} messages over the rate limit of "
                    f"{lim.messages_per_second:g} per second",
                    disconnect=True,
                )
            return
        size = len(data) if isinstance(data, str | bytes) else 0
        if size > lim.max_message_bytes:
            await self.refuse(
                eio_sid,
                "*",
                f"message of {size} bytes refused: the limit is {lim.max_message_bytes} bytes",
            )
            self._binary_packet.pop(eio_sid, None)
            return
        if eio_sid not in self._binary_packet:
            problem = self._check_packet(data)
            if problem is not None:
                await self.refuse(eio_sid, problem[0], problem[1])
                return
        try:
            await super()._handle_eio_message(eio_sid, data)
        except Exception as exc:  # a client's packet must never crash the server
            self._binary_packet.pop(eio_sid, None)
            await self.refuse(eio_sid, "*", f"malformed Socket.IO packet refused ({_shown(str(exc))})")

    def _check_packet(self, data: Any) -> tuple[str, str] | None:
        """Why an event packet cannot be dispatched, or None. Other packet types go through."""
        try:
            pkt = self.packet_class(encoded_packet=data)
        except Exception as exc:
            return "*", f"malformed Socket.IO packet refused ({_shown(str(exc))})"
        if pkt.packet_type not in (packet.EVENT, packet.BINARY_EVENT):
            return None
        args = pkt.data
        if not isinstance(args, list) or not args or not isinstance(args[0], str):
            return "*", 'malformed event: a Socket.IO event is ["name", payload...]'
        name = args[0]
        if not name or len(name) > MAX_EVENT_NAME or not name.isprintable():
            return "*", (
                f"malformed event name {_shown(name)!r}: use up to {MAX_EVENT_NAME} printable characters"
            )
        if name in RESERVED_EVENTS:
            return name, f"event name '{name}' is reserved and cannot be sent by a client"
        handler = self.handlers.get(pkt.namespace or "/", {}).get(name)
        if handler is not None:
            try:
                inspect.signature(handler).bind("sid", *args[1:])
            except TypeError:
                return (
                    name,
                    f"event '{_shown(name)}' takes one JSON payload, got {len(args) - 1} arguments",
                )
        return None

    async def _handle_eio_disconnect(self, eio_sid: str, reason: Any = None) -> None:
        self._buckets.pop(eio_sid, None)
        self._forget(eio_sid)
        await super()._handle_eio_disconnect(eio_sid, reason)


def raise_fd_limit(wanted: int = 65536) -> int:
    """Raise this process's open-file limit toward ``wanted`` (capped by the hard limit): every
    Socket.IO connection holds a socket, and the usual soft limit of 1024 is too low for a
    federation of a thousand sites. Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return soft
    return target
