"""The client's durable store of collected snapshots and maintenance events (SQLite, WAL).

Why SQLite: one file, transactions, and a unique key that makes duplicates free to detect. The
ingest commits a batch before it acknowledges the batch's MQTT messages, so a message is either
stored or still owed by the broker (persistent session, QoS 1): a client killed at any moment
loses nothing. WAL with ``synchronous=NORMAL`` survives a killed process (not a power cut without
``synchronous=FULL``, which ``durable_fsync`` selects).

Labelled bearings (those with a failure event) are turned into the prepared on-disk layout the
bearing use case reads (``<store_dir>/processed``); what a label is lives in
:mod:`kosmos_fl.edge.labelling`, this module keeps track of which bearings need it.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kosmos_fl.data.bearing.processed import ProcessedBearing, remove_prepared_bearing, write_prepared_bearing
from kosmos_fl.edge.labelling import folder_names, label_bearing
from kosmos_fl.edge.payload import Maintenance, Snapshot
from kosmos_fl.errors import DataError

log = logging.getLogger("kosmos_fl.edge.store")

DB_NAME = "edge.db"
PROCESSED_DIRNAME = "processed"
SOURCE_KIND = "edge"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    id INTEGER PRIMARY KEY,
    machine_id TEXT NOT NULL,
    bearing_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    timestamp REAL NOT NULL,
    sampling_rate REAL NOT NULL,
    condition INTEGER,
    n_samples INTEGER NOT NULL,
    signal BLOB NOT NULL,
    std_h REAL NOT NULL,
    std_v REAL NOT NULL,
    peak_h REAL NOT NULL,
    peak_v REAL NOT NULL,
    at_peak_h INTEGER NOT NULL,
    at_peak_v INTEGER NOT NULL,
    stored_at REAL NOT NULL,
    UNIQUE (machine_id, bearing_id, seq)
);
CREATE TABLE IF NOT EXISTS events (
    machine_id TEXT NOT NULL,
    bearing_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    timestamp REAL NOT NULL,
    last_seq INTEGER,
    replaced_by TEXT,
    stored_at REAL NOT NULL,
    PRIMARY KEY (machine_id, bearing_id, kind)
);
CREATE TABLE IF NOT EXISTS processed (
    machine_id TEXT NOT NULL,
    bearing_id TEXT NOT NULL,
    folder TEXT NOT NULL,
    n_snapshots INTEGER NOT NULL,
    max_id INTEGER NOT NULL,
    failure_time REAL NOT NULL,
    processed_at REAL NOT NULL,
    PRIMARY KEY (machine_id, bearing_id)
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

COUNTERS = ("received", "stored", "duplicates", "bad", "events")


def peak_stats(signals: np.ndarray) -> np.ndarray:
    """Per snapshot and channel of ``(n, samples, 2)``: standard deviation, peak |value| and how
    many samples sit at that peak -> ``(n, 6)`` float64 ``[std_h, std_v, peak_h, peak_v, at_h, at_v]``.

    Many samples at exactly the peak level mean a flat top, i.e. a clipped signal; a real
    vibration signal touches its peak once or a few times (values come rounded to 1 mg).
    One vectorised pass per batch: per-snapshot numpy calls cost more than the arithmetic.
    """
    std = signals.std(axis=1, dtype=np.float64)
    mag = np.abs(signals)
    peak = mag.max(axis=1)
    at_peak = (mag >= peak[:, None, :] * np.float32(1 - 1e-6)).sum(axis=1)
    return np.concatenate([std, peak.astype(np.float64), at_peak.astype(np.float64)], axis=1)


@dataclass(frozen=True)
class BearingRecord:
    """What the store holds about one bearing of one machine."""

    machine_id: str
    bearing_id: str
    snapshots: int
    first_seq: int
    last_seq_seen: int
    first_time: float
    last_time: float
    failure_time: float | None
    failure_last_seq: int | None
    flat: int
    clipped: int

    @property
    def labelled(self) -> bool:
        return self.failure_time is not None

    @property
    def gaps(self) -> int:
        """Snapshots missing between seq 0 (or the first seen) and the last announced one."""
        last = self.failure_last_seq if self.failure_last_seq is not None else self.last_seq_seen
        return max(0, last + 1 - self.snapshots)


class EdgeStore:
    """SQLite store of one client. One writer (the ingest); any number of readers."""

    def __init__(self, store_dir: Path, *, durable_fsync: bool = False) -> None:
        self.dir = Path(store_dir)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(f"cannot create edge store_dir {self.dir}: {exc.strerror}") from exc
        self.path = self.dir / DB_NAME
        self.processed_dir = self.dir / PROCESSED_DIRNAME
        self._lock = threading.Lock()
        self._db = self._connect(durable_fsync)
        with self._db:
            self._db.executescript(_SCHEMA)
            self._db.executemany(
                "INSERT OR IGNORE INTO counters(name, value) VALUES (?, 0)", [(c,) for c in COUNTERS]
            )

    def _connect(self, durable_fsync: bool) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={'FULL' if durable_fsync else 'NORMAL'}")
        except sqlite3.Error as exc:
            raise DataError(f"cannot open the edge store {self.path}: {exc}; check store_dir") from exc
        return db

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- writing ---------------------------------------------------------------------------------
    def add(
        self, messages: Sequence[Snapshot | Maintenance], bad: int = 0, received: int | None = None
    ) -> tuple[int, int, list[tuple[str, str]]]:
        """Store a batch in one transaction; returns (new snapshots, duplicates, bearings whose
        failure event is new). Duplicates (same machine, bearing, seq) are ignored."""
        now = time.time()
        snaps = [m for m in messages if isinstance(m, Snapshot)]
        events = [m for m in messages if isinstance(m, Maintenance)]
        stats: dict[int, np.ndarray] = {}
        for length in {m.signal.shape[0] for m in snaps}:  # one vectorised pass per length
            group = [i for i, m in enumerate(snaps) if m.signal.shape[0] == length]
            for i, row in zip(group, peak_stats(np.stack([snaps[i].signal for i in group])), strict=True):
                stats[i] = row
        rows = []
        for i, m in enumerate(snaps):
            sig = np.ascontiguousarray(m.signal, dtype="<f4")
            st = stats[i]
            rows.append(
                (
                    m.machine_id,
                    m.bearing_id,
                    m.seq,
                    m.timestamp,
                    m.sampling_rate,
                    m.condition,
                    sig.shape[0],
                    sig.tobytes(),
                    float(st[0]),
                    float(st[1]),
                    float(st[2]),
                    float(st[3]),
                    int(st[4]),
                    int(st[5]),
                    now,
                )
            )
        new_events: list[tuple[str, str]] = []
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                before = db.total_changes
                db.executemany(
                    "INSERT OR IGNORE INTO snapshots(machine_id, bearing_id, seq, timestamp, sampling_rate,"
                    " condition, n_samples, signal, std_h, std_v, peak_h, peak_v, at_peak_h, at_peak_v,"
                    " stored_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    rows,
                )
                stored = db.total_changes - before
                dup = len(rows) - stored
                for e in events:
                    cur = db.execute(
                        "INSERT OR IGNORE INTO events(machine_id, bearing_id, kind, timestamp, last_seq,"
                        " replaced_by, stored_at) VALUES (?,?,?,?,?,?,?)",
                        (e.machine_id, e.bearing_id, e.event, e.timestamp, e.last_seq, e.replaced_by, now),
                    )
                    if cur.rowcount:
                        new_events.append((e.machine_id, e.bearing_id))
                    else:
                        dup += 1
                self._bump(
                    db,
                    received=len(messages) + bad if received is None else received,
                    stored=stored,
                    duplicates=dup,
                    bad=bad,
                    events=len(new_events),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return stored, dup, new_events

    @staticmethod
    def _bump(db: sqlite3.Connection, **counts: int) -> None:
        db.executemany(
            "UPDATE counters SET value = value + ? WHERE name = ?",
            [(v, k) for k, v in counts.items() if v],
        )

    # -- reading ---------------------------------------------------------------------------------
    def counters(self) -> dict[str, int]:
        with self._lock:
            return {k: int(v) for k, v in self._db.execute("SELECT name, value FROM counters")}

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM snapshots").fetchone()[0])

    def keys(self) -> set[tuple[str, str, int]]:
        with self._lock:
            return {
                (m, b, int(s))
                for m, b, s in self._db.execute("SELECT machine_id, bearing_id, seq FROM snapshots")
            }

    def bearings(
        self, flatline_std: float = 1e-4, clip_share: float = 0.01, full_scale: float | None = None
    ) -> list[BearingRecord]:
        """Every bearing seen, with quality counts under the given thresholds."""
        fs = float("inf") if full_scale is None else full_scale
        sql = """
            SELECT s.machine_id, s.bearing_id, COUNT(*), MIN(s.seq), MAX(s.seq), MIN(s.timestamp),
                   MAX(s.timestamp), e.timestamp, e.last_seq,
                   SUM(s.std_h <= :flat OR s.std_v <= :flat),
                   SUM(s.at_peak_h >= :clip * s.n_samples OR s.at_peak_v >= :clip * s.n_samples
                       OR s.peak_h >= :fs OR s.peak_v >= :fs)
            FROM snapshots s LEFT JOIN events e
              ON e.machine_id = s.machine_id AND e.bearing_id = s.bearing_id
                 AND e.kind = 'failure_replacement'
            GROUP BY s.machine_id, s.bearing_id
            ORDER BY s.machine_id, s.bearing_id
        """
        with self._lock:
            rows = self._db.execute(sql, {"flat": flatline_std, "clip": clip_share, "fs": fs}).fetchall()
        return [
            BearingRecord(m, b, int(n), int(s0), int(s1), float(t0), float(t1), ft, ls, int(fl), int(cl))
            for m, b, n, s0, s1, t0, t1, ft, ls, fl, cl in rows
        ]

    def read_bearing(self, machine_id: str, bearing_id: str) -> tuple[np.ndarray, np.ndarray, int | None]:
        """(timestamps (n,), signals (n, samples, 2), condition) of one bearing in time order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT timestamp, n_samples, signal, condition FROM snapshots WHERE machine_id = ? AND"
                " bearing_id = ? ORDER BY timestamp, seq",
                (machine_id, bearing_id),
            ).fetchall()
        if not rows:
            raise DataError(f"no snapshots of {machine_id}/{bearing_id} in {self.path}")
        lengths = {r[1] for r in rows}
        if len(lengths) != 1:
            raise DataError(f"{machine_id}/{bearing_id}: snapshots differ in length ({sorted(lengths)})")
        n_samples = lengths.pop()
        signals = np.empty((len(rows), n_samples, 2), dtype=np.float32)
        for i, r in enumerate(rows):
            signals[i] = np.frombuffer(r[2], dtype="<f4").reshape(n_samples, 2)
        conditions = {r[3] for r in rows if r[3] is not None}
        return (
            np.array([r[0] for r in rows], dtype=np.float64),
            signals,
            (min(conditions) if conditions else None),
        )

    # -- labelling and the processed cache -------------------------------------------------------
    def _pending(self, names: dict[tuple[str, str], str]) -> list[tuple[str, str, float, int, int]]:
        """Labelled bearings whose failure time, snapshots or folder name changed since processing."""
        sql = """
            SELECT e.machine_id, e.bearing_id, e.timestamp, COUNT(s.id), MAX(s.id),
                   p.n_snapshots, p.max_id, p.failure_time, p.folder
            FROM events e JOIN snapshots s ON s.machine_id = e.machine_id AND s.bearing_id = e.bearing_id
            LEFT JOIN processed p ON p.machine_id = e.machine_id AND p.bearing_id = e.bearing_id
            WHERE e.kind = 'failure_replacement'
            GROUP BY e.machine_id, e.bearing_id
        """
        with self._lock:
            rows = self._db.execute(sql).fetchall()
        return [
            (m, b, float(t), int(n), int(mx))
            for m, b, t, n, mx, pn, pmx, pt, pf in rows
            if (pn, pmx, pt, pf) != (n, mx, t, names.get((m, b)))
        ]

    def folder_names(self) -> dict[tuple[str, str], str]:
        """Folder of each labelled bearing in the processed layout: its bearing id, prefixed with
        the machine id only when two machines report the same bearing id."""
        with self._lock:
            labelled = self._db.execute(
                "SELECT machine_id, bearing_id FROM events WHERE kind = 'failure_replacement'"
            ).fetchall()
        return folder_names(labelled)

    def refresh_processed(self) -> list[str]:
        """Label and featurise every bearing whose failure event or snapshots changed since it was
        last processed; write it into :attr:`processed_dir`. Returns the folders written."""
        written = []
        names = self.folder_names()
        for machine_id, bearing_id, failure, n, max_id in self._pending(names):
            folder = names[(machine_id, bearing_id)]
            try:
                bearing = self._label(machine_id, bearing_id, folder, failure)
            except DataError as exc:
                log.error("cannot label %s/%s: %s", machine_id, bearing_id, exc)
                continue
            if bearing is None:
                continue
            old = self.processed_folders().get((machine_id, bearing_id))
            if old is not None and old != folder:
                remove_prepared_bearing(self.processed_dir, old)  # renamed: another machine has its id
            write_prepared_bearing(self.processed_dir, bearing, SOURCE_KIND)
            with self._lock:
                self._db.execute(
                    "INSERT OR REPLACE INTO processed(machine_id, bearing_id, folder, n_snapshots, max_id,"
                    " failure_time, processed_at) VALUES (?,?,?,?,?,?,?)",
                    (machine_id, bearing_id, folder, n, max_id, failure, time.time()),
                )
            written.append(folder)
            log.info(
                "labelled %s/%s: %d snapshots, life %.1f h -> %s",
                machine_id,
                bearing_id,
                bearing.n_snapshots,
                bearing.life_seconds / 3600,
                self.processed_dir / folder,
            )
        return written

    def _label(
        self, machine_id: str, bearing_id: str, folder: str, failure: float
    ) -> ProcessedBearing | None:
        timestamps, signals, condition = self.read_bearing(machine_id, bearing_id)
        return label_bearing(
            timestamps,
            signals,
            condition,
            machine_id=machine_id,
            bearing_id=bearing_id,
            folder=folder,
            failure=failure,
            source=f"edge:{self.path}#{machine_id}/{bearing_id}",
        )

    def processed_folders(self) -> dict[tuple[str, str], str]:
        with self._lock:
            return {
                (m, b): f
                for m, b, f in self._db.execute("SELECT machine_id, bearing_id, folder FROM processed")
            }
