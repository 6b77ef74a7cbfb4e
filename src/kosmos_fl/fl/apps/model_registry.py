"""What a finished session leaves in MLflow besides metrics: the prediction plots and the
registered model (with its signature and the use-case parameters it was trained with)."""

from __future__ import annotations

import json
import shutil
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


def save_for_registry(
    spec: SessionSpec, usecase: Any, model: Any, groups: dict[str, Any], out: Path
) -> dict[str, Any]:
    """Write the final model's weights, signature and metadata into ``out`` and return the outbox
    entry that logs and registers it (:func:`register_saved`), so the model reaches the registry
    even when MLflow is down now: the sender delivers it once MLflow answers (issue 21).

    The weights go in as a plain array archive (:mod:`kosmos_fl.ml.model_format`), never pickled:
    ``predict``/``serve`` rebuild the network from the use case and its recorded parameters. The
    archive's SHA-256 is a tag of the model version and is checked before the weights are read.
    ``groups`` empty: no signature (re-registration)."""
    from mlflow.models import infer_signature

    signature = None
    if groups:
        first = next(iter(groups.values()))
        example = usecase.input_example(first)
        signature = infer_signature(example, predict(model, example).astype(np.float32)).to_dict()
    metadata = {
        "kosmos_usecase": spec.usecase_name,
        "kosmos_usecase_version": spec.usecase_version,
        "kosmos_usecase_params": json.dumps(registered_params(usecase, spec.usecase_params)),
        "kosmos_session_id": spec.session_id,
        "target_unit": usecase.target_unit,
    }
    model.eval()
    data = out / model_format.DATA_DIR
    if data.exists():
        shutil.rmtree(data)
    sha = model_format.write_weights(
        model,
        data,
        {k: metadata[k] for k in ("kosmos_usecase", "kosmos_usecase_version", "kosmos_usecase_params")},
    )
    return {
        "kind": "model",
        "id": "model",
        "run": spec.mlflow_run_id,
        "name": spec.registered_model_name,
        "data": str(data),
        "signature": signature,
        "metadata": {**metadata, "kosmos_weights_sha256": sha},
    }


def _registered_version(client: Any, name: str, run_id: str) -> str | None:
    """The version of ``name`` this run registered already (a retry after a lost ack), or None."""
    from mlflow.exceptions import MlflowException

    try:
        found = client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    except MlflowException as exc:
        if getattr(exc, "error_code", None) == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    return str(min(int(v.version) for v in found)) if found else None


def register_saved(client: Any, entry: dict[str, Any]) -> dict[str, Any]:
    """Deliver a ``model`` outbox entry: log the saved model into its run and register it, once
    (a version this run registered already is reused), tag the version, decide ``@champion``.
    Returns the model's ``models:/`` URI, version and the champion decision."""
    import mlflow
    import torch
    from mlflow.models import ModelSignature

    from kosmos_fl.fl.apps import champion

    name, run_id = entry["name"], entry["run"]
    version = _registered_version(client, name, run_id)
    if version is None:
        mlflow.set_tracking_uri(client.tracking_uri)
        signature = ModelSignature.from_dict(entry["signature"]) if entry.get("signature") else None
        with mlflow.start_run(run_id=run_id):
            info = mlflow.pyfunc.log_model(
                name="model",
                loader_module="kosmos_fl.serving",
                data_path=entry["data"],
                signature=signature,
                registered_model_name=name,
                metadata=entry["metadata"],
                # not "kosmos-fl": a registry package of that name need not be this project; serving runs
                # where kosmos_fl is installed (`kosmos-fl serve`; `mlflow models serve --env-manager local`)
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
            )
            # leaving the run's context ends it FINISHED: say so before, as the outbox does after
            mlflow.set_tag("kosmos.status", "completed")
        version = str(info.registered_model_version)
    sha = entry["metadata"]["kosmos_weights_sha256"]
    for key, value in ((model_format.TAG_FORMAT, model_format.FORMAT), (model_format.TAG_SHA256, sha)):
        client.set_model_version_tag(name, version, key, value)
    out: dict[str, Any] = {"model_uri": f"models:/{name}/{version}", "version": version}
    if "champion" in entry:
        c = entry["champion"]
        decision = champion.tag_and_promote(
            client, name, version, c["metrics"], c["eval_set"], c["metric"], c["margin"]
        )
        out |= {"champion": decision.promoted, "champion_reason": decision.reason}
    return out


def log_model(spec: SessionSpec, usecase: Any, model: Any, groups: dict[str, Any]) -> tuple[str, str]:
    """Log and register ``model`` at once (no outbox: ``kosmos-fl models register``); returns its
    models:/ URI and version. See :func:`save_for_registry`."""
    import tempfile

    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory() as tmp:
        entry = save_for_registry(spec, usecase, model, groups, Path(tmp))
        out = register_saved(MlflowClient(), entry)  # the current tracking URI, as the caller set it
    return str(out["model_uri"]), str(out["version"])
