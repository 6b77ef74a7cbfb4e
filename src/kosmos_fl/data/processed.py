"""Processed bearings (labels, features, spectra) and their on-disk cache.

Three kinds of folder can be loaded with :func:`load_bearings`:

* raw PRONOSTIA recordings (any layout :func:`~kosmos_fl.data.femto.find_bearings` accepts),
  processed on first use and cached;
* the output of ``kosmos-fl data prepare`` (:func:`prepare_dataset`), marked by
  ``kosmos-data.json``;
* the 2021 processed layout, ``<bearing>/features.csv[.gz]`` + ``<bearing>/spectra.csv[.gz]``.

A processed bearing is stored as one folder of ``.npy`` files plus ``meta.json``. The cache key
hashes :data:`PIPELINE_VERSION` and the name, size and mtime of every source file, so a touched,
added, removed or rewritten file, or a new pipeline version, is never served stale. Spectra are
memory-mapped on reload, which keeps a cached load of the whole Learning_set well under a second.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from kosmos_fl.data.features import AXES, FEATURE_COLUMNS, FEATURE_NAMES, extract_features
from kosmos_fl.data.femto import (
    AccFile,
    OnError,
    RawBearing,
    bearing_condition,
    bearing_sort_key,
    find_bearings,
    list_acc_files,
    read_acc_files,
    rul_labels,
)
from kosmos_fl.data.spectra import SPECTRA_SHAPE, compute_spectra
from kosmos_fl.errors import DataError, DataFormatError

log = logging.getLogger(__name__)

PIPELINE_VERSION = "1"
"""Bump whenever reading, labelling, features or spectra change: every cache entry and prepared
folder made by another version is then recomputed (or reported stale)."""
FORMAT = "kosmos-fl-processed"
MANIFEST = "kosmos-data.json"
META = "meta.json"
CACHE_DIRNAME = ".kosmos-cache"
LEGACY_FILES = {"features": ("features.csv.gz", "features.csv"), "spectra": ("spectra.csv.gz", "spectra.csv")}

Layout = Literal["raw", "prepared", "2021"]
Progress = Callable[[float], None]

_ARRAYS = ("timestamps", "rul_seconds", "rul_fraction", "features", "spectra")
_COMPUTE_CHUNK = 512


@dataclass(frozen=True, eq=False)
class ProcessedBearing:
    """Everything a model needs from one bearing, one row per snapshot.

    Arrays loaded from disk are read-only (spectra are memory-mapped); copy before editing.
    """

    name: str
    condition: int
    timestamps: np.ndarray
    """(n,) float64 seconds, strictly increasing."""
    rul_seconds: np.ndarray
    """(n,) float64 seconds from the snapshot to failure."""
    rul_fraction: np.ndarray
    """(n,) float64 remaining share of the bearing's life: 1 at the start, 0 at failure."""
    features: np.ndarray
    """(n, 54) float32, columns :data:`~kosmos_fl.data.features.FEATURE_COLUMNS`."""
    spectra: np.ndarray
    """(n, 129, 21, 2) float32 STFT magnitudes, [..., 0] horizontal, [..., 1] vertical."""
    skipped: tuple[str, ...] = ()
    """Source files left out under ``on_error="skip"``."""
    repaired: tuple[str, ...] = ()
    """Source files whose out-of-order timestamp was interpolated."""
    source: str = ""
    """Folder the bearing was read from."""

    @property
    def n_snapshots(self) -> int:
        return int(self.timestamps.shape[0])

    @property
    def life_seconds(self) -> float:
        """Recorded life: last minus first snapshot time plus the RUL left at the last one."""
        if self.n_snapshots == 0:
            return 0.0
        return float(self.timestamps[-1] - self.timestamps[0] + self.rul_seconds[-1])


# --------------------------------------------------------------------------- processing


def process_raw(raw: RawBearing, progress: Progress | None = None) -> ProcessedBearing:
    """Labels, features and spectra of a raw bearing (pure, no caching)."""
    n = raw.signals.shape[0]
    features = np.empty((n, len(FEATURE_COLUMNS)), dtype=np.float32)
    spectra = (
        np.empty((n, *SPECTRA_SHAPE), dtype=np.float32) if n else np.empty((0, *SPECTRA_SHAPE), np.float32)
    )
    for start in range(0, n, _COMPUTE_CHUNK):
        block = raw.signals[start : start + _COMPUTE_CHUNK]
        features[start : start + len(block)] = extract_features(block)
        spectra[start : start + len(block)] = compute_spectra(block)
        if progress is not None:
            progress(len(block) / 2)
    rul, fraction = rul_labels(raw.timestamps)
    return ProcessedBearing(
        name=raw.name,
        condition=raw.condition,
        timestamps=raw.timestamps,
        rul_seconds=rul,
        rul_fraction=fraction,
        features=features,
        spectra=spectra,
        skipped=tuple(p.name for p, _ in raw.skipped),
        repaired=tuple(p.name for p, _ in raw.repaired),
        source=str(Path(raw.files[0]).parent.resolve()) if raw.files else "",
    )


