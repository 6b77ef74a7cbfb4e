"""The on-disk store of processed bearings: one folder of ``.npy`` files plus ``meta.json`` per
bearing, written atomically, keyed by :data:`PIPELINE_VERSION` and the source files' name, size and
mtime so that nothing stale is ever served. Used as the cache of raw folders and as the
``kosmos-fl data prepare`` output (:mod:`kosmos_fl.data.bearing.processed`).
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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kosmos_fl.data.bearing.acc_files import AccFile
from kosmos_fl.data.bearing.features import FEATURE_COLUMNS
from kosmos_fl.errors import DataError

log = logging.getLogger("kosmos_fl.data.processed")

PIPELINE_VERSION = "1"
"""Bump whenever reading, labelling, features or spectra change: every cache entry and prepared
folder made by another version is then recomputed (or reported stale)."""
FORMAT = "kosmos-fl-processed"
META = "meta.json"
CACHE_DIRNAME = ".kosmos-cache"

_ARRAYS = ("timestamps", "rul_seconds", "rul_fraction", "features", "spectra")

_NPY_HEADER_LOCK = threading.Lock()
"""``np.load`` parses each header with ``ast.literal_eval``. On CPython 3.11 (3.11.7 here) two
threads parsing at once can fail with ``SystemError: AST constructor recursion depth mismatch``
(python/cpython#106905). Bearings are loaded on a thread pool, so their loads take turns; only
small arrays are read here (spectra are memory-mapped), so the lock costs nothing measurable."""


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
    """(n, 54) float32, columns :data:`~kosmos_fl.data.bearing.features.FEATURE_COLUMNS`."""
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


def _source_key(kind: str, files: Sequence[tuple[str, int, int]], on_error: str) -> str:
    payload = json.dumps(
        {"pipeline": PIPELINE_VERSION, "kind": kind, "on_error": on_error, "files": list(files)},
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def raw_key(files: Sequence[AccFile], on_error: str = "raise") -> str:
    """Cache key of a raw bearing: pipeline version plus name, size, mtime of each acc file."""
    return _source_key("raw", [(f.path.name, f.size, f.mtime_ns) for f in files], on_error)


def legacy_key(files: dict[str, Path]) -> str:
    """Cache key of a 2021-layout bearing (its two CSV files)."""
    stats = []
    for path in sorted(files.values()):
        st = path.stat()
        stats.append((path.name, st.st_size, st.st_mtime_ns))
    return _source_key("2021", stats, "raise")


# --------------------------------------------------------------------------- entries on disk


def write_entry(entry: Path, bearing: ProcessedBearing, meta: dict[str, Any]) -> None:
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


def store(entry: Path, bearing: ProcessedBearing, meta: dict[str, Any], required: bool) -> None:
    """Write an entry. A cache that cannot be written costs speed, never the result; an
    output folder (``required``) that cannot be written is an error."""
    try:
        write_entry(entry, bearing, meta)
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


def load_entry(entry: Path, meta: dict[str, Any]) -> ProcessedBearing | None:
    """A stored bearing with memory-mapped spectra, or None if its files are damaged."""
    try:
        with _NPY_HEADER_LOCK:
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


def cached(entry: Path, key: str) -> ProcessedBearing | None:
    meta = read_meta(entry)
    if meta is None or meta.get("key") != key or meta.get("pipeline_version") != PIPELINE_VERSION:
        return None
    return load_entry(entry, meta)


def cache_entry(cache_dir: Path, name: str, source: Path) -> Path:
    digest = hashlib.sha1(str(source.resolve()).encode()).hexdigest()[:12]
    return cache_dir / f"{name}-{digest}"


def default_cache_dir(root: Path) -> Path:
    """``<root>/.kosmos-cache`` when ``root`` is writable, else ``~/.cache/kosmos-fl``."""
    root = Path(root)
    if root.is_dir() and os.access(root, os.W_OK | os.X_OK):
        return root / CACHE_DIRNAME
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kosmos-fl"
