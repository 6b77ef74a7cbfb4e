"""C-MAPSS reader, labels, normaliser and windows on real FD001 and generated files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kosmos_fl.data.turbofan.cmapss import (
    COLUMNS,
    DEFAULT_SENSORS,
    Normalizer,
    add_rul,
    last_windows,
    load_cmapss,
    make_windows,
    read_cmapss,
    read_rul_file,
    split_units,
)
from kosmos_fl.data.turbofan.generate import generate_cmapss
from kosmos_fl.errors import DataError, DataFormatError


@pytest.fixture(scope="module")
def generated_cmapss(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_cmapss(tmp_path_factory.mktemp("cmapss"), units=8, seed=3).parent


@pytest.mark.realdata
def test_real_fd001(cmapss_train_fd001: Path) -> None:
    assert cmapss_train_fd001.read_text().splitlines()[0].endswith(" ")  # trailing spaces
    df = read_cmapss(cmapss_train_fd001)
    assert df.shape == (20631, 26) and tuple(df.columns) == COLUMNS
    assert df["unit"].nunique() == 100 and df["unit"].dtype == np.int64
    assert df.loc[0, "s_2"] == pytest.approx(641.82)
    labelled = add_rul(df, cap=None)
    unit1 = labelled[labelled["unit"] == 1]
    assert unit1["rul"].iloc[0] == len(unit1) - 1 == 191 and unit1["rul"].iloc[-1] == 0
    capped = add_rul(df)
    assert capped["rul"].max() == 125 and (capped["rul"] == 125).sum() > 0
    # the 7 sensors left out of the defaults are (nearly) constant in FD001
    others = [c for c in df.columns if c.startswith("s_") and c not in DEFAULT_SENSORS]
    assert len(DEFAULT_SENSORS) == 14 and len(others) == 7
    assert (df[others].std() / df[others].mean().abs()).max() < 1e-3


@pytest.mark.realdata
def test_real_fd001_windows_with_held_out_engines(cmapss_train_fd001: Path) -> None:
    df = add_rul(read_cmapss(cmapss_train_fd001))
    train, val = split_units(df, 0.2, seed=0)
    assert set(train["unit"]).isdisjoint(val["unit"]) and val["unit"].nunique() == 20
    norm = Normalizer.fit(train)
    scaled = norm.transform(train)
    np.testing.assert_allclose(scaled[list(DEFAULT_SENSORS)].mean(), 0, atol=1e-9)
    w = make_windows(scaled)
    n_expected = sum(len(g) - 29 for _, g in train.groupby("unit"))
    assert w.x.shape == (n_expected, 30, 14) and w.x.dtype == np.float32
    assert w.mask.all() and (w.lengths == 30).all()
    last = last_windows(norm.transform(val))
    assert last.x.shape == (20, 30, 14) and np.all(last.y == 0)


def test_generated_files_are_in_nasa_format(generated_cmapss: Path) -> None:
    for name in ("train_FD001.txt", "test_FD001.txt"):
        line = (generated_cmapss / name).read_text().splitlines()[0]
        assert line.endswith(" ") and len(line.split()) == 26
    train = read_cmapss(generated_cmapss / "train_FD001.txt")
    assert train["unit"].nunique() == 8
    assert read_rul_file(generated_cmapss / "RUL_FD001.txt").shape == (8,)


def test_test_split_labels_use_the_rul_file(generated_cmapss: Path) -> None:
    test = load_cmapss(generated_cmapss, split="test", cap=None)
    final = read_rul_file(generated_cmapss / "RUL_FD001.txt")
    last_rows = test.groupby("unit").tail(1)
    np.testing.assert_array_equal(last_rows["rul"].to_numpy(), final)
    first_rows = test.groupby("unit").head(1)
    lengths = test.groupby("unit").size().to_numpy()
    np.testing.assert_array_equal(first_rows["rul"].to_numpy(), final + lengths - 1)
    by_map = add_rul(read_cmapss(generated_cmapss / "test_FD001.txt"), None, dict(enumerate(final, 1)))
    np.testing.assert_array_equal(by_map["rul"], test["rul"])
    with pytest.raises(DataError, match="RUL file has 3 values"):
        add_rul(test, None, final[:3])


def test_sensors_degrade_in_generated_data(generated_cmapss: Path) -> None:
    train = load_cmapss(generated_cmapss, cap=None)
    early = train[train["rul"] > train.groupby("unit")["cycle"].transform("max") * 0.8]
    late = train[train["rul"] < 10]
    assert late["s_4"].mean() > early["s_4"].mean() + 15
    assert late["s_7"].mean() < early["s_7"].mean() - 1.5


def test_windows_pad_short_units_on_the_left() -> None:
    df = pd.DataFrame(
        {
            "unit": [1, 1, 1, 2, 2, 2, 2, 2],
            "cycle": [1, 2, 3, 1, 2, 3, 4, 5],
            "a": [1.0, 2, 3, 10, 20, 30, 40, 50],
            "rul": [2.0, 1, 0, 4, 3, 2, 1, 0],
        }
    )
    w = make_windows(df, ["a"], seq_len=4, pad_value=-1.0)
    # unit 1 is shorter than the window: one padded window; unit 2: windows ending at 4 and 5
    assert w.units.tolist() == [1, 2, 2] and w.cycles.tolist() == [3, 4, 5]
    np.testing.assert_array_equal(w.x[0, :, 0], [-1, 1, 2, 3])
    np.testing.assert_array_equal(w.mask[0], [False, True, True, True])
    np.testing.assert_array_equal(w.x[2, :, 0], [20, 30, 40, 50])
    assert w.lengths.tolist() == [3, 4, 4] and w.y.tolist() == [0, 1, 0]
    strided = make_windows(df, ["a"], seq_len=2, stride=2)
    assert strided.cycles.tolist() == [3, 3, 5]  # counted back from each unit's end
    last = last_windows(df, ["a"], seq_len=4)
    assert last.cycles.tolist() == [3, 5] and last.lengths.tolist() == [3, 4]
    unlabeled = last_windows(df.drop(columns="rul"), ["a"], seq_len=2)
    assert np.isnan(unlabeled.y).all()
    with pytest.raises(DataError, match="seq_len"):
        make_windows(df, ["a"], seq_len=0)
    with pytest.raises(DataError, match=r"\['b'\]"):
        make_windows(df, ["b"])


def test_normaliser_fits_train_only_and_serialises(generated_cmapss: Path) -> None:
    df = load_cmapss(generated_cmapss)
    train, val = split_units(df, 0.25, seed=1)
    norm = Normalizer.fit(train)
    restored = Normalizer.from_dict(json.loads(json.dumps(norm.to_dict())))
    pd.testing.assert_frame_equal(restored.transform(val), norm.transform(val))
    expected = (val["s_2"] - train["s_2"].mean()) / train["s_2"].std(ddof=0)
    np.testing.assert_allclose(norm.transform(val)["s_2"], expected)
    # constant columns get scale 1 instead of dividing by zero
    const = Normalizer.fit(train, ["s_1", "s_2"], method="minmax")
    out = const.transform(val)
    assert np.isfinite(out["s_1"]).all() and out["s_1"].abs().max() == 0
    assert out["unit"].equals(val["unit"])  # other columns untouched
    with pytest.raises(DataFormatError):
        Normalizer.from_dict({"columns": ["a"], "offset": [0, 1], "scale": [1]})


def test_reader_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_cmapss(tmp_path / "train_FD001.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("1 1 0.1 0.2\n1 2 0.1 0.2\n")
    with pytest.raises(DataFormatError, match="4 columns, expected 26"):
        read_cmapss(bad)
    with pytest.raises(DataError, match="split"):
        load_cmapss(tmp_path, split="valid")  # type: ignore[arg-type]
