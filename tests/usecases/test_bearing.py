"""The built-in bearing use case on generated FEMTO-format data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kosmos_fl.data.bearing.onset import RATIO_INPUTS
from kosmos_fl.errors import DataError, UseCaseError
from kosmos_fl.ml.train import seed_everything, train_epochs
from kosmos_fl.usecases import load_usecase
from kosmos_fl.usecases.bearing import resample_index


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


MLP = {"model": "mlp", "hidden": [8], "spans": [5.0, 20.0], "elapsed": True}


def test_mlp_inputs_and_interval_columns(generated_bearings: Path) -> None:
    uc = load_usecase("BearingUseCase", MLP)
    data = uc.client_dataset(generated_bearings, ["Bearing1_1", "Bearing1_2"])
    seed_everything(0)
    model = uc.build_model()
    assert data.x.shape[1] == 54 * 3 + 3  # two spans, running max, speed + load, elapsed hours
    train_epochs(model, data.x, data.y, epochs=3, lr=1e-2, batch_size=16, seed=0)
    every = uc.predict_table(model, generated_bearings, all_rows=True)
    # the old columns keep their place; the interval is appended
    assert list(every.columns) == [
        "bearing",
        "rul_hours",
        "snapshot",
        "elapsed_hours",
        "rul_hours_low",
        "rul_hours_high",
        "rul_hours_conservative",
    ]
    assert (every.rul_hours_conservative == every.rul_hours_low).all()
    assert (every.rul_hours_low <= every.rul_hours).all() and (every.rul_hours <= every.rul_hours_high).all()
    assert (every.rul_hours_high > every.rul_hours_low).any()
    last = uc.predict_table(model, generated_bearings, all_rows=False)
    for _, row in last.iterrows():  # the last row of a bearing is the same whether all rows are asked or not
        same = every[(every.bearing == row.bearing) & (every.snapshot == row.snapshot)].iloc[0]
        assert same.rul_hours == row.rul_hours and same.rul_hours_high == row.rul_hours_high
    metrics = uc.evaluate(model, uc.eval_datasets(generated_bearings, ["Bearing1_3"]))
    assert np.isfinite(metrics["RMSE"]) and "RMSE_Bearing1_3" in metrics


def test_point_models_have_no_interval_columns(generated_bearings: Path) -> None:
    uc = load_usecase("BearingUseCase", {"model": "ffnn"})
    seed_everything(0)
    table = uc.predict_table(uc.build_model(), generated_bearings, all_rows=False)
    assert list(table.columns) == ["bearing", "rul_hours", "snapshot", "elapsed_hours"]


def test_failure_time_smoothing_is_applied_per_bearing(generated_bearings: Path) -> None:
    raw = load_usecase("BearingUseCase", {**MLP, "smooth_span": 0.0})
    smooth = load_usecase("BearingUseCase", {**MLP, "smooth_span": 10.0, "smooth_down_span": None})
    seed_everything(0)
    model = raw.build_model()
    a = raw.predict_table(model, generated_bearings, all_rows=True)
    b = smooth.predict_table(model, generated_bearings, all_rows=True)
    first = a.groupby("bearing").head(1).index  # the first snapshot of a bearing has no history
    np.testing.assert_allclose(a.rul_hours[first], b.rul_hours[first], atol=1e-4)
    assert not np.allclose(a.rul_hours, b.rul_hours)
    # the implied failure time (elapsed + RUL) varies less after smoothing
    fa = (a.elapsed_hours + a.rul_hours).groupby(a.bearing).std().mean()
    fb = (b.elapsed_hours + b.rul_hours).groupby(b.bearing).std().mean()
    assert fb < fa


def test_asymmetric_smoothing_is_more_conservative(generated_bearings: Path) -> None:
    sym = load_usecase("BearingUseCase", {**MLP, "smooth_span": 50.0, "smooth_down_span": None})
    asym = load_usecase("BearingUseCase", {**MLP, "smooth_span": 50.0, "smooth_down_span": 2.0})
    seed_everything(0)
    model = sym.build_model()
    a = sym.predict_table(model, generated_bearings, all_rows=True)
    b = asym.predict_table(model, generated_bearings, all_rows=True)
    # following earlier implied failure times faster gives a lower RUL on average, never a later one
    # at the start
    assert b.rul_hours.mean() < a.rul_hours.mean()
    first = a.groupby("bearing").head(1).index
    np.testing.assert_allclose(a.rul_hours[first], b.rul_hours[first], atol=1e-4)
    with pytest.raises(UseCaseError, match="smooth_down_span"):
        load_usecase("BearingUseCase", {**MLP, "smooth_down_span": 0.5})


def test_balance_repeats() -> None:
    from kosmos_fl.usecases.bearing import balance_repeats

    assert balance_repeats([2803, 871]) == [1, 3]
    assert balance_repeats([911, 797]) == [1, 1]
    assert balance_repeats([10, 0]) == [1, 1]
    assert balance_repeats([]) == []


def test_balanced_client_dataset_repeats_the_shorter_bearing(generated_bearings: Path) -> None:
    names = ["Bearing1_1", "Bearing1_2"]
    plain = load_usecase("BearingUseCase", {**MLP, "balance_bearings": False})
    balanced = load_usecase("BearingUseCase", {**MLP, "balance_bearings": True})
    sizes = [len(plain.client_dataset(generated_bearings, [n])) for n in names]
    a = plain.client_dataset(generated_bearings, names)
    b = balanced.client_dataset(generated_bearings, names)
    from kosmos_fl.usecases.bearing import balance_repeats

    assert len(a) == sum(sizes)
    assert len(b) == sum(n * r for n, r in zip(sizes, balance_repeats(sizes), strict=True))
    # the same rows, only repeated: every distinct target of the plain set is there
    assert set(np.round(a.y, 5)) == set(np.round(b.y, 5))
    # evaluation sets are one bearing each and never repeated
    assert len(balanced.eval_datasets(generated_bearings, ["Bearing1_3"])["Bearing1_3"]) == len(
        plain.eval_datasets(generated_bearings, ["Bearing1_3"])["Bearing1_3"]
    )


def test_round_metrics_score_the_predictions_predict_reports(generated_bearings: Path) -> None:
    uc = load_usecase(
        "BearingUseCase", {**MLP, "elapsed": False, "smooth_span": 20.0, "smooth_down_span": 3.0}
    )
    seed_everything(0)
    model = uc.build_model()
    train = uc.client_dataset(generated_bearings, ["Bearing1_1", "Bearing1_2"])
    train_epochs(model, train.x, train.y, epochs=5, lr=0.01, batch_size=16, seed=0)  # varied predictions
    groups = uc.eval_datasets(generated_bearings, ["Bearing1_3"])
    table = uc.predict_table(model, generated_bearings, all_rows=True)
    rows = table[table.bearing == "Bearing1_3"]
    y = groups["Bearing1_3"].y
    expected = float(np.sqrt(np.mean((rows.rul_hours.to_numpy() - y) ** 2)))
    # predict_table rounds to 4 decimals
    assert uc.evaluate(model, groups)["RMSE_Bearing1_3"] == pytest.approx(expected, abs=1e-3)
    raw = load_usecase("BearingUseCase", {**MLP, "elapsed": False, "smooth_span": 0.0})
    assert raw.evaluate(model, groups)["RMSE_Bearing1_3"] != pytest.approx(expected, abs=1e-3)


RATIO = {"model": "ratio", "rows_per_bearing": 500, "smooth_span": 0.0, "interval_scale": 1.0}


def test_ratio_model_trains_and_reports_a_conservative_estimate(generated_bearings: Path) -> None:
    uc = load_usecase("BearingUseCase", RATIO)
    data = uc.client_dataset(generated_bearings, ["Bearing1_1", "Bearing1_2"])
    assert data.x.shape == (2 * 500, len(RATIO_INPUTS))  # every bearing the same number of rows
    seed_everything(0)
    model = uc.build_model()
    train_epochs(model, data.x, data.y, epochs=5, lr=1e-2, batch_size=64, seed=0)
    every = uc.predict_table(model, generated_bearings, all_rows=True)
    assert (every.rul_hours >= 0).all()
    assert (every.rul_hours_conservative <= every.rul_hours).all()
    assert (every.rul_hours <= every.rul_hours_high).all()
    metrics = uc.evaluate(model, uc.eval_datasets(generated_bearings, ["Bearing1_3"]))
    assert np.isfinite(metrics["RMSE"])


def test_resample_index_spreads_rows_over_the_whole_life() -> None:
    np.testing.assert_array_equal(resample_index(3, 6), [0, 0, 1, 1, 2, 2])
    thin = resample_index(100, 10)
    assert len(thin) == 10 and thin[-1] == 99 and np.all(np.diff(thin) == 10)
    assert resample_index(0, 5).size == 0
