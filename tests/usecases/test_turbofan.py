"""TurbofanUseCase on generated and real C-MAPSS data: windows, labels, normalisation, split,
models, evaluation metrics and the prediction table."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from kosmos_fl.data.turbofan.cmapss import DEFAULT_SENSORS, read_cmapss, read_rul_file
from kosmos_fl.errors import DataError, UseCaseError
from kosmos_fl.ml.metrics import phm08_score, rmse
from kosmos_fl.ml.models import CnnRul, Lstm2021
from kosmos_fl.ml.train import predict, seed_everything, train_epochs
from kosmos_fl.usecases import load_usecase
from kosmos_fl.usecases.turbofan import FD001_REFERENCE, TurbofanUseCase, cycle_windows, parse_units


def test_registered_under_its_entry_point() -> None:
    uc = load_usecase("TurbofanUseCase", {"sequence_length": 20})
    assert isinstance(uc, TurbofanUseCase)
    assert uc.target_unit == "cycles"
    assert uc.params.sequence_length == 20 and uc.params.rul_cap == 125
    assert TurbofanUseCase().params.sequence_length == 40 and TurbofanUseCase().params.model == "lstm"


def test_windows_labels_and_fixed_normalisation(cmapss_train: Path) -> None:
    uc = TurbofanUseCase({"sequence_length": 10, "rul_cap": 100})
    raw = read_cmapss(cmapss_train)
    one = raw[raw["unit"] == 2].reset_index(drop=True)
    data = uc.client_dataset(cmapss_train, ["2"])
    n = len(one)
    assert data.x.shape == (n, 10, len(DEFAULT_SENSORS) + 1) and data.x.dtype == np.float32
    # label: cycles to the last cycle, capped
    np.testing.assert_array_equal(data.y, np.minimum(n - 1 - np.arange(n), 100).astype(np.float32))
    # mask channel: the first cycle's window has 1 real step, the 10th and later are full
    mask = data.x[..., -1]
    np.testing.assert_array_equal(mask.sum(axis=1)[:12], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10, 10])
    assert np.all(data.x[0, :-1, :] == 0.0)  # padding is zero, mask included
    # fixed z-score constants: the last step of row i is row i normalised with the reference
    ref = np.array([FD001_REFERENCE[c] for c in DEFAULT_SENSORS])
    expect = (one[list(DEFAULT_SENSORS)].to_numpy() - ref[:, 0]) / ref[:, 1]
    np.testing.assert_allclose(data.x[:, -1, :-1], expect, rtol=1e-5, atol=1e-5)
    # window of row 20 = rows 11..20 in time order
    np.testing.assert_allclose(data.x[20, :, :-1], expect[11:21], rtol=1e-5, atol=1e-5)


def test_normalisation_does_not_depend_on_a_clients_data(cmapss_train: Path) -> None:
    """Federated clients hold different engines; a unit's inputs must not change with them."""
    uc = TurbofanUseCase()
    alone = uc.client_dataset(cmapss_train, ["5"])
    with_others = uc.client_dataset(cmapss_train, ["1", "5", "9"])
    n1 = len(read_cmapss(cmapss_train).query("unit == 1"))
    np.testing.assert_array_equal(alone.x, with_others.x[n1 : n1 + len(alone)])
    custom = TurbofanUseCase({"normalisation": {"s_2": [600.0, 2.0]}}).client_dataset(cmapss_train, ["5"])
    raw = read_cmapss(cmapss_train).query("unit == 5")["s_2"].to_numpy()
    np.testing.assert_allclose(custom.x[:, -1, 0], (raw - 600.0) / 2.0, rtol=1e-5)


def test_cycle_windows_match_the_data_modules_full_windows(cmapss_train: Path) -> None:
    from kosmos_fl.data.turbofan.cmapss import make_windows

    df = read_cmapss(cmapss_train)
    values = df[list(DEFAULT_SENSORS)].to_numpy(np.float32)
    ours = cycle_windows(values, df["unit"].to_numpy(), 30)
    theirs = make_windows(df.assign(rul=0.0), DEFAULT_SENSORS, 30)
    full = ours[ours[..., -1].sum(axis=1) == 30][..., :-1]
    np.testing.assert_array_equal(full, theirs.x)


