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

from kosmos_fl.errors import ConfigError

ENV_PREFIX = "DYNACONF"

#: The 11 test bearings of the IEEE PHM 2012 challenge, the 2021 server's default.
DEFAULT_TEST_BEARINGS: tuple[str, ...] = (
    "Bearing1_3",
    "Bearing1_4",
    "Bearing1_5",
    "Bearing1_6",
    "Bearing1_7",
    "Bearing2_3",
    "Bearing2_4",
    "Bearing2_5",
    "Bearing2_6",
    "Bearing2_7",
    "Bearing3_3",
)

#: The 2021 assignment of FEMTO learning bearings to client ids.
DEFAULT_BEARINGS_PER_CLIENT: dict[int, list[str]] = {
    0: ["Bearing1_1", "Bearing1_2"],
    1: ["Bearing2_1", "Bearing2_2"],
    2: ["Bearing3_1", "Bearing3_2"],
}

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


def split_address(value: str, key: str) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` too) and check the port; the error names ``key``."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            f"config key '{key}': expected 'host:port' with a port from 1 to 65535, got {value!r}"
        )
    return host.strip("[]"), int(port)


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
    #: Seconds a connected client may take to send ``client_criteria`` before it is told it is missing.
    criteria_timeout: float = Field(30.0, gt=0)
    #: ``json``: one JSON object per log line with session and client ids (``--log-json``).
    log_format: Literal["text", "json"] = "text"
    #: Secret guarding the admin side (dashboard, ``/metrics``): HTTP basic auth with this as the
    #: password (any user name) or ``Authorization: Bearer <token>``. Unset: open, with a warning.
    admin_token: SecretStr | None = None
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


class ClientConfig(_Model):
    """Everything a KOSMoS client needs (the 2021 client config shape)."""

    socketio_address: str = "127.0.0.1:6000"
    data_path: str = "./data"
    #: The use case this client serves (checked against the server's at ``start_train``).
    usecase: UseCaseConfig = Field(default_factory=UseCaseConfig)
    #: This site's own units (bearings, engines); when unset, the 2021 per-client-id assignment applies.
    bearings: list[str] | None = Field(None, validation_alias=AliasChoices("bearings", "units"))
    #: Bearings to train on per client id assigned by the server (the 2021 client config shape).
    bearings_per_client: dict[int, list[str]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_BEARINGS_PER_CLIENT.items()},
        validation_alias=AliasChoices("bearings_per_client", "client_bearings"),
    )
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
    #: Reconnect back-off bounds (seconds) for the control plane.
    retry_initial: float = Field(1.0, gt=0)
    retry_max: float = Field(30.0, gt=0)
    retry_attempts: int = Field(0, ge=0, description="0 retries forever")
    #: ``json``: one JSON object per log line with session and client ids (``--log-json``).
    log_format: Literal["text", "json"] = "text"

    @model_validator(mode="after")
    def _retry_bounds(self) -> ClientConfig:
        if self.retry_max < self.retry_initial:
            raise ValueError("retry_max must be >= retry_initial")
        return self

    def selection(self, client_id: int | None) -> list[str] | None:
        """Units to train on: the site's own list, else the 2021 assignment for ``client_id``,
        else None (everything in ``data_path``)."""
        if self.bearings:
            return list(self.bearings)
        if client_id is not None and client_id in self.bearings_per_client:
            return list(self.bearings_per_client[client_id])
        return None

    @field_validator("socketio_address")
    @classmethod
    def _address(cls, value: str) -> str:
        split_address(value, "socketio_address")
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


def _format_error(exc: ValidationError, model: type[BaseModel]) -> str:
    first = exc.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(root)"
    if first["type"] == "extra_forbidden":
        known = list(model.model_fields)
        hint = difflib.get_close_matches(str(first["loc"][0]), known, n=1)
        extra = f"; did you mean '{hint[0]}'?" if hint else f"; known keys: {', '.join(known)}"
        return f"config key '{key}' is not known{extra}"
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
    """Load and validate the server config; keyword overrides win over file and environment."""
    data = read_settings(path)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return _build(ServerConfig, data)


def load_client_config(path: Path | None = None, **overrides: Any) -> ClientConfig:
    """Load and validate the client config; keyword overrides win over file and environment."""
    data = read_settings(path)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return _build(ClientConfig, data)


def env_overrides() -> dict[str, str]:
    """The ``DYNACONF_*`` variables currently set (for logging what overrode the file)."""
    return {k: v for k, v in os.environ.items() if k.startswith(f"{ENV_PREFIX}_")}
