"""``ClientConfig``: what a KOSMoS client site needs, and which data it trains on as which client id."""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import AliasChoices, BaseModel, Field, field_validator, model_validator

from kosmos_fl.config.base import ConfigModel
from kosmos_fl.config.edge import EdgeConfig
from kosmos_fl.config.network import split_address
from kosmos_fl.config.session import UseCaseConfig, usecase_defaults

#: Connection attempts of a client before it gives up (about 2 minutes of back-off).
DEFAULT_RETRY_ATTEMPTS = 9

#: Keys of a ``per_client`` block that say where the data is, not how to train.
SITE_KEYS = frozenset({"test_bearings", "units", "bearings", "file_path", "data_path"})


class SiteData(BaseModel):
    """Where one site's training data is for one client id (see :meth:`ClientConfig.site`)."""

    data_path: str
    selection: list[str] | None
    params: dict[str, Any]


class ClientConfig(ConfigModel):
    """Everything a KOSMoS client needs (the 2021 client config shape)."""

    socketio_address: str = "127.0.0.1:6000"
    data_path: str = "./data"
    #: The use case this client serves (checked against the server's at ``start_train``).
    usecase: UseCaseConfig = Field(default_factory=UseCaseConfig)
    #: This site's own units (bearings, engines); when unset, the 2021 per-client-id assignment applies.
    bearings: list[str] | None = Field(None, validation_alias=AliasChoices("bearings", "units"))
    #: Bearings to train on per client id assigned by the server; unset: the 2021 assignment
    #: (``default_units_per_client`` of the use case) for the bearing use case, nothing for others.
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
    #: Run ClientApps in pre-started worker processes (see kosmos_fl.fl.flower_runtime.warm_exec); false uses
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
    #: Connection attempts before the client gives up (exit 2, naming the server and this key):
    #: the default 9 waits about 2 minutes (1, 2, 4, 8, 16, 30, 30, 30 s between attempts).
    #: ``forever`` keeps trying, as deployed long-running clients should; ``0`` is its old spelling.
    retry_attempts: int | Literal["forever"] = Field(DEFAULT_RETRY_ATTEMPTS)
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

    @field_validator("retry_attempts", mode="before")
    @classmethod
    def _attempts(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() == "forever":
            return "forever"
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError("expected a number of attempts (1 or more) or 'forever'")
        try:
            attempts = int(value)
        except ValueError:
            raise ValueError("expected a number of attempts (1 or more) or 'forever'") from None
        if attempts < 0:
            raise ValueError("expected a number of attempts (1 or more) or 'forever'")
        return "forever" if attempts == 0 else attempts  # 0: the old spelling of forever

    @property
    def retry_budget(self) -> int | None:
        """Connection attempts before giving up; None: forever."""
        return None if self.retry_attempts == "forever" else self.retry_attempts

    @model_validator(mode="after")
    def _retry_bounds(self) -> Self:
        if self.retry_max < self.retry_initial:
            raise ValueError("retry_max must be >= retry_initial")
        return self

    def selection(self, client_id: int | None, usecase_name: str | None = None) -> list[str] | None:
        """Units to train on: the site's own list, else its ``per_client`` block's units, else the
        use case's default assignment for ``client_id`` (the bearing use case's 2021 one), else
        None (everything in ``data_path``)."""
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
        elif client_id is not None:
            # the 2021 default assignment, unless per_client blocks (the 2021 file's own) replace it
            assignment = (
                self.bearings_per_client
                if self.bearings_per_client is not None
                else ({} if blocks else _default_assignment(name))
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


def _default_assignment(usecase_name: str) -> dict[int, list[str]]:
    """The use case's default units per client id (the bearing use case: the 2021 assignment)."""
    found = usecase_defaults(usecase_name)
    if found is None:
        return {}
    return {cid: list(units) for cid, units in found.default_units_per_client.items()}
