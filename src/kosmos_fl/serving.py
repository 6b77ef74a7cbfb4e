"""Use a registered model: load it from MLflow and predict RUL for new data, or serve it over HTTP.

Models are data, not code (docs/SECURITY.md): only the weights archive and its manifest are
downloaded, the weights' SHA-256 is checked against the model version's tag before they are read,
and the network is rebuilt from the use case. A model version without those tags (registered
before this format, or crafted) is refused without reading its files: loading an MLflow
``pytorch`` model unpickles code. The MLflow MLmodel file is YAML and read with ``safe_load``.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kosmos_fl.errors import ModelError
from kosmos_fl.fl.tracking import local_store, tracking_uri
from kosmos_fl.ml import model_format
from kosmos_fl.ml.train import predict
from kosmos_fl.usecases import UseCase, load_usecase

REREGISTER = "kosmos-fl models register --session <work_dir>/sessions/<session id>"
#: A registered model's name alone (``kosmos-BearingUseCase``) means its ``@champion`` version.
_MODEL_NAME = re.compile(r"^[\w.-]+$")
_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w.-]+))$")


@dataclass
class LoadedModel:
    model: Any
    usecase: UseCase
    #: Local folder holding ``MLmodel`` (signature, metadata) for the scoring server.
    folder: Path


def _usecase(manifest: dict[str, Any]) -> UseCase:
    return load_usecase(
        str(manifest["kosmos_usecase"]),
        json.loads(str(manifest.get("kosmos_usecase_params", "{}"))),
        version=manifest.get("kosmos_usecase_version"),
    )


def _rebuild(folder: Path, sha256: str) -> tuple[Any, UseCase]:
    """Network and use case from a local ``data/kosmos-model`` folder, weights checked first."""
    manifest = model_format.read_manifest(folder)
    if manifest.get("weights_sha256") != sha256:
        raise model_format.WeightsRefused("the manifest's SHA-256 differs from the registered one")
    arrays = model_format.read_weights(folder / model_format.WEIGHTS_FILE, sha256)
    usecase = _usecase(manifest)
    return model_format.rebuild(usecase.build_model(), arrays), usecase


def existing_store(mlflow_address: str) -> str:
    """The tracking URI of ``mlflow_address`` for reading a model: a local store must already
    exist. Opening a missing one would create and migrate an empty database (seconds, and files
    left behind) only to report that the model is not there."""
    folder = local_store(mlflow_address)
    if folder is not None and not (folder / "mlflow.db").is_file():
        raise ModelError(
            f"no MLflow store at {folder} (no mlflow.db); pass --mlflow <the server's "
            "mlflow_server_address> or set MLFLOW_TRACKING_URI"
        )
    return tracking_uri(mlflow_address)


def mlflow_address_or_env(mlflow_address: str | None) -> str:
    """``--mlflow`` if given, else ``MLFLOW_TRACKING_URI`` (MLflow's own variable), else ./mlruns."""
    return mlflow_address or os.environ.get("MLFLOW_TRACKING_URI") or "./mlruns"


def non_negative_rul(table: Any) -> Any:
    """``table`` with every ``rul*`` column clipped at 0: a remaining life is never negative (a
    regression head can dip slightly below 0 near failure)."""
    for col in table.columns:
        if str(col).startswith("rul") and np.issubdtype(table[col].dtype, np.number):
            table[col] = table[col].clip(lower=0)
    return table


def fetch_model(model_uri: str, mlflow_address: str, dst: Path) -> LoadedModel:
    """The model version behind ``model_uri`` rebuilt from its checked weights; files go to ``dst``."""
    import mlflow
    from mlflow.artifacts import download_artifacts
    from mlflow.tracking import MlflowClient

    if _MODEL_NAME.match(model_uri):  # a bare registered name: its champion
        model_uri = f"models:/{model_uri}@champion"
    m = _MODEL_URI.match(model_uri)
    if m is None:
        raise ModelError(
            f"model URI {model_uri!r} is not a registered model; use models:/<name>/<version> "
            "or models:/<name>@<alias>"
        )
    uri = existing_store(mlflow_address)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    try:
        if m["alias"]:
            mv = client.get_model_version_by_alias(m["name"], m["alias"])
        else:
            mv = client.get_model_version(m["name"], m["version"])
    except Exception as exc:
        raise ModelError(
            f"cannot find model {model_uri} in MLflow at {mlflow_address} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); check the URI and --mlflow"
        ) from None
    tags = mv.tags or {}
    sha = tags.get(model_format.TAG_SHA256)
    if tags.get(model_format.TAG_FORMAT) != model_format.FORMAT or not sha:
        raise ModelError(
            f"model {model_uri} is not stored as plain weights (registered by an older kosmos-fl, or "
            f"not by kosmos-fl) and is not loaded, because loading it would unpickle code; "
            f"re-register it with `{REREGISTER}`"
        )
    base = client.get_model_version_download_uri(m["name"], mv.version)
    try:
        download_artifacts(artifact_uri=f"{base}/MLmodel", dst_path=str(dst))
        download_artifacts(artifact_uri=f"{base}/data/{model_format.DATA_DIR}", dst_path=str(dst))
        model, usecase = _rebuild(dst / model_format.DATA_DIR, sha)
    except model_format.WeightsRefused as exc:
        raise ModelError(f"model {model_uri} refused: {exc}; re-register it with `{REREGISTER}`") from None
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(
            f"cannot load model {model_uri} from MLflow at {mlflow_address} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); check the URI and --mlflow"
        ) from None
    return LoadedModel(model, usecase, dst)


def load_model(model_uri: str, mlflow_address: str) -> tuple[Any, UseCase]:
    """The torch model behind ``model_uri`` and the use case it was trained for."""
    with tempfile.TemporaryDirectory(prefix="kosmos-model-") as tmp:
        loaded = fetch_model(model_uri, mlflow_address, Path(tmp))
    return loaded.model, loaded.usecase


def predict_csv(model_uri: str, data: Path, *, all_rows: bool, mlflow_address: str) -> str:
    """CSV text with a header; the first two columns are the unit and its predicted RUL."""
    with warnings.catch_warnings():  # library warnings (torch, MLflow) are not the user's output
        warnings.simplefilter("ignore")
        model, usecase = load_model(model_uri, mlflow_address)
        table = usecase.predict_table(model, data, all_rows=all_rows)
    return non_negative_rul(table).to_csv(index=False)


class PyfuncModel:
    """What MLflow's scoring server calls: network inputs (as in the signature) to RUL."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> np.ndarray:
        x = data.to_numpy() if hasattr(data, "to_numpy") else data
        return predict(self.model, np.asarray(x, dtype=np.float32)).astype(np.float32)


def _load_pyfunc(path: str) -> PyfuncModel:
    """MLflow's pyfunc loader (``loader_module: kosmos_fl.serving``) for ``mlflow models serve``:
    installed code, weights checked against the SHA-256 recorded in the model's manifest. MLflow
    itself picks the loader from the MLmodel file, so a model from an untrusted store is served
    with ``kosmos-fl serve``, which checks the version's tags first."""
    folder = Path(path)
    try:
        manifest = model_format.read_manifest(folder)
        model, _ = _rebuild(folder, str(manifest.get("weights_sha256", "")))
    except model_format.WeightsRefused as exc:
        raise ModelError(f"model at {path} refused: {exc}; re-register it with `{REREGISTER}`") from None
    return PyfuncModel(model)


def serve_app(model_uri: str, mlflow_address: str, dst: Path) -> Any:
    """MLflow's scoring app (``/invocations``, ``/ping``) around the checked, rebuilt model."""
    from mlflow.models import Model
    from mlflow.pyfunc import PyFuncModel
    from mlflow.pyfunc.scoring_server import init

    loaded = fetch_model(model_uri, mlflow_address, dst)
    meta = Model.load(str(loaded.folder / "MLmodel"))
    return init(PyFuncModel(model_meta=meta, model_impl=PyfuncModel(loaded.model)))


def serve(model_uri: str, mlflow_address: str, host: str, port: int) -> None:
    """Serve ``model_uri`` over HTTP until stopped (``mlflow models serve``'s protocol)."""
    import uvicorn

    with tempfile.TemporaryDirectory(prefix="kosmos-serve-") as tmp:
        app = serve_app(model_uri, mlflow_address, Path(tmp))
        uvicorn.run(app, host=host, port=port, log_level="info")


def reregister(session_dir: Path, mlflow_address: str | None = None) -> str:
    """Register a session's final model again in the data format, from the session's own last
    checkpoint (an ``.npz`` read with ``allow_pickle=False``), never from the old MLflow model;
    returns the new models:/ URI."""
    import mlflow

    from kosmos_fl.fl.apps import model_registry
    from kosmos_fl.fl.rounds import checkpoint
    from kosmos_fl.fl.session import SessionSpec
    from kosmos_fl.ml.train import set_weights

    spec_file = session_dir / "session.json"
    ckpt = checkpoint.load(session_dir) if spec_file.is_file() else None
    if ckpt is None or ckpt.weights_file is None:
        raise ModelError(
            f"{session_dir} holds no session with a checkpoint (session.json, checkpoint.json); pass "
            "--session <work_dir>/sessions/<session id> of the session that trained the model"
        )
    spec = SessionSpec.read(spec_file)
    uri = tracking_uri(mlflow_address) if mlflow_address else spec.mlflow_tracking_uri
    usecase = load_usecase(spec.usecase_name, spec.usecase_params, version=spec.usecase_version)
    model = usecase.build_model()
    set_weights(model, checkpoint.load_weights(session_dir, ckpt))
    mlflow.set_tracking_uri(uri)
    model_uri, _ = model_registry.log_model(spec, usecase, model, {})
    return model_uri