def test_federation_split_is_disjoint_seeded_and_complete(cmapss_train: Path) -> None:
    uc = TurbofanUseCase()
    clients, test = uc.federation_split(cmapss_train, 3)
    assert len(test) == 4  # 20 % of 20 engines
    flat = [u for c in clients for u in c]
    assert len(flat) == len(set(flat)) == 16 and not set(flat) & set(test)
    assert sorted(map(int, flat + test)) == list(range(1, 21))
    assert all(len(c) in (5, 6) for c in clients)
    assert uc.federation_split(cmapss_train, 3) == (clients, test)
    assert TurbofanUseCase({"split_seed": 1}).federation_split(cmapss_train, 3)[1] != test
    with pytest.raises(DataError, match="too few"):
        uc.federation_split(cmapss_train, 20)


def test_eval_groups_and_metric_names(cmapss_train: Path) -> None:
    uc = TurbofanUseCase()
    groups = uc.eval_datasets(cmapss_train, ["3", "unit7"])
    assert list(groups) == ["unit3", "unit7"]
    assert groups["unit3"].y[-1] == 0.0  # run to failure: the last window has RUL 0
    seed_everything(0)
    model = uc.build_model()
    metrics = uc.evaluate(model, groups)
    for key in ("RMSE", "MAE", "PCC", "PHM08", "RMSE_last", "MAE_last", "PHM08_last"):
        assert np.isfinite(metrics[key]), key
    for unit in ("unit3", "unit7"):
        for m in ("RMSE", "MAE", "PCC", "PHM08"):
            assert f"{m}_{unit}" in metrics
    last_pred = np.array([predict(model, g.x)[-1] for g in groups.values()])
    last_true = np.array([g.y[-1] for g in groups.values()])
    assert metrics["PHM08_last"] == pytest.approx(phm08_score(last_true, last_pred), rel=1e-6)
    assert metrics["RMSE_last"] == pytest.approx(rmse(last_true, last_pred), rel=1e-6)
    g3 = groups["unit3"]
    assert metrics["RMSE_unit3"] == pytest.approx(rmse(g3.y, predict(model, g3.x)), rel=1e-6)


def test_test_file_labels_come_from_the_rul_file(cmapss_dir: Path, tmp_path: Path) -> None:
    uc = TurbofanUseCase()
    test_file = cmapss_dir / "test_FD001.txt"
    true_rul = read_rul_file(cmapss_dir / "RUL_FD001.txt")
    groups = uc.eval_datasets(test_file, ["1", "2"])
    assert groups["unit1"].y[-1] == min(true_rul[0], 125)
    assert groups["unit2"].y[-1] == min(true_rul[1], 125)
    # without the RUL file: no labels, a clear error for training; prediction still works
    shutil.copy(test_file, tmp_path / "test_FD001.txt")
    with pytest.raises(DataError, match="no true RUL labels"):
        uc.client_dataset(tmp_path / "test_FD001.txt", ["1"])
    assert uc.data_summary(tmp_path / "test_FD001.txt", None)["samples"] == 0
    table = uc.predict_table(uc.build_model(), tmp_path / "test_FD001.txt", all_rows=False)
    assert len(table) == 20


def test_predict_table_columns_and_rows(cmapss_train: Path) -> None:
    uc = TurbofanUseCase()
    model = uc.build_model()
    last = uc.predict_table(model, cmapss_train, all_rows=False)
    assert list(last.columns)[:2] == ["unit", "rul_cycles"]
    assert last["unit"].tolist() == list(range(1, 21))
    raw = read_cmapss(cmapss_train)
    assert last["cycle"].tolist() == raw.groupby("unit")["cycle"].max().tolist()
    every = uc.predict_table(model, cmapss_train, all_rows=True)
    assert len(every) == len(raw) and (every["rul_cycles"] >= 0).all()
    pd.testing.assert_frame_equal(
        every.groupby("unit").tail(1).reset_index(drop=True), last, check_exact=False, atol=0.01
    )
    # a folder holding one train file is accepted too
    assert len(uc.predict_table(model, cmapss_train.parent, all_rows=False)) == 20


