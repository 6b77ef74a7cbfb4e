"""A C-MAPSS-like run-to-failure data set in NASA's on-disk format, for the demo and the tests
(the real FD001 is never needed by them): per engine, every sensor drifts from an FD001-like
healthy level towards its level at failure, with noise, and is written as NASA writes it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kosmos_fl.data.turbofan.cmapss import COLUMNS, SENSOR_COLUMNS
from kosmos_fl.errors import DataError

# FD001-like healthy level, change at failure and noise of each sensor (0 change: constant)
_SENSOR_MODEL: dict[str, tuple[float, float, float]] = {
    "s_1": (518.67, 0.0, 0.0),
    "s_2": (642.0, 2.0, 0.45),
    "s_3": (1585.0, 25.0, 5.5),
    "s_4": (1400.0, 40.0, 8.0),
    "s_5": (14.62, 0.0, 0.0),
    "s_6": (21.61, 0.0, 0.0),
    "s_7": (554.0, -3.5, 0.8),
    "s_8": (2388.05, 0.25, 0.06),
    "s_9": (9050.0, 40.0, 18.0),
    "s_10": (1.3, 0.0, 0.0),
    "s_11": (47.45, 1.0, 0.25),
    "s_12": (521.8, -3.0, 0.65),
    "s_13": (2388.05, 0.25, 0.06),
    "s_14": (8140.0, 30.0, 17.0),
    "s_15": (8.42, 0.12, 0.035),
    "s_16": (0.03, 0.0, 0.0),
    "s_17": (392.0, 5.0, 1.4),
    "s_18": (2388.0, 0.0, 0.0),
    "s_19": (100.0, 0.0, 0.0),
    "s_20": (38.85, -0.7, 0.17),
    "s_21": (23.3, -0.4, 0.1),
}
_DECIMALS = {"s_17": 0, "s_18": 0, "s_6": 2, "s_15": 4, "s_21": 4, "s_16": 2}


def _engine(rng: np.random.Generator, unit: int, life: int, rows: int) -> np.ndarray:
    """``rows`` cycles of one engine that fails after ``life`` cycles: (rows, 26)."""
    cycles = np.arange(1, rows + 1, dtype=np.float64)
    k = rng.uniform(3.0, 6.0)
    wear0 = rng.uniform(0.0, 0.1)
    health = wear0 + (1 - wear0) * np.expm1(k * cycles / life) / np.expm1(k)
    out = np.empty((rows, len(COLUMNS)))
    out[:, 0] = unit
    out[:, 1] = cycles
    out[:, 2] = rng.normal(0.0, 0.0022, rows).round(4)
    out[:, 3] = rng.normal(0.0, 0.0003, rows).round(4)
    out[:, 4] = 100.0
    for j, name in enumerate(SENSOR_COLUMNS, start=5):
        level, change, noise = _SENSOR_MODEL[name]
        gain = rng.uniform(0.8, 1.2)
        value = level + gain * change * health + rng.normal(0.0, 1.0, rows) * noise
        out[:, j] = value.round(_DECIMALS.get(name, 2))
    return out


def _write_rows(path: Path, rows: np.ndarray) -> None:
    fmt = ["%d", "%d", "%.4f", "%.4f", "%.1f"] + [f"%.{_DECIMALS.get(name, 2)}f" for name in SENSOR_COLUMNS]
    np.savetxt(path, rows, fmt=fmt, delimiter=" ", newline=" \n")


def generate_cmapss(path: Path, *, units: int = 20, seed: int = 0, subset: str = "FD001") -> Path:
    """Write a small seeded FD001-like data set into the folder ``path``.

    Creates ``train_<subset>.txt`` (``units`` engines run to failure), ``test_<subset>.txt``
    (``units`` other engines cut before failure) and ``RUL_<subset>.txt`` (their true remaining
    cycles), in the NASA format with trailing spaces. Returns the train file's path.
    """
    if units < 1:
        raise DataError(f"units must be >= 1, got {units}")
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    train = [_engine(rng, u, life, life) for u, life in enumerate(rng.integers(100, 260, units), start=1)]
    test, remaining = [], []
    for u, life in enumerate(rng.integers(100, 260, units), start=1):
        cut = int(rng.integers(max(10, life // 4), life - 5))
        test.append(_engine(rng, u, int(life), cut))
        remaining.append(int(life) - cut)
    train_path = folder / f"train_{subset}.txt"
    _write_rows(train_path, np.concatenate(train))
    _write_rows(folder / f"test_{subset}.txt", np.concatenate(test))
    np.savetxt(folder / f"RUL_{subset}.txt", np.array(remaining), fmt="%d")
    return train_path
