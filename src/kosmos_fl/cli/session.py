"""``kosmos-fl session start``: ask a running server (its admin side) to start a session now.

The server's address, TLS CA and admin token come from its config (the operator runs this on the
server host with the same ``config.yaml``); ``--url`` and ``--token`` override them. The server
answers whether a session started and, when not, why (too few eligible clients, a session running,
``max_sessions``): that answer is printed as one line.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import typer

from kosmos_fl.errors import ConfigError, FederationError

app = typer.Typer(no_args_is_help=True)

#: Wildcard listeners a local caller reaches on loopback (``localhost`` for IPv6: both loopback
#: addresses are tried, and it is a name the development certificate holds, ``::1`` is not).
_ANY = {"0.0.0.0": "127.0.0.1", "::": "localhost", "": "127.0.0.1"}


def _target(config: Path | None, url: str | None, token: str | None) -> tuple[str, str | None, Any]:
    """(base URL, admin token, TLS context) from the options and the server config."""
    from kosmos_fl.config import load_server_config, split_address

    cfg = load_server_config(config)
    base = config.parent.resolve() if config else Path.cwd()
    secret = token or (cfg.admin_token.get_secret_value() if cfg.admin_token is not None else None)
    ca = cfg.tls.ca_certfile
    ctx = None
    if ca or cfg.tls.certfile:
        if not ca:
            raise ConfigError("config key 'tls.ca_certfile' is not set; set it, or pass --url with http://")
        path = Path(ca).expanduser()
        ctx = ssl.create_default_context(cafile=str(path if path.is_absolute() else base / path))
    if url is None:
        host, port = split_address(cfg.socketio_address, "socketio_address")
        host = _ANY.get(host, host)
        shown = f"[{host}]" if ":" in host else host
        url = f"{'https' if ctx is not None else 'http'}://{shown}:{port}"
    return url.rstrip("/"), secret, ctx


def _post(url: str, token: str | None, ctx: Any) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    req = urllib.request.Request(f"{url}/sessions/start", data=b"{}", headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30, context=ctx) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            body = json.loads(exc.read() or b"{}")
        except ValueError:
            body = {}
        return exc.code, body if isinstance(body, dict) else {}
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FederationError(
            f"cannot reach the KOSMoS server at {url} ({reason}); is it running? (--url, or -c its config)"
        ) from None


@app.command("start")
def start(
    config: Path | None = typer.Option(
        None, "--config", "-c", help="The server's config (address, TLS, admin_token); default ./config.yaml."
    ),
    url: str | None = typer.Option(None, "--url", help="The server's base URL (default: from the config)."),
    token: str | None = typer.Option(
        None,
        "--token",
        envvar="KOSMOS_FL_ADMIN_TOKEN",
        help="Admin token (default: admin_token of the config).",
    ),
) -> None:
    """Start a session now if enough eligible clients wait (min_interval and schedule do not apply)."""
    config = config or (Path("config.yaml") if Path("config.yaml").is_file() else None)
    base, secret, ctx = _target(config, url, token)
    status, body = _post(base, secret, ctx)
    message = str(body.get("message") or body.get("error") or body.get("detail") or f"HTTP {status}")
    if status == 200 and body.get("started"):
        typer.echo(message)
        return
    if status == 401:
        raise FederationError(
            f"{base} refused the admin token: pass --token or set admin_token in the config"
        )
    if status == 404:
        raise FederationError(f"{base} has no /sessions/start: is it a kosmos-fl server of this version?")
    raise FederationError(f"no session started: {message}")
