"""A Fleet-only front door for the Flower SuperLink.

Flower 1.42 serves its Fleet API (``/v1/fleet/*``, what SuperNodes call), its Control API
(``/v1/control/*``: run submission, node registration, i.e. code execution on the server, without
login in open-source Flower), its Runtime API (``/v1/runtime/*``) and ``/health`` on ONE HTTP
host/port, with no option to split them. So the KOSMoS server keeps the SuperLink off the network
(in its own network namespace, reached through a unix socket, or on 127.0.0.1: issue 16 row 9) and
puts this proxy on ``flwr_server_address``: it forwards ``/v1/fleet/*`` requests verbatim
(including the SuperNode's signature headers, which the SuperLink checks) and answers 404 to
everything else. The proxy terminates TLS with the server certificate and talks TLS to the
SuperLink, verifying it against the CA (on the unix socket, the bridge does that part).

While a session runs, the proxy also long-polls for the SuperNodes: a Flower 1.42 SuperNode that
finds no message sleeps 3 s before it asks again, and it asks right after pushing its reply, before
the server can have aggregated and sent the next round. So every round would wait out that sleep.
An empty ``pull-messages`` answer is instead held here, asking the SuperLink again every few tens
of milliseconds, until a message exists, ``hold`` seconds have passed (well under the SuperNode's
30 s request timeout) or the session ends. The SuperNode itself is unchanged, and the SuperLink
still decides what each node gets: the proxy only repeats the node's own signed request.

Bounded resources (issue 16 row 4): request bodies are read in chunks and refused (413, connection
closed) as soon as they pass the path's limit (a declared ``Content-Length`` over it is refused
before anything is read): ``max_push`` for ``push-object``/``push-messages`` (model updates),
``max_request`` for every other call (a few KiB). At most ``max_inflight`` requests are served at
once, ``max_inflight_per_ip`` from one address (held pulls count); more get 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web
from flwr.proto.fleet_pb2 import PullMessagesResponse
from google.protobuf.message import DecodeError

log = logging.getLogger("kosmos_fl.fleet_proxy")

FLEET_PREFIX = "/v1/fleet/"
PULL_MESSAGES = "/v1/fleet/pull-messages"
#: Seconds between repeated pulls while holding: the first ones come quickly (the next round is
#: usually sent within a few hundred ms of the last reply), then back off to spare the SuperLink.
REPOLL_FIRST, REPOLL_MAX = 0.02, 0.25
#: An upstream answer: status, headers to pass on, body.
Answer = tuple[int, dict[str, str], bytes]
#: Largest request/response forwarded (model weights travel in Fleet messages).
MAX_BODY = 1 << 30
#: Fleet calls whose bodies carry model data (the rest are small: ids, keys, heartbeats).
PUSH_PATHS = frozenset({"/v1/fleet/push-object", "/v1/fleet/push-messages"})
_CHUNK = 64 * 1024


class BodyTooLarge(Exception):
    pass


_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}


@dataclass(frozen=True)
class FleetLimits:
    """Body and concurrency limits of the proxy (``limits.fleet_*`` in the server config)."""

    max_push: int = 64 * 1024 * 1024
    max_request: int = 16 * 1024
    max_inflight: int = 512
    max_inflight_per_ip: int = 32


class FleetProxy:
    """Forwards Fleet API calls from the network to a loopback SuperLink; nothing else."""

    def __init__(
        self,
        upstream: str,
        upstream_ssl: ssl.SSLContext | None,
        hold: float = 0.0,
        holding: Callable[[], bool] = lambda: True,
        on_held: Callable[[str], None] | None = None,
        limits: FleetLimits | None = None,
        upstream_socket: str | Path | None = None,
    ) -> None:
        self.limits = limits or FleetLimits()
        #: A unix socket to reach ``upstream`` through (the SuperLink's bridge), else TCP.
        self.upstream_socket = upstream_socket
        self._inflight = 0
        self._inflight_ip: dict[str, int] = {}
        self.upstream = upstream.rstrip("/")
        self.upstream_ssl = upstream_ssl
        #: Longest wait (s) for a message when a pull finds none; 0 forwards every answer at once.
        self.hold = hold
        #: Whether messages can come at all (the coordinator: a session is running).
        self.holding = holding
        #: Told ``"message"`` or ``"empty"`` after each held pull (the coordinator's /metrics).
        self.on_held = on_held
        self.session: aiohttp.ClientSession | None = None
        self._closing = asyncio.Event()
        self.app = web.Application(client_max_size=MAX_BODY)
        self.app.router.add_route("*", "/{tail:.*}", self.handle)
        self.app.on_shutdown.append(self._shutdown)
        self.app.on_cleanup.append(self._close)

    async def _shutdown(self, _app: web.Application) -> None:
        self._closing.set()  # held pulls answer now instead of delaying the shutdown

    async def _close(self, _app: web.Application) -> None:
        if self.session is not None:
            await self.session.close()

    async def _forward(self, method: str, path_qs: str, headers: dict[str, str], body: bytes) -> Answer:
        if self.session is None:
            connector: aiohttp.BaseConnector = (
                aiohttp.UnixConnector(str(self.upstream_socket))
                if self.upstream_socket
                else aiohttp.TCPConnector(ssl=self.upstream_ssl if self.upstream_ssl else False)
            )
            self.session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
                auto_decompress=False,
            )
        async with self.session.request(method, self.upstream + path_qs, headers=headers, data=body) as resp:
            payload = await resp.read()
            out = {k: v for k, v in resp.headers.items() if k.lower() not in _HOP_BY_HOP}
            return resp.status, out, payload

    async def _hold_pull(
        self, request: web.Request, headers: dict[str, str], body: bytes, first: Answer
    ) -> Answer:
        """Repeat an empty pull until it brings a message, the hold ends or nothing more can come."""
        answer, empty = first, _is_empty_pull(first)
        deadline = time.monotonic() + self.hold
        pause = REPOLL_FIRST
        held = False
        while empty and self.holding() and not self._closing.is_set():
            left = deadline - time.monotonic()
            transport = request.transport
            if left <= 0 or transport is None or transport.is_closing():
                break  # out of time, or the SuperNode went away: do not pull a message for nobody
            held = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), min(pause, left))
            pause = min(pause * 1.5, REPOLL_MAX)
            try:
                answer = await self._forward(request.method, request.path_qs, headers, body)
            except aiohttp.ClientError:
                break  # keep the empty answer we have; the SuperNode asks again later
            empty = _is_empty_pull(answer)
        if held and self.on_held is not None:
            self.on_held("empty" if empty else "message")
        return answer

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if not request.path.startswith(FLEET_PREFIX) or ".." in request.path:
            log.warning(
                "refused %s %s from %s: not a Fleet API call", request.method, request.path, request.remote
            )
            return web.json_response(
                {"detail": "not found: only the Flower Fleet API is served on this address"}, status=404
            )
        peer = request.remote or "?"
        lim = self.limits
        if self._inflight >= lim.max_inflight or self._inflight_ip.get(peer, 0) >= lim.max_inflight_per_ip:
            log.warning("refused %s from %s: too many Fleet requests in flight", request.path, peer)
            return web.json_response(
                {"detail": "too many requests in flight; retry shortly"},
                status=503,
                headers={"Retry-After": "1"},
            )
        self._inflight += 1
        self._inflight_ip[peer] = self._inflight_ip.get(peer, 0) + 1
        try:
            return await self._handle_fleet(request)
        finally:
            self._inflight -= 1
            left = self._inflight_ip.get(peer, 1) - 1
            if left > 0:
                self._inflight_ip[peer] = left
            else:
                self._inflight_ip.pop(peer, None)

    async def _read_body(self, request: web.Request, limit: int) -> bytes:
        """The request body, read in chunks; BodyTooLarge as soon as it passes ``limit``."""
        if request.content_length is not None and request.content_length > limit:
            raise BodyTooLarge
        body = bytearray()
        while chunk := await request.content.read(_CHUNK):
            body += chunk
            if len(body) > limit:
                raise BodyTooLarge
        return bytes(body)

    async def _handle_fleet(self, request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        limit = self.limits.max_push if request.path in PUSH_PATHS else self.limits.max_request
        try:
            body = await self._read_body(request, limit)
        except BodyTooLarge:
            log.warning(
                "refused %s from %s: body over %d bytes (limits.fleet_max_%s_bytes)",
                request.path, request.remote, limit, "push" if request.path in PUSH_PATHS else "request",
            )  # fmt: skip
            with contextlib.suppress(Exception):
                request.protocol.force_close()  # do not read (or drain) the rest
            return web.json_response(
                {"detail": f"request body over {limit} bytes"}, status=413, headers={"Connection": "close"}
            )
        try:
            answer = await self._forward(request.method, request.path_qs, headers, body)
        except aiohttp.ClientError as exc:
            log.error("Fleet API upstream %s failed: %s", self.upstream, exc)
            return web.json_response({"detail": "SuperLink unavailable"}, status=502)
        if request.path == PULL_MESSAGES and self.hold > 0:
            answer = await self._hold_pull(request, headers, body, answer)
        status, out, payload = answer
        return web.Response(status=status, headers=out, body=payload)


def _is_empty_pull(answer: Answer) -> bool:
    """A successful ``pull-messages`` answer with no message and no reconnect instruction."""
    status, _headers, payload = answer
    if status != 200:
        return False
    try:
        reply = PullMessagesResponse.FromString(payload)
    except DecodeError:
        return False
    return not reply.messages_list and not reply.HasField("reconnect")


async def start_fleet_proxy(
    host: str,
    port: int,
    upstream: str,
    upstream_ssl: ssl.SSLContext | None,
    server_ssl: ssl.SSLContext | None,
    hold: float = 0.0,
    holding: Callable[[], bool] = lambda: True,
    on_held: Callable[[str], None] | None = None,
    limits: FleetLimits | None = None,
    upstream_socket: str | Path | None = None,
) -> web.AppRunner:
    """Listen on ``host:port`` (TLS when ``server_ssl``) and forward Fleet calls to ``upstream``,
    through ``upstream_socket`` when given.

    ``hold`` > 0 long-polls empty pulls while ``holding()`` (see the module docstring).
    """
    proxy = FleetProxy(upstream, upstream_ssl, hold, holding, on_held, limits, upstream_socket)
    runner = web.AppRunner(proxy.app, access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    await web.TCPSite(runner, host, port, ssl_context=server_ssl).start()
    return runner
