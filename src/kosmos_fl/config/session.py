"""What one federated session is: clients, rounds, use case, strategy, training, MLflow naming."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import AliasChoices, Field, field_validator, model_validator

from kosmos_fl.config.base import ConfigModel
from kosmos_fl.config.privacy import SecureAggregationConfig
from kosmos_fl.errors import KosmosError

if TYPE_CHECKING:
    from kosmos_fl.usecases.base import UseCase

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


def usecase_defaults(name: str) -> type[UseCase] | None:
    """The installed use case ``name``, whose class attributes hold its default units; None when it
    is not installed (loading the use case names that problem later, with its fix)."""
    from kosmos_fl.usecases import usecase_class

    try:
        return usecase_class(name)
    except KosmosError:
        return None


def decide_quorum(
    num_clients: int, min_fit_clients: int | None, secure_aggregation: SecureAggregationConfig | None = None
) -> int:
    """The accepted updates a round needs: ``min_fit_clients`` if set, else all but one with 3+
    clients (all with fewer); SecAgg+ needs at least its own quorum to unmask the sum."""
    quorum = min_fit_clients
    if quorum is None:
        quorum = num_clients - 1 if num_clients >= 3 else num_clients
    if secure_aggregation is not None:  # SecAgg+ survives dropouts down to its quorum
        quorum = max(secure_aggregation.quorum(num_clients), quorum)
    return quorum


#: The bearing model of the shipped ``config.yaml``, chosen on the real bearings (docs/RESULTS.md):
#: the default use case's broadcast parameters. The package's defaults are that file's values (one
#: source of truth, checked by tests/test_config_defaults.py); the values kosmos-fl used before
#: issue 20 are :data:`kosmos_fl.config.compat2021.DEFAULTS_2021`.
TUNED_BEARING_PARAMS: dict[str, Any] = {
    "model": "ratio",
    "point_quantile": 0.2,
    "rows_per_bearing": 3000,
    "smooth_span": 0.0,
    "interval_scale": 1.0,
}


class StrategyConfig(ConfigModel):
    """Which Flower strategy aggregates the client updates, and its keyword arguments."""

    name: Literal[STRATEGIES] = "FedAvg"  # type: ignore[valid-type]
    params: dict[str, Any] = Field(default_factory=dict)


class UseCaseConfig(ConfigModel):
    """The use case (a plug-in) and its parameters.

    ``params`` stay on the server (for example where its test data lives); ``broadcast_params``
    are sent to every client in ``start_train`` as ``usecase_params``.
    """

    name: str = "BearingUseCase"
    params: dict[str, Any] = Field(default_factory=dict)
    broadcast_params: dict[str, Any] = Field(default_factory=dict)


def _tuned_usecase() -> UseCaseConfig:
    """The default ``usecase`` block: the bearing use case with the tuned model. A ``usecase``
    block in a file replaces it as a whole (``broadcast_params`` left out: the use case's own)."""
    return UseCaseConfig(name="BearingUseCase", broadcast_params=dict(TUNED_BEARING_PARAMS))


class TrainingConfig(ConfigModel):
    """Local training on each client, sent to clients with every round (defaults: the tuned
    ``config.yaml``, 3 local epochs of batch 256; 2021: 1 epoch of batch 32 at 0.001)."""

    local_epochs: int = Field(3, ge=1, le=1000)
    learning_rate: float = Field(0.01, gt=0, le=10)
    batch_size: int = Field(256, ge=1, le=65536)
    seed: int = 42


def _default_test_units(data: Mapping[str, Any]) -> tuple[str, ...]:
    """The configured use case's held-out units (the bearing use case: the 2021 test bearings)."""
    usecase = data.get("usecase")
    found = usecase_defaults(usecase.name) if isinstance(usecase, UseCaseConfig) else None
    return tuple(found.default_test_units) if found is not None else ()


class SessionSection(ConfigModel):
    """The session the server runs once ``num_clients`` eligible clients wait (the 2021 keys first)."""

    num_clients: int = Field(3, ge=1, le=10_000)
    mlflow_experiment_name: str = Field("Default", min_length=1)
    tags: dict[str, str] = Field(default_factory=lambda: {"project": "kosmos"})
    #: 13 rounds x 3 local epochs (docs/RESULTS.md); 2021: 5
    n_federated_train_epoch: int = Field(13, ge=1, le=100_000)
    usecase: UseCaseConfig = Field(default_factory=_tuned_usecase)
    #: Held-out units the server evaluates every round (bearings; engine units for turbofan);
    #: unset: the use case's own default (the bearing use case: the 11 PHM 2012 test bearings).
    test_bearings: tuple[str, ...] = Field(
        default_factory=_default_test_units, validation_alias=AliasChoices("test_bearings", "test_units")
    )
    strategy: StrategyConfig = Field(default_factory=StrategyConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    #: Where the server finds its held-out test data (bearing folders, or a file for turbofan).
    data_path: str = "./data"
    work_dir: str = "./kosmos-work"
    registered_model_name: str | None = None
    #: Session lifecycle: a new session starts at least ``min_interval`` seconds after the previous
    #: one started (eligible clients wait meanwhile), and this server runs at most ``max_sessions``.
    min_interval: float = Field(0.0, ge=0)
    max_sessions: int | None = Field(None, ge=1)
    #: Cron expression (``minute hour day month weekday``, the server's local time): sessions start
    #: only at these times, at most one per time (kosmos_fl.coordinator.lifecycle); unset: whenever
    #: enough eligible clients wait. ``kosmos-fl session start`` starts one at any time.
    schedule: str | None = None
    #: A new model version becomes ``<name>@champion`` (what ``predict``/``serve`` use by default)
    #: only if its ``champion_metric`` on the server's test data is lower than the champion's by
    #: ``champion_margin`` (relative: 0.02 = 2 % better), see kosmos_fl.fl.apps.champion.
    champion_metric: str = Field("RMSE", min_length=1)
    champion_margin: float = Field(0.0, ge=0, lt=1)
    #: Updates a round needs to count (quorum); unset: all but one with 3+ clients, else all.
    min_fit_clients: int | None = Field(None, ge=1, le=10_000)
    #: Resume an interrupted session from its last checkpointed round at start-up (``--resume``).
    resume: bool = False
    #: After each round, also let the clients evaluate the global model on their own training data
    #: (as the 2021 clients did); logged per client as ``RMSE_client<id>`` and weighted as ``RMSE_clients``.
    federated_evaluation: bool = False
    #: Share of the round's clients asked to evaluate when ``federated_evaluation`` is on.
    fraction_evaluate: float = Field(1.0, gt=0, le=1)

    @property
    def quorum(self) -> int:
        """The effective ``min_fit_clients`` (:func:`decide_quorum`, without SecAgg+)."""
        return decide_quorum(self.num_clients, self.min_fit_clients)

    @model_validator(mode="after")
    def _quorum_fits(self) -> Self:
        if self.min_fit_clients is not None and self.min_fit_clients > self.num_clients:
            raise ValueError(
                f"min_fit_clients ({self.min_fit_clients}) cannot exceed num_clients ({self.num_clients})"
            )
        return self

    @field_validator("tags", mode="before")
    @classmethod
    def _tags_as_strings(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): str(v) for k, v in value.items()}
        return value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        from croniter import croniter

        if value is None or not value.strip():
            return None
        value = " ".join(value.split())
        if len(value.split()) != 5 or not croniter.is_valid(value):
            raise ValueError(
                "expected a cron expression of 5 fields, minute hour day month weekday, "
                "e.g. '0 2 * * *' (02:00 every day) or '*/30 * * * *' (every 30 minutes)"
            )
        return value

    @field_validator("test_bearings", mode="before")
    @classmethod
    def _bearings_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return value
