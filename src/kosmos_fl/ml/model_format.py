"""Registered models are data, not code: the weights file format and its integrity check.

A model in MLflow is stored as its ``state_dict`` in a numpy ``.npz`` archive (one ``.npy`` array
per tensor) and rebuilt from the use case it was trained for. ``np.load(allow_pickle=False)``
cannot run code: an archive holding a pickled object array is refused, not unpickled. The file's
SHA-256 is recorded at registration and checked before anything is read, so a swapped artifact is
refused too. Pure numpy + torch (no MLflow): the registry and ``predict``/``serve`` share it.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

#: Version of the on-disk format; recorded in the model version's tags.
FORMAT = "kosmos-npz-v1"
WEIGHTS_FILE = "weights.npz"
#: Small JSON next to the weights: use case, its parameters, format and the weights' SHA-256.
MANIFEST_FILE = "model.json"
#: Folder name of the weights inside the MLflow model (``data/<DATA_DIR>``).
DATA_DIR = "kosmos-model"
#: Model version tags written at registration and checked by ``predict`` and ``serve``.
TAG_FORMAT = "kosmos.weights_format"
TAG_SHA256 = "kosmos.weights_sha256"


class WeightsRefused(ValueError):
    """The weights file is not what was registered or not plain arrays; never loaded."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_weights(model: nn.Module, folder: Path, manifest: Mapping[str, Any]) -> str:
    """Write ``model``'s full ``state_dict`` (parameters and buffers) and the manifest to
    ``folder``; returns the weights' SHA-256."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    (folder / WEIGHTS_FILE).write_bytes(buf.getvalue())
    sha = hashlib.sha256(buf.getvalue()).hexdigest()
    doc = {**manifest, "format": FORMAT, "weights_sha256": sha}
    (folder / MANIFEST_FILE).write_text(json.dumps(doc, indent=2, sort_keys=True), encoding="utf-8")
    return sha


def read_manifest(folder: Path) -> dict[str, Any]:
    try:
        doc = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WeightsRefused(f"{MANIFEST_FILE} unreadable ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise WeightsRefused(f"{MANIFEST_FILE} is not format {FORMAT}")
    return doc


def read_weights(path: Path, expected_sha256: str) -> dict[str, np.ndarray]:
    """The arrays in ``path`` after its SHA-256 matched ``expected_sha256``; plain numeric arrays
    only (no pickle, no object dtype)."""
    actual = sha256_file(path)
    if not hmac.compare_digest(actual, expected_sha256.strip().lower()):
        raise WeightsRefused(f"SHA-256 of {path.name} is {actual}, registered {expected_sha256}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise WeightsRefused(f"{path.name} is not a plain array archive ({exc})") from None
    for name, arr in arrays.items():
        if arr.dtype.kind not in "biuf":
            raise WeightsRefused(f"{path.name}: array {name!r} has dtype {arr.dtype}, not numeric")
    return arrays


def rebuild(model: nn.Module, arrays: Mapping[str, np.ndarray]) -> nn.Module:
    """Load ``arrays`` into the freshly built ``model`` (same names and shapes, nothing extra)."""
    state = model.state_dict()
    if set(arrays) != set(state):
        missing, extra = sorted(set(state) - set(arrays)), sorted(set(arrays) - set(state))
        raise WeightsRefused(f"weights do not fit the network (missing {missing[:3]}, extra {extra[:3]})")
    for name, arr in arrays.items():
        if tuple(arr.shape) != tuple(state[name].shape):
            want = tuple(state[name].shape)
            raise WeightsRefused(f"weight {name!r} has shape {arr.shape}, the network {want}")
    model.load_state_dict({k: torch.from_numpy(np.array(v)).to(state[k].dtype) for k, v in arrays.items()})
    model.eval()
    return model
