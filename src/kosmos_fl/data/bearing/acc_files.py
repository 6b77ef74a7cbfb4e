"""The PRONOSTIA snapshot files: their name pattern, length and first line.

Shared by the reader (:mod:`kosmos_fl.data.bearing.femto`) and its fast parser
(:mod:`kosmos_fl.data.bearing._rawcsv`), which both need the file format but not each other's code.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from kosmos_fl.errors import DataError

SNAPSHOT_LEN = 2560
"""Rows of one snapshot file (0.1 s at 25.6 kHz)."""

OnError = Literal["raise", "skip"]

_ACC_RE = re.compile(r"^acc_(\d+)\.csv$")


@dataclass(frozen=True)
class AccFile:
    """One ``acc_*.csv`` with the stat data that keys caches."""

    path: Path
    index: int
    size: int
    mtime_ns: int


def list_acc_files(folder: Path) -> list[AccFile]:
    """The snapshot files of a bearing folder sorted by their number; other files are ignored."""
    found: list[AccFile] = []
    try:
        entries = list(os.scandir(folder))
    except OSError as exc:
        raise DataError(f"cannot list bearing folder {folder}: {exc.strerror}") from exc
    for entry in entries:
        match = _ACC_RE.match(entry.name)
        if match is None or not entry.is_file():
            continue
        st = entry.stat()
        found.append(AccFile(Path(entry.path), int(match.group(1)), st.st_size, st.st_mtime_ns))
    found.sort(key=lambda f: (f.index, f.path.name))
    return found


def has_acc_files(folder: Path) -> bool:
    try:
        with os.scandir(folder) as it:
            return any(_ACC_RE.match(e.name) for e in it)
    except OSError:
        return False


def first_line_time(head: bytes) -> tuple[float, bytes, bool]:
    """Time of day (s), delimiter and decimal-comma flag from a snapshot's first line."""
    line = head.split(b"\n", 1)[0].rstrip(b"\r")
    delimiter = b";" if b";" in line else b","
    decimal_comma = delimiter == b";" and b"," in line
    if decimal_comma:
        line = line.replace(b",", b".")
    fields = line.split(delimiter)
    if len(fields) != 6:
        raise ValueError(f"first row has {len(fields)} fields, expected 6 (h,m,s,us,horiz,vert)")
    try:
        hour, minute, second, micro = (float(f) for f in fields[:4])
    except ValueError:
        raise ValueError(f"first row {line[:60]!r} is not numeric") from None
    if not (0 <= hour < 24 and 0 <= minute < 60 and 0 <= second < 61 and 0 <= micro <= 1e6):
        raise ValueError(f"first row time {hour:g}:{minute:g}:{second:g}.{micro:g} is out of range")
    return hour * 3600.0 + minute * 60.0 + second + micro * 1e-6, delimiter, decimal_comma
