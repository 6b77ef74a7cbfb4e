"""A Fleet-only front door for the Flower SuperLink.

Flower 1.42 serves its Fleet API (``/v1/fleet/*``, what SuperNodes call), its Control API
(``/v1/control/*``: run submission, node registration, i.e. code execution on the server, without
login in open-source Flower), its Runtime API (``/v1/runtime/*``) and ``/health`` on ONE HTTP
host/port, with no option to split them. So the KOSMoS server binds the SuperLink to 127.0.0.1 and
puts this proxy on ``flwr_server_address``: it forwards ``/v1/fleet/*`` requests verbatim
(including the SuperNode's signature headers, which the SuperLink checks) and answers 404 to
everything else. The proxy terminates TLS with the server certificate and talks TLS to the
SuperLink, verifying it against the CA.
"""

from __future__ import annotations

import logging
import ssl

import aiohttp
from aiohttp import web

log = logging.getLogger("kosmos_fl.fleet_proxy")

FLEET_PREFIX = "/v1/fleet/"
#: Largest request/response forwarded (model weights travel in Fleet messages).
MAX_BODY = 1 << 30
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


class FleetProxy:
    """Forwards Fleet API calls from the network to a loopback SuperLink; nothing else."""

    def __init__(self, upstream: str, upstream_ssl: ssl.SSLContext | None) -> None:
        self.upstream = upstream.rstrip("/")
        self.upstream_ssl = upstream_ssl
        self.session: aiohttp.ClientSession | None = None
        self.app = web.Application(client_max_size=MAX_BODY)
        self.app.router.add_route("*", "/{tail:.*}", self.handle)
        self.app.on_cleanup.append(self._close)

    async def _close(self, _app: web.Application) -> None:
        if self.session is not None:
            await self.session.close()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if not request.path.startswith(FLEET_PREFIX) or ".." in request.path:
            log.warning(
                "refused %s %s from %s: not a Fleet API call", request.method, request.path, request.remote
            )
            return web.json_response(
                {"detail": "not found: only the Flower Fleet API is served on this address"}, status=404
            )
        if self.session is None:
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self.upstream_ssl if self.upstream_ssl else False),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
                auto_decompress=False,
            )
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        body = await request.read()
        try:
            async with self.session.request(
                request.method, self.upstream + request.path_qs, headers=headers, data=body
            ) as resp:
                payload = await resp.read()
                out = {k: v for k, v in resp.headers.items() if k.lower() not in _HOP_BY_HOP}
                return web.Response(status=resp.status, headers=out, body=payload)
        except aiohttp.ClientError as exc:
            log.error("Fleet API upstream %s failed: %s", self.upstream, exc)
            return web.json_response({"detail": "SuperLink unavailable"}, status=502)


async def start_fleet_proxy(
    host: str,
    port: int,
    upstream: str,
    upstream_ssl: ssl.SSLContext | None,
    server_ssl: ssl.SSLContext | None,
) -> web.AppRunner:
    """Listen on ``host:port`` (TLS when ``server_ssl``) and forward Fleet calls to ``upstream``."""
    proxy = FleetProxy(upstream, upstream_ssl)
    runner = web.AppRunner(proxy.app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, ssl_context=server_ssl).start()
    return runner
