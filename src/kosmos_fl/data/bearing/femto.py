"""Reader for the raw FEMTO-ST / PRONOSTIA bearing recordings (IEEE PHM 2012 challenge).

A bearing folder holds one ``acc_NNNNN.csv`` per snapshot: 2560 rows sampled at 25.6 kHz, six
columns without header (hour, minute, second, microsecond, horizontal acc, vertical acc, in g),
one snapshot every 10 s. Parsing 600 MB of such files is the slow part of the whole data
pipeline, so the reader (parsing lives in :mod:`kosmos_fl.data.bearing._rawcsv`) loads many files into
one reusable byte buffer and hands it to pyarrow's multithreaded CSV parser in one call;
per-file work is limited to I/O, reading the first line (the snapshot's timestamp) and counting
newlines with numpy.

Real-file quirks handled: ``;`` as separator (Bearing1_4), exponent notation in the microsecond
column (``1.9691e+05``), ``temp_*.csv`` files in the same folder (ignored), time of day wrapping
past midnight, and glitched timestamps (Bearing1_1 acc_02121/02122 jump back 6 h), which are
repaired from their neighbours and reported in :attr:`RawBearing.repaired`.
"""

from __future__ import annotations

import bisect
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kosmos_fl.data.bearing.acc_files import (
    SNAPSHOT_LEN,
    AccFile,
    OnError,
    first_line_time,
    has_acc_files,
    list_acc_files,
)
from kosmos_fl.errors import DataError, DataFormatError

log = logging.getLogger(__name__)

CONDITIONS: dict[int, tuple[int, int]] = {1: (1800, 4000), 2: (1650, 4200), 3: (1500, 5000)}
"""Operating condition -> (shaft speed in rpm, radial load in N)."""
SAMPLE_RATE = 25600.0
SNAPSHOT_PERIOD = 10.0
"""Seconds between two snapshots of the PRONOSTIA acquisition."""
CHALLENGE_SUBSETS = ("Full_Test_Set", "Learning_set", "Test_set")
"""Sub-folders of the PHM 2012 archives; earlier ones win when a bearing appears twice
(``Test_set`` holds truncated recordings, ``Full_Test_Set`` the same bearings run to failure)."""

_BEARING_RE = re.compile(r"^Bearing(\d+)_(\d+)$")
_DAY = 86400.0


@dataclass(frozen=True, eq=False)
class RawBearing:
    """All vibration snapshots of one bearing, in acquisition order."""

    name: str
    condition: int
    timestamps: np.ndarray
    """(n,) float64 seconds since midnight of the first day, strictly increasing."""
    signals: np.ndarray
    """(n, 2560, 2) float32 acceleration in g, [..., 0] horizontal, [..., 1] vertical."""
    files: tuple[Path, ...]
    """The n files that were read, in order."""
    skipped: tuple[tuple[Path, str], ...] = ()
    """Files left out under ``on_error="skip"``, each with the reason."""
    repaired: tuple[tuple[Path, str], ...] = ()
    """Files whose timestamp was out of order and was interpolated from its neighbours."""


def bearing_condition(name: str) -> int:
    """Operating condition encoded in a PHM 2012 bearing name: ``"Bearing2_3"`` -> 2."""
    match = _BEARING_RE.match(name)
    if match is None or int(match.group(1)) not in CONDITIONS:
        raise DataError(
            f"cannot tell the operating condition of {name!r}: bearing folders must be named "
            f"BearingC_I with condition C in {sorted(CONDITIONS)} (e.g. Bearing1_3)"
        )
    return int(match.group(1))


def bearing_sort_key(name: str) -> tuple[int, int, str]:
    """Natural order of bearing names (Bearing1_2 before Bearing1_10)."""
    match = _BEARING_RE.match(name)
    if match is None:
        return (1 << 30, 1 << 30, name)
    return (int(match.group(1)), int(match.group(2)), name)


def find_bearings(root: Path) -> dict[str, Path]:
    """Bearing folders (``BearingC_I`` holding ``acc_*.csv``) under ``root``, sorted by name.

    ``root`` may itself be a bearing folder, hold bearing folders, or hold the challenge
    sub-folders (``Learning_set``, ``Full_Test_Set``, ``Test_set``), possibly one level deeper
    (e.g. an extracted archive folder). When a bearing appears in several sub-folders the full
    recording wins over the truncated ``Test_set`` one.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist; check the path")
    if _BEARING_RE.match(root.name) and has_acc_files(root):
        return {root.name: root}

    rank = {name: i for i, name in enumerate(CHALLENGE_SUBSETS)}
    found: dict[str, tuple[int, Path]] = {}

    def scan(folder: Path, depth: int) -> None:
        try:
            children = sorted(p for p in folder.iterdir() if p.is_dir())
        except OSError:
            return
        for child in children:
            if child.name.startswith("."):
                continue
            if _BEARING_RE.match(child.name):
                if has_acc_files(child):
                    priority = rank.get(child.parent.name, len(rank))
                    if child.name not in found or priority < found[child.name][0]:
                        found[child.name] = (priority, child)
            elif depth > 0:
                scan(child, depth - 1)

    scan(root, 2)
    for name, (priority, path) in found.items():
        if priority == rank["Test_set"]:
            log.warning(
                "%s comes from Test_set, whose recordings stop before failure: its RUL labels "
                "count time to the last recorded snapshot (%s)",
                name,
                path,
            )
    return {name: found[name][1] for name in sorted(found, key=bearing_sort_key)}


def rul_labels(timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remaining useful life of each snapshot of a bearing that ran to failure.

    Returns ``(rul_seconds, rul_fraction)``: seconds from each snapshot to the last one, and the
    same divided by the bearing's total life (1 at the first snapshot, 0 at failure).
    """
    t = np.asarray(timestamps, dtype=np.float64)
    if t.ndim != 1 or t.size == 0:
        raise ValueError("timestamps must be a non-empty 1-D array")
    rul = t[-1] - t
    life = t[-1] - t[0]
    fraction = rul / life if life > 0 else np.zeros_like(rul)
    return rul, fraction


