"""How much one control-plane client may send, and how long the server waits for whom."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from kosmos_fl.config.base import ConfigModel


class LimitsConfig(ConfigModel):
    """What one control-plane client may send and how long it may stay silent (see
    docs/OPERATIONS.md, "Bad input and overload")."""

    #: Largest Socket.IO message handled; a larger one gets an ``error`` event and is dropped.
    max_message_bytes: int = Field(64 * 1024, ge=1024, le=64 * 1024 * 1024)
    #: Largest transport frame read at all; a larger one closes the connection (WebSocket 1009).
    max_frame_bytes: int = Field(1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    #: Sustained messages per second per connection, after a burst; floods are dropped, then cut.
    messages_per_second: float = Field(5.0, gt=0, le=100_000)
    burst: int = Field(20, ge=1, le=100_000)
    #: Engine.IO heartbeat: a client silent for ping_interval + ping_timeout seconds is dropped.
    ping_interval: float = Field(25.0, gt=0, le=3600)
    ping_timeout: float = Field(20.0, gt=0, le=3600)
    #: Open Socket.IO connections from one IP address; more are refused (HTTP 401) and closed.
    #: Behind a reverse proxy or NAT that many sites share, raise it.
    max_connections_per_ip: int = Field(32, ge=1, le=1_000_000)
    #: Seconds a new connection may take to complete the Socket.IO handshake (credentials); after
    #: that, and at once after a refused handshake, the connection is closed.
    handshake_timeout: float = Field(10.0, gt=0, le=600)
    #: Fleet API (Flower port): largest push body (model updates travel in push-object); unset:
    #: sized from the use case's model (4x its weights + 1 MiB). Other Fleet calls: fleet_max_request_bytes.
    fleet_max_push_bytes: int | None = Field(None, ge=64 * 1024, le=1 << 30)
    fleet_max_request_bytes: int = Field(16 * 1024, ge=1024, le=16 * 1024 * 1024)
    #: Fleet API requests served at once, in all and from one IP address (held pulls count); more: 503.
    fleet_max_inflight: int = Field(512, ge=1, le=100_000)
    fleet_max_inflight_per_ip: int = Field(32, ge=1, le=100_000)

    @model_validator(mode="after")
    def _frame_holds_message(self) -> Self:
        if self.max_frame_bytes < self.max_message_bytes:
            raise ValueError("limits.max_frame_bytes must be >= limits.max_message_bytes")
        return self


class LimitsSection(ConfigModel):
    """Timeouts of a session's steps and the control-plane limits (the ``limits`` mapping)."""

    #: Seconds to wait for a round's replies, and for the session's clients to join Flower.
    round_timeout: float = Field(600.0, gt=0)
    join_timeout: float = Field(120.0, gt=0)
    #: Seconds the server holds a SuperNode's empty pull while a session runs, answering as soon as
    #: the next message exists (long poll; security/fleet_proxy.py). 0: Flower's own 3 s idle polling.
    #: Kept below the SuperNode's 30 s request timeout.
    fleet_long_poll: float = Field(20.0, ge=0, le=25)
    #: Fork each session's ServerApp from a warm template (fl/flower_runtime/warm_exec.py); false:
    #: Flower's own SuperExec cold-starts a ``flwr-serverapp`` process per session.
    warm_serverapp: bool = True
    #: Seconds a connected client may take to send ``client_criteria`` before it is told it is missing.
    criteria_timeout: float = Field(30.0, gt=0)
    #: Control-plane limits: message sizes, rate limit, heartbeat.
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
