"""The scrape listener (``metrics_address``): ``/metrics`` alone, on its own port, without the admin
token, for Prometheus.

Why a port and not a token: Prometheus' Kubernetes scrape annotations (``prometheus.io/port``) can
name a port but carry no credentials, and a job-wide token would be sent to every annotated target.
The port serves nothing but the metrics (counts, timings, evaluation scores, client names; no
addresses, no reasons, no secrets), plain HTTP, so it belongs on loopback or a cluster-internal
address and is never published (docs/SECURITY.md). The ``Host`` check of the admin side applies
here too: a web page an operator opens cannot rebind a name of its own to this port.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection

from aiohttp import web

from kosmos_fl.config import split_address
from kosmos_fl.coordinator.admin_auth import Handler, host_allowed, refuse_host
from kosmos_fl.errors import FederationError

log = logging.getLogger("kosmos_fl.server")


class ScrapeListener:
    """A second aiohttp site on ``address`` that serves ``GET /metrics`` with ``handler``."""

    def __init__(self, address: str, handler: Handler, names: Callable[[], Collection[str]]) -> None:
        self.address = address
        self.host, self.port = split_address(address, "metrics_address")
        self._handler, self._names = handler, names
        self._runner: web.AppRunner | None = None

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        if not host_allowed(request, self._names()):
            return refuse_host(request)
        return await self._handler(request)

    async def start(self, _app: web.Application | None = None) -> None:
        """Listen (an ``on_startup`` hook of the coordinator's app: a taken port stops the start)."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self.host, self.port).start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise FederationError(
                f"cannot listen on metrics_address {self.address}: {exc.strerror}; choose a free port "
                "or remove metrics_address"
            ) from None
        log.info("Prometheus metrics on http://%s/metrics (no admin token)", self.address)

    async def stop(self, _app: web.Application | None = None) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
