"""Server and client configuration as validated value objects.

``config.yaml`` keeps the 2021 KOSMoS keys; every key can be overridden from the environment as the
2021 compose file did (``DYNACONF_num_clients=1``, nested keys with ``__``:
``DYNACONF_usecase__params__model=ffnn``). Loading goes through dynaconf (the 2021 loader, so env
values are parsed the same way), validation through pydantic; every problem becomes one
:class:`~kosmos_fl.errors.ConfigError` line that names the key and what is allowed.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from kosmos_fl.data.femto import DEFAULT_BEARINGS_PER_CLIENT, DEFAULT_TEST_BEARINGS
from kosmos_fl.edge.config import EdgeConfig
from kosmos_fl.errors import ConfigError
from kosmos_fl.fl.privacy_config import (
    DifferentialPrivacyConfig,
    SecureAggregationConfig,
    secure_aggregation_from,
)

ENV_PREFIX = "DYNACONF"

STRATEGIES = (
    "FedAvg",
    "FedProx",
    "FedAdam",
    "FedYogi",
    "FedAdagrad",
    "FedAvgM",
    "FedMedian",
    "FedTrimmedAvg",
    "Krum",
    "MultiKrum",
    "Bulyan",
)


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


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class StrategyConfig(_Model):
    """Which Flower strategy aggregates the client updates, and its keyword arguments."""

    name: Literal[STRATEGIES] = "FedAvg"  # type: ignore[valid-type]
    params: dict[str, Any] = Field(default_factory=dict)


class UseCaseConfig(_Model):
    """The use case (a plug-in) and its parameters.

    ``params`` stay on the server (for example where its test data lives); ``broadcast_params``
    are sent to every client in ``start_train`` as ``usecase_params``.
    """

    name: str = "BearingUseCase"
    params: dict[str, Any] = Field(default_factory=dict)
    broadcast_params: dict[str, Any] = Field(default_factory=dict)


class TrainingConfig(_Model):
    """Local training on each client, sent to clients with every round."""

    local_epochs: int = Field(1, ge=1, le=1000)
    learning_rate: float = Field(1e-3, gt=0, le=10)
    batch_size: int = Field(32, ge=1, le=65536)
    seed: int = 42


class TLSConfig(_Model):
    """Server certificate, its key and the CA clients verify it with (all three, or none)."""

    certfile: str | None = None
    keyfile: str | None = None
    ca_certfile: str | None = None

    @model_validator(mode="after")
    def _all_or_none(self) -> TLSConfig:
        given = {k: getattr(self, k) for k in ("certfile", "keyfile", "ca_certfile")}
        missing = [k for k, v in given.items() if not v]
        if len(missing) not in (0, 3):
            raise ValueError(
                f"set certfile, keyfile and ca_certfile together (missing: {', '.join(missing)}); "
                "`kosmos-fl certs init` writes all three"
            )
        return self


class LimitsConfig(_Model):
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
    def _frame_holds_message(self) -> LimitsConfig:
        if self.max_frame_bytes < self.max_message_bytes:
            raise ValueError("limits.max_frame_bytes must be >= limits.max_message_bytes")
        return self


class ServerConfig(_Model):
    """Everything the KOSMoS server needs. The first block are the 2021 keys."""

    num_clients: int = Field(3, ge=1, le=10_000)
    flwr_server_address: str = "0.0.0.0:9092"
    socketio_address: str = "0.0.0.0:6000"
    mlflow_server_address: str = "./mlruns"
    mlflow_experiment_name: str = Field("Default", min_length=1)
    tags: dict[str, str] = Field(default_factory=dict)
    n_federated_train_epoch: int = Field(5, ge=1, le=100_000)
    #: Held-out units the server evaluates every round (bearings; engine units for turbofan).
    test_bearings: tuple[str, ...] = Field(
        DEFAULT_TEST_BEARINGS, validation_alias=AliasChoices("test_bearings", "test_units")
    )
    usecase: UseCaseConfig = Field(default_factory=UseCaseConfig)

    strategy: StrategyConfig = Field(default_factory=StrategyConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    #: Where the server finds its held-out test data (bearing folders, or a file for turbofan).
    data_path: str = "./data"
    #: Advertised address clients dial for the SuperLink when ``flwr_server_address`` binds 0.0.0.0.
    flwr_public_address: str | None = None
    work_dir: str = "./kosmos-work"
    registered_model_name: str | None = None
    #: Seconds to wait for a round's replies, and for the session's clients to join Flower.
    round_timeout: float = Field(600.0, gt=0)
    join_timeout: float = Field(120.0, gt=0)
    #: Seconds the server holds a SuperNode's empty pull while a session runs, answering as soon as
    #: the next message exists (long poll; security/fleet_proxy.py). 0: Flower's own 3 s idle polling.
    #: Kept below the SuperNode's 30 s request timeout.
    fleet_long_poll: float = Field(20.0, ge=0, le=25)
    #: Seconds a connected client may take to send ``client_criteria`` before it is told it is missing.
    criteria_timeout: float = Field(30.0, gt=0)
    #: Updates a round needs to count (quorum); unset: all but one with 3+ clients, else all.
    min_fit_clients: int | None = Field(None, ge=1, le=10_000)
    #: Reject an update whose norm is above this multiple of the other clients' median (null: off).
    max_update_norm_ratio: float | None = Field(10.0, gt=1)
    #: Reject an update whose norm ``||w_client - w_global||`` is above this (null: no absolute cap).
    max_update_norm: float | None = Field(None, gt=0)
    #: Resume an interrupted session from its last checkpointed round at start-up (``--resume``).
    resume: bool = False
    #: Debug logging, also of the Socket.IO traffic (the 2021 ``DEBUG`` key; ``--verbose`` too).
    debug: bool = False
    #: After each round, also let the clients evaluate the global model on their own training data
    #: (as the 2021 clients did); logged per client as ``RMSE_client<id>`` and weighted as ``RMSE_clients``.
    federated_evaluation: bool = False
    #: Share of the round's clients asked to evaluate when ``federated_evaluation`` is on.
    fraction_evaluate: float = Field(1.0, gt=0, le=1)

    @property
    def quorum(self) -> int:
        """The effective ``min_fit_clients``."""
        if self.min_fit_clients is not None:
            return self.min_fit_clients
        return self.num_clients - 1 if self.num_clients >= 3 else self.num_clients

    @model_validator(mode="after")
    def _quorum_fits(self) -> ServerConfig:
        if self.min_fit_clients is not None and self.min_fit_clients > self.num_clients:
            raise ValueError(
                f"min_fit_clients ({self.min_fit_clients}) cannot exceed num_clients ({self.num_clients})"
            )
        return self

    #: Security (docs/SECURITY.md): ``production`` refuses to start without TLS and client auth.
    profile: Literal["development", "production"] = "development"
    #: Accept plain traffic on network addresses (prints a warning); never in production.
    insecure: bool = False
    tls: TLSConfig = Field(default_factory=TLSConfig)
    #: Client credentials: ``auto`` requires them whenever TLS is on.
    client_auth: Literal["auto", "required", "off"] = "auto"
    #: Registry of onboarded clients (default ``<work_dir>/security/clients.json``).
    clients_file: str | None = None

    @model_validator(mode="after")
    def _production(self) -> ServerConfig:
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

    #: SecAgg+ (``true`` or a mapping of options): the server sees only the sum of the updates.
    secure_aggregation: SecureAggregationConfig | None = None
    #: Clipping + Gaussian noise + privacy accountant (see docs/SECURITY.md); unset: off.
    differential_privacy: DifferentialPrivacyConfig | None = None

    @field_validator("secure_aggregation", mode="before")
    @classmethod
    def _secure_aggregation_flag(cls, value: Any) -> Any:
        return secure_aggregation_from(value)

    @field_validator("secure_aggregation")
    @classmethod
    def _secure_aggregation_fits(cls, value: SecureAggregationConfig | None, info: Any) -> Any:
        strategy = info.data.get("strategy")
        if value is not None and strategy is not None and strategy.name != "FedAvg":
            raise ValueError(
                f"works with strategy FedAvg only (the server sees just the sum of the updates), "
                f"not {strategy.name}"
            )
        if value is not None and "num_clients" in info.data:
            value.check(info.data["num_clients"])
        return value

    @field_validator("differential_privacy")
    @classmethod
    def _differential_privacy_fits(cls, value: DifferentialPrivacyConfig | None, info: Any) -> Any:
        strategy = info.data.get("strategy")
        if value is not None and strategy is not None and strategy.name != "FedAvg":
            raise ValueError(
                f"works with strategy FedAvg only (the noise is calibrated to an equal-weight "
                f"average), not {strategy.name}"
            )
        if value is not None and info.data.get("secure_aggregation") is not None:
            raise ValueError(
                "cannot be combined with secure_aggregation yet (server-side clipping needs the "
                "individual updates); choose one"
            )
        return value

    #: Control-plane limits: message sizes, rate limit, heartbeat.
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    #: ``json``: one JSON object per log line with session and client ids (``--log-json``).
    log_format: Literal["text", "json"] = "text"
    #: Secret guarding the admin side (dashboard, ``/metrics``): HTTP basic auth with this as the
    #: password (any user name) or ``Authorization: Bearer <token>``. Unset: open, with a warning.
    admin_token: SecretStr | None = None
    #: Host names the admin side (dashboard, ``/metrics``, ``/status``) answers to besides IP
    #: addresses, ``localhost`` and the host of ``socketio_address``/``flwr_public_address``; any
    #: other ``Host`` header is refused (DNS rebinding).
    admin_hosts: list[str] = Field(default_factory=list)
    #: Base URL of the MLflow web UI for the dashboard's links (default: ``mlflow_server_address``
    #: when it is an http(s) URL).
    mlflow_ui_url: str | None = None

    @field_validator("tags", mode="before")
    @classmethod
    def _tags_as_strings(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): str(v) for k, v in value.items()}
        return value

    @field_validator("flwr_server_address", "socketio_address", "flwr_public_address")
    @classmethod
    def _address(cls, value: str | None, info: Any) -> str | None:
        if value is not None:
            split_address(value, info.field_name)
        return value

    @field_validator("test_bearings", mode="before")
    @classmethod
    def _bearings_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return value


#: Keys of a ``per_client`` block that say where the data is, not how to train.
SITE_KEYS = frozenset({"test_bearings", "units", "bearings", "file_path", "data_path"})


class SiteData(BaseModel):
    """Where one site's training data is for one client id (see :meth:`ClientConfig.site`)."""

    data_path: str
    selection: list[str] | None
    params: dict[str, Any]


