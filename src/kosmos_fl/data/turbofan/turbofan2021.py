"""The 2021 KOSMoS turbofan data layout, in a CSV file or a PostgreSQL table.

2021 kept NASA C-MAPSS rows as a table with a header: ``unit_num`` (the engine), ``file_id`` (which
NASA file the row came from: 1 for FD001 ...), ``setting_1..setting_3``, ``sensor_01..sensor_21``
and the label ``rul``, often with a leading unnamed row-number column from ``DataFrame.to_csv``.
A cycle column (``time_cycles``, ``time_in_cycles`` or ``cycle``) is used when present; without
one, the row order within an engine is its cycle order, as 2021 assumed.

:func:`to_current` turns such a frame into the layout of :func:`kosmos_fl.data.turbofan.cmapss.read_cmapss`
(``unit, cycle, setting_*, s_*`` and ``rul``), so the turbofan use case handles both alike.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from kosmos_fl.data.turbofan.cmapss import sorted_by_unit_cycle
from kosmos_fl.errors import DataError, DataFormatError

UNIT_2021 = "unit_num"
FILE_ID_2021 = "file_id"
_CYCLE_COLUMNS = ("time_cycles", "time_in_cycles", "cycle", "time")
_SENSOR = re.compile(r"^sensor_?0*(\d{1,2})$", re.IGNORECASE)


def is_2021_columns(columns: list[str] | pd.Index) -> bool:
    """True for the 2021 layout (an ``unit_num`` column)."""
    return UNIT_2021 in [str(c) for c in columns]


def current_name(column: str) -> str:
    """``sensor_02`` / ``sensor_2`` -> ``s_2``; other names unchanged (2021 sensor names in
    parameters such as ``remaining_sensors`` map the same way)."""
    m = _SENSOR.match(str(column))
    return f"s_{int(m[1])}" if m else str(column)


def to_current(df: pd.DataFrame, where: str, file_id: int | None = None) -> pd.DataFrame:
    """A 2021-layout frame as ``unit, cycle, <inputs>, rul`` sorted by unit and cycle; rows of
    ``file_id`` only when given. Several files mixed without ``file_id`` are refused: their unit
    numbers repeat, so engines would merge."""
    df = df.drop(columns=[c for c in df.columns if str(c).startswith("Unnamed")])
    for col in (UNIT_2021, "rul"):
        if col not in df.columns:
            raise DataFormatError(f"{where}: the 2021 turbofan layout needs a '{col}' column")
    if FILE_ID_2021 in df.columns:
        ids = sorted(pd.unique(df[FILE_ID_2021]).tolist())
        if file_id is not None:
            df = df[df[FILE_ID_2021] == file_id]
            if df.empty:
                raise DataError(
                    f"{where} has no rows with file_id {file_id} (it holds {ids}); fix the use case "
                    f"parameter file_id"
                )
        elif len(ids) > 1:
            raise DataError(
                f"{where} mixes file_id {ids}, whose unit numbers repeat; set the use case parameter "
                f"file_id to one of them"
            )
    elif file_id is not None:
        raise DataError(f"{where} has no file_id column; remove the use case parameter file_id")
    cycle_col = next((c for c in _CYCLE_COLUMNS if c in df.columns), None)
    out = pd.DataFrame({"unit": pd.to_numeric(df[UNIT_2021], errors="coerce")})
    if cycle_col is not None:
        out["cycle"] = pd.to_numeric(df[cycle_col], errors="coerce")
    else:  # 2021 took the row order within an engine as its cycle order
        out["cycle"] = out.groupby("unit").cumcount() + 1
    for col in df.columns:
        name = current_name(col)
        if name.startswith(("s_", "setting_")):
            out[name] = pd.to_numeric(df[col], errors="coerce").astype(np.float64)
    out["rul"] = pd.to_numeric(df["rul"], errors="coerce").astype(np.float64)
    bad = out.isna().any(axis=1).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0]) + 1
        raise DataFormatError(f"{where}: data row {row} has a missing or non-numeric value")
    return sorted_by_unit_cycle(
        out,
        min_id=0,
        bad_ids=f"{where}: unit_num and the cycle column must be whole numbers",
        repeated=f"{where}: an engine (unit_num) repeats a cycle number",
    )


def is_2021_csv(path: Path) -> bool:
    """A CSV file whose header has ``unit_num`` (NASA's own files have no header)."""
    try:
        with Path(path).open(encoding="utf-8", errors="replace") as fh:
            header = fh.readline()
    except OSError:
        return False
    return UNIT_2021 in [h.strip().strip('"') for h in header.split(",")]


def read_2021_csv(path: Path, file_id: int | None = None) -> pd.DataFrame:
    """A 2021 turbofan CSV file in the current layout (see :func:`to_current`)."""
    try:
        df = pd.read_csv(path)
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError, OSError) as exc:
        raise DataFormatError(f"{path}: not a readable CSV file ({str(exc).splitlines()[0]})") from None
    return to_current(df, str(path), file_id)


def read_2021_table(dsn: str, table: str, file_id: int | None = None) -> pd.DataFrame | None:
    """The 2021 turbofan table ``table`` in the current layout, or None when the table has the
    current layout (``unit`` and ``cycle``) instead."""
    import sqlalchemy as sa

    from kosmos_fl.data.turbofan import postgres as pg

    dsn = pg.normalize_dsn(dsn)
    with pg._connect(dsn) as conn:
        have = pg.table_columns(conn, table, dsn)
        if not is_2021_columns(have):
            return None
        schema, name = pg._split_table(table)
        tbl = sa.table(name, *(sa.column(c) for c in have), schema=schema)
        stmt = sa.select(*(tbl.c[c] for c in have))
        if file_id is not None and FILE_ID_2021 in have:
            stmt = stmt.where(tbl.c[FILE_ID_2021] == int(file_id))
        try:
            rows = conn.execute(stmt).fetchall()
        except sa.exc.SQLAlchemyError as exc:
            raise DataError(f"cannot read table '{table}' ({pg._scrub(str(exc), dsn)[:300]})") from None
    where = f"table '{table}' in {pg.redact_dsn(dsn)}"
    return to_current(pd.DataFrame([tuple(r) for r in rows], columns=have), where, file_id)
