"""Which kind of bearing folder a path is (raw PRONOSTIA, ``kosmos-fl data prepare`` output or the
2021 processed layout), the bearings it holds, and the reader of the 2021 layout's CSV files."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from kosmos_fl.data.bearing.cache import ProcessedBearing
from kosmos_fl.data.bearing.features import AXES, FEATURE_COLUMNS, FEATURE_NAMES
from kosmos_fl.data.bearing.femto import bearing_condition, bearing_sort_key, find_bearings
from kosmos_fl.data.bearing.spectra import SPECTRA_SHAPE
from kosmos_fl.errors import DataError, DataFormatError

MANIFEST = "kosmos-data.json"
LEGACY_FILES = {"features": ("features.csv.gz", "features.csv"), "spectra": ("spectra.csv.gz", "spectra.csv")}

Layout = Literal["raw", "prepared", "2021"]


def legacy_files(folder: Path) -> dict[str, Path] | None:
    found: dict[str, Path] = {}
    for kind, names in LEGACY_FILES.items():
        for name in names:
            if (folder / name).is_file():
                found[kind] = folder / name
                break
    return found or None


# --------------------------------------------------------------------------- 2021 layout


def _legacy_feature_aliases() -> dict[str, str]:
    """Accepted column names -> canonical feature column (long and h_/v_ short forms)."""
    aliases: dict[str, str] = {}
    for axis in AXES:
        for name in FEATURE_NAMES:
            canonical = f"{axis}_{name}"
            for alias in (canonical, f"{axis[0]}_{name}", f"{axis[0]}{name}"):
                aliases[alias.lower()] = canonical
    return aliases


_RUL_NAMES = ("rul", "rul_seconds")
_INDEX_NAMES = ("", "unnamed: 0", "index")


def read_csv_matrix(path: Path) -> tuple[list[str], np.ndarray]:
    """Column names and float64 values of a headed numeric CSV (gzip by extension)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    try:
        table = pacsv.read_csv(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise DataFormatError(f"{path}: cannot be parsed as CSV ({str(exc).splitlines()[0]})") from exc
    names = list(table.column_names)
    out = np.empty((table.num_rows, len(names)), dtype=np.float64)
    for j, name in enumerate(names):
        column = table.column(j)
        if column.null_count or not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
            if name.strip().lower() in _INDEX_NAMES:
                out[:, j] = 0.0
                continue
            raise DataFormatError(f"{path}: column {name!r} is not numeric or has empty values")
        out[:, j] = column.to_numpy() if column.num_chunks != 1 else column.chunk(0).to_numpy()
    return names, out


def read_2021_bearing(folder: Path) -> ProcessedBearing:
    """One bearing of the 2021 processed data set (see docs/DATA.md for accepted columns).

    ``features.csv[.gz]``: one row per snapshot, the 54 feature columns named as
    :data:`FEATURE_COLUMNS` (``horizontal_mean``) or short (``h_mean``), plus ``rul``/``RUL`` in
    seconds; an optional ``timestamp`` column (seconds) and a pandas index column are accepted.
    ``spectra.csv[.gz]``: one row per snapshot, 129*21*2 values = the (129, 21, 2) array
    flattened in C order; ``rul`` and index columns, if present, are ignored.
    """
    folder = Path(folder)
    condition = bearing_condition(folder.name)
    files = legacy_files(folder) or {}
    if set(files) != set(LEGACY_FILES):
        raise DataFormatError(f"{folder}: needs both features.csv.gz and spectra.csv.gz")
    names, values = read_csv_matrix(files["features"])
    lower = [n.strip().lower() for n in names]
    rul_cols = [j for j, n in enumerate(lower) if n in _RUL_NAMES]
    if not rul_cols:
        raise DataFormatError(f"{files['features']}: no 'rul' column (remaining life in seconds)")
    rul = values[:, rul_cols[0]].copy()
    aliases = _legacy_feature_aliases()
    where = {aliases[n]: j for j, n in enumerate(lower) if n in aliases}
    missing = [c for c in FEATURE_COLUMNS if c not in where]
    if missing:
        raise DataFormatError(
            f"{files['features']}: {len(missing)} feature columns missing (e.g. {missing[0]!r}); "
            "expected the 54 columns horizontal_<feature>/vertical_<feature> or h_/v_<feature>"
        )
    features = values[:, [where[c] for c in FEATURE_COLUMNS]].astype(np.float32)
    if "timestamp" in lower:
        timestamps = values[:, lower.index("timestamp")].copy()
    else:
        timestamps = rul[0] - rul if rul.size else rul.copy()

    snames, svalues = read_csv_matrix(files["spectra"])
    keep = [j for j, n in enumerate(snames) if n.strip().lower() not in (*_RUL_NAMES, *_INDEX_NAMES)]
    width = int(np.prod(SPECTRA_SHAPE))
    if len(keep) != width:
        raise DataFormatError(
            f"{files['spectra']}: {len(keep)} value columns, expected {width} (129x21x2 flattened)"
        )
    if svalues.shape[0] != features.shape[0]:
        raise DataFormatError(
            f"{folder}: spectra has {svalues.shape[0]} rows but features has {features.shape[0]}"
        )
    spectra = svalues[:, keep].astype(np.float32).reshape(-1, *SPECTRA_SHAPE)
    if rul.size and np.any(np.diff(timestamps) <= 0):
        raise DataFormatError(f"{files['features']}: rows are not in time order (rul must decrease)")
    life = rul[0] if rul.size else 0.0
    fraction = rul / life if life > 0 else np.zeros_like(rul)
    return ProcessedBearing(
        name=folder.name,
        condition=condition,
        timestamps=timestamps,
        rul_seconds=rul,
        rul_fraction=fraction,
        features=features,
        spectra=spectra,
        source=str(folder.resolve()),
    )


def detect_layout(root: Path) -> Layout:
    """Which of the three accepted folder kinds ``root`` is."""
    root = Path(root)
    if root.is_file():
        raise DataError(
            f"{root} is a file, but the bearing use case (BearingUseCase) reads a folder of bearing "
            "folders (FEMTO: Bearing1_1/acc_*.csv); a C-MAPSS file is for TurbofanUseCase"
        )
    if not root.is_dir():
        raise DataError(
            f"data folder {root} does not exist; create data with `kosmos-fl data generate --out "
            f"{root}` or point at a FEMTO / prepared folder"
        )
    if (root / MANIFEST).is_file():
        return "prepared"
    if legacy_files(root) or any(
        legacy_files(child)
        for child in root.iterdir()
        if child.is_dir() and bearing_sort_key(child.name)[0] < 1 << 30
    ):
        return "2021"
    return "raw"


def legacy_bearings(root: Path) -> dict[str, Path]:
    if legacy_files(root):
        return {root.name: root}
    found = {c.name: c for c in root.iterdir() if c.is_dir() and legacy_files(c)}
    return {name: found[name] for name in sorted(found, key=bearing_sort_key)}


def manifest_bearings(root: Path) -> list[str]:
    try:
        manifest = json.loads((root / MANIFEST).read_text())
        listed = [str(n) for n in manifest["bearings"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataFormatError(
            f"{root / MANIFEST} is damaged; re-run `kosmos-fl data prepare RAW_DIR --out {root}`"
        ) from exc
    return sorted(listed, key=bearing_sort_key)


def list_bearings(root: Path) -> list[str]:
    """Names of the bearings in a raw, prepared or 2021-layout folder, sorted; reads no data."""
    root = Path(root)
    layout = detect_layout(root)
    if layout == "prepared":
        return manifest_bearings(root)
    if layout == "2021":
        return list(legacy_bearings(root))
    return list(find_bearings(root))


def select(available: dict[str, Any], names: Sequence[str] | None, root: Path) -> list[str]:
    if not available:
        raise DataError(
            f"no bearing data in {root}: expected BearingC_I folders with acc_*.csv, a "
            "`kosmos-fl data prepare` output or the 2021 layout; try `kosmos-fl data generate`"
        )
    if names is None:
        return list(available)
    missing = [n for n in names if n not in available]
    if missing:
        raise DataError(f"bearing(s) {', '.join(missing)} not in {root}; available: {', '.join(available)}")
    return list(dict.fromkeys(names))
