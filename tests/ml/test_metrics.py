"""Metric functions against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kosmos_fl.ml.metrics import mae, pearson, phm08_score, phm2012_accuracy, regression_report, rmse


def test_rmse_mae_by_hand() -> None:
    y, p = np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 5.0])
    assert rmse(y, p) == pytest.approx(math.sqrt((1 + 0 + 4) / 3))
    assert mae(y, p) == pytest.approx(1.0)


def test_pearson() -> None:
    assert pearson(np.array([1, 2, 3]), np.array([2, 4, 6])) == pytest.approx(1.0)
    assert pearson(np.array([1, 2, 3]), np.array([3, 2, 1])) == pytest.approx(-1.0)
    assert pearson(np.array([1, 2, 3]), np.array([5, 5, 5])) == 0.0
    assert math.isnan(pearson(np.array([1.0]), np.array([1.0])))


def test_report_names_and_means() -> None:
    rep = regression_report(
        {
            "Bearing1_3": (np.array([1.0, 2.0]), np.array([1.0, 2.0])),
            "B": (np.array([0.0, 2.0]), np.array([2.0, 0.0])),
        }
    )
    assert rep["RMSE_Bearing1_3"] == 0.0
    assert rep["RMSE_B"] == pytest.approx(2.0)
    assert rep["RMSE"] == pytest.approx(1.0)
    assert rep["PCC_B"] == pytest.approx(-1.0)
    assert set(rep) >= {"RMSE", "MAE", "PCC", "MAE_B"}


def test_phm08_is_asymmetric() -> None:
    early = phm08_score(np.array([50.0]), np.array([40.0]))
    late = phm08_score(np.array([50.0]), np.array([60.0]))
    assert early == pytest.approx(math.exp(10 / 13) - 1)
    assert late == pytest.approx(math.exp(1.0) - 1)
    assert late > early


def test_phm2012_accuracy() -> None:
    assert phm2012_accuracy(100.0, 100.0) == pytest.approx(1.0)
    # Er = +20 (underestimate): 0.5 ; Er = -5 (overestimate): 0.5
    assert phm2012_accuracy(100.0, 80.0) == pytest.approx(0.5)
    assert phm2012_accuracy(100.0, 105.0) == pytest.approx(0.5)
