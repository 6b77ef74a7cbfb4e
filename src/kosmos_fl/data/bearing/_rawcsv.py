"""Fast parsing of many PRONOSTIA snapshot files (internal to :mod:`kosmos_fl.data.bearing.femto`).

Files are read into one reusable byte buffer per chunk and handed to pyarrow's multithreaded CSV
parser in one call; only the two acceleration columns are converted. Per-file work is I/O, the
first line (the snapshot's timestamp) and a vectorised newline count; a file is parsed on its
own only to name the culprit after a failure. Kept apart so that importing the reader (e.g. for
a cached reload) does not import pyarrow.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from kosmos_fl.data.bearing.acc_files import SNAPSHOT_LEN, AccFile, OnError, first_line_time
from kosmos_fl.errors import DataFormatError

#: The reader's logger: a skipped file is reported as the reader's warning, as before the split.
log = logging.getLogger("kosmos_fl.data.femto")

CHUNK_BYTES = 24 << 20  # files parsed per pyarrow call; bounds the reusable buffer
_PARSE_BLOCK = 1 << 20
_NEWLINE = 10
_SEMICOLON = 59
_COMMA = 44
_DOT = 46


@dataclass
class _Loaded:
    """One file's bytes inside the chunk buffer."""

    pos: int  # position in the list of files
    start: int
    end: int
    time_of_day: float
    delimiter: bytes
    decimal_comma: bool


def _parse_options(delimiter: bytes) -> pacsv.ParseOptions:
    return pacsv.ParseOptions(delimiter=delimiter.decode(), quote_char=False, double_quote=False)


_READ = pacsv.ReadOptions(autogenerate_column_names=True, block_size=_PARSE_BLOCK)
_CONVERT = pacsv.ConvertOptions(
    include_columns=["f4", "f5"], column_types={"f4": pa.float32(), "f5": pa.float32()}
)


def _parse(data: pa.Buffer | bytes, delimiter: bytes) -> pa.Table:
    """Acceleration columns of headerless six-column CSV text."""
    return pacsv.read_csv(
        pa.py_buffer(data) if isinstance(data, bytes | bytearray | memoryview) else data,
        read_options=_READ,
        parse_options=_parse_options(delimiter),
        convert_options=_CONVERT,
    )


def _column_into(column: pa.ChunkedArray, out: np.ndarray) -> np.ndarray | None:
    """Copy a float32 arrow column into ``out`` (strided ok); return the null mask if any."""
    pos = 0
    for chunk in column.chunks:
        n = len(chunk)
        values = np.frombuffer(chunk.buffers()[1], dtype=np.float32, count=n, offset=chunk.offset * 4)
        out[pos : pos + n] = values
        pos += n
    if column.null_count == 0:
        return None
    return np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)


def _check_single(data: bytes, delimiter: bytes) -> str | None:
    """Why one file's text is not a valid snapshot (slow path, only after a failure)."""
    try:
        table = _parse(data, delimiter)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        return str(exc).splitlines()[0]
    if table.num_rows != SNAPSHOT_LEN:
        return f"has {table.num_rows} rows, expected {SNAPSHOT_LEN} (truncated or corrupt)"
    if table.column(0).null_count or table.column(1).null_count:
        return "has empty or NaN acceleration values"
    return None


