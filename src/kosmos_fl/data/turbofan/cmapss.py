"""NASA C-MAPSS turbofan data: reader, RUL labels, normaliser, sliding windows, generator.

Files follow the NASA format: ``train_FD00x.txt`` / ``test_FD00x.txt`` hold space-separated rows
(often with trailing spaces) of unit, cycle, 3 operational settings and 21 sensors;
``RUL_FD00x.txt`` holds the true remaining cycles after each test unit's last row, one line per
unit in unit order. Conventions (the common ones in the literature):

* label of a row: cycles until failure, ``last cycle - cycle`` for run-to-failure (train) units,
  ``RUL file value + last cycle - cycle`` for test units; capped piecewise-linearly at 125 cycles
  by default because early-life degradation is not observable;
* inputs: the 14 sensors that vary in FD001 (:data:`DEFAULT_SENSORS`);
* a normaliser fitted on training rows only, serialisable to a plain dict;
* windows of the last 30 cycles; units shorter than a window are left-padded and a mask and
  length say which steps are real.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from kosmos_fl.errors import DataError, DataFormatError

SETTING_COLUMNS: tuple[str, ...] = ("setting_1", "setting_2", "setting_3")
SENSOR_COLUMNS: tuple[str, ...] = tuple(f"s_{i}" for i in range(1, 22))
COLUMNS: tuple[str, ...] = ("unit", "cycle", *SETTING_COLUMNS, *SENSOR_COLUMNS)
DEFAULT_SENSORS: tuple[str, ...] = tuple(f"s_{i}" for i in (2, 3, 4, 7, 8, 9, 11, 12, 13, 14, 15, 17, 20, 21))
"""The 14 sensors that carry degradation information in FD001 (the other 7 are constant)."""
DEFAULT_CAP = 125.0
DEFAULT_WINDOW = 30
SUBSETS = ("FD001", "FD002", "FD003", "FD004")


# --------------------------------------------------------------------------- reading


def read_cmapss(path: Path) -> pd.DataFrame:
    """One NASA C-MAPSS train or test file as a DataFrame with :data:`COLUMNS`.

    Rows are sorted by unit and cycle; ``unit`` and ``cycle`` are integers, the rest floats.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"C-MAPSS file {path} does not exist; check the path")
    try:
        df = pd.read_csv(path, sep=r"\s+", header=None, dtype=np.float64, engine="c")
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataFormatError(f"{path}: not a C-MAPSS file ({reason})") from exc
    if df.shape[1] != len(COLUMNS):
        raise DataFormatError(
            f"{path}: {df.shape[1]} columns, expected {len(COLUMNS)} (unit, cycle, 3 settings, 21 sensors)"
        )
    if df.isna().to_numpy().any():
        row = int(np.flatnonzero(df.isna().to_numpy().any(axis=1))[0]) + 1
        raise DataFormatError(f"{path}: line {row} has missing values")
    df.columns = list(COLUMNS)
    return sorted_by_unit_cycle(
        df,
        min_id=1,
        bad_ids=f"{path}: unit and cycle must be positive integers",
        repeated=f"{path}: a unit repeats a cycle number",
    )


def sorted_by_unit_cycle(df: pd.DataFrame, *, min_id: int, bad_ids: str, repeated: str) -> pd.DataFrame:
    """``df`` with integer ``unit`` / ``cycle`` columns, sorted by them; ``bad_ids`` is the error
    when an id is fractional or below ``min_id``, ``repeated`` when a unit repeats a cycle."""
    ids = df[["unit", "cycle"]].to_numpy()
    if np.any(ids != np.round(ids)) or np.any(ids < min_id):
        raise DataFormatError(bad_ids)
    df = df.astype({"unit": np.int64, "cycle": np.int64})
    df = df.sort_values(["unit", "cycle"], kind="stable").reset_index(drop=True)
    if df.duplicated(["unit", "cycle"]).any():
        raise DataFormatError(repeated)
    return df


