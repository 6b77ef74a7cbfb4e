"""The server's security settings: profile, TLS, client authentication, admin token, update caps
(docs/SECURITY.md)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator

from kosmos_fl.config.base import ConfigModel


class TLSConfig(ConfigModel):
    """Server certificate, its key and the CA clients verify it with (all three, or none)."""

    certfile: str | None = None
    keyfile: str | None = None
    ca_certfile: str | None = None

    @model_validator(mode="after")
    def _all_or_none(self) -> Self:
        given = {k: getattr(self, k) for k in ("certfile", "keyfile", "ca_certfile")}
        missing = [k for k, v in given.items() if not v]
        if len(missing) not in (0, 3):
            raise ValueError(
                f"set certfile, keyfile and ca_certfile together (missing: {', '.join(missing)}); "
                "`kosmos-fl certs init` writes all three"
            )
        return self


class SecuritySection(ConfigModel):
    """Who may connect and how: ``production`` refuses to start without TLS and client auth."""

    #: Reject an update whose norm is above this multiple of the other clients' median (null: off).
    max_update_norm_ratio: float | None = Field(10.0, gt=1)
    #: Reject an update whose norm ``||w_client - w_global||`` is above this (null: no absolute cap).
    max_update_norm: float | None = Field(None, gt=0)
    #: Security (docs/SECURITY.md): ``production`` refuses to start without TLS and client auth.
    profile: Literal["development", "production"] = "development"
    #: Accept plain traffic on network addresses (prints a warning); never in production.
    insecure: bool = False
    tls: TLSConfig = Field(default_factory=TLSConfig)
    #: Client credentials: ``auto`` requires them whenever TLS is on.
    client_auth: Literal["auto", "required", "off"] = "auto"
    #: Registry of onboarded clients (default ``<work_dir>/security/clients.json``).
    clients_file: str | None = None
    #: Secret guarding the admin side (dashboard, ``/metrics``): HTTP basic auth with this as the
    #: password (any user name) or ``Authorization: Bearer <token>``. Unset: loopback only.
    admin_token: SecretStr | None = None
    #: Host names the admin side (dashboard, ``/metrics``, ``/status``) answers to besides IP
    #: addresses, ``localhost`` and the host of ``socketio_address``/``flwr_public_address``; any
    #: other ``Host`` header is refused (DNS rebinding).
    admin_hosts: list[str] = Field(default_factory=list)
    #: Where the SuperLink (its Control API runs code, without login) listens: ``netns``, a private
    #: network namespace that only this server's user reaches, through a unix socket; ``loopback``,
    #: the host's 127.0.0.1, which every local user reaches; ``auto``, netns where the kernel allows
    #: unprivileged user namespaces, else loopback with a warning (docs/SECURITY.md, row 9).
    superlink_isolation: Literal["auto", "netns", "loopback"] = "auto"

    @model_validator(mode="after")
    def _production(self) -> Self:
        if self.profile == "production":
            if self.insecure:
                raise ValueError("profile 'production' does not allow insecure; remove insecure / --insecure")
            if not self.tls.certfile:
                raise ValueError(
                    "profile 'production' requires TLS: set tls.certfile, tls.keyfile and "
                    "tls.ca_certfile (`kosmos-fl certs init` makes development ones)"
                )
            if self.client_auth == "off":
                raise ValueError(
                    "profile 'production' requires client authentication; remove client_auth: off"
                )
            if self.admin_token is None or not self.admin_token.get_secret_value():
                raise ValueError(
                    "profile 'production' requires admin_token (guards the dashboard and /metrics): "
                    "set admin_token to a long random secret, e.g. from `openssl rand -hex 32`"
                )
        return self
