"""The use-case plug-in interface.

A use case bundles what is specific to one prediction problem: how a site's data becomes model-ready
arrays, the model, how the server evaluates it and how ``predict`` reports it. Everything else
(control plane, Flower, MLflow, strategies) is shared. Third parties ship a subclass in their own
package and register it under the ``kosmos_fl.usecases`` entry-point group.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from kosmos_fl.errors import UseCaseError
from kosmos_fl.ml.metrics import regression_report

if TYPE_CHECKING:  # torch and pandas load only where a model runs: a client's data check needs neither
    import pandas as pd
    from torch import nn


@dataclass(frozen=True)
class ArrayDataset:
    """Model-ready inputs ``x`` and targets ``y`` (one row per sample)."""

    x: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(f"x has {len(self.x)} rows but y has {len(self.y)}")

    def __len__(self) -> int:
        return len(self.y)


class UseCaseParams(BaseModel):
    """Base for a use case's parameters; unknown keys are errors so typos surface."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class UseCase(ABC):
    """One prediction problem. Subclasses set ``name``, ``version``, ``Params`` and the methods."""

    name: ClassVar[str]
    #: Client and server must run the same version; a mismatch is refused before training.
    version: ClassVar[str]
    #: Unit of the model's target, shown to people (``hours``, ``cycles``).
    target_unit: ClassVar[str] = "units"
    Params: ClassVar[type[UseCaseParams]] = UseCaseParams
    #: Session settings the use case's defaults were tuned with: ``n_federated_train_epoch`` and a
    #: ``training`` mapping (``local_epochs``, ``learning_rate``, ``batch_size``). ``kosmos-fl demo``
    #: applies them when its config file is written for another use case, whose training block
    #: would not fit this one. Empty: the config's settings.
    session_defaults: ClassVar[Mapping[str, Any]] = {}
    #: Held-out units the server evaluates when its config names none (``test_bearings`` /
    #: ``test_units``); empty: none by default.
    default_test_units: ClassVar[Sequence[str]] = ()
    #: Units a client trains on per client id the server assigned, when its config names none
    #: (the 2021 bearing assignment); empty: everything at the client's ``data_path``.
    default_units_per_client: ClassVar[Mapping[int, Sequence[str]]] = {}

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        try:
            self.params = self.Params.model_validate(dict(params or {}))
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(p) for p in err["loc"]) or "(params)"
            raise UseCaseError(
                f"{self.name} parameter '{key}': {err['msg']} (got {err.get('input')!r}); "
                f"allowed parameters: {', '.join(self.Params.model_fields) or 'none'}"
            ) from None

    # -- data -------------------------------------------------------------------------------
    @abstractmethod
    def client_dataset(self, data_path: Path, selection: Sequence[str] | None) -> ArrayDataset:
        """The training data of one client: ``selection`` names its units (bearings, engines);
        None means everything found at ``data_path``."""

    @abstractmethod
    def eval_datasets(self, data_path: Path, names: Sequence[str]) -> dict[str, ArrayDataset]:
        """The server's held-out data, one group per unit, evaluated every round."""

    @abstractmethod
    def federation_split(self, data_path: Path, num_clients: int) -> tuple[list[list[str]], list[str]]:
        """How ``kosmos-fl demo`` (and benchmarks) divide one data set: the units of each of
        ``num_clients`` clients, and the held-out units the server evaluates. Deterministic."""

    def data_summary(self, data_path: Path, selection: Sequence[str] | None) -> dict[str, Any]:
        """What a client reports with its criteria answer; default: the number of samples."""
        return {"samples": len(self.client_dataset(data_path, selection))}

    # -- model ------------------------------------------------------------------------------
    @abstractmethod
    def build_model(self) -> nn.Module:
        """A freshly initialised model (seed torch before calling for reproducibility)."""

    def input_example(self, dataset: ArrayDataset, n: int = 2) -> np.ndarray:
        """A few input rows for the MLflow signature."""
        return np.ascontiguousarray(dataset.x[:n], dtype=np.float32)

    # -- evaluation and prediction -------------------------------------------------------------
    def evaluate(self, model: nn.Module, groups: Mapping[str, ArrayDataset]) -> dict[str, float]:
        """Server-side metrics of ``model``; default: RMSE, MAE, PCC per group and their mean."""
        from kosmos_fl.ml.train import predict

        return regression_report({k: (g.y, predict(model, g.x)) for k, g in groups.items()})

    @abstractmethod
    def predict_table(self, model: nn.Module, data_path: Path, *, all_rows: bool) -> pd.DataFrame:
        """Predictions for every unit at ``data_path`` as a table whose first two columns are
        the unit and the predicted RUL (in ``target_unit``)."""