# --------------------------------------------------------------------------- timestamps


def _longest_increasing(t: np.ndarray) -> np.ndarray:
    """Boolean mask of one longest strictly increasing subsequence (patience sorting)."""
    tails: list[float] = []
    tail_idx: list[int] = []
    parent = np.full(t.size, -1, dtype=np.int64)
    for i, value in enumerate(t.tolist()):  # only runs on the rare glitch path
        pos = bisect.bisect_left(tails, value)
        if pos > 0:
            parent[i] = tail_idx[pos - 1]
        if pos == len(tails):
            tails.append(value)
            tail_idx.append(i)
        else:
            tails[pos] = value
            tail_idx[pos] = i
    keep = np.zeros(t.size, dtype=bool)
    i = tail_idx[-1] if tail_idx else -1
    while i >= 0:
        keep[i] = True
        i = int(parent[i])
    return keep


def unwrap_time_of_day(time_of_day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Turn per-snapshot times of day into strictly increasing seconds.

    A backwards jump of more than 12 h is a midnight crossing (+24 h from there on). Snapshots
    that still break the order (clock glitches, duplicates) are outside the longest strictly
    increasing subsequence; their time is interpolated from the neighbours by file order (or
    extrapolated with the median period at the ends). Returns ``(seconds, repaired_mask)``.
    """
    tod = np.asarray(time_of_day, dtype=np.float64)
    if tod.size == 0:
        return tod.copy(), np.zeros(0, dtype=bool)
    step = np.diff(tod)
    days = np.concatenate([[0.0], np.cumsum(step < -_DAY / 2)])
    t = tod + days * _DAY
    if t.size < 2 or bool(np.all(np.diff(t) > 0)):
        return t, np.zeros(t.size, dtype=bool)
    good = _longest_increasing(t)
    idx = np.arange(t.size)
    gi = idx[good]
    period = float(np.median(np.diff(t[good]))) if gi.size > 1 else SNAPSHOT_PERIOD
    fixed = np.interp(idx, gi, t[good])
    before, after = idx < gi[0], idx > gi[-1]
    fixed[before] = t[gi[0]] - (gi[0] - idx[before]) * period
    fixed[after] = t[gi[-1]] + (idx[after] - gi[-1]) * period
    return fixed, ~good


def read_bearing(
    folder: Path,
    *,
    on_error: OnError = "raise",
    progress: Callable[[int], None] | None = None,
) -> RawBearing:
    """Read every ``acc_*.csv`` snapshot of one bearing folder.

    A corrupt, short or unreadable file raises :class:`DataFormatError` naming the file, or with
    ``on_error="skip"`` is left out and listed in :attr:`RawBearing.skipped` (labels still come
    from the kept snapshots' own timestamps, so they stay correct). ``progress`` is called with
    the number of files handled after each parsed chunk.
    """
    folder = Path(folder)
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
    if not folder.is_dir():
        raise DataError(f"bearing folder {folder} does not exist; check the path")
    condition = bearing_condition(folder.name)
    files = list_acc_files(folder)
    if not files:
        raise DataError(f"no acc_*.csv snapshot files in {folder}; point at a PRONOSTIA bearing folder")
    return read_acc_files(folder.name, condition, files, on_error=on_error, progress=progress)


def read_acc_files(
    name: str,
    condition: int,
    files: Sequence[AccFile],
    *,
    on_error: OnError = "raise",
    progress: Callable[[int], None] | None = None,
) -> RawBearing:
    """Parse an explicit list of snapshot files (see :func:`read_bearing`)."""
    from kosmos_fl.data.bearing._rawcsv import ChunkReader  # pyarrow only when parsing

    reader = ChunkReader(files, on_error)
    signals = np.empty((len(files), SNAPSHOT_LEN, 2), dtype=np.float32)
    kept: list[int] = []
    times: list[float] = []
    for group in reader.chunks():
        kept += reader.read(group, signals[len(kept) :], times)
        if progress is not None:
            progress(len(group))
    if not kept:
        raise DataError(f"{name}: none of its {len(files)} snapshot files could be read")
    if len(kept) < len(files):
        signals = signals[: len(kept)].copy()
    timestamps, repaired = unwrap_time_of_day(np.asarray(times))
    kept_paths = tuple(files[p].path for p in kept)
    repaired_files = tuple(
        (kept_paths[i], "timestamp out of order; interpolated from neighbours")
        for i in np.flatnonzero(repaired)
    )
    if repaired_files:
        log.warning(
            "%s: %d snapshot timestamp(s) out of order were interpolated (first: %s)",
            name,
            len(repaired_files),
            repaired_files[0][0].name,
        )
    return RawBearing(
        name=name,
        condition=condition,
        timestamps=timestamps,
        signals=signals,
        files=kept_paths,
        skipped=tuple((files[p].path, reason) for p, reason in sorted(reader.bad.items())),
        repaired=repaired_files,
    )


def read_timestamps(folder: Path) -> np.ndarray:
    """Snapshot timestamps of a bearing from the first line of each file (no full parse)."""
    times: list[float] = []
    for acc in list_acc_files(Path(folder)):
        try:
            with open(acc.path, "rb") as fh:
                times.append(first_line_time(fh.read(256))[0])
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            raise DataFormatError(f"{acc.path}: {reason}") from exc
    return unwrap_time_of_day(np.asarray(times))[0]
