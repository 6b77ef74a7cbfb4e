"""Issue 16 row 1: a registered model is data, not code.

A crafted model version in MLflow (which has no authentication) ran ``os.system`` as the user who
ran ``kosmos-fl predict``. Here an attacker registers versions whose files would create a marker
file when unpickled; ``predict`` and ``serve`` must refuse them and the marker must never appear.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from kosmos_fl.errors import ModelError
from kosmos_fl.fl.rounds import checkpoint
from kosmos_fl.fl.rounds.checkpoint import Checkpoint
from kosmos_fl.fl.session import SessionSpec
from kosmos_fl.fl.tracking import create_session_run, ensure_experiment, tracking_uri
from kosmos_fl.ml import model_format
from kosmos_fl.ml.train import get_weights
from kosmos_fl.serving import PyfuncModel, _load_pyfunc, load_model, reregister, serve_app
from kosmos_fl.usecases import load_usecase, usecase_class

NAME = "kosmos-BearingUseCase"


class _Marker:
    """Unpickling this creates the marker file (what ``os.system`` did in the review)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


def _store(tmp: Path) -> str:
    uri = tracking_uri(str(tmp / "mlruns"))
    import mlflow

    mlflow.set_tracking_uri(uri)
    return uri


def _spec(tmp: Path, uri: str, params: dict[str, Any] | None = None) -> SessionSpec:
    version = usecase_class("BearingUseCase").version
    exp = ensure_experiment(uri, "kosmos-fl")
    run = create_session_run(uri, "kosmos-fl", "s1", {}) if exp else ""
    return SessionSpec(
        session_id="s1", out_dir=str(tmp / "s1"), usecase_name="BearingUseCase", usecase_version=version,
        usecase_params=params or {}, num_clients=2, min_fit_clients=2, num_rounds=1, strategy_name="FedAvg",
        local_epochs=1, learning_rate=0.001, batch_size=32, seed=1, data_path="/d", test_names=[],
        mlflow_tracking_uri=uri, mlflow_run_id=run, registered_model_name=NAME,
        round_timeout=10, join_timeout=10,
    )  # fmt: skip


def _genuine(tmp: Path, params: dict[str, Any] | None = None) -> tuple[str, str, Any]:
    """A model registered the new way (via `kosmos-fl models register` from a checkpoint)."""
    uri = _store(tmp)
    spec = _spec(tmp, uri, params)
    out = Path(spec.out_dir)
    spec.write(out / "session.json")
    torch.manual_seed(0)
    model = load_usecase("BearingUseCase", params).build_model()
    ckpt = Checkpoint(session_id="s1", mlflow_run_id=spec.mlflow_run_id, round=1, weights_file="")
    checkpoint.save(out, ckpt, get_weights(model))
    return reregister(out), uri, model


def _pickled_version(tmp: Path, marker: Path) -> str:
    """The review's attack: an MLflow ``pytorch`` model version whose pickle runs code on load,
    with kosmos-fl's metadata so it looks like ours."""
    import mlflow
    from torch import nn

    _store(tmp)
    with mlflow.start_run():
        info = mlflow.pytorch.log_model(
            nn.Linear(2, 1), name="model", registered_model_name=NAME, serialization_format="pickle",
            metadata={"kosmos_usecase": "BearingUseCase", "kosmos_usecase_params": "{}"},
        )  # fmt: skip
    pth = next(Path(info.artifact_path.removeprefix("file://")).rglob("model.pth"))
    torch.save(_Marker(marker), pth)
    return f"models:/{NAME}/{info.registered_model_version}"


def test_row01_pickled_model_refused_by_predict_and_serve(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    uri = _pickled_version(tmp_path, marker)
    store = str(tmp_path / "mlruns")
    with pytest.raises(ModelError, match="kosmos-fl models register") as err:
        load_model(uri, store)
    assert "\n" not in str(err.value)
    with pytest.raises(ModelError, match="would unpickle code"):
        serve_app(uri, store, tmp_path / "serve")
    assert not marker.exists()
    # and as a user runs it: one line on stderr, exit code 2, no traceback, nothing ran
    cli = [sys.executable, "-m", "kosmos_fl.cli"]
    cmd = [*cli, "predict", "-m", uri, "-d", str(tmp_path), "--mlflow", store]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ})
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "kosmos-fl models register" in proc.stderr
    assert not marker.exists()


