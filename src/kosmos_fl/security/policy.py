"""What the server and the clients must do about TLS and client identity, decided once at start-up.

Rules (see docs/SECURITY.md):

* ``profile: production`` refuses to start without TLS, with ``insecure``, or with client
  authentication off.
* Plain traffic on a non-loopback address needs an explicit ``insecure: true`` / ``--insecure``
  and logs a warning; plain traffic on loopback only (the demo, the tests) is allowed.
* ``client_auth: auto`` (default) requires credentials whenever TLS is on; ``required`` always;
  ``off`` never (not allowed in production).
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kosmos_fl.config import ClientConfig, ServerConfig, address_scheme, split_address
from kosmos_fl.errors import ConfigError
from kosmos_fl.security.clients import ClientRegistry, Credentials, load_bundle

log = logging.getLogger("kosmos_fl.security")

INSECURE_WARNING = (
    "WARNING: plain traffic (TLS off) on a network address: model weights, tokens and control "
    "messages can be read and changed by anyone on the path. Use `kosmos-fl certs init` and the "
    "tls.* keys for real deployments."
)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _file(value: str | None, key: str, base_dir: Path) -> Path:
    if not value:
        raise ConfigError(f"config key '{key}' is not set; set it (or run `kosmos-fl certs init`)")
    p = Path(value).expanduser()
    p = (p if p.is_absolute() else base_dir / p).resolve()
    if not p.is_file():
        raise ConfigError(
            f"config key '{key}': file {p} does not exist; run `kosmos-fl certs init` or fix the path"
        )
    return p


def warn_insecure() -> None:
    log.warning(INSECURE_WARNING)
    print(INSECURE_WARNING, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class ServerSecurity:
    """The server's resolved TLS files and client-auth decision."""

    certfile: Path | None
    keyfile: Path | None
    ca_certfile: Path | None
    client_auth: bool
    registry: ClientRegistry

    @property
    def tls(self) -> bool:
        return self.certfile is not None

    def server_ssl(self) -> ssl.SSLContext | None:
        """TLS context for the server's listeners (Socket.IO, Fleet proxy)."""
        if not self.tls:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(self.certfile), str(self.keyfile))
        return ctx

    def upstream_ssl(self) -> ssl.SSLContext | None:
        """TLS context to reach the loopback SuperLink, verified against the CA."""
        if not self.tls:
            return None
        return ssl.create_default_context(cafile=str(self.ca_certfile))


def server_security(cfg: ServerConfig, base_dir: Path) -> ServerSecurity:
    """Resolve and check the server's security settings; warns for explicit insecure mode."""
    t = cfg.tls
    tls = any((t.certfile, t.keyfile, t.ca_certfile))
    if tls:
        cert = _file(t.certfile, "tls.certfile", base_dir)
        key = _file(t.keyfile, "tls.keyfile", base_dir)
        ca = _file(t.ca_certfile, "tls.ca_certfile", base_dir)
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(str(cert), str(key))
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"config keys 'tls.certfile'/'tls.keyfile': {cert} and {key} do not form a usable "
                f"certificate and key ({exc}); re-create them with `kosmos-fl certs init`"
            ) from None
    else:
        cert = key = ca = None
        exposed = [
            f"{k} {v}"
            for k, v in (
                ("socketio_address", cfg.socketio_address),
                ("flwr_server_address", cfg.flwr_server_address),
            )
            if not is_loopback(split_address(v, k)[0])
        ]
        if exposed and not cfg.insecure:
            raise ConfigError(
                f"TLS is off but {' and '.join(exposed)} listen on the network; set tls.certfile, "
                "tls.keyfile and tls.ca_certfile (`kosmos-fl certs init` makes development ones) or "
                "pass --insecure to accept plain traffic"
            )
        if cfg.insecure:
            warn_insecure()
    client_auth = cfg.client_auth == "required" or (cfg.client_auth == "auto" and tls)
    registry_path = Path(cfg.clients_file or Path(cfg.work_dir) / "security" / "clients.json").expanduser()
    if not registry_path.is_absolute():
        registry_path = base_dir / registry_path
    return ServerSecurity(cert, key, ca, client_auth, ClientRegistry(registry_path.resolve()))


def public_ca_bundle() -> Path:
    """The public CA certificates (certifi's bundle): what an ``https://`` address without a
    configured CA is verified against, for Socket.IO and the Flower SuperNode alike."""
    import certifi

    return Path(certifi.where())


@dataclass(frozen=True)
class ClientSecurity:
    """The client's CA to trust (TLS on when set) and its credentials (may be None)."""

    ca_certfile: Path | None
    credentials: Credentials | None

    @property
    def tls(self) -> bool:
        return self.ca_certfile is not None

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.ca_certfile is None:
            return None
        ctx = ssl.create_default_context(cafile=str(self.ca_certfile))
        creds = self.credentials
        if creds is not None and creds.client_cert is not None and creds.client_key is not None:
            ctx.load_cert_chain(str(creds.client_cert), str(creds.client_key))
        return ctx

    def auth(self) -> dict[str, Any] | None:
        """The Socket.IO handshake ``auth`` payload."""
        if self.credentials is None:
            return None
        return {"client": self.credentials.name, "token": self.credentials.token}


def client_security(cfg: ClientConfig, base_dir: Path) -> ClientSecurity:
    """Resolve the client's credentials bundle and CA; enforce the profile and --insecure rules."""
    creds = None
    if cfg.credentials:
        p = Path(cfg.credentials).expanduser()
        creds = load_bundle((p if p.is_absolute() else base_dir / p).resolve())
    ca = None
    if cfg.tls_ca_certfile:
        ca = _file(cfg.tls_ca_certfile, "tls_ca_certfile", base_dir)
    elif creds is not None and creds.ca_file is not None:
        ca = creds.ca_file
    host = split_address(cfg.socketio_address, "socketio_address")[0]
    if ca is None and address_scheme(cfg.socketio_address) == "https":
        ca = public_ca_bundle()  # the 2021 form https://host: a server with a public certificate
    if ca is None:
        if cfg.profile == "production":
            raise ConfigError(
                "profile 'production' requires TLS: set credentials (a bundle from `kosmos-fl clients "
                "add`) or tls_ca_certfile"
            )
        if not is_loopback(host) and not cfg.insecure:
            raise ConfigError(
                f"TLS is off but the server {cfg.socketio_address} is not on loopback; set credentials "
                "(a bundle with ca.pem from `kosmos-fl clients add`) or tls_ca_certfile, or pass "
                "--insecure to accept plain traffic"
            )
        if cfg.insecure:
            warn_insecure()
    if cfg.profile == "production" and creds is None:
        raise ConfigError(
            "profile 'production' requires client credentials: set credentials to the bundle "
            "`kosmos-fl clients add NAME` wrote for this site"
        )
    return ClientSecurity(ca, creds)