def test_data_summary_and_selection_errors(cmapss_train: Path) -> None:
    uc = TurbofanUseCase()
    summary = uc.data_summary(cmapss_train, ["1", "2"])
    assert summary["units"] == ["1", "2"] and summary["samples"] == summary["cycles"] > 100
    with pytest.raises(DataError, match="engine unit\\(s\\) 99 not found"):
        uc.client_dataset(cmapss_train, ["1", "99"])
    with pytest.raises(DataError, match="'pump' is not an engine unit"):
        uc.client_dataset(cmapss_train, ["pump"])
    with pytest.raises(DataError, match="does not exist"):
        uc.client_dataset(cmapss_train.parent / "nope.txt", None)
    with pytest.raises(DataError, match="set the use case parameter 'table'"):
        uc.client_dataset(Path("postgresql://u@localhost/db"), None)
    assert parse_units(["12", "unit12", "unit_3", " 4 "]) == [12, 3, 4]


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"model": "transformer"}, "model"),
        ({"sequence_length": 1}, "sequence_length"),
        ({"rul_cap": -5}, "rul_cap"),
        ({"sensors": ["s_2", "s_99"]}, "sensors"),
        ({"normalisation": {"s_2": [1.0, 0.0]}}, "normalisation"),
        ({"sequence_lenght": 30}, "sequence_lenght"),
    ],
)
def test_wrong_parameters_are_one_line_errors(params: dict[str, object], key: str) -> None:
    with pytest.raises(UseCaseError) as info:
        TurbofanUseCase(params)
    message = str(info.value)
    assert "TurbofanUseCase parameter" in message and "\n" not in message
    assert key in message or "normalisation" in message


@pytest.mark.parametrize("model", ["cnn", "lstm"])
def test_models_learn_and_ignore_padding(cmapss_train: Path, model: str) -> None:
    uc = TurbofanUseCase({"model": model})
    clients, test = uc.federation_split(cmapss_train, 1)
    data = uc.client_dataset(cmapss_train, clients[0])
    groups = uc.eval_datasets(cmapss_train, test)
    seed_everything(1)
    net = uc.build_model()
    assert isinstance(net, CnnRul if model == "cnn" else Lstm2021)
    before = uc.evaluate(net, groups)["RMSE"]
    train_epochs(net, data.x, data.y, epochs=4, lr=3e-3, batch_size=64, seed=1)
    after = uc.evaluate(net, groups)["RMSE"]
    assert after < 0.6 * before, (before, after)
    # masked (padded) steps do not change the prediction, whatever they hold
    x = data.x[:40].copy()
    junk = x.copy()
    pad = junk[..., -1] == 0
    junk[..., :-1][pad] = 7.0
    np.testing.assert_allclose(predict(net, x), predict(net, junk), rtol=1e-4, atol=1e-3)


def test_models_scale_to_the_cap_and_count_parameters() -> None:
    x = torch.zeros(3, 30, 15)
    x[..., -1] = 1
    assert CnnRul(14, 30, target_scale=200.0)(x).shape == (3,)
    assert Lstm2021(14)(x).shape == (3,)
    lstm_layers = [m for m in Lstm2021(14).modules() if isinstance(m, torch.nn.LSTM)]
    assert [m.hidden_size for m in lstm_layers] == [100, 50]


@pytest.mark.realdata
def test_real_fd001(fd001_train: Path) -> None:
    """The real NASA file: 100 engines, 20 held out, windows for every cycle, a model that learns."""
    uc = TurbofanUseCase({"model": "cnn"})  # the fast model: this checks the data path
    clients, test = uc.federation_split(fd001_train, 4)
    assert len(test) == 20 and sorted(len(c) for c in clients) == [20, 20, 20, 20]
    raw = read_cmapss(fd001_train)
    assert len(raw) == 20631
    data = uc.client_dataset(fd001_train, clients[0])
    assert len(data) == int(raw["unit"].isin([int(u) for u in clients[0]]).sum())
    assert data.y.max() == 125 and data.y.min() == 0
    # all 24 inputs stay finite with the reference constants (constant sensors have scale 1)
    every = TurbofanUseCase({"sensors": [f"s_{i}" for i in range(1, 22)]}).client_dataset(fd001_train, ["1"])
    assert np.isfinite(every.x).all() and np.abs(every.x).max() < 10
    groups = uc.eval_datasets(fd001_train, test[:5])
    seed_everything(0)
    model = uc.build_model()
    train_epochs(model, data.x, data.y, epochs=3, lr=2e-3, batch_size=128, seed=0)
    metrics = uc.evaluate(model, groups)
    constant = float(np.sqrt(np.mean([np.mean((g.y - data.y.mean()) ** 2) for g in groups.values()])))
    assert metrics["RMSE"] < 0.7 * constant, (metrics["RMSE"], constant)