class ChunkReader:
    """Reads groups of snapshot files into one reusable buffer and parses them together."""

    def __init__(self, files: Sequence[AccFile], on_error: OnError) -> None:
        self.files = files
        self.on_error = on_error
        self.bad: dict[int, str] = {}
        biggest = max((f.size for f in files), default=0)
        self.buffer = bytearray(max(CHUNK_BYTES, biggest) + 2 * len(files) + 16)
        self.view = memoryview(self.buffer)
        self.bytes = np.frombuffer(self.buffer, dtype=np.uint8)
        self.flags = np.empty(len(self.buffer), dtype=bool)

    def fail(self, pos: int, reason: str) -> None:
        path = self.files[pos].path
        if self.on_error == "raise":
            raise DataFormatError(f"{path}: {reason}; fix or remove the file, or read with on_error='skip'")
        self.bad[pos] = reason
        log.warning("skipping %s: %s", path, reason)

    def chunks(self) -> list[list[int]]:
        groups: list[list[int]] = [[]]
        size = 0
        for pos, f in enumerate(self.files):
            if groups[-1] and size + f.size + 2 > len(self.buffer) - 16:
                groups.append([])
                size = 0
            groups[-1].append(pos)
            size += f.size + 2
        return [g for g in groups if g]

    def load(self, positions: list[int]) -> list[_Loaded]:
        """Read files into the buffer, one after the other, each ending with a newline."""
        loaded: list[_Loaded] = []
        off = 0
        for pos in positions:
            acc = self.files[pos]
            try:
                with open(acc.path, "rb", buffering=0) as fh:
                    n = fh.readinto(self.view[off : off + acc.size]) or 0
            except OSError as exc:
                self.fail(pos, f"cannot be read ({exc.strerror})")
                continue
            if n == 0:
                self.fail(pos, "is empty")
                continue
            try:
                head = bytes(self.view[off : off + min(n, 256)])
                tod, delimiter, decimal_comma = first_line_time(head)
            except ValueError as exc:
                self.fail(pos, str(exc))
                continue
            if self.buffer[off + n - 1] != _NEWLINE:
                self.buffer[off + n] = _NEWLINE
                n += 1
            loaded.append(_Loaded(pos, off, off + n, tod, delimiter, decimal_comma))
            off += n
        return loaded

    def normalise(self, loaded: list[_Loaded]) -> bytes:
        """Make the chunk parseable with one delimiter; return that delimiter."""
        kinds = {(f.delimiter, f.decimal_comma) for f in loaded}
        if len(kinds) == 1 and not next(iter(kinds))[1]:
            return loaded[0].delimiter
        for f in loaded:  # mixed separators or decimal commas: rewrite to "," and "."
            if f.delimiter == b";":
                seg = self.bytes[f.start : f.end]
                if f.decimal_comma:
                    seg[seg == _COMMA] = _DOT
                seg[seg == _SEMICOLON] = _COMMA
        return b","

    def row_counts(self, loaded: list[_Loaded]) -> np.ndarray:
        end = loaded[-1].end
        np.equal(self.bytes[:end], _NEWLINE, out=self.flags[:end])
        flags = self.flags
        return np.array([np.count_nonzero(flags[f.start : f.end]) for f in loaded])

    def text(self, f: _Loaded) -> bytes:
        return bytes(self.view[f.start : f.end])

    def read(self, positions: list[int], out: np.ndarray, times: list[float]) -> list[int]:
        """Parse a chunk of files into ``out`` rows (in order); return the positions kept."""
        loaded = self.load(positions)
        if not loaded:
            return []
        delimiter = self.normalise(loaded)
        counts = self.row_counts(loaded)
        odd = [f for f, c in zip(loaded, counts, strict=True) if c != SNAPSHOT_LEN]
        for f, count in zip(loaded, counts, strict=True):
            if count != SNAPSHOT_LEN and _check_single(self.text(f), delimiter) is not None:
                # blank lines can make the newline count differ from the rows: only a file that
                # also fails on its own is reported, by its line count
                self.fail(f.pos, f"has {count} rows, expected {SNAPSHOT_LEN} (truncated or corrupt)")
        good = [f for f in loaded if f.pos not in self.bad]
        contiguous = len(good) == len(loaded) and not odd
        while good:
            data: pa.Buffer | bytes = (
                pa.py_buffer(self.view[: good[-1].end])
                if contiguous
                else b"".join(self.view[f.start : f.end] for f in good)
            )
            try:
                table = _parse(data, delimiter)
                if table.num_rows != SNAPSHOT_LEN * len(good):
                    raise pa.ArrowInvalid("row count mismatch")
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                for f in good:  # find the culprits one file at a time
                    reason = _check_single(self.text(f), delimiter)
                    if reason is not None:
                        self.fail(f.pos, reason)
                remaining = [f for f in good if f.pos not in self.bad]
                if len(remaining) == len(good):
                    raise  # the files are fine one by one: a bug, not a data problem
                good, contiguous = remaining, False
                continue
            block = out[: len(good)].reshape(-1, 2)
            nulls = [_column_into(table.column(j), block[:, j]) for j in range(2)]
            del table
            bad_rows = ~np.isfinite(out[: len(good)]).all(axis=(1, 2))
            for mask in nulls:
                if mask is not None:
                    bad_rows |= mask.reshape(len(good), SNAPSHOT_LEN).any(axis=1)
            if bad_rows.any():
                for f in (f for f, b in zip(good, bad_rows, strict=True) if b):
                    self.fail(f.pos, "has empty, NaN or infinite acceleration values")
                keep = ~bad_rows
                out[: int(keep.sum())] = out[: len(good)][keep]
                good = [f for f, k in zip(good, keep, strict=True) if k]
            times.extend(f.time_of_day for f in good)
            return [f.pos for f in good]
        return []
