"""What a finished session leaves in MLflow besides metrics: the prediction plots and the
registered model (with its signature and the use-case parameters it was trained with)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from kosmos_fl.fl.session import SessionSpec
from kosmos_fl.ml.train import predict


def plots(usecase: Any, model: Any, groups: dict[str, Any], out: Path) -> list[Path]:
    """Predicted vs true target per evaluation group, one PNG each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in groups.items():
        pred = predict(model, data.x)
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot(data.y, label="true RUL", color="black", linewidth=1.5)
        ax.plot(pred, label="predicted RUL", color="tab:blue", alpha=0.8, linewidth=1)
        ax.set_xlabel("sample (time order)")
        ax.set_ylabel(f"RUL [{usecase.target_unit}]")
        ax.set_title(f"{name}: predicted vs true remaining useful life")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out / f"rul_{name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def registered_params(usecase: Any, given: dict[str, Any]) -> dict[str, Any]:
    """The use-case parameters the model was trained with, defaults resolved, so ``predict``
    prepares inputs and post-processes exactly as in training even after a default changes;
    ``cache_dir`` is a host-local path and stays out."""
    params = getattr(usecase, "params", None)
    if params is None or not hasattr(params, "model_dump"):
        return dict(given)
    return {k: v for k, v in params.model_dump(mode="json").items() if k != "cache_dir"}


def log_model(spec: SessionSpec, usecase: Any, model: Any, groups: dict[str, Any]) -> tuple[str, str]:
    """Log the final global model with a signature and register it; returns its models:/ URI."""
    import mlflow
    import torch
    from mlflow.models import infer_signature

    first = next(iter(groups.values()))
    example = usecase.input_example(first)
    signature = infer_signature(example, predict(model, example).astype(np.float32))
    metadata = {
        "kosmos_usecase": spec.usecase_name,
        "kosmos_usecase_version": spec.usecase_version,
        "kosmos_usecase_params": json.dumps(registered_params(usecase, spec.usecase_params)),
        "kosmos_session_id": spec.session_id,
        "target_unit": usecase.target_unit,
    }
    model.eval()
    with mlflow.start_run(run_id=spec.mlflow_run_id):
        info = mlflow.pytorch.log_model(
            pytorch_model=model,
            name="model",
            signature=signature,
            registered_model_name=spec.registered_model_name,
            metadata=metadata,
            # "pt2" graphs cannot be put in eval mode once loaded (MLflow 3.17), so the model is
            # pickled: loading it needs kosmos_fl (and the use case's package) installed.
            serialization_format="pickle",
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
        )
        mlflow.set_tag("kosmos.status", "completed")
    version = str(info.registered_model_version)
    return f"models:/{spec.registered_model_name}/{version}", version