class ClientConfig(_Model):
    """Everything a KOSMoS client needs (the 2021 client config shape)."""

    socketio_address: str = "127.0.0.1:6000"
    data_path: str = "./data"
    #: The use case this client serves (checked against the server's at ``start_train``).
    usecase: UseCaseConfig = Field(default_factory=UseCaseConfig)
    #: This site's own units (bearings, engines); when unset, the 2021 per-client-id assignment applies.
    bearings: list[str] | None = Field(None, validation_alias=AliasChoices("bearings", "units"))
    #: Bearings to train on per client id assigned by the server; unset: the 2021 assignment
    #: (:data:`DEFAULT_BEARINGS_PER_CLIENT`) for the bearing use case, nothing for other use cases.
    bearings_per_client: dict[int, list[str]] | None = Field(
        None, validation_alias=AliasChoices("bearings_per_client", "client_bearings")
    )
    #: Per use case and client id, this site's settings (the 2021 client config's
    #: ``usecase.<Name>.<id>`` blocks): ``test_bearings`` / ``units`` select the units,
    #: ``file_path`` the data, every other key is a use-case parameter (the server's broadcast
    #: parameters win, as in 2021). Read by :meth:`site`.
    per_client: dict[str, dict[int, dict[str, Any]]] = Field(default_factory=dict)
    #: Client-side overrides of the server's training settings (2021: ``num_client_train_epochs``,
    #: ``learning_rate``); unset: the server's ``training`` values.
    local_epochs: int | None = Field(None, ge=1, le=1000)
    learning_rate: float | None = Field(None, gt=0, le=10)
    #: SuperLink address this client dials instead of the one the server sends in ``start_train``
    #: (the 2021 compose file's ``DYNACONF_flwr_server_address``); unset: the server's.
    flwr_server_address: str | None = None
    #: Debug logging, also of the Socket.IO traffic (the 2021 ``DEBUG`` key; ``--verbose`` too).
    debug: bool = False
    #: Criteria: minimum number of labelled samples this client must hold to be eligible.
    min_samples: int = Field(10, ge=1)
    work_dir: str = "./kosmos-work"
    client_name: str | None = None
    #: Run ClientApps in pre-started worker processes (see kosmos_fl.fl.warm_exec); false uses
    #: Flower's own per-message process start (slower, kept as the benchmark baseline).
    warm_clientapp: bool = True
    #: Threads torch may use for local training (unset: torch's default, all cores). Set 1 when
    #: several clients share one machine, as in the demo.
    torch_threads: int | None = Field(None, ge=1, le=1024)
    #: Refuse to train in a session without secure aggregation (never send an unmasked update).
    require_secure_aggregation: bool = False
    #: Reconnect back-off bounds (seconds) for the control plane.
    retry_initial: float = Field(1.0, gt=0)
    retry_max: float = Field(30.0, gt=0)
    retry_attempts: int = Field(0, ge=0, description="0 retries forever")
    #: Security (docs/SECURITY.md): ``production`` refuses to start without TLS and credentials.
    profile: Literal["development", "production"] = "development"
    #: Accept plain traffic to a non-loopback server (prints a warning); never in production.
    insecure: bool = False
    #: Folder written by ``kosmos-fl clients add NAME`` (token, SuperNode key, CA certificate).
    credentials: str | None = None
    #: CA certificate to verify the server with (default: the bundle's ``ca.pem``).
    tls_ca_certfile: str | None = None
    #: Collect the training data from this site's machines over MQTT instead of reading data_path
    #: (see docs/EDGE.md); eligibility then comes from what was collected.
    edge: EdgeConfig | None = None
    #: ``json``: one JSON object per log line with session and client ids (``--log-json``).
    log_format: Literal["text", "json"] = "text"

    @model_validator(mode="after")
    def _retry_bounds(self) -> ClientConfig:
        if self.retry_max < self.retry_initial:
            raise ValueError("retry_max must be >= retry_initial")
        return self

    def selection(self, client_id: int | None, usecase_name: str | None = None) -> list[str] | None:
        """Units to train on: the site's own list, else its ``per_client`` block's units, else the
        bearing assignment for ``client_id`` (bearing use case only), else None (everything in
        ``data_path``)."""
        return self.site(client_id, usecase_name).selection

    def site(self, client_id: int | None, usecase_name: str | None = None) -> SiteData:
        """Data path, units and extra use-case parameters this site trains with as ``client_id``
        in a session of ``usecase_name`` (default: ``usecase.name``). ``per_client`` blocks that
        all agree (the 2021 default, or a single block) apply to every id; otherwise the block of
        ``client_id``, and an id without a block (or None) gets the plain settings."""
        name = usecase_name or self.usecase.name
        blocks = self.per_client.get(name, {})
        if len({repr(sorted(b.items())) for b in blocks.values()}) == 1:
            block = next(iter(blocks.values()))
        else:
            block = blocks.get(client_id, {}) if client_id is not None else {}
        params = {k: v for k, v in block.items() if k not in SITE_KEYS}
        selection: list[str] | None = None
        if self.bearings:
            selection = list(self.bearings)
        elif any(k in block for k in ("test_bearings", "units", "bearings")):
            units = next(block[k] for k in ("units", "bearings", "test_bearings") if k in block)
            selection = [units] if isinstance(units, str) else [str(u) for u in units]
        elif client_id is not None and name == "BearingUseCase":
            # the 2021 default assignment, unless per_client blocks (the 2021 file's own) replace it
            assignment = (
                self.bearings_per_client
                if self.bearings_per_client is not None
                else ({} if blocks else DEFAULT_BEARINGS_PER_CLIENT)
            )
            if client_id in assignment:
                selection = list(assignment[client_id])
        data_path = str(block.get("file_path") or block.get("data_path") or self.data_path)
        return SiteData(data_path=data_path, selection=selection, params=params)

    def sites(self, usecase_name: str | None = None) -> list[tuple[str, SiteData]]:
        """Every distinct data set this site may be asked to train on, whatever client id the
        server assigns (the eligibility check tests each): one, unless ``per_client`` blocks
        differ; then each block and the plain settings (ids without a block)."""
        name = usecase_name or self.usecase.name
        blocks = self.per_client.get(name, {})
        if len({repr(sorted(b.items())) for b in blocks.values()}) <= 1:
            return [("", self.site(None, name))]
        out = [(f"as client {cid}", self.site(cid, name)) for cid in sorted(blocks)]
        out.append(("as a client id without a per_client block", self.site(max(blocks) + 1, name)))
        return out

    @field_validator("socketio_address")
    @classmethod
    def _address(cls, value: str) -> str:
        split_address(value, "socketio_address")
        return value

    @field_validator("flwr_server_address")
    @classmethod
    def _flwr_address(cls, value: str | None) -> str | None:
        if value is not None:
            split_address(value, "flwr_server_address")
        return value


