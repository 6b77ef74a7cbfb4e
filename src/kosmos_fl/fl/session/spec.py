"""The session spec (server side) and node spec (client side), made from the server config (the
quorum is :func:`kosmos_fl.config.session.decide_quorum`, re-exported here)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from kosmos_fl.config.privacy import DifferentialPrivacyConfig, SecureAggregationConfig
from kosmos_fl.config.session import decide_quorum
from kosmos_fl.fl.session.folder import private_dir, write_atomic


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def write(self, path: Path) -> Path:
        """Write atomically, so a reader never sees half a file, and privately: a spec can hold a
        PostgreSQL DSN with its password (``data_path``) and the MLflow URI, so the file is 0600
        from its first byte and its folder 0700."""
        private_dir(path.parent)
        return write_atomic(path, self.model_dump_json(indent=2), private=True)

    @classmethod
    def read(cls, path: Path | str) -> Any:
        return cls.model_validate_json(Path(path).read_text(encoding="utf-8"))


class SessionSpec(_Spec):
    """Server side of one session."""

    session_id: str
    out_dir: str
    usecase_name: str
    usecase_version: str
    usecase_params: dict[str, Any]
    num_clients: int
    min_fit_clients: int
    num_rounds: int
    strategy_name: str
    strategy_params: dict[str, Any] = Field(default_factory=dict)
    local_epochs: int
    learning_rate: float
    batch_size: int
    seed: int
    data_path: str
    test_names: list[str]
    mlflow_tracking_uri: str
    mlflow_run_id: str
    registered_model_name: str
    round_timeout: float
    join_timeout: float
    #: Update validation (see kosmos_fl.fl.rounds.validation); None switches a check off.
    max_update_norm_ratio: float | None = 10.0
    max_update_norm: float | None = None
    #: The coordinator process; the ServerApp exits quietly when it is gone (resume picks up).
    coordinator_pid: int | None = None
    #: SecAgg+ settings (None: plain FedAvg messages, the server sees each update).
    secure_aggregation: SecureAggregationConfig | None = None
    #: Central differential privacy settings (None: off).
    differential_privacy: DifferentialPrivacyConfig | None = None
    #: Federated evaluation on the clients' own data after each round (fl/rounds/federated_eval.py).
    federated_evaluation: bool = False
    fraction_evaluate: float = 1.0
    champion_metric: str = "RMSE"
    champion_margin: float = 0.0

    @classmethod
    def from_config(cls, cfg: SessionSettings, **session: Any) -> SessionSpec:
        """The session settings of a server config, plus the per-session fields in ``session``
        (ids, folder, data path, MLflow run), which may also override a setting (a simulation's
        client count, rounds and quorum). The quorum is :func:`decide_quorum` unless overridden."""
        num_clients = session.get("num_clients", cfg.num_clients)
        settings: dict[str, Any] = {
            "usecase_params": {**cfg.usecase.params, **cfg.usecase.broadcast_params},
            "num_clients": num_clients,
            "min_fit_clients": decide_quorum(num_clients, cfg.min_fit_clients, cfg.secure_aggregation),
            "num_rounds": cfg.n_federated_train_epoch,
            "strategy_name": cfg.strategy.name,
            "strategy_params": cfg.strategy.params,
            "local_epochs": cfg.training.local_epochs,
            "learning_rate": cfg.training.learning_rate,
            "batch_size": cfg.training.batch_size,
            "seed": cfg.training.seed,
            "test_names": list(cfg.test_bearings),
            "round_timeout": cfg.round_timeout,
            "join_timeout": cfg.join_timeout,
            "max_update_norm_ratio": cfg.max_update_norm_ratio,
            "max_update_norm": cfg.max_update_norm,
            "secure_aggregation": cfg.secure_aggregation,
            "differential_privacy": cfg.differential_privacy,
            "federated_evaluation": cfg.federated_evaluation,
            "fraction_evaluate": cfg.fraction_evaluate,
            "champion_metric": cfg.champion_metric,
            "champion_margin": cfg.champion_margin,
        }
        if cfg.registered_model_name:
            settings["registered_model_name"] = cfg.registered_model_name
        return cls(**{**settings, **session})


class NodeSpec(_Spec):
    """Client side of one session, given to the client's SuperNode."""

    session_id: str
    client_id: int
    usecase_name: str
    usecase_version: str
    usecase_params: dict[str, Any]
    data_path: str
    selection: list[str] | None
    torch_threads: int | None = None
    #: This site refuses to send an unmasked update (client config ``require_secure_aggregation``).
    require_secure_aggregation: bool = False
    #: This site's overrides of the server's local epochs and learning rate (client config
    #: ``local_epochs`` / ``learning_rate``, 2021: ``num_client_train_epochs``); None: the server's.
    local_epochs: int | None = None
    learning_rate: float | None = None
    #: ``[index, count]``: train on every count-th sample from index (virtual clients of
    #: ``kosmos-fl simulate`` share one data set); None: all of the selection.
    partition: tuple[int, int] | None = None