def _source_key(kind: str, files: Sequence[tuple[str, int, int]], on_error: str) -> str:
    payload = json.dumps(
        {"pipeline": PIPELINE_VERSION, "kind": kind, "on_error": on_error, "files": list(files)},
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def raw_key(files: Sequence[AccFile], on_error: str = "raise") -> str:
    """Cache key of a raw bearing: pipeline version plus name, size, mtime of each acc file."""
    return _source_key("raw", [(f.path.name, f.size, f.mtime_ns) for f in files], on_error)


def _legacy_files(folder: Path) -> dict[str, Path] | None:
    found: dict[str, Path] = {}
    for kind, names in LEGACY_FILES.items():
        for name in names:
            if (folder / name).is_file():
                found[kind] = folder / name
                break
    return found or None


def legacy_key(files: dict[str, Path]) -> str:
    """Cache key of a 2021-layout bearing (its two CSV files)."""
    stats = []
    for path in sorted(files.values()):
        st = path.stat()
        stats.append((path.name, st.st_size, st.st_mtime_ns))
    return _source_key("2021", stats, "raise")


# --------------------------------------------------------------------------- entries on disk


def _write_entry(entry: Path, bearing: ProcessedBearing, meta: dict[str, Any]) -> None:
    """Write a bearing folder atomically: build it beside the target, then swap it in."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = entry.with_name(f".{entry.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        for name in _ARRAYS:
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(getattr(bearing, name)))
        full_meta = {
            "format": FORMAT,
            "pipeline_version": PIPELINE_VERSION,
            "name": bearing.name,
            "condition": bearing.condition,
            "n_snapshots": bearing.n_snapshots,
            "life_seconds": bearing.life_seconds,
            "skipped": list(bearing.skipped),
            "repaired": list(bearing.repaired),
            "source": bearing.source,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **meta,
        }
        (tmp / META).write_text(json.dumps(full_meta, indent=1))
        old = None
        if entry.exists():
            old = entry.with_name(f".{entry.name}.old-{uuid.uuid4().hex[:8]}")
            entry.rename(old)
        tmp.rename(entry)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _store(entry: Path, bearing: ProcessedBearing, meta: dict[str, Any], required: bool) -> None:
    """Write an entry. A cache that cannot be written costs speed, never the result; an
    output folder (``required``) that cannot be written is an error."""
    try:
        _write_entry(entry, bearing, meta)
    except OSError as exc:
        if required:
            raise DataError(f"cannot write {entry}: {exc.strerror or exc}") from exc
        log.warning("could not write processed data to %s (%s); continuing without it", entry, exc)


def read_meta(entry: Path) -> dict[str, Any] | None:
    """An entry's meta.json, or None when it is missing or unreadable."""
    try:
        meta = json.loads((entry / META).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == FORMAT else None


def _load_entry(entry: Path, meta: dict[str, Any]) -> ProcessedBearing | None:
    """A stored bearing with memory-mapped spectra, or None if its files are damaged."""
    try:
        arrays = {
            name: np.load(entry / f"{name}.npy", mmap_mode="r" if name == "spectra" else None)
            for name in _ARRAYS
        }
    except (OSError, ValueError):
        return None
    n = arrays["timestamps"].shape[0]
    if arrays["features"].shape != (n, len(FEATURE_COLUMNS)) or arrays["spectra"].shape[0] != n:
        return None
    for array in arrays.values():
        if isinstance(array, np.ndarray) and not isinstance(array, np.memmap):
            array.flags.writeable = False
    return ProcessedBearing(
        name=str(meta["name"]),
        condition=int(meta["condition"]),
        skipped=tuple(meta.get("skipped", ())),
        repaired=tuple(meta.get("repaired", ())),
        source=str(meta.get("source", "")),
        **arrays,
    )


def _cached(entry: Path, key: str) -> ProcessedBearing | None:
    meta = read_meta(entry)
    if meta is None or meta.get("key") != key or meta.get("pipeline_version") != PIPELINE_VERSION:
        return None
    return _load_entry(entry, meta)


def _cache_entry(cache_dir: Path, name: str, source: Path) -> Path:
    digest = hashlib.sha1(str(source.resolve()).encode()).hexdigest()[:12]
    return cache_dir / f"{name}-{digest}"


def default_cache_dir(root: Path) -> Path:
    """``<root>/.kosmos-cache`` when ``root`` is writable, else ``~/.cache/kosmos-fl``."""
    root = Path(root)
    if root.is_dir() and os.access(root, os.W_OK | os.X_OK):
        return root / CACHE_DIRNAME
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kosmos-fl"


# --------------------------------------------------------------------------- one bearing


def _prepare_raw(
    folder: Path,
    entry: Path | None,
    on_error: OnError,
    progress: Progress | None,
    files: list[AccFile] | None = None,
    required: bool = False,
) -> ProcessedBearing:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"bearing folder {folder} does not exist; check the path")
    condition = bearing_condition(folder.name)
    files = list_acc_files(folder) if files is None else files
    if not files:
        raise DataError(f"no acc_*.csv snapshot files in {folder}; point at a PRONOSTIA bearing folder")
    key = raw_key(files, on_error)
    if entry is not None:
        hit = _cached(entry, key)
        if hit is not None:
            if progress is not None:
                progress(float(len(files)))
            return hit
    read_progress = None if progress is None else (lambda k: progress(k / 2))
    raw = read_acc_files(folder.name, condition, files, on_error=on_error, progress=read_progress)
    bearing = process_raw(raw, progress)
    if progress is not None and raw.skipped:
        progress(len(raw.skipped) / 2)
    if entry is not None:
        meta = {"key": key, "source_kind": "raw", "on_error": on_error}
        _store(entry, bearing, meta, required)
    return bearing


def prepare_bearing(
    folder: Path,
    cache_dir: Path | None = None,
    *,
    on_error: OnError = "raise",
    progress: Progress | None = None,
) -> ProcessedBearing:
    """Read, label and featurise one raw bearing folder, through the cache if one is given.

    ``progress`` (optional) is called with a number of snapshots done, in halves: reading and
    computing each count for half a snapshot.
    """
    folder = Path(folder)
    entry = None if cache_dir is None else _cache_entry(Path(cache_dir), folder.name, folder)
    return _prepare_raw(folder, entry, on_error, progress)


def _prepare_legacy(
    folder: Path, entry: Path | None, progress: Progress | None, required: bool = False
) -> ProcessedBearing:
    files = _legacy_files(folder)
    if files is None or set(files) != set(LEGACY_FILES):
        missing = [LEGACY_FILES[k][0] for k in LEGACY_FILES if not files or k not in files]
        raise DataFormatError(
            f"{folder}: missing {' and '.join(missing)}; a 2021-layout bearing folder needs both "
            "features.csv.gz and spectra.csv.gz"
        )
    key = legacy_key(files)
    if entry is not None:
        hit = _cached(entry, key)
        if hit is not None:
            if progress is not None:
                progress(1.0)
            return hit
    bearing = read_2021_bearing(folder)
    if entry is not None:
        _store(entry, bearing, {"key": key, "source_kind": "2021"}, required)
    if progress is not None:
        progress(1.0)
    return bearing


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
    files = _legacy_files(folder) or {}
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


# --------------------------------------------------------------------------- many bearings


def detect_layout(root: Path) -> Layout:
    """Which of the three accepted folder kinds ``root`` is."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"data folder {root} does not exist; create data with `kosmos-fl data generate --out "
            f"{root}` or point at a FEMTO / prepared folder"
        )
    if (root / MANIFEST).is_file():
        return "prepared"
    if _legacy_files(root) or any(
        _legacy_files(child)
        for child in root.iterdir()
        if child.is_dir() and bearing_sort_key(child.name)[0] < 1 << 30
    ):
        return "2021"
    return "raw"


def legacy_bearings(root: Path) -> dict[str, Path]:
    if _legacy_files(root):
        return {root.name: root}
    found = {c.name: c for c in root.iterdir() if c.is_dir() and _legacy_files(c)}
    return {name: found[name] for name in sorted(found, key=bearing_sort_key)}


def _manifest_bearings(root: Path) -> list[str]:
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
        return _manifest_bearings(root)
    if layout == "2021":
        return list(legacy_bearings(root))
    return list(find_bearings(root))


def _select(available: dict[str, Any], names: Sequence[str] | None, root: Path) -> list[str]:
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


@contextmanager
def _progress_bar(total: float, enabled: bool, label: str) -> Iterator[Progress | None]:
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    lock = threading.Lock()
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("snapshots"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    ) as bar:
        task = bar.add_task(label, total=total)

        def advance(k: float) -> None:
            with lock:
                bar.advance(task, k)

        yield advance


def _run_all(
    jobs: dict[str, tuple[float, Callable[[Progress | None], ProcessedBearing]]],
    workers: int | None,
    progress: bool,
    label: str,
) -> dict[str, ProcessedBearing]:
    """Run one job per bearing on a thread pool (numpy, scipy and pyarrow release the GIL)."""
    total = sum(size for size, _ in jobs.values())
    order = sorted(jobs, key=lambda n: -jobs[n][0])  # longest first balances the two cores
    n_workers = max(1, min(workers or min(4, os.cpu_count() or 1), len(jobs)))
    results: dict[str, ProcessedBearing] = {}
    with _progress_bar(total, progress, label) as advance:
        if n_workers == 1:
            for name in order:
                results[name] = jobs[name][1](advance)
        else:
            with ThreadPoolExecutor(n_workers, thread_name_prefix="kosmos-data") as pool:
                futures = {pool.submit(jobs[name][1], advance): name for name in order}
                done, pending = wait(futures, return_when=FIRST_EXCEPTION)
                for future in pending:
                    future.cancel()
                for future in done:
                    if future.exception() is not None:
                        raise future.exception()  # type: ignore[misc]
                results = {futures[f]: f.result() for f in done}
    return {name: results[name] for name in jobs}


def load_bearings(
    root: Path,
    names: Sequence[str] | None = None,
    *,
    cache_dir: Path | None = None,
    progress: bool = False,
    on_error: OnError = "raise",
    workers: int | None = None,
) -> dict[str, ProcessedBearing]:
    """Processed bearings from a raw, prepared or 2021-layout folder, sorted by name.

    ``names=None`` loads every bearing; a requested name that is absent raises
    :class:`DataError` listing the available ones. Raw and 2021 data go through the cache
    (``cache_dir``, default :func:`default_cache_dir` of ``root``).
    """
    root = Path(root)
    layout = detect_layout(root)
    if layout == "prepared":
        return _load_prepared(root, names, progress=progress, workers=workers)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir(root)
    jobs: dict[str, tuple[float, Callable[[Progress | None], ProcessedBearing]]] = {}
    if layout == "2021":
        found = legacy_bearings(root)
        for name in _select(found, names, root):
            folder = found[name]
            entry = _cache_entry(cache, name, folder)
            jobs[name] = (1.0, lambda p, folder=folder, entry=entry: _prepare_legacy(folder, entry, p))
    else:
        found = find_bearings(root)
        for name in _select(found, names, root):
            folder = found[name]
            files = list_acc_files(folder)
            entry = _cache_entry(cache, name, folder)
            jobs[name] = (
                float(len(files)),
                lambda p, folder=folder, entry=entry, files=files: _prepare_raw(
                    folder, entry, on_error, p, files
                ),
            )
    return _run_all(jobs, workers, progress, f"loading {root.name}")


def _load_prepared(
    root: Path, names: Sequence[str] | None, *, progress: bool, workers: int | None
) -> dict[str, ProcessedBearing]:
    available = {n: root / n for n in _manifest_bearings(root)}
    jobs: dict[str, tuple[float, Callable[[Progress | None], ProcessedBearing]]] = {}
    for name in _select(available, names, root):
        entry = available[name]
        meta = read_meta(entry)
        if meta is None:
            raise DataFormatError(
                f"{entry} is missing or damaged; re-run `kosmos-fl data prepare RAW_DIR --out {root}`"
            )
        jobs[name] = (float(meta.get("n_snapshots", 1)), lambda p, e=entry, m=meta: _refresh(e, m, p))
    return _run_all(jobs, workers, progress, f"loading {root.name}")


def _refresh(entry: Path, meta: dict[str, Any], progress: Progress | None) -> ProcessedBearing:
    """A prepared bearing, recomputed from its source if that is still there and changed."""
    source = Path(str(meta.get("source", "")))
    kind = meta.get("source_kind")
    if meta.get("source") and source.is_dir():
        if kind == "raw":
            on_error = meta.get("on_error", "raise")
            return _prepare_raw(source, entry, on_error, progress)
        if kind == "2021":
            return _prepare_legacy(source, entry, progress)
    if meta.get("pipeline_version") != PIPELINE_VERSION:
        raise DataError(
            f"{entry} was prepared by pipeline version {meta.get('pipeline_version')} (now "
            f"{PIPELINE_VERSION}) and its source {source} is gone; re-run `kosmos-fl data prepare`"
        )
    loaded = _load_entry(entry, meta)
    if loaded is None:
        raise DataFormatError(f"{entry} has damaged arrays; re-run `kosmos-fl data prepare`")
    if progress is not None:
        progress(float(loaded.n_snapshots))
    return loaded


def prepare_dataset(
    raw_dir: Path,
    out_dir: Path,
    *,
    progress: bool = True,
    workers: int | None = None,
    on_error: OnError = "raise",
    names: Sequence[str] | None = None,
) -> dict[str, ProcessedBearing]:
    """Process every bearing under ``raw_dir`` into ``out_dir`` (one folder per bearing).

    ``raw_dir`` may be raw recordings or the 2021 layout. Bearings already in ``out_dir`` with
    an up-to-date key are kept as they are, so re-running is cheap. Bearings run on a thread
    pool, one per core up to 4 by default (numpy, scipy and pyarrow release the GIL);
    ``workers`` overrides that.
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    layout = detect_layout(raw_dir)
    if layout == "prepared":
        raise DataError(f"{raw_dir} is already prepared; load it directly or prepare its source")
    sources = legacy_bearings(raw_dir) if layout == "2021" else find_bearings(raw_dir)
    selected = _select(sources, names, raw_dir)
    for name in selected:
        target = out_dir / name
        if target.exists() and target.resolve() == sources[name].resolve():
            raise DataError(f"--out {out_dir} would overwrite the source data; choose another folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create output folder {out_dir}: {exc.strerror}") from exc
    if not os.access(out_dir, os.W_OK):
        raise DataError(f"output folder {out_dir} is not writable; choose another --out")

    jobs: dict[str, tuple[float, Callable[[Progress | None], ProcessedBearing]]] = {}
    for name in selected:
        folder, entry = sources[name], out_dir / name
        if layout == "2021":
            jobs[name] = (1.0, lambda p, f=folder, e=entry: _prepare_legacy(f, e, p, True))
        else:
            files = list_acc_files(folder)
            jobs[name] = (
                float(len(files)),
                lambda p, f=folder, e=entry, fl=files: _prepare_raw(f, e, on_error, p, fl, True),
            )
    results = _run_all(jobs, workers, progress, f"preparing {raw_dir.name}")
    _write_manifest(out_dir, raw_dir, list(results))
    return {name: _reload(out_dir / name, bearing) for name, bearing in results.items()}


def _reload(entry: Path, bearing: ProcessedBearing) -> ProcessedBearing:
    """Swap freshly computed arrays for their memory-mapped copies on disk (frees RAM)."""
    meta = read_meta(entry)
    loaded = _load_entry(entry, meta) if meta is not None else None
    return loaded if loaded is not None else bearing


def _write_manifest(out_dir: Path, source: Path, names: list[str]) -> None:
    path = out_dir / MANIFEST
    previous: list[str] = []
    try:
        previous = [str(n) for n in json.loads(path.read_text()).get("bearings", [])]
    except (OSError, ValueError, AttributeError):
        previous = []
    keep = [n for n in previous if read_meta(out_dir / n) is not None]
    bearings = sorted(set(keep) | set(names), key=bearing_sort_key)
    manifest = {
        "format": FORMAT,
        "pipeline_version": PIPELINE_VERSION,
        "source": str(source.resolve()),
        "bearings": bearings,
    }
    tmp = path.with_name(f".{MANIFEST}.{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.replace(path)


def write_prepared_bearing(out_dir: Path, bearing: ProcessedBearing, source_kind: str) -> Path:
    """Add (or replace) one bearing in a prepared folder and list it in the manifest.

    For producers other than ``prepare_dataset`` (e.g. the MQTT edge store): the folder then loads
    with :func:`load_bearings` like any prepared data. ``bearing.source`` should not be a folder,
    so loading serves the stored arrays instead of recomputing them from a source.
    """
    out_dir = Path(out_dir)
    entry = out_dir / bearing.name
    _store(entry, bearing, {"key": f"{source_kind}:{bearing.n_snapshots}", "source_kind": source_kind}, True)
    _write_manifest(out_dir, out_dir, [bearing.name])
    return entry


def remove_prepared_bearing(out_dir: Path, name: str) -> None:
    """Drop one bearing from a prepared folder (folder and manifest entry)."""
    out_dir = Path(out_dir)
    shutil.rmtree(out_dir / name, ignore_errors=True)
    if (out_dir / MANIFEST).is_file():
        _write_manifest(out_dir, out_dir, [])