def _dynaconf_internal_keys() -> set[str]:
    from dynaconf import default_settings

    return {k for k in dir(default_settings) if k.isupper()}


def _lower_top(data: dict[str, Any]) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in data.items()}


def read_settings(path: Path | None) -> dict[str, Any]:
    """Read ``path`` (may be None: defaults only) and apply ``DYNACONF_*`` overrides."""
    from dynaconf import Dynaconf

    files: list[str] = []
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist; pass an existing YAML file")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"config file {path} is not valid YAML{where}: fix the syntax") from None
        if raw is not None and not isinstance(raw, dict):
            raise ConfigError(f"config file {path} must hold a mapping of keys, not {type(raw).__name__}")
        files.append(str(path))
    try:
        settings = Dynaconf(
            settings_files=files,
            envvar_prefix=ENV_PREFIX,
            environments=False,
            merge_enabled=False,
        )
        data = settings.as_dict()
    except Exception as exc:  # dynaconf raises assorted parse errors for bad env values
        raise ConfigError(
            f"could not read the configuration ({exc}); check {ENV_PREFIX}_* "
            "environment variables for malformed values"
        ) from None
    internal = _dynaconf_internal_keys()
    return _lower_top({k: v for k, v in data.items() if k not in internal})


def _known_keys(model: type[BaseModel], path: tuple[Any, ...]) -> list[str]:
    """Keys allowed at ``path`` inside ``model`` (nested models, also optional ones)."""
    import typing

    for part in path:
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        candidates = (field.annotation, *typing.get_args(field.annotation))
        nested = [t for t in candidates if isinstance(t, type) and issubclass(t, BaseModel)]
        if not nested:
            return []
        model = nested[0]
    return list(model.model_fields)


