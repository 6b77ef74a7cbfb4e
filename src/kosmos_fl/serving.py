"""Use a registered model: load it from MLflow and predict RUL for new data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kosmos_fl.errors import ModelError
from kosmos_fl.fl.tracking import tracking_uri
from kosmos_fl.usecases import UseCase, load_usecase


def load_model(model_uri: str, mlflow_address: str) -> tuple[Any, UseCase]:
    """The torch model behind ``model_uri`` and the use case it was trained for (from the model's
    MLflow metadata)."""
    import mlflow

    uri = tracking_uri(mlflow_address)
    mlflow.set_tracking_uri(uri)
    try:
        info = mlflow.models.get_model_info(model_uri)
        model = mlflow.pytorch.load_model(model_uri, map_location="cpu")
    except Exception as exc:
        raise ModelError(
            f"cannot load model {model_uri} from MLflow at {mlflow_address} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200]}); check the URI (models:/<name>/<version>) and --mlflow"
        ) from None
    meta = info.metadata or {}
    if "kosmos_usecase" not in meta:
        raise ModelError(f"model {model_uri} was not trained by kosmos-fl (no use case metadata)")
    usecase = load_usecase(
        meta["kosmos_usecase"],
        json.loads(meta.get("kosmos_usecase_params", "{}")),
        version=meta.get("kosmos_usecase_version"),
    )
    return model, usecase


def predict_csv(model_uri: str, data: Path, *, all_rows: bool, mlflow_address: str) -> str:
    """CSV text with a header; the first two columns are the unit and its predicted RUL."""
    model, usecase = load_model(model_uri, mlflow_address)
    table = usecase.predict_table(model, data, all_rows=all_rows)
    return table.to_csv(index=False)
