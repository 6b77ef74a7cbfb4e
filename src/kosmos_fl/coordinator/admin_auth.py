"""Who may see the admin side (dashboard, ``/metrics``): one shared admin token from the config.

Kept deliberately small and separate so it can be swapped for the project's client credentials
later: :func:`protect` wraps a handler, :func:`is_admin` is the only check. A browser logs in with
HTTP basic auth (any user name, the token as password); Prometheus and scripts send
``Authorization: Bearer <token>`` (or basic auth). Without a token (never in ``profile:
production``) the admin side answers loopback peers only, as ``/status`` does.

Every admin request's ``Host`` header must be an IP address, ``localhost`` or one of the server's
configured names (:func:`host_allowed`): a web page an operator opens cannot rebind its own name to
the server's address (DNS rebinding) and read the admin side through the operator's browser.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from collections.abc import Awaitable, Callable, Collection

from aiohttp import web

from kosmos_fl.redact import printable
from kosmos_fl.security.policy import is_loopback

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REALM = "kosmos-fl admin"


def _password(header: str) -> str | None:
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        return value.strip()
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2]
    return None


def is_admin(request: web.Request, token: str | None) -> bool:
    """True when no token is configured, or the request carries it (constant-time compare)."""
    if not token:
        return True
    given = _password(request.headers.get("Authorization", ""))
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def _host_name(host: str) -> str:
    if host.startswith("["):  # [::1]:6000
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def host_allowed(request: web.Request, names: Collection[str]) -> bool:
    """True when the ``Host`` header is an IP literal, ``localhost`` or one of ``names``
    (case-insensitive). DNS rebinding needs a name of the attacker's, never an IP literal."""
    name = _host_name(request.headers.get("Host", "")).strip().rstrip(".").lower()
    if not name:
        return False
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass
    return name == "localhost" or name in {n.lower().rstrip(".") for n in names}


def refuse_host(request: web.Request) -> web.Response:
    host = printable(request.headers.get("Host", ""))[:100]
    return web.json_response(
        {"error": f"Host {host!r} is not a name of this server; add it to admin_hosts in config.yaml"},
        status=421,
    )


def protect(
    handler: Handler, token: Callable[[], str | None], names: Callable[[], Collection[str]] = tuple
) -> Handler:
    """Wrap ``handler``: wrong Host 421; no token configured: loopback peers only (403 to the
    rest); token configured: 401 (with a basic-auth challenge) to non-admins."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        if not host_allowed(request, names()):
            return refuse_host(request)
        secret = token()
        if not secret:
            if request.remote is not None and not is_loopback(request.remote):
                return web.json_response(
                    {"error": "the admin side is served to loopback clients only while admin_token is unset"},
                    status=403,
                )
            return await handler(request)
        if not is_admin(request, secret):
            return web.json_response(
                {"error": "admin credentials required: HTTP basic auth with the admin_token as password"},
                status=401,
                headers={"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'},
            )
        return await handler(request)

    return guarded