def read_rul_file(path: Path) -> np.ndarray:
    """True remaining cycles after each test unit's last row, in unit order: (units,)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"C-MAPSS RUL file {path} does not exist; check the path")
    try:
        values = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise DataFormatError(f"{path}: not a C-MAPSS RUL file ({exc})") from exc
    if values.shape[1] != 1 or np.any(values < 0):
        raise DataFormatError(f"{path}: expected one non-negative number per line")
    return values[:, 0]


def add_rul(
    df: pd.DataFrame,
    cap: float | None = DEFAULT_CAP,
    final_rul: Sequence[float] | np.ndarray | Mapping[int, float] | None = None,
) -> pd.DataFrame:
    """A copy of ``df`` with a ``rul`` column (cycles to failure, capped at ``cap``).

    Without ``final_rul`` every unit is taken to fail right after its last row (train files).
    For test files pass the RUL file's values (in unit order) or a unit -> RUL mapping.
    ``cap=None`` disables the piecewise-linear cap.
    """
    out = df.copy()
    last = out.groupby("unit")["cycle"].transform("max").to_numpy()
    rul = (last - out["cycle"].to_numpy()).astype(np.float64)
    if final_rul is not None:
        units = np.unique(out["unit"].to_numpy())
        if isinstance(final_rul, Mapping):
            missing = [int(u) for u in units if int(u) not in final_rul]
            if missing:
                raise DataError(f"final RUL missing for unit(s) {missing[:5]}")
            extra = np.array([final_rul[int(u)] for u in out["unit"]], dtype=np.float64)
        else:
            values = np.asarray(final_rul, dtype=np.float64)
            if values.shape != units.shape:
                raise DataError(f"RUL file has {values.size} values but the data has {units.size} units")
            extra = values[np.searchsorted(units, out["unit"].to_numpy())]
        rul += extra
    if cap is not None:
        rul = np.minimum(rul, float(cap))
    out["rul"] = rul
    return out


def load_cmapss(
    folder: Path,
    subset: str = "FD001",
    split: Literal["train", "test"] = "train",
    cap: float | None = DEFAULT_CAP,
) -> pd.DataFrame:
    """``train_<subset>.txt`` or ``test_<subset>.txt`` (+ ``RUL_<subset>.txt``) with labels."""
    folder = Path(folder)
    if split not in ("train", "test"):
        raise DataError(f"split must be 'train' or 'test', not {split!r}")
    df = read_cmapss(folder / f"{split}_{subset}.txt")
    if split == "train":
        return add_rul(df, cap)
    return add_rul(df, cap, read_rul_file(folder / f"RUL_{subset}.txt"))


def split_units(
    df: pd.DataFrame, val_fraction: float = 0.2, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out whole engines (never rows of the same engine on both sides)."""
    units = np.unique(df["unit"].to_numpy())
    n_val = round(len(units) * val_fraction)
    if not 0 < n_val < len(units):
        raise DataError(f"cannot hold out {val_fraction:.0%} of {len(units)} units")
    val = np.random.default_rng(seed).choice(units, n_val, replace=False)
    is_val = df["unit"].isin(val).to_numpy()
    return df[~is_val].reset_index(drop=True), df[is_val].reset_index(drop=True)


def _check_columns(df: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"columns {missing} not in the data; available: {list(df.columns)}")


# --------------------------------------------------------------------------- normaliser


@dataclass(frozen=True)
class Normalizer:
    """Per-column affine scaling fitted on training data: ``(x - offset) / scale``."""

    columns: tuple[str, ...]
    offset: np.ndarray
    scale: np.ndarray
    method: str = "zscore"

    @classmethod
    def fit(
        cls,
        df: pd.DataFrame,
        columns: Sequence[str] = DEFAULT_SENSORS,
        method: Literal["zscore", "minmax"] = "zscore",
    ) -> Normalizer:
        """Mean/std (``zscore``) or min/range (``minmax``); constant columns get scale 1."""
        _check_columns(df, columns)
        values = df[list(columns)].to_numpy(dtype=np.float64)
        if values.shape[0] == 0:
            raise DataError("cannot fit a normaliser on an empty table")
        if method == "zscore":
            offset, scale = values.mean(axis=0), values.std(axis=0)
        elif method == "minmax":
            offset, scale = values.min(axis=0), values.max(axis=0) - values.min(axis=0)
        else:
            raise DataError(f"normaliser method must be 'zscore' or 'minmax', not {method!r}")
        scale = np.where(scale > 1e-12, scale, 1.0)
        return cls(tuple(columns), offset, scale, method)

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        """A copy of ``df`` with the fitted columns scaled (others untouched)."""
        _check_columns(df, self.columns)
        out = df.copy()
        cols = list(self.columns)
        out[cols] = (out[cols].to_numpy(dtype=np.float64) - self.offset) / self.scale
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, e.g. to ship with a federated model."""
        return {
            "method": self.method,
            "columns": list(self.columns),
            "offset": [float(v) for v in self.offset],
            "scale": [float(v) for v in self.scale],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Normalizer:
        try:
            columns = tuple(str(c) for c in data["columns"])
            offset = np.asarray(data["offset"], dtype=np.float64)
            scale = np.asarray(data["scale"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataFormatError(f"not a serialised normaliser: {exc}") from exc
        if not (len(columns) == offset.size == scale.size):
            raise DataFormatError("serialised normaliser has columns, offset, scale of unequal length")
        return cls(columns, offset, scale, str(data.get("method", "zscore")))


# --------------------------------------------------------------------------- windows


@dataclass(frozen=True, eq=False)
class Windows:
    """Fixed-length sequences ending at one cycle each, left-padded when the unit is shorter."""

    x: np.ndarray
    """(N, seq_len, features) float32."""
    y: np.ndarray
    """(N,) float32 RUL at the window's last cycle (NaN when the data has no ``rul``)."""
    mask: np.ndarray
    """(N, seq_len) bool, True for real cycles, False for padding (always at the start)."""
    lengths: np.ndarray
    """(N,) int64 number of real cycles in each window."""
    units: np.ndarray
    """(N,) int64 unit of each window."""
    cycles: np.ndarray
    """(N,) int64 cycle at each window's end."""


