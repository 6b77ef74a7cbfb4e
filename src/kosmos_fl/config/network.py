"""Where the server listens and what clients dial: addresses in ``host:port`` or the 2021 URL form."""

from __future__ import annotations

import re

from pydantic import ValidationInfo, field_validator

from kosmos_fl.config.base import ConfigModel
from kosmos_fl.errors import ConfigError

#: Ports implied by a URL scheme without an explicit port (the 2021 client's ``https://host`` form).
DEFAULT_PORTS = {"http": 80, "https": 443}


def address_scheme(value: str) -> str | None:
    """``http`` / ``https`` when ``value`` is written as a URL (the 2021 form), else None."""
    scheme, sep, _ = value.partition("://")
    return scheme.lower() if sep else None


def split_address(value: str, key: str) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` too), or the 2021 URL forms ``http(s)://host[:port][/]``
    (port 80 / 443 when left out), and check the port; the error names ``key``."""
    scheme = address_scheme(value)
    rest = value.partition("://")[2].rstrip("/") if scheme else value
    if scheme is not None and scheme not in DEFAULT_PORTS:
        raise ConfigError(
            f"config key '{key}': scheme {scheme!r} is not supported; write 'host:port', "
            f"'http://host[:port]' or 'https://host[:port]', got {value!r}"
        )
    if scheme is not None:
        m = re.fullmatch(r"(\[[^\]/]+\]|[^:/\[\]]+)(?::(\d+))?", rest)
        host, port = (m[1], m[2] or str(DEFAULT_PORTS[scheme])) if m else ("", "")
    else:
        host, _, port = rest.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            f"config key '{key}': expected 'host:port' (or 'http(s)://host[:port]') with a port "
            f"from 1 to 65535, got {value!r}"
        )
    return host.strip("[]"), int(port)


def connect_url(value: str, tls: bool) -> str:
    """The URL a client dials for ``value`` (``host:port`` or ``http(s)://host[:port]``): the
    scheme written in the address, https whenever TLS is configured, else http. Never doubles the
    scheme (``http://http://...``)."""
    host, port = split_address(value, "socketio_address")
    scheme = "https" if tls else (address_scheme(value) or "http")
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}"


class NetworkSection(ConfigModel):
    """The server's listeners, the address it advertises, and where MLflow is."""

    flwr_server_address: str = "0.0.0.0:9092"
    socketio_address: str = "0.0.0.0:6000"
    mlflow_server_address: str = "./mlruns"
    #: Advertised address clients dial for the SuperLink when ``flwr_server_address`` binds 0.0.0.0.
    flwr_public_address: str | None = None
    #: Base URL of the MLflow web UI for the dashboard's links (default: ``mlflow_server_address``
    #: when it is an http(s) URL).
    mlflow_ui_url: str | None = None
    #: ``host:port`` of a second listener that serves ``/metrics`` alone, without the admin token
    #: and without TLS, for Prometheus: loopback, or an internal address never published
    #: (docs/OPERATIONS.md, docs/SECURITY.md). Unset: ``/metrics`` only on ``socketio_address``.
    metrics_address: str | None = None

    @field_validator("flwr_server_address", "socketio_address", "flwr_public_address", "metrics_address")
    @classmethod
    def _address(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.field_name is not None:
            split_address(value, info.field_name)
        return value

    def flwr_address_for(self, client_host: str) -> str:
        """The SuperLink address a client should dial: the public address if configured, else
        the host the client reached us on with the SuperLink's port."""
        if self.flwr_public_address:
            return self.flwr_public_address
        host, port = split_address(self.flwr_server_address, "flwr_server_address")
        if host in ("0.0.0.0", "::", ""):
            host = client_host or "127.0.0.1"
        return f"{host}:{port}"
