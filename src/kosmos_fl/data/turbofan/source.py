"""Where a turbofan use case's engines come from: a NASA C-MAPSS text file, a 2021 KOSMoS CSV, or
a PostgreSQL table (the 2021 layout or C-MAPSS columns), read into one frame of rows with capped
RUL labels. No model code: :mod:`kosmos_fl.usecases.turbofan` turns the rows into windows."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from kosmos_fl.data.turbofan.cmapss import add_rul, read_cmapss, read_rul_file
from kosmos_fl.errors import DataError


def read_engines(
    data_path: Path | str,
    units: Sequence[int] | None,
    *,
    columns: Sequence[str],
    rul_cap: float,
    table: str | None = None,
    file_id: int | None = None,
) -> pd.DataFrame:
    """Rows of ``units`` (None: all) with the input ``columns`` and ``rul`` (capped at ``rul_cap``;
    NaN when the source has no labels), sorted by unit and cycle. ``data_path`` is a NASA file, a
    folder with one ``train_*.txt``, a 2021 CSV, or a PostgreSQL DSN with its ``table``."""
    dsn = dsn_of(data_path)
    if dsn is not None:
        from kosmos_fl.data.turbofan.postgres import RUL_COLUMN, read_cmapss_table
        from kosmos_fl.data.turbofan.turbofan2021 import read_2021_table

        if not table:
            raise DataError("data_path is a PostgreSQL DSN: set the use case parameter 'table' too")
        old = read_2021_table(dsn, table, file_id)  # the 2021 table layout, else None
        if old is not None:
            df = old.assign(rul=np.minimum(old["rul"].to_numpy(np.float64), rul_cap))
            if units is not None:
                df = df[df["unit"].isin(units)]
        elif file_id is not None:
            raise DataError(f"table '{table}' has no file_id column; remove the parameter file_id")
        else:
            df = read_cmapss_table(dsn, table, columns=columns, units=units)
            if RUL_COLUMN in df.columns:
                df["rul"] = np.minimum(df[RUL_COLUMN].to_numpy(np.float64), rul_cap)
            else:
                df = add_rul(df, cap=rul_cap)
    else:
        df = read_file(data_file(Path(data_path)), rul_cap, file_id)
        if units is not None:
            df = df[df["unit"].isin(units)]
    if units is not None:
        lacking = sorted(set(units) - set(df["unit"].unique().tolist()))
        if lacking:
            raise DataError(
                f"engine unit(s) {', '.join(map(str, lacking[:10]))} not found in "
                f"{shown(data_path)}; check the selected units"
            )
    if df.empty:
        raise DataError(f"no engine data in {shown(data_path)}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(
            f"{shown(data_path)} has no column(s) {', '.join(missing)}; fix the use case "
            f"parameter sensors (remaining_sensors)"
        )
    return df.reset_index(drop=True)


def dsn_of(data_path: Path | str) -> str | None:
    """The PostgreSQL DSN in ``data_path``, also when it arrived as a ``Path`` (which squeezes
    ``//``) or was prefixed with a working directory by path resolution."""
    from kosmos_fl.data.turbofan.postgres import normalize_dsn

    text = str(data_path)
    m = re.search(r"postgres(?:ql)?(?:\+[a-z0-9_]+)?:/", text, re.IGNORECASE)
    return normalize_dsn(text[m.start() :]) if m else None


def shown(data_path: Path | str) -> str:
    """``data_path`` as it may appear in a message: a DSN without its password."""
    from kosmos_fl.data.turbofan.postgres import redact_dsn

    dsn = dsn_of(data_path)
    return redact_dsn(dsn) if dsn else str(data_path)


def data_file(path: Path) -> Path:
    """``path`` itself, or the single ``train_*.txt`` in the folder ``path``."""
    if path.is_dir():
        found = sorted(path.glob("train_*.txt"))
        if not found and any(c.is_dir() and c.name.startswith("Bearing") for c in path.iterdir()):
            raise DataError(
                f"{path} holds bearing folders, but the turbofan use case (TurbofanUseCase) reads one "
                "NASA C-MAPSS file (train_FD00x.txt); bearings are for BearingUseCase"
            )
        if len(found) != 1:
            what = ", ".join(f.name for f in found) if found else "none"
            raise DataError(
                f"{path} is a folder with {len(found)} train_*.txt files ({what}); point the data path "
                f"(--data or data_path) at one C-MAPSS file"
            )
        return found[0]
    if not path.exists():
        raise DataError(f"C-MAPSS data {path} does not exist; check the data path (--data or data_path)")
    return path


def read_file(path: Path, cap: float, file_id: int | None = None) -> pd.DataFrame:
    """A NASA file with capped labels: run-to-failure for train files, from ``RUL_FD00x.txt`` for
    test files when it lies beside them, else NaN; or a 2021 KOSMoS CSV with its ``rul`` column."""
    from kosmos_fl.data.turbofan.turbofan2021 import is_2021_csv, read_2021_csv

    if is_2021_csv(path):
        df = read_2021_csv(path, file_id)
        return df.assign(rul=np.minimum(df["rul"].to_numpy(np.float64), cap))
    if file_id is not None:
        raise DataError(f"{path} is a NASA file without file_id column; remove the parameter file_id")
    df = read_cmapss(path)
    if not path.name.lower().startswith("test_"):
        return add_rul(df, cap=cap)
    rul_file = path.with_name("RUL_" + path.name[len("test_") :])
    if rul_file.is_file():
        return add_rul(df, cap=cap, final_rul=read_rul_file(rul_file))
    return df.assign(rul=np.nan)