def _unit_layout(df: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Rows sorted by unit/cycle, each row's unit start index and its unit's row count."""
    df = df.sort_values(["unit", "cycle"], kind="stable").reset_index(drop=True)
    units = df["unit"].to_numpy()
    _, first, counts = np.unique(units, return_index=True, return_counts=True)
    which = np.repeat(np.arange(first.size), counts)
    return df, first[which], counts[which]


def _gather(
    df: pd.DataFrame,
    ends: np.ndarray,
    starts: np.ndarray,
    columns: Sequence[str],
    seq_len: int,
    pad_value: float,
    target: str,
) -> Windows:
    values = df[list(columns)].to_numpy(dtype=np.float32)
    idx = ends[:, None] - (seq_len - 1) + np.arange(seq_len)
    mask = idx >= starts[ends][:, None]
    x = values[np.where(mask, idx, ends[:, None])]
    x[~mask] = pad_value
    y = (
        df[target].to_numpy(dtype=np.float32)[ends]
        if target in df.columns
        else np.full(ends.size, np.nan, dtype=np.float32)
    )
    return Windows(
        x=x,
        y=y,
        mask=mask,
        lengths=mask.sum(axis=1).astype(np.int64),
        units=df["unit"].to_numpy(dtype=np.int64)[ends],
        cycles=df["cycle"].to_numpy(dtype=np.int64)[ends],
    )


def make_windows(
    df: pd.DataFrame,
    columns: Sequence[str] = DEFAULT_SENSORS,
    seq_len: int = DEFAULT_WINDOW,
    *,
    stride: int = 1,
    pad_value: float = 0.0,
    target: str = "rul",
) -> Windows:
    """All windows of ``seq_len`` cycles, one ending at every ``stride``-th cycle.

    Windows are counted back from each unit's last cycle, so the last window is always there;
    a unit shorter than ``seq_len`` gives exactly one left-padded window.
    """
    if seq_len < 1 or stride < 1:
        raise DataError(f"seq_len and stride must be >= 1, got {seq_len} and {stride}")
    _check_columns(df, [*columns, "unit", "cycle"])
    df, starts, counts = _unit_layout(df)
    pos = np.arange(len(df)) - starts
    from_end = counts - 1 - pos
    full = (pos >= seq_len - 1) & (from_end % stride == 0)
    short_last = (counts < seq_len) & (from_end == 0)
    ends = np.flatnonzero(full | short_last)
    return _gather(df, ends, starts, columns, seq_len, pad_value, target)


def last_windows(
    df: pd.DataFrame,
    columns: Sequence[str] = DEFAULT_SENSORS,
    seq_len: int = DEFAULT_WINDOW,
    *,
    pad_value: float = 0.0,
    target: str = "rul",
) -> Windows:
    """The window ending at each unit's last cycle (the usual test-set evaluation)."""
    if seq_len < 1:
        raise DataError(f"seq_len must be >= 1, got {seq_len}")
    _check_columns(df, [*columns, "unit", "cycle"])
    df, starts, counts = _unit_layout(df)
    ends = np.flatnonzero(np.arange(len(df)) - starts == counts - 1)
    return _gather(df, ends, starts, columns, seq_len, pad_value, target)