def _format_error(exc: ValidationError, model: type[BaseModel]) -> str:
    """One line naming the key and the fix (control characters in user keys or values escaped)."""
    return _describe(exc, model).replace("\r", "\\r").replace("\n", "\\n")


def _describe(exc: ValidationError, model: type[BaseModel]) -> str:
    first = exc.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(root)"
    if first["type"] == "extra_forbidden":
        known = _known_keys(model, first["loc"][:-1])
        hint = difflib.get_close_matches(str(first["loc"][-1]), known, n=1)
        extra = f"; did you mean '{hint[0]}'?" if hint else f"; known keys: {', '.join(known)}"
        return f"config key '{key}' is not known{extra}"
    if first["type"] == "value_error" and not first["loc"]:  # a rule across keys (model validator)
        return f"config: {str(first['msg']).removeprefix('Value error, ')}"
    env = f"{ENV_PREFIX}_{key.replace('.', '__')}"
    got = first.get("input")
    got_s = repr(got) if not isinstance(got, dict) else "a mapping"
    more = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
    return f"config key '{key}': {first['msg']} (got {got_s}); fix it in the config file or {env}{more}"


def _build(model: type[BaseModel], data: dict[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, model)) from None


def load_server_config(path: Path | None = None, **overrides: Any) -> ServerConfig:
    """Load and validate the server config; keyword overrides win over file and environment.
    2021 keys are translated first (:mod:`kosmos_fl.compat2021`; one warning per obsolete key)."""
    from kosmos_fl import compat2021

    data = compat2021.server_settings(read_settings(path), warn=True)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return _build(ServerConfig, data)


def load_client_config(path: Path | None = None, **overrides: Any) -> ClientConfig:
    """Load and validate the client config; keyword overrides win over file and environment.
    2021 keys are translated first (:mod:`kosmos_fl.compat2021`; one warning per obsolete key)."""
    from kosmos_fl import compat2021

    data = compat2021.client_settings(read_settings(path), warn=True)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return _build(ClientConfig, data)


def env_overrides() -> dict[str, str]:
    """The ``DYNACONF_*`` variables currently set (for logging what overrode the file)."""
    return {k: v for k, v in os.environ.items() if k.startswith(f"{ENV_PREFIX}_")}
