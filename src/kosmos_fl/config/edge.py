"""The ``edge`` section of a client config: broker, credentials, TLS, store and criteria.

Kept free of heavy imports: :mod:`kosmos_fl.config` imports it for validation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from kosmos_fl.config.base import ConfigModel

SCHEMES = {"mqtt": 1883, "mqtts": 8883, "tcp": 1883, "ssl": 8883}


class _Hidden:
    def __repr__(self) -> str:
        return "<hidden>"


def parse_broker(url: str) -> tuple[str, int, bool]:
    """``mqtt://host[:port]`` / ``mqtts://host[:port]`` -> (host, port, tls). Raises ValueError."""
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.scheme not in SCHEMES:
        raise ValueError(f"broker URL scheme must be one of {', '.join(SCHEMES)} (got {parts.scheme!r})")
    if parts.username or parts.password:
        raise ValueError("put broker credentials into edge.username / edge.password, not into the URL")
    try:
        port = parts.port or SCHEMES[parts.scheme]
    except ValueError:
        raise ValueError(f"broker URL {url!r} has an invalid port") from None
    if not parts.hostname:
        raise ValueError(f"broker URL {url!r} has no host; use mqtt://host:port")
    if parts.path not in ("", "/"):
        raise ValueError(f"broker URL {url!r} must not have a path; put topics into edge.topics")
    return parts.hostname, port, parts.scheme in ("mqtts", "ssl")


class TlsConfig(ConfigModel):
    """TLS towards the broker. Files are checked to exist when the config loads."""

    ca_file: str | None = Field(None, description="CA bundle that signed the broker's certificate")
    cert_file: str | None = Field(None, description="client certificate (mutual TLS)")
    key_file: str | None = Field(None, description="client private key (mutual TLS)")
    insecure: bool = Field(False, description="skip the host name check (testing only)")

    @field_validator("ca_file", "cert_file", "key_file")
    @classmethod
    def _exists(cls, value: str | None, info: Any) -> str | None:
        if value is not None and not Path(value).expanduser().is_file():
            raise ValueError(f"file {value} does not exist")
        return value

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("tls.cert_file and tls.key_file go together (mutual TLS needs both)")
        return self


class EdgeCriteria(ConfigModel):
    """When the collected data is enough to train on (the client's eligibility)."""

    min_histories: int = Field(1, ge=0, description="complete run-to-failure histories needed (K)")
    min_labelled_snapshots: int = Field(100, ge=0, description="labelled snapshots needed (N)")
    flatline_std: float = Field(
        1e-4, ge=0, description="a channel whose standard deviation (g) is at most this is flat-lined"
    )
    clip_share: float = Field(
        0.01,
        gt=0,
        le=1,
        description="a channel with at least this share of samples at its peak |value| is clipped",
    )
    full_scale: float | None = Field(
        None, gt=0, description="sensor range in g: samples at or beyond it count as clipped"
    )
    max_bad_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of a history's snapshots that may fail the quality checks",
    )


class EdgeConfig(ConfigModel):
    """Collect this site's training data from its machines over MQTT (``client.yaml`` ``edge:``)."""

    enabled: bool = True
    broker: str = "mqtt://127.0.0.1:1883"
    topics: list[str] = Field(min_length=1, description="MQTT topic filters of this site's machines")
    client_id: str | None = Field(
        None, min_length=1, max_length=128, description="stable MQTT client id (default kosmos-<name>)"
    )
    username: str | None = None
    password: SecretStr | None = None
    tls: TlsConfig | None = None
    store_dir: str = Field("./edge-data", description="SQLite store and processed bearings")
    session_expiry: int = Field(
        7 * 24 * 3600, ge=60, description="seconds the broker keeps undelivered messages while offline"
    )
    keepalive: int = Field(30, ge=5, le=3600)
    expect_samples: int = Field(2560, ge=2, description="samples per channel the use case needs")
    expect_sampling_rate: float = Field(25600.0, gt=0)
    batch_size: int = Field(256, ge=1, le=100_000, description="snapshots per store transaction")
    recheck_interval: float = Field(5.0, gt=0, description="seconds between eligibility re-checks")
    criteria: EdgeCriteria = Field(default_factory=EdgeCriteria)

    @field_validator("broker")
    @classmethod
    def _broker(cls, value: str) -> str:
        parse_broker(value)
        return value

    @field_validator("password", mode="before")
    @classmethod
    def _password_text(cls, value: Any) -> Any:
        # YAML reads 12345 as a number; accept it as text rather than echo it in an error
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        if value is not None and not isinstance(value, str | SecretStr):
            return _Hidden()  # fails as "not a string" without echoing the value
        return value

    @field_validator("topics")
    @classmethod
    def _topics(cls, value: list[str]) -> list[str]:
        for topic in value:
            levels = topic.split("/")
            if not topic or any(("#" in lv and lv != "#") or ("+" in lv and lv != "+") for lv in levels):
                raise ValueError(f"invalid MQTT topic filter {topic!r}")
            if "#" in levels[:-1]:
                raise ValueError(f"'#' must be the last level of topic filter {topic!r}")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> EdgeConfig:
        if self.password is not None and self.username is None:
            raise ValueError("edge.password is set but edge.username is not")
        return self

    @property
    def endpoint(self) -> tuple[str, int, bool]:
        """(host, port, tls) of the broker; TLS also when a ``tls`` section is given."""
        host, port, tls = parse_broker(self.broker)
        return host, port, tls or self.tls is not None

    def redacted(self) -> str:
        """The broker for logs: host, port, TLS and whether a user is set, never the password."""
        host, port, tls = self.endpoint
        user = " with credentials" if self.username else ""
        return f"{'mqtts' if tls else 'mqtt'}://{host}:{port}{user}"
