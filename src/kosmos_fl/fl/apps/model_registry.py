"""What a finished session leaves in MLflow besides metrics: the prediction plots and the
registered model (with its signature and the use-case parameters it was trained with)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from kosmos_fl.fl.session import SessionSpec
from kosmos_fl.ml import model_format
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
    """Log the final global model as data and register it; returns its models:/ URI and version.

    The weights go in as a plain array archive (:mod:`kosmos_fl.ml.model_format`), never pickled:
    ``predict``/``serve`` rebuild the network from the use case and its recorded parameters. The
    archive's SHA-256 is a tag of the model version and is checked before the weights are read.
    ``mlflow models serve`` works through the pyfunc loader ``kosmos_fl.serving`` (installed code,
    nothing from the artifact store runs). ``groups`` empty: no signature (re-registration)."""
    import tempfile

    import mlflow
    import torch
    from mlflow.models import infer_signature
    from mlflow.tracking import MlflowClient

    signature = None
    if groups:
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
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(run_id=spec.mlflow_run_id):
        data = Path(tmp) / model_format.DATA_DIR
        sha = model_format.write_weights(
            model,
            data,
            {k: metadata[k] for k in ("kosmos_usecase", "kosmos_usecase_version", "kosmos_usecase_params")},
        )
        info = mlflow.pyfunc.log_model(
            name="model",
            loader_module="kosmos_fl.serving",
            data_path=str(data),
            signature=signature,
            registered_model_name=spec.registered_model_name,
            metadata={**metadata, "kosmos_weights_sha256": sha},
            # not "kosmos-fl": a registry package of that name need not be this project; serving
            # runs where kosmos_fl is installed (`kosmos-fl serve`; `mlflow models serve --env-manager local`)
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
        )
        mlflow.set_tag("kosmos.status", "completed")
    version = str(info.registered_model_version)
    client = MlflowClient()
    for key, value in ((model_format.TAG_FORMAT, model_format.FORMAT), (model_format.TAG_SHA256, sha)):
        client.set_model_version_tag(spec.registered_model_name, version, key, value)
    return f"models:/{spec.registered_model_name}/{version}", version
