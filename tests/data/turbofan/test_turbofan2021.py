"""The 2021 KOSMoS turbofan layout (``unit_num``, ``file_id``, ``sensor_xx``, ``rul``) read from a
CSV file and from a real PostgreSQL table (127.0.0.1:5432, database ``test``; ``scripts/services.sh``
starts it), and the 2021 turbofan parameters."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kosmos_fl.config.compat2021 import server_settings
from kosmos_fl.data.turbofan.cmapss import add_rul, read_cmapss
from kosmos_fl.data.turbofan.postgres import drop_table
from kosmos_fl.data.turbofan.turbofan2021 import current_name, read_2021_csv
from kosmos_fl.errors import DataError, DataFormatError, UseCaseError
from kosmos_fl.usecases.turbofan import TurbofanUseCase
from tests.conftest import write_2021_turbofan_csv

DSN = "postgresql://postgres@127.0.0.1:5432/test"

SENSORS_2021 = [
    "setting_1",
    "setting_2",
    "sensor_02",
    "sensor_03",
    "sensor_04",
    "sensor_07",
    "sensor_08",
    "sensor_09",
    "sensor_11",
    "sensor_12",
    "sensor_13",
    "sensor_14",
    "sensor_15",
    "sensor_17",
    "sensor_20",
    "sensor_21",
]  # fmt: skip  (the 2021 server config's remaining_sensors)


@pytest.fixture(scope="module")
def csv_2021(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_2021_turbofan_csv(tmp_path_factory.mktemp("tf") / "train.csv", units=6, seed=2)


def test_2021_csv_reads_as_the_nasa_rows(csv_2021: Path) -> None:
    df = read_2021_csv(csv_2021, file_id=2)
    nasa = add_rul(read_cmapss(csv_2021.parent / "nasa2" / "train_FD001.txt"), cap=None)
    assert list(df["unit"]) == list(nasa["unit"]) and list(df["cycle"]) == list(nasa["cycle"])
    np.testing.assert_allclose(df["s_17"], nasa["s_17"])
    np.testing.assert_allclose(df["rul"], nasa["rul"])


def test_2021_csv_with_a_cycle_column_is_sorted_by_it(tmp_path: Path) -> None:
    rows = pd.DataFrame({"unit_num": [1, 1, 1], "time_cycles": [3, 1, 2], "sensor_02": [3.0, 1.0, 2.0],
                         "rul": [0.0, 2.0, 1.0]})  # fmt: skip
    rows.to_csv(tmp_path / "t.csv", index=False)
    df = read_2021_csv(tmp_path / "t.csv")
    assert list(df["cycle"]) == [1, 2, 3] and list(df["s_2"]) == [1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    ("text", "match"),
    [("unit_num,sensor_02\n1,2\n", "'rul' column"), ("unit_num,sensor_02,rul\n1,x,3\n", "row 1")],
)
def test_bad_2021_csv_gets_one_line(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "t.csv").write_text(text, encoding="utf-8")
    with pytest.raises(DataFormatError, match=match):
        read_2021_csv(tmp_path / "t.csv")


def test_2021_parameters_train_on_the_2021_csv(csv_2021: Path) -> None:
    uc = TurbofanUseCase({
        "remaining_sensors": SENSORS_2021, "min_max_norm_columns": ["sensor_17", "setting_2"], "file_id": 1,
        "loss": "WeightedRootMeanSquaredError", "sequence_length": 30, "model": "lstm2021",
        "padding_value": -99,
    })  # fmt: skip
    assert uc.params.sensors[2:4] == ("s_2", "s_3")
    data = uc.client_dataset(csv_2021, None)
    assert data.x.shape[1:] == (30, len(SENSORS_2021) + 1)
    col = list(uc.params.sensors).index("s_17")
    real = data.x[..., -1] > 0
    assert data.x[..., col][real].min() == pytest.approx(0) and data.x[..., col][real].max() == pytest.approx(
        1
    )
    summary = uc.data_summary(csv_2021, ["1", "2"])
    assert summary["units"] == ["1", "2"]
    with pytest.raises(DataError, match="file_id"):
        TurbofanUseCase({}).client_dataset(csv_2021, None)  # two files mixed: unit numbers repeat
    with pytest.raises(UseCaseError, match="unknown loss"):
        TurbofanUseCase({"loss": "Hinge"})


def test_2021_server_turbofan_block_maps_to_data_path_and_table() -> None:
    broadcast = {"sequence_length": 100, "loss": "RootMeanSquaredError", "remaining_sensors": SENSORS_2021,
                 "min_max_norm_columns": ["sensor_17"]}  # fmt: skip
    old = {
        "usecase": {"name": "TurbofanUseCase", "params": {"file_path": "../test.csv"}, "broadcast": broadcast}
    }
    new = server_settings(old)
    assert new["data_path"] == "../test.csv"
    assert new["usecase"]["broadcast_params"]["loss"] == "RootMeanSquaredError"
    db = {"user_name": "kosmos", "password": "p@ss", "table_name": "engines", "host": "db", "port": 5433}
    pg = server_settings({"usecase": {"name": "TurbofanUseCase", "params": db}})
    assert pg["data_path"] == "postgresql://kosmos:p%40ss@db:5433/turbofan"
    assert pg["usecase"]["params"] == {"table": "engines"}
    assert current_name("sensor_02") == "s_2" and current_name("setting_1") == "setting_1"


@pytest.fixture
def table_2021(csv_2021: Path) -> Iterator[str]:
    """The 2021 CSV's rows in a real PostgreSQL table of the 2021 layout (as pandas.to_sql wrote it)."""
    import psycopg
    import sqlalchemy as sa

    try:
        psycopg.connect(DSN, connect_timeout=5).close()
    except psycopg.Error as exc:
        pytest.fail(f"PostgreSQL at {DSN} is not reachable ({exc}); run `bash scripts/services.sh`")
    name = f"kosmos_2021_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(DSN.replace("postgresql://", "postgresql+psycopg://"))
    pd.read_csv(csv_2021).drop(columns=["Unnamed: 0"]).to_sql(name, engine, index=False)
    engine.dispose()
    yield name
    drop_table(DSN, name)


def test_2021_table_layout_reads_like_the_csv(table_2021: str, csv_2021: Path) -> None:
    params = {"table": table_2021, "file_id": 1, "sequence_length": 10}
    from_db = TurbofanUseCase(params).client_dataset(DSN, ["1", "3"])  # type: ignore[arg-type]
    from_csv = TurbofanUseCase({"file_id": 1, "sequence_length": 10}).client_dataset(csv_2021, ["1", "3"])
    np.testing.assert_allclose(from_db.x, from_csv.x)
    np.testing.assert_allclose(from_db.y, from_csv.y)
