"""The built-in bearing use case on generated FEMTO-format data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kosmos_fl.errors import DataError, UseCaseError
from kosmos_fl.ml.train import seed_everything
from kosmos_fl.usecases import load_usecase


def test_datasets_for_both_models(generated_bearings: Path) -> None:
    cnn = load_usecase("BearingUseCase", {"model": "cnn"})
    ffnn = load_usecase("BearingUseCase", {"model": "ffnn"})
    a = cnn.client_dataset(generated_bearings, ["Bearing1_1", "Bearing1_2"])
    b = ffnn.client_dataset(generated_bearings, ["Bearing1_1", "Bearing1_2"])
    assert a.x.shape[1:] == (129, 21, 2) and b.x.shape[1:] == (54,)
    assert len(a) == len(b) > 0
    np.testing.assert_allclose(a.y, b.y)
    assert a.y.min() == 0.0  # the last snapshot of a run-to-failure bearing has no life left
    groups = ffnn.eval_datasets(generated_bearings, ["Bearing1_3", "Bearing2_3"])
    assert list(groups) == ["Bearing1_3", "Bearing2_3"]


def test_summary_split_and_missing_bearings(generated_bearings: Path) -> None:
    uc = load_usecase("BearingUseCase", {"model": "ffnn"})
    summary = uc.data_summary(generated_bearings, None)
    assert summary["bearings"][0] == "Bearing1_1" and summary["samples"] > 100
    clients, test = uc.federation_split(generated_bearings, 2)
    assert clients == [["Bearing1_1", "Bearing1_2"], ["Bearing2_1", "Bearing2_2"]]
    assert test == ["Bearing1_3", "Bearing2_3"]
    with pytest.raises(DataError, match="Bearing3_1"):
        uc.federation_split(generated_bearings, 3)
    with pytest.raises(DataError, match="Bearing9_9"):
        uc.client_dataset(generated_bearings, ["Bearing9_9"])


def test_predict_table(generated_bearings: Path) -> None:
    uc = load_usecase("BearingUseCase", {"model": "ffnn"})
    seed_everything(0)
    model = uc.build_model()
    last = uc.predict_table(model, generated_bearings, all_rows=False)
    assert list(last.columns[:2]) == ["bearing", "rul_hours"]
    assert len(last) == 6
    every = uc.predict_table(model, generated_bearings, all_rows=True)
    assert len(every) == sum(
        len(d) for d in uc.eval_datasets(generated_bearings, list(last.bearing)).values()
    )


def test_bad_params_are_explained() -> None:
    with pytest.raises(UseCaseError, match="model"):
        load_usecase("BearingUseCase", {"model": "transformer"})
    with pytest.raises(UseCaseError, match="allowed parameters"):
        load_usecase("BearingUseCase", {"modle": "cnn"})