def test_row01_crafted_weights_with_forged_tags_refused(tmp_path: Path) -> None:
    """An attacker who also sets the tags (MLflow has no auth): the archive holds a pickled object
    array; its SHA-256 matches the forged tag, yet nothing is unpickled."""
    from mlflow.tracking import MlflowClient

    good_uri, store_uri, _ = _genuine(tmp_path)
    store = str(tmp_path / "mlruns")
    marker = tmp_path / "pwned"
    client = MlflowClient(tracking_uri=store_uri)
    version = good_uri.rsplit("/", 1)[1]
    base = Path(client.get_model_version_download_uri(NAME, version).removeprefix("file://"))
    weights = base / "data" / model_format.DATA_DIR / model_format.WEIGHTS_FILE
    evil = np.empty(1, dtype=object)
    evil[0] = _Marker(marker)
    buf = io.BytesIO()
    np.savez(buf, **{"0.weight": evil})
    weights.write_bytes(buf.getvalue())
    sha = model_format.sha256_file(weights)
    manifest = base / "data" / model_format.DATA_DIR / model_format.MANIFEST_FILE
    manifest.write_text(manifest.read_text().replace(
        model_format.read_manifest(manifest.parent)["weights_sha256"], sha))  # fmt: skip
    client.set_model_version_tag(NAME, version, model_format.TAG_SHA256, sha)
    with pytest.raises(ModelError, match=r"not a plain array archive|not numeric"):
        load_model(good_uri, store)
    with pytest.raises(ModelError, match="refused"):
        _load_pyfunc(str(manifest.parent))  # the `mlflow models serve` loader
    assert not marker.exists()
    assert zipfile.is_zipfile(weights)


def test_row01_sha_mismatch_refused_and_genuine_model_round_trips(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri, store_uri, original = _genuine(tmp_path)
    store = str(tmp_path / "mlruns")
    model, _ = load_model(uri, store)
    for key, value in original.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value)
    assert not model.training
    client = MlflowClient(tracking_uri=store_uri)
    version = uri.rsplit("/", 1)[1]
    tags = client.get_model_version(NAME, version).tags
    assert tags[model_format.TAG_FORMAT] == model_format.FORMAT
    base = Path(client.get_model_version_download_uri(NAME, version).removeprefix("file://"))
    weights = base / "data" / model_format.DATA_DIR / model_format.WEIGHTS_FILE
    assert model_format.sha256_file(weights) == tags[model_format.TAG_SHA256]
    # MLflow's own pyfunc loader goes through kosmos_fl.serving (installed code, no pickle)
    import mlflow

    pyfunc = mlflow.pyfunc.load_model(uri)
    assert isinstance(pyfunc._model_impl, PyfuncModel)
    # one flipped byte in the archive: refused before it is read
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="SHA-256"):
        load_model(uri, store)


def test_row01_serve_answers_with_the_rebuilt_model(tmp_path: Path) -> None:
    """``kosmos-fl serve``: MLflow's scoring protocol around the checked, rebuilt network."""
    from fastapi.testclient import TestClient

    from kosmos_fl.ml.train import predict

    uri, _, original = _genuine(tmp_path, {"model": "ffnn"})
    first = next(v for v in original.state_dict().values() if v.ndim == 2)
    x = np.random.default_rng(0).normal(size=(3, first.shape[1])).astype(np.float32)
    app = serve_app(uri, str(tmp_path / "mlruns"), tmp_path / "serve")
    with TestClient(app) as http:
        assert http.get("/ping").status_code == 200
        r = http.post("/invocations", json={"inputs": x.tolist()})
    assert r.status_code == 200, r.text
    got = np.asarray(r.json()["predictions"], dtype=np.float32).ravel()
    np.testing.assert_allclose(got, predict(original, x).ravel(), rtol=1e-5, atol=1e-5)
