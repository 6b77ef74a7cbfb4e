"""Processed bearings (labels, features, spectra) and their on-disk cache.

Three kinds of folder can be loaded with :func:`load_bearings`:

* raw PRONOSTIA recordings (any layout :func:`~kosmos_fl.data.bearing.femto.find_bearings` accepts),
  processed on first use and cached;
* the output of ``kosmos-fl data prepare`` (:func:`prepare_dataset`), marked by
  ``kosmos-data.json``;
* the 2021 processed layout, ``<bearing>/features.csv[.gz]`` + ``<bearing>/spectra.csv[.gz]``.

This module prepares and loads; which kind a folder is lives in :mod:`kosmos_fl.data.bearing.layout`, the
on-disk store (one folder of ``.npy`` files plus ``meta.json`` per bearing, never served stale) in
:mod:`kosmos_fl.data.bearing.cache`. Spectra are memory-mapped on reload, which keeps a cached load of the
whole Learning_set well under a second.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np

from kosmos_fl.data.bearing import cache as disk_cache
from kosmos_fl.data.bearing.cache import (
    FORMAT,
    ProcessedBearing,
    cache_entry,
    cached,
    default_cache_dir,
    legacy_key,
    load_entry,
    raw_key,
    read_meta,
    store,
)
from kosmos_fl.data.bearing.features import FEATURE_COLUMNS, extract_features
from kosmos_fl.data.bearing.femto import (
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
from kosmos_fl.data.bearing.layout import (
    LEGACY_FILES,
    MANIFEST,
    detect_layout,
    legacy_bearings,
    legacy_files,
    manifest_bearings,
    read_2021_bearing,
    select,
)
from kosmos_fl.data.bearing.layout import (
    list_bearings as list_bearings,  # re-exported: the use cases' entry point
)
from kosmos_fl.data.bearing.progress_bar import Progress, progress_bar
from kosmos_fl.data.bearing.spectra import SPECTRA_SHAPE, compute_spectra
from kosmos_fl.errors import DataError, DataFormatError

log = logging.getLogger(__name__)


_COMPUTE_CHUNK = 512

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
        hit = cached(entry, key)
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
        store(entry, bearing, meta, required)
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
    entry = None if cache_dir is None else cache_entry(Path(cache_dir), folder.name, folder)
    return _prepare_raw(folder, entry, on_error, progress)


def _prepare_legacy(
    folder: Path, entry: Path | None, progress: Progress | None, required: bool = False
) -> ProcessedBearing:
    files = legacy_files(folder)
    if files is None or set(files) != set(LEGACY_FILES):
        missing = [LEGACY_FILES[k][0] for k in LEGACY_FILES if not files or k not in files]
        raise DataFormatError(
            f"{folder}: missing {' and '.join(missing)}; a 2021-layout bearing folder needs both "
            "features.csv.gz and spectra.csv.gz"
        )
    key = legacy_key(files)
    if entry is not None:
        hit = cached(entry, key)
        if hit is not None:
            if progress is not None:
                progress(1.0)
            return hit
    bearing = read_2021_bearing(folder)
    if entry is not None:
        store(entry, bearing, {"key": key, "source_kind": "2021"}, required)
    if progress is not None:
        progress(1.0)
    return bearing


# --------------------------------------------------------------------------- many bearings


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
    with progress_bar(total, progress, label) as advance:
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
        for name in select(found, names, root):
            folder = found[name]
            entry = cache_entry(cache, name, folder)
            jobs[name] = (1.0, lambda p, folder=folder, entry=entry: _prepare_legacy(folder, entry, p))
    else:
        found = find_bearings(root)
        for name in select(found, names, root):
            folder = found[name]
            files = list_acc_files(folder)
            entry = cache_entry(cache, name, folder)
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
    available = {n: root / n for n in manifest_bearings(root)}
    jobs: dict[str, tuple[float, Callable[[Progress | None], ProcessedBearing]]] = {}
    for name in select(available, names, root):
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
    if meta.get("pipeline_version") != disk_cache.PIPELINE_VERSION:
        raise DataError(
            f"{entry} was prepared by pipeline version {meta.get('pipeline_version')} (now "
            f"{disk_cache.PIPELINE_VERSION}) and its source {source} is gone; re-run `kosmos-fl data prepare`"
        )
    loaded = load_entry(entry, meta)
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
    selected = select(sources, names, raw_dir)
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
    loaded = load_entry(entry, meta) if meta is not None else None
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
        "pipeline_version": disk_cache.PIPELINE_VERSION,
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
    store(entry, bearing, {"key": f"{source_kind}:{bearing.n_snapshots}", "source_kind": source_kind}, True)
    _write_manifest(out_dir, out_dir, [bearing.name])
    return entry


def remove_prepared_bearing(out_dir: Path, name: str) -> None:
    """Drop one bearing from a prepared folder (folder and manifest entry)."""
    out_dir = Path(out_dir)
    shutil.rmtree(out_dir / name, ignore_errors=True)
    if (out_dir / MANIFEST).is_file():
        _write_manifest(out_dir, out_dir, [])