#: How long a ClientApp waits for its client to write the spec of the session its message belongs
#: to. A kept SuperNode can receive round 1 a moment before ``start_train`` reached its client.
NODE_SPEC_WAIT = 30.0


def node_spec_for_run(context: Any, timeout: float = NODE_SPEC_WAIT) -> NodeSpec:
    """The :class:`NodeSpec` of the session a Flower message belongs to.

    ``context.node_config["session-file"]`` names the file the client rewrites for each session;
    ``context.run_config["session-id"]`` (empty in simulations and older runs: no check) says
    which session the message is for. A missing or older spec is waited for, up to ``timeout``.
    """
    path = Path(str(context.node_config["session-file"]))
    wanted = str(context.run_config.get("session-id", "") or "")
    deadline = time.monotonic() + timeout
    while True:
        spec: NodeSpec | None
        try:
            spec = NodeSpec.read(path)
        except FileNotFoundError:
            spec = None
        if spec is not None and (not wanted or spec.session_id == wanted):
            return spec
        if time.monotonic() > deadline:
            have = f"session {spec.session_id}" if spec is not None else "no spec"
            raise RuntimeError(
                f"this client has {have} in {path} but the server's message is for session "
                f"{wanted}; the client did not receive start_train within {timeout:.0f} s"
            )
        time.sleep(0.05)


class _StrategySettings(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def params(self) -> dict[str, Any]: ...


class _TrainingSettings(Protocol):
    @property
    def local_epochs(self) -> int: ...
    @property
    def learning_rate(self) -> float: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def seed(self) -> int: ...


class _UseCaseSettings(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def params(self) -> dict[str, Any]: ...
    @property
    def broadcast_params(self) -> dict[str, Any]: ...


class SessionSettings(Protocol):
    """What a session takes from the server config (``kosmos_fl.config.ServerConfig``, which sits
    above this package and so is named by its shape)."""

    @property
    def num_clients(self) -> int: ...
    @property
    def min_fit_clients(self) -> int | None: ...
    @property
    def n_federated_train_epoch(self) -> int: ...
    @property
    def strategy(self) -> _StrategySettings: ...
    @property
    def training(self) -> _TrainingSettings: ...
    @property
    def usecase(self) -> _UseCaseSettings: ...
    @property
    def test_bearings(self) -> tuple[str, ...]: ...
    @property
    def registered_model_name(self) -> str | None: ...
    @property
    def round_timeout(self) -> float: ...
    @property
    def join_timeout(self) -> float: ...
    @property
    def max_update_norm_ratio(self) -> float | None: ...
    @property
    def max_update_norm(self) -> float | None: ...
    @property
    def secure_aggregation(self) -> SecureAggregationConfig | None: ...
    @property
    def differential_privacy(self) -> DifferentialPrivacyConfig | None: ...
    @property
    def federated_evaluation(self) -> bool: ...
    @property
    def fraction_evaluate(self) -> float: ...
    @property
    def champion_metric(self) -> str: ...
    @property
    def champion_margin(self) -> float: ...


__all__ = ["NodeSpec", "SessionSettings", "SessionSpec", "decide_quorum"]
