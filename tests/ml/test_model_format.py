"""The registered-weights format: plain arrays, checked SHA-256, exact fit to the network."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from kosmos_fl.ml import model_format as mf


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))


def test_round_trip_keeps_parameters_and_buffers(tmp_path: Path) -> None:
    src = _net()
    src.train()(torch.randn(8, 3))  # moves the batch-norm statistics and its counter
    sha = mf.write_weights(src, tmp_path, {"kosmos_usecase": "X"})
    assert mf.read_manifest(tmp_path)["weights_sha256"] == sha == mf.sha256_file(tmp_path / mf.WEIGHTS_FILE)
    dst = mf.rebuild(_net(), mf.read_weights(tmp_path / mf.WEIGHTS_FILE, sha))
    assert not dst.training
    for key, value in src.state_dict().items():
        torch.testing.assert_close(dst.state_dict()[key], value)


def test_refusals(tmp_path: Path) -> None:
    sha = mf.write_weights(_net(), tmp_path, {})
    path = tmp_path / mf.WEIGHTS_FILE
    with pytest.raises(mf.WeightsRefused, match="SHA-256"):
        mf.read_weights(path, "0" * 64)
    arrays = mf.read_weights(path, sha)
    with pytest.raises(mf.WeightsRefused, match="do not fit"):
        mf.rebuild(nn.Linear(3, 4), arrays)
    arrays["0.weight"] = np.zeros((5, 3), np.float32)
    with pytest.raises(mf.WeightsRefused, match="shape"):
        mf.rebuild(_net(), arrays)
    pickled = np.empty(1, dtype=object)
    buf = io.BytesIO()
    np.savez(buf, a=pickled)
    path.write_bytes(buf.getvalue())
    with pytest.raises(mf.WeightsRefused, match="not a plain array archive"):
        mf.read_weights(path, mf.sha256_file(path))
    (tmp_path / mf.MANIFEST_FILE).write_text('{"format": "pickle"}')
    with pytest.raises(mf.WeightsRefused, match="not format"):
        mf.read_manifest(tmp_path)
