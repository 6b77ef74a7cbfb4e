"""Pump logs: one CSV per pump (``pump_<id>.csv``), one row per operating hour, run to failure.

Columns: ``hour, vibration_rms, temperature, pressure, flow``. :func:`generate_pumps` writes a
seeded synthetic fleet in this format, so the example needs no downloads.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from kosmos_fl.errors import DataError, DataFormatError

FEATURES: tuple[str, ...] = ("vibration_rms", "temperature", "pressure", "flow")
COLUMNS: tuple[str, ...] = ("hour", *FEATURES)
#: Healthy level and change at failure of each feature (the generator's physics, in short).
_MODEL = {
    "vibration_rms": (1.0, 3.0),
    "temperature": (60.0, 18.0),
    "pressure": (5.0, -1.2),
    "flow": (100.0, -12.0),
}
_NOISE = {"vibration_rms": 0.15, "temperature": 1.5, "pressure": 0.12, "flow": 1.5}


def pump_files(folder: Path) -> dict[str, Path]:
    """``{"pump01": path, ...}`` for every ``pump_<id>.csv`` in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"pump data folder {folder} does not exist; check data_path")
    return {f"pump{p.stem.split('_', 1)[1]}": p for p in sorted(folder.glob("pump_*.csv"))}


def read_pumps(folder: Path, names: Sequence[str] | None = None) -> dict[str, pd.DataFrame]:
    """The logs of ``names`` (None: all pumps) with a ``rul_hours`` column (hours to failure)."""
    files = pump_files(folder)
    wanted = list(names) if names is not None else list(files)
    missing = [n for n in wanted if n not in files]
    if missing:
        found = ", ".join(files) or "none"
        raise DataError(f"pump(s) {', '.join(missing)} not found in {folder} (found: {found})")
    out = {}
    for name in wanted:
        df = pd.read_csv(files[name])
        if list(df.columns) != list(COLUMNS):
            raise DataFormatError(f"{files[name]}: columns {list(df.columns)}, expected {list(COLUMNS)}")
        hours = df["hour"].to_numpy(np.float64)
        out[name] = df.assign(rul_hours=hours[-1] - hours)
    return out


def generate_pumps(folder: Path, *, pumps: int = 8, seed: int = 0) -> Path:
    """Write ``pumps`` seeded run-to-failure logs (150-300 h each) into ``folder``; returns it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(1, pumps + 1):
        life = int(rng.integers(150, 301))
        hours = np.arange(life + 1, dtype=np.float64)
        health = (hours / life) ** rng.uniform(2.0, 3.5)
        cols = {"hour": hours}
        for f in FEATURES:
            level, change = _MODEL[f]
            cols[f] = np.round(level + change * health + rng.normal(0, _NOISE[f], hours.size), 3)
        pd.DataFrame(cols).to_csv(folder / f"pump_{i:02d}.csv", index=False)
    return folder


def main() -> None:
    """``kosmos-pump-generate OUT [--pumps N] [--seed S]``."""
    parser = argparse.ArgumentParser(description="Write a synthetic pump fleet for the PumpUseCase.")
    parser.add_argument("out", type=Path)
    parser.add_argument("--pumps", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(generate_pumps(args.out, pumps=args.pumps, seed=args.seed))


if __name__ == "__main__":
    main()
