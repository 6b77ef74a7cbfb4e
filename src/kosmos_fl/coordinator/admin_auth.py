"""Who may see the admin side (dashboard, ``/metrics``): one shared admin token from the config.

Kept deliberately small and separate so it can be swapped for the project's client credentials
later: :func:`protect` wraps a handler, :func:`is_admin` is the only check. A browser logs in with
HTTP basic auth (any user name, the token as password); Prometheus and scripts send
``Authorization: Bearer <token>`` (or basic auth). Without a token the admin side is open and the
server warns at start-up.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web

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


def protect(handler: Handler, token: Callable[[], str | None]) -> Handler:
    """Wrap ``handler`` so it answers 401 (with a basic-auth challenge) to non-admins."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        if not is_admin(request, token()):
            return web.json_response(
                {"error": "admin credentials required: HTTP basic auth with the admin_token as password"},
                status=401,
                headers={"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'},
            )
        return await handler(request)

    return guarded
